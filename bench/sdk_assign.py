"""What the SDK's ``assign`` costs over the HTTP call it makes: `splitedge_client.Client`
and `AsyncClient` against httpx posting the same ready body on one keep-alive connection,
to the same ``splitedge serve`` (1 worker, the seeded store of bench/agents.py), in the
same run. The loads alternate (every other round in reverse); per call, the median of
the rounds.

The SDK's own work per call is also timed alone, with no I/O, on an answer the server
gave: encoding the body, the circuit breaker's check, decoding the answer into an
`AssignedVariant` and keeping it as the experiment's last good answer; and the same
call answered from memory while the server is down (the breaker open).

    .venv/bin/python bench/sdk_assign.py [--calls 3000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

# Python puts bench/ first on sys.path when it runs a script from it, and there "edge"
# names bench/edge.py, not the splitedge package: bench/ goes last, the root for tests.
_BENCH_DIR = os.path.dirname(os.path.realpath(__file__))
_ROOT_DIR = os.path.dirname(_BENCH_DIR)
_AFTER = [_ROOT_DIR, _BENCH_DIR]
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") not in _AFTER] + _AFTER

import httpx  # noqa: E402
from tests.support import running_server  # noqa: E402

from agents import Fleet, seed  # noqa: E402
from splitedge_client import AsyncClient, Client  # noqa: E402
from splitedge_client.fallback import AssignFallback  # noqa: E402
from splitedge_client.sync import client_headers  # noqa: E402
from splitedge_client.wire import assign_body  # noqa: E402

UNIT = "agent-run-1"


def raw_sync(base_url: str, fleet: Fleet, calls: int) -> float:
    body = assign_body(fleet.experiment_id, UNIT)
    with httpx.Client(base_url=base_url, headers=client_headers(fleet.api_key)) as http:
        http.post("/v1/assign", content=body)  # the connection, opened before the clock
        started = time.perf_counter()
        for _ in range(calls):
            if http.post("/v1/assign", content=body).status_code != 200:
                raise RuntimeError("the raw assign failed")
        return (time.perf_counter() - started) / calls


def sdk_sync(base_url: str, fleet: Fleet, calls: int) -> float:
    with Client(base_url, fleet.api_key) as client:
        client.assign(fleet.experiment_id, UNIT)
        started = time.perf_counter()
        for _ in range(calls):
            variant = client.assign(fleet.experiment_id, UNIT)
            if variant is None or variant.source != "server":
                raise RuntimeError(f"the SDK's assign fell back: {variant}")
        return (time.perf_counter() - started) / calls


def raw_async(base_url: str, fleet: Fleet, calls: int) -> float:
    async def run() -> float:
        body = assign_body(fleet.experiment_id, UNIT)
        headers = client_headers(fleet.api_key)
        async with httpx.AsyncClient(base_url=base_url, headers=headers) as http:
            await http.post("/v1/assign", content=body)
            started = time.perf_counter()
            for _ in range(calls):
                if (await http.post("/v1/assign", content=body)).status_code != 200:
                    raise RuntimeError("the raw assign failed")
            return (time.perf_counter() - started) / calls

    return asyncio.run(run())


def sdk_async(base_url: str, fleet: Fleet, calls: int) -> float:
    async def run() -> float:
        async with AsyncClient(base_url, fleet.api_key) as client:
            await client.assign(fleet.experiment_id, UNIT)
            started = time.perf_counter()
            for _ in range(calls):
                variant = await client.assign(fleet.experiment_id, UNIT)
                if variant is None or variant.source != "server":
                    raise RuntimeError(f"the SDK's assign fell back: {variant}")
            return (time.perf_counter() - started) / calls

    return asyncio.run(run())


LOADS: dict[str, Callable[[str, Fleet, int], float]] = {
    "raw httpx.Client": raw_sync,
    "Client.assign": sdk_sync,
    "raw httpx.AsyncClient": raw_async,
    "AsyncClient.assign": sdk_async,
}


def sdk_work(answer: bytes, experiment_id: str, calls: int) -> tuple[float, float]:
    """Seconds per call of the SDK's own work on ``answer``, and of a fallback answer
    with the breaker open: best of 5."""
    fallback = AssignFallback("http://127.0.0.1:1")
    served, down = [], []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            assign_body(experiment_id, UNIT)
            fallback.breaker.admit()
            fallback.one(experiment_id, UNIT, answer, None)
        served.append((time.perf_counter() - started) / calls)
    fallback.breaker.failed("bench: the server is down")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            assign_body(experiment_id, UNIT)
            fallback.breaker.admit()
            fallback.one(experiment_id, UNIT, None, None)
        down.append((time.perf_counter() - started) / calls)
    return min(served), min(down)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000, help="assign calls per run")
    parser.add_argument("--rounds", type=int, default=5, help="runs per load")
    args = parser.parse_args(argv)
    runs: dict[str, list[float]] = {name: [] for name in LOADS}
    with tempfile.TemporaryDirectory(prefix="splitedge-sdk-assign-") as tmp:
        data = Path(tmp) / "data"
        fleet = seed(data)
        with running_server(data) as server:
            with httpx.Client(base_url=server.base_url) as http:
                answer = http.post(
                    "/v1/assign",
                    content=assign_body(fleet.experiment_id, UNIT),
                    headers=client_headers(fleet.api_key),
                ).content
            for round_ in range(args.rounds):
                # Every other round in reverse order: no load always runs first.
                order = list(LOADS.items())
                for name, load in order[:: -1 if round_ % 2 else 1]:
                    runs[name].append(load(server.base_url, fleet, args.calls))
    us = {name: statistics.median(times) * 1e6 for name, times in runs.items()}
    print(f"\n{args.rounds} rounds of {args.calls} assign calls, median µs per call:")
    for name, value in us.items():
        print(f"  {name:24} {value:8.1f}")
    for sdk, raw in (("Client.assign", "raw httpx.Client"),
                     ("AsyncClient.assign", "raw httpx.AsyncClient")):  # fmt: skip
        print(f"  {sdk} / {raw}: {us[sdk] / us[raw]:.3f} ({us[sdk] - us[raw]:+.1f} µs)")
    served, down = sdk_work(answer, fleet.experiment_id, 20_000)
    print(f"  the SDK's own work, no I/O: {served * 1e6:.2f} µs a call answered by the "
          f"server, {down * 1e6:.2f} µs answered from memory (server down)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
