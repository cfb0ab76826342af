"""The short soak (bench/soak.py, 60 s): a control plane and two edge nodes on loopback
under the Locust mix, through a ClickHouse outage, an edge node SIGKILLed and restarted,
and config changes. No client sees a 5xx (bar a 503 with Retry-After), every acknowledged
event is in ClickHouse exactly once, and both nodes end on the final config."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Appended, not first: bench/edge.py must not shadow the edge package.
sys.path.append(str(Path(__file__).resolve().parent.parent / "bench"))

from soak import run_soak  # noqa: E402

pytestmark = pytest.mark.soak


def test_the_short_soak_loses_nothing_and_converges(tmp_path: Path) -> None:
    report = run_soak(tmp_path, duration=60, users=10)
    print(f"\nsoak: {report}")
    assert report.failures_5xx == 0 and report.failures_4xx == 0, report
    assert report.acknowledged > 500, report
    assert (report.missing, report.duplicated) == (0, 0), report
    assert report.in_clickhouse_once == report.acknowledged
    assert report.node_versions == [report.control_version] * 2, report
    assert len(report.faults) == 3 and report.ok
