"""Kept summaries through a real server (Granian on 127.0.0.1, embedded ClickHouse, the
summary keeper in the parent process): an experiment past ``SPLITEDGE_SUMMARY_FROM_EVENTS``
is read from its summary (its results' ``meta.summary_version``), whose figures follow
every batch of events exactly; a smaller one is counted from every unit."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest

from tests.support import Seed, Server, api_call, running_server, seed_store, wait_flushed

pytestmark = pytest.mark.server


class Env(msgspec.Struct):
    server: Server
    seed: Seed


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data = tmp_path_factory.mktemp("summaries-live") / "data"
    seed = seed_store(data / "splitedge.sqlite3")
    settings = {"SPLITEDGE_SUMMARY_FROM_EVENTS": "300"}
    with running_server(data, env=settings, args=["--dev"]) as server:
        yield Env(server, seed)


def call(env: Env, method: str, path: str, body: Any = None) -> httpx.Response:
    return api_call(env.server, env.seed.key.key, method, path, body)


def launch(env: Env, name: str) -> dict[str, Any]:
    created = call(env, "POST", "/v1/experiments", {
        "site_id": env.seed.site.id, "name": name,
        "variants": [{"name": "control", "soul_md": "Terse."},
                     {"name": "twin", "soul_md": "Verbose."}],
        "primary_metric": "task_completion", "auto_launch": True,
    })  # fmt: skip
    assert created.status_code == 201, created.text
    experiment: dict[str, Any] = created.json()["data"]["experiment"]
    return experiment


def tasks(experiment: dict[str, Any], first: int, units: int) -> list[dict[str, Any]]:
    """One task of each of ``units`` sessions per arm (numbered from ``first``); every
    third fails."""
    return [
        {
            "agentId": "fleet", "task": "triage",
            "outcome": "failure" if k % 3 == 0 else "success",
            "cost": 0.01 * (1 + k % 7), "durationMs": 900, "turns": 1 + k % 4,
            "experiment_id": experiment["id"], "variant_id": variant["id"],
            "session_id": f"{experiment['id']}-{arm}-{k}",
        }
        for arm, variant in enumerate(experiment["variants"])
        for k in range(first, first + units)
    ]  # fmt: skip


def read(env: Env, experiment: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(the results' summary_version, the crewkit-shape metrics)."""
    results = call(env, "GET", f"/v1/experiments/{experiment['id']}/results")
    assert results.status_code == 200, results.text
    metrics = call(env, "GET", f"/v1/experiments/{experiment['id']}/metrics")
    assert metrics.status_code == 200, metrics.text
    return results.json()["meta"]["summary_version"], metrics.json()["data"]


def test_a_large_experiment_is_read_from_its_kept_summary(env: Env) -> None:
    large, small = launch(env, "large"), launch(env, "small")
    sent, versions = 0, []
    for step, units in enumerate((100, 120, 80)):
        first = sum((100, 120, 80)[:step])
        events = tasks(large, first, units) + tasks(small, 10 * step, 10)
        answer = call(env, "POST", "/v1/events", events)
        assert answer.status_code == 201, answer.text
        sent += len(events)
        wait_flushed(env.server, sent)
        total = first + units
        # The keeper writes the first summary a moment after the experiment passes 300
        # events: until then, and for the small one always, every unit is counted.
        deadline = time.monotonic() + 20
        while True:
            version, metrics = read(env, large)
            assert metrics["control"]["total_sessions"] == total, metrics
            assert metrics["variant"]["total_sessions"] == total, metrics
            failures = sum(1 for k in range(total) if k % 3 == 0)
            assert metrics["control"]["success_rate"] == pytest.approx(
                100 * (total - failures) / total
            )
            if version is not None or 2 * total < 300 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        versions.append(version)
        small_version, small_metrics = read(env, small)
        assert small_version is None
        assert small_metrics["control"]["total_sessions"] == 10 * (step + 1)
    # 200 events, then 440 and 600: read from a summary once past 300, a newer each time.
    assert versions[0] is None
    assert versions[1] is not None and versions[2] is not None
    assert versions[2] > versions[1]
