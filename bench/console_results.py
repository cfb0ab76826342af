"""The console's results page for an experiment of 1M units: server time once the
results are cached.

A seeded store (`tests.support.seed_store`: a running web experiment with two arms and a
click goal) gets ``--units`` visitors in embedded ClickHouse, written before the server
starts (one process owns a chDB directory at a time): each exposed 1 + Poisson(0.6)
times over the last 40 hours (so the experiment is young and its timeline hourly), on a
mobile or desktop device, 10% of them (11.5% in the challenger) converting. Then
``splitedge serve`` (one worker) starts on that data directory, a client signs in to the
console with the workspace's key, and ``GET /console/experiments/{id}/results`` runs once
cold (the results, the hourly timeline and the device breakdown are computed and cached)
and ``--runs`` times warm: what a person reloading the page waits for. Each warm page
still costs the API's point query per cached answer (`analytics.aggregates.data_version`)
and the store's reads. Times are wall times of the HTTP request on loopback. The baseline,
interleaved with the page in the same run: the REST results the page is built on
(``GET /v1/experiments/{id}/results`` with the same key), also warm.

    .venv/bin/python bench/console_results.py [--units 1000000] [--runs 30] [--write]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Python puts bench/ first on sys.path when it runs a script from it, and there "edge"
# names bench/edge.py, not the splitedge package. Keep bench/ on the path, but last; the
# repository root is there for tests.support (seeded stores, the server).
_BENCH_DIR = os.path.dirname(os.path.realpath(__file__))
_ROOT_DIR = os.path.dirname(_BENCH_DIR)
_AFTER = [_ROOT_DIR, _BENCH_DIR]
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") not in _AFTER] + _AFTER

import chdb  # noqa: E402
import httpx  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from analytics import warehouse  # noqa: E402
from report import environment, publish  # noqa: E402
from results_query import CHUNK, _strings, _table  # noqa: E402

SECTION = """\
## The console's results page at 1M units (issue 24): bench/console_results.py

`GET /console/experiments/{id}/results` of a signed-in session, for a running web
experiment of 1M units in embedded ClickHouse: the first request computes and caches the
results, the hourly timeline and the device breakdown; the warm ones are a reload.

    .venv/bin/python bench/console_results.py --write
"""

HOUR_MS = 3_600_000


def visitor_events(
    experiment: str, workspace: str, variants: Sequence[str], goal: str, units: int
) -> list[pa.Table]:
    """Exposures and goal rows of ``units`` visitors over the last 40 hours, in tables of
    about `CHUNK` rows."""
    rng = np.random.default_rng(24)
    now_ms = int(time.time() * 1000)
    out = []
    for start in range(0, units, CHUNK // 2):
        ids = np.arange(start, min(units, start + CHUNK // 2))
        arm = rng.integers(0, 2, ids.size)
        entered = now_ms - 40 * HOUR_MS + rng.integers(0, 39 * HOUR_MS, ids.size)
        shown = 1 + rng.poisson(0.6, ids.size)
        converts = rng.random(ids.size) < 0.10 + 0.015 * arm
        unit = np.concatenate([np.repeat(ids, shown), ids[converts]])
        arms = np.concatenate([np.repeat(arm, shown), arm[converts]])
        later = rng.integers(0, HOUR_MS, converts.sum())
        stamps = np.concatenate([np.repeat(entered, shown), entered[converts] + later])
        stamps = np.minimum(stamps, now_ms)
        times = pa.array(stamps, pa.timestamp("ms", tz="UTC"))
        is_goal = np.concatenate([np.zeros(shown.sum(), bool), np.ones(converts.sum(), bool)])
        n = unit.size
        out.append(
            _table(
                n,
                {
                    "event_id": _strings(f"{experiment}-{start}-", np.arange(n)),
                    "kind": pa.array(np.where(is_goal, "goal", "exposure"), pa.string()),
                    "workspace_id": workspace,
                    "experiment_id": pa.array(np.full(n, experiment, dtype=object), pa.string()),
                    "variant_id": pa.array(np.asarray(variants, dtype=object)[arms], pa.string()),
                    "unit_id": _strings("visitor-", unit),
                    "goal_id": pa.array(np.where(is_goal, goal, ""), pa.string()),
                    "device": pa.array(np.where(unit % 3 == 0, "desktop", "mobile"), pa.string()),
                    "client_ts": times,
                    "received_at": times,
                },
            )
        )
    return out


def fill(data_dir: Path, experiment: str, workspace: str, variants: Sequence[str],
         goal: str, units: int) -> int:  # fmt: skip
    """Write the visitors' events as the flusher does (the views keep the unit state);
    returns the rows written."""
    client = warehouse.connect(f"chdb://{data_dir.resolve() / 'clickhouse'}")
    rows = 0
    try:
        warehouse.migrate(client)
        for table in visitor_events(experiment, workspace, variants, goal, units):
            settings = warehouse.insert_settings(uuid.uuid4().hex)
            client.insert_arrow(warehouse.EVENTS_TABLE, table, settings=settings)
            rows += table.num_rows
            print(f"  {rows:,} rows inserted", end="\r", flush=True)
    finally:
        client.close()
    print()
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    from tests.console_support import signed_in
    from tests.support import running_server, seed_store

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="splitedge-console-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        seed = seed_store(data_dir / "splitedge.sqlite3")
        rows = fill(data_dir, seed.experiment_id, seed.workspace_id, seed.variant_ids,
                    seed.goal_id, args.units)  # fmt: skip
        with (
            running_server(data_dir) as server,
            signed_in(server, seed.key.key) as client,
            httpx.Client(
                base_url=server.base_url,
                headers={"authorization": f"Bearer {seed.key.key}"},
                timeout=60,
            ) as rest,
        ):
            path = f"/console/experiments/{seed.experiment_id}/results"
            api_path = f"/v1/experiments/{seed.experiment_id}/results"

            def get(http: httpx.Client, url: str) -> tuple[float, httpx.Response]:
                start = time.perf_counter()
                answer = http.get(url)
                return 1000 * (time.perf_counter() - start), answer

            cold, first = get(client, path)
            assert first.status_code == 200, first.text
            assert "Cumulative conversion rate per hour" in first.text
            warm, api_warm = [], []
            for _ in range(args.runs):
                ms, answer = get(client, path)
                assert answer.status_code == 200
                warm.append(ms)
                ms, answer = get(rest, api_path)
                assert answer.status_code == 200, answer.text
                api_warm.append(ms)
    warm.sort()
    api_warm.sort()
    api_median = statistics.median(api_warm)
    figures: dict[str, Any] = {
        "units": args.units,
        "rows": rows,
        "cold_ms": round(cold, 1),
        "warm_median_ms": round(statistics.median(warm), 1),
        "warm_p95_ms": round(warm[max(0, int(0.95 * len(warm)) - 1)], 1),
        "page_bytes": len(first.content),
        "api_warm_median_ms": round(api_median, 1),
        "page_over_api": round(statistics.median(warm) / api_median, 2),
    }
    report = [
        *environment("console_results.py", argv or sys.argv[1:], f"chDB {chdb.__version__}"),
        "",
        f"{args.units:,} units ({rows:,} events), one worker; {args.runs} warm requests.",
        "",
        "| request | time |",
        "|---|---|",
        f"| cold: results, hourly timeline and devices computed | {figures['cold_ms']:.0f} ms |",
        f"| warm: median | {figures['warm_median_ms']:.1f} ms |",
        f"| warm: p95 | {figures['warm_p95_ms']:.1f} ms |",
        f"| baseline, REST results warm: median | {figures['api_warm_median_ms']:.1f} ms |",
        f"| page / REST results (medians) | {figures['page_over_api']:.2f}x |",
        "",
        f"The page is {figures['page_bytes']:,} bytes.",
    ]
    publish("console_results.py", report, SECTION, args.write, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
