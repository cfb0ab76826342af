"""Agent experiments: assignment by experiment id, and the client SDK's task events, each
side by side with a baseline from the same run.

1. **Assign over HTTP.** ``splitedge serve`` (1 worker) over a seeded store with a
   running agent experiment on no site; wrk POSTs ``/v1/assign`` with
   ``{"experiment_id", "unit_id"}`` and the workspace API key. The baseline is
   bench/bare_app.py (a bare Starlette route on Granian, same `granian_options`) reading
   the body and answering the very bytes splitedge answered. The servers alternate;
   medians of the rounds.
2. **Assign in process.** `edge.assign_route.AssignEndpoint` called directly (an ASGI
   scope, receive and send, no socket) on a KV compiled from the same store: the server
   time of one assignment by experiment id (the API key checked), of a batch of 100
   units, and by a site's public key, against an endpoint that only reads the body and
   sends ready bytes through the same helpers (the least any route costs).
3. **Against GrowthBook's Python SDK, in process.** The same 20,000 unit ids through
   `edge.assign.AssignmentTable.assign` (hash and bisect) and through GrowthBook's own
   core (``gbhash`` version 2 and ``chooseVariation``), then GrowthBook's SDK call per
   unit: ``set_attributes`` and ``run(Experiment)`` on one instance, and a new
   ``GrowthBook(attributes=...)`` per unit (its per-request pattern), against the
   whole assign endpoint of 2. (JSON in, API key, JSON out). Best of 5 runs each.
4. **track_task to the server.** `splitedge_client.Client` tracks N events naming the
   experiment (batches of 100, sent by its thread) and flushes: events/s from the first
   ``track_task`` to the last 201. `AsyncClient` the same. The baseline: the same events,
   encoded before the clock starts, POSTed as the same batches by one ``httpx.Client``.
   The loads alternate; medians of the rounds.

Needs wrk (Debian: ``apt-get install wrk``).

    .venv/bin/python bench/agents.py [--duration 5] [--rounds 2] [--connections 64]
                                     [--events 20000] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Python puts bench/ first on sys.path when it runs a script from it, and there "edge"
# names bench/edge.py, not the splitedge package. Keep bench/ on the path, but last; the
# repository root is there for tests.support (seeded stores).
_BENCH_DIR = os.path.dirname(os.path.realpath(__file__))
_ROOT_DIR = os.path.dirname(_BENCH_DIR)
_AFTER = [_ROOT_DIR, _BENCH_DIR]
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") not in _AFTER] + _AFTER

import growthbook  # noqa: E402
import httpx  # noqa: E402
from growthbook import Experiment, GrowthBook  # noqa: E402
from growthbook.core import chooseVariation, gbhash, getBucketRanges  # noqa: E402

from bare_app import write_bodies  # noqa: E402
from edge.assign import AssignmentTable  # noqa: E402
from edge.assign_route import AssignEndpoint  # noqa: E402
from edge.control.records import NewExperiment, NewVariant  # noqa: E402
from edge.control.snapshot import StoreSource  # noqa: E402
from edge.control.store import Store  # noqa: E402
from edge.http import JSON_HEADERS, read_body, send_response  # noqa: E402
from edge.kv import KVHolder, build_kv  # noqa: E402
from edge.snippet import load_runtime  # noqa: E402
from report import granian_environment, publish  # noqa: E402
from splitedge_client import AsyncClient, Client  # noqa: E402
from splitedge_client.batches import batch_body  # noqa: E402
from splitedge_client.wire import task_event  # noqa: E402
from wrk_load import Scenario, WrkRun, fetch, free_port, run_wrk, running  # noqa: E402

BENCH_DIR = Path(_BENCH_DIR)
BATCH = 100
SECTION = "## bench/agents.py: agent assignment and the SDK's task events, against baselines\n"


@dataclass(frozen=True)
class Fleet:
    """What the loads need of the seeded store."""

    api_key: str
    public_key: str
    experiment_id: str
    variant_ids: tuple[str, ...]


def seed(data_dir: Path) -> Fleet:
    """The tests' seeded store, plus a running agent experiment on no site whose variants
    carry a soul_md each."""
    from tests.support import seed_store

    data_dir.mkdir(parents=True)
    seeded = seed_store(data_dir / "splitedge.sqlite3")
    store = Store(data_dir / "splitedge.sqlite3")
    try:
        experiment_id = store.create_experiment(
            NewExperiment(
                workspace_id=seeded.workspace_id,
                name="concise-vs-verbose-soulmd",
                kind="agent",
                variants=(
                    NewVariant("control", 50, config={"soul_md": "You are a helpful assistant."}),
                    NewVariant("concise", 50, config={"soul_md": "Be concise and direct."}),
                ),
            )
        )
        store.set_experiment_status(experiment_id, "running")
        variants = tuple(
            row[0]
            for row in store.conn.execute(
                "SELECT id FROM variants WHERE experiment_id = ? ORDER BY position",
                (experiment_id,),
            )
        )
    finally:
        store.close()
    return Fleet(seeded.key.key, seeded.site.public_key, experiment_id, variants)


def assign_scenario(fleet: Fleet) -> Scenario:
    body = b'{"experiment_id": "%s", "unit_id": "agent-run-1"}' % fleet.experiment_id.encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {fleet.api_key}"}
    return Scenario("POST /v1/assign (experiment_id)", "POST", "/v1/assign", headers, body)


def lua_script(scenario: Scenario, path: Path) -> Path:
    """A wrk script that sets the request once (no per-request Lua)."""
    lines = [f'wrk.method = "{scenario.method}"']
    lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in scenario.headers.items()]
    lines.append(f"wrk.body = [==[{scenario.body.decode()}]==]")
    path.write_text("\n".join(lines) + "\n")
    return path


# -- 2. assign in process --------------------------------------------------------------------


Endpoint = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def asgi_call(body: bytes, key: str | None) -> tuple[dict[str, Any], Any, Any]:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if key is not None:
        headers.append((b"authorization", f"Bearer {key}".encode()))
    scope = {"type": "http", "method": "POST", "path": "/v1/assign", "headers": headers}
    message = {"type": "http.request", "body": body, "more_body": False}

    async def receive() -> dict[str, Any]:
        return message

    async def send(message: Any) -> None:
        pass

    return scope, receive, send


async def ns_per_call(endpoint: Endpoint, body: bytes, key: str | None, calls: int) -> float:
    """The best of five runs of ``calls`` awaited calls, in ns per call."""
    scope, receive, send = asgi_call(body, key)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter_ns()
        for _ in range(calls):
            await endpoint(scope, receive, send)
        best = min(best, (time.perf_counter_ns() - started) / calls)
    return best


def in_process(data_dir: Path, fleet: Fleet, calls: int) -> list[tuple[str, float, float]]:
    """(case, ns per call, floor ns per call) for each in-process case."""
    source = StoreSource(data_dir / "splitedge.sqlite3")
    try:
        holder = KVHolder()
        holder.kv = build_kv(source.snapshot(), load_runtime())
    finally:
        source.close()
    assign = AssignEndpoint(holder)
    units = b",".join(b'{"unit_id": "agent-run-%d"}' % i for i in range(BATCH))
    cases = [
        ("experiment_id, 1 unit (API key checked)",
         b'{"experiment_id": "%s", "unit_id": "agent-run-1"}' % fleet.experiment_id.encode(),
         fleet.api_key),
        (f"experiment_id, batch of {BATCH} units",
         b'{"experiment_id": "%s", "units": [%s]}' % (fleet.experiment_id.encode(), units),
         fleet.api_key),
        ("public_key, 1 unit (the site's 1 experiment)",
         b'{"public_key": "%s", "unit_id": "agent-run-1"}' % fleet.public_key.encode(), None),
    ]  # fmt: skip
    results = []
    for name, body, key in cases:
        answer: list[bytes] = []
        scope, receive, _ = asgi_call(body, key)

        async def capture(message: Any) -> None:
            if message["type"] == "http.response.body":
                answer.append(message["body"])

        asyncio.run(assign(scope, receive, capture))
        ready = answer[0]
        if b'"assignments":[{' not in ready:
            raise RuntimeError(f"{name}: no assignment in {ready[:300]!r}")

        async def floor(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await read_body(scope, receive, 1 << 20)
            await send_response(send, 200, JSON_HEADERS, ready)  # noqa: B023

        measured = asyncio.run(ns_per_call(assign, body, key, calls))
        baseline = asyncio.run(ns_per_call(floor, body, key, calls))
        results.append((name, measured, baseline))
        print(f"  {name:<48} {measured:>9,.0f} ns  floor {baseline:,.0f} ns", flush=True)
    return results


# -- 3. against GrowthBook ------------------------------------------------------------------


def best_ns(loop: Callable[[], object], calls: int) -> float:
    """The best of five runs of ``loop`` (``calls`` calls), in ns per call."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter_ns()
        loop()
        best = min(best, (time.perf_counter_ns() - started) / calls)
    return best


def against_growthbook(key: str, calls: int) -> dict[str, float]:
    """ns per assignment of one unit to a 50/50 experiment, splitedge's and GrowthBook's."""
    units = [f"agent-run-{i}" for i in range(calls)]
    table = AssignmentTable.build(key, [5000, 5000])
    experiment = Experiment(key=key, variations=[0, 1])
    ranges = getBucketRanges(2, 1.0, None)
    shared = GrowthBook(features={})

    def ours() -> None:
        for unit in units:
            table.assign(unit)

    def gb_core() -> None:
        for unit in units:
            chooseVariation(gbhash(key, unit, 2), ranges)

    def gb_run() -> None:
        for unit in units:
            shared.set_attributes({"id": unit})
            shared.run(experiment)

    def gb_per_unit() -> None:
        for unit in units:
            GrowthBook(attributes={"id": unit}).run(experiment)

    # Both split the same units about evenly: each is doing the assignment it claims to.
    for name, picks in (
        ("splitedge", [table.assign(unit) for unit in units]),
        ("GrowthBook", [GrowthBook(attributes={"id": u}).run(experiment).variationId
                        for u in units]),
    ):  # fmt: skip
        share = sum(1 for pick in picks if pick == 1) / calls
        if not 0.45 < share < 0.55:
            raise RuntimeError(f"{name} put {share:.0%} of the units in variant 1")
    loops = {"ours": ours, "gb_core": gb_core, "gb_run": gb_run, "gb_per_unit": gb_per_unit}
    measured = {name: best_ns(loop, calls) for name, loop in loops.items()}
    for name, ns in measured.items():
        print(f"  {name:<12} {ns:>9,.0f} ns", flush=True)
    return measured


# -- 4. track_task -------------------------------------------------------------------------


def track_args(fleet: Fleet, i: int) -> tuple[tuple[str, str, Any], dict[str, Any]]:
    kw = {
        "cost": 0.001 * (i % 7),
        "duration_ms": 100.0 + i % 50,
        "turns": i % 9,
        "experiment_id": fleet.experiment_id,
        "variant_id": fleet.variant_ids[i % 2],
        "session_id": f"run-{i}",
    }
    return ("bench-bot", "resolve-ticket", "success" if i % 10 else "failure"), kw


def sdk_sync(base_url: str, fleet: Fleet, n: int) -> float:
    with Client(base_url, fleet.api_key, batch_size=BATCH) as client:
        started = time.perf_counter()
        for i in range(n):
            args, kw = track_args(fleet, i)
            client.track_task(*args, **kw)
        client.flush(120)
        took = time.perf_counter() - started
        if client.stats().sent != n:
            raise RuntimeError(f"the sync client delivered {client.stats()}")
    return n / took


def sdk_async(base_url: str, fleet: Fleet, n: int) -> float:
    async def run() -> float:
        async with AsyncClient(base_url, fleet.api_key, batch_size=BATCH) as client:
            started = time.perf_counter()
            for i in range(n):
                args, kw = track_args(fleet, i)
                await client.track_task(*args, **kw)
            await client.flush(120)
            took = time.perf_counter() - started
            if client.stats().sent != n:
                raise RuntimeError(f"the async client delivered {client.stats()}")
        return n / took

    return asyncio.run(run())


def raw_httpx(base_url: str, fleet: Fleet, n: int) -> float:
    events = []
    for i in range(n):
        args, kw = track_args(fleet, i)
        events.append(task_event(*args, **kw)[1])
    bodies = [batch_body(events[i : i + BATCH]) for i in range(0, n, BATCH)]
    headers = {"authorization": f"Bearer {fleet.api_key}", "content-type": "application/json"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as http:
        started = time.perf_counter()
        for body in bodies:
            answer = http.post("/v1/events", content=body)
            if answer.status_code != 201:
                raise RuntimeError(f"raw POST answered {answer.status_code}: {answer.text}")
        took = time.perf_counter() - started
    return n / took


LOADS: dict[str, Callable[[str, Fleet, int], float]] = {
    "Client (sync)": sdk_sync,
    "AsyncClient": sdk_async,
    "raw httpx POSTs": raw_httpx,
}


def track_rounds(base_url: str, fleet: Fleet, n: int, rounds: int) -> dict[str, list[float]]:
    runs: dict[str, list[float]] = {name: [] for name in LOADS}
    names = list(LOADS)
    for round_no in range(rounds):
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:
            rate = LOADS[name](base_url, fleet, n)
            runs[name].append(rate)
            print(f"  round {round_no + 1} {name:<16} {rate:>10,.0f} events/s", flush=True)
    return runs


# -- the run -------------------------------------------------------------------------------


def measure(
    args: argparse.Namespace, workdir: Path, stack: ExitStack
) -> tuple[list[str], dict[str, Any]]:
    """The report's lines and its headline figures."""
    data_dir = workdir / "data"
    fleet = seed(data_dir)
    print("assign in process", flush=True)
    process = in_process(data_dir, fleet, args.calls)
    print("against GrowthBook's SDK", flush=True)
    gb = against_growthbook(fleet.experiment_id, args.calls)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    port = free_port()
    print(f"starting splitedge on :{port}", flush=True)
    serve = [
        sys.executable, "-m", "edge.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1", "--data-dir", str(data_dir),
    ]  # fmt: skip
    real = stack.enter_context(running("splitedge", serve, port, workdir / "real.log", env))
    scenario = assign_scenario(fleet)
    status, headers, body = fetch(real.port, scenario)
    if status != 200 or b'"payload":{"soul_md"' not in body:
        raise RuntimeError(f"splitedge answered {status}: {body[:300]!r}")
    # The baseline serves only the assign answer; its snippet routes are not loaded here.
    write_bodies(workdir, (b"", {}), (b"", {}), (body, headers))
    port = free_port()
    bare_cmd = [
        sys.executable, str(BENCH_DIR / "bare_app.py"), "bare", "--port", str(port),
        "--workers", "1", "--bodies", str(workdir),
    ]  # fmt: skip
    print(f"starting the bare baseline on :{port}", flush=True)
    bare = stack.enter_context(running("bare", bare_cmd, port, workdir / "bare.log", env))
    if fetch(bare.port, scenario)[2] != body:
        raise RuntimeError("the bare baseline does not answer splitedge's bytes")
    script = lua_script(scenario, workdir / "assign.lua")
    servers = [real, bare]
    for server in servers:
        run_wrk(args, server.port, scenario.path, script, args.warmup)
    wrk: dict[str, list[WrkRun]] = {server.name: [] for server in servers}
    for round_no in range(args.rounds):
        shift = round_no % len(servers)
        for server in servers[shift:] + servers[:shift]:
            result = run_wrk(args, server.port, scenario.path, script, args.duration)
            wrk[server.name].append(result)
            print(
                f"  round {round_no + 1} assign {server.name:<10} {result.rps:>10,.0f} req/s  "
                f"p99 {result.p99_ms:.2f} ms" + (f"  [{result.errors}]" if result.errors else ""),
                flush=True,
            )
    print("track_task to the server", flush=True)
    track = track_rounds(f"http://127.0.0.1:{real.port}", fleet, args.events, args.rounds)
    return table(args, process, gb, wrk, track), figures(process, gb, wrk)


def figures(
    process: list[tuple[str, float, float]], gb: dict[str, float], wrk: dict[str, list[WrkRun]]
) -> dict[str, Any]:
    """The headline figures for bench/run_all.py's summary table."""
    return {
        "assign_rps": statistics.median(run.rps for run in wrk["splitedge"]),
        "bare_rps": statistics.median(run.rps for run in wrk["bare"]),
        "endpoint_ns": process[0][1],
        "growthbook": gb,
    }


def table(
    args: argparse.Namespace,
    process: list[tuple[str, float, float]],
    gb: dict[str, float],
    wrk: dict[str, list[WrkRun]],
    track: dict[str, list[float]],
) -> list[str]:
    def med(runs: list[WrkRun], attr: str) -> float:
        return float(statistics.median(getattr(run, attr) for run in runs))

    real, bare = wrk["splitedge"], wrk["bare"]
    raw = statistics.median(track["raw httpx POSTs"])
    lines = [
        f"Assign over HTTP: {args.rounds} rounds x {args.duration:g} s per server, wrk "
        f"-t{args.threads} -c{args.connections}, 1 Granian worker; medians of the rounds.",
        "",
        "| scenario | splitedge req/s | bare req/s | ratio | splitedge p99 | bare p99 |",
        "|---|---:|---:|---:|---:|---:|",
        f"| POST /v1/assign, experiment_id + API key | {med(real, 'rps'):,.0f} | "
        f"{med(bare, 'rps'):,.0f} | {med(real, 'rps') / med(bare, 'rps'):.0%} | "
        f"{med(real, 'p99_ms'):.2f} ms | {med(bare, 'p99_ms'):.2f} ms |",
        "",
        f"Assign in process (server time, no socket): best of 5 x {args.calls:,} calls.",
        "",
        "| case | assign ns/op | floor ns/op | ratio | assign us/op |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {name} | {ns:,.0f} | {floor:,.0f} | {ns / floor:.2f}x | {ns / 1000:.1f} |"
            for name, ns, floor in process
        ),
        "",
        "(floor: an endpoint that reads the same body and sends the same ready answer.)",
        "",
        f"Against GrowthBook's Python SDK (growthbook {growthbook.__version__}), in process: "
        f"one unit into a 50/50 experiment, best of 5 x {args.calls:,} distinct units.",
        "",
        "| case | splitedge ns/op | GrowthBook ns/op | GrowthBook / splitedge |",
        "|---|---:|---:|---:|",
        f"| hash and pick (`AssignmentTable.assign`; `gbhash` v2 + `chooseVariation`) | "
        f"{gb['ours']:,.0f} | {gb['gb_core']:,.0f} | {gb['gb_core'] / gb['ours']:.1f}x |",
        f"| the API call (the whole assign endpoint; `set_attributes` + `run`) | "
        f"{process[0][1]:,.0f} | {gb['gb_run']:,.0f} | {gb['gb_run'] / process[0][1]:.1f}x |",
        f"| per request (the whole assign endpoint; new `GrowthBook` + `run`) | "
        f"{process[0][1]:,.0f} | {gb['gb_per_unit']:,.0f} | "
        f"{gb['gb_per_unit'] / process[0][1]:.1f}x |",
        "",
        "(splitedge's endpoint also decodes the JSON body, checks the API key and encodes the "
        "answer; GrowthBook's `run` evaluates a local Experiment and returns a Result.)",
        "",
        f"track_task to the server: {args.events:,} events per run in batches of {BATCH}, "
        f"{args.rounds} rounds, medians.",
        "",
        "| client | events/s | raw httpx events/s | ratio |",
        "|---|---:|---:|---:|",
        *(
            f"| {name} | {statistics.median(runs):,.0f} | {raw:,.0f} | "
            f"{statistics.median(runs) / raw:.0%} |"
            for name, runs in track.items()
            if name != "raw httpx POSTs"
        ),
        "",
        "Every run:",
        "",
        "- assign req/s: " + "; ".join(
            f"{name} " + ", ".join(f"{run.rps:,.0f}" for run in runs) for name, runs in wrk.items()
        ),
        "- track_task events/s: " + "; ".join(
            f"{name} " + ", ".join(f"{rate:,.0f}" for rate in runs) for name, runs in track.items()
        ),
    ]  # fmt: skip
    errors = [f"- {name}: {run.errors}" for name, runs in wrk.items() for run in runs if run.errors]
    if errors:
        lines += ["", "wrk reported errors:", "", *errors]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--rounds", type=int, default=2, help="runs per server and load")
    parser.add_argument("--warmup", type=float, default=1, help="seconds of wrk warm-up")
    parser.add_argument("--calls", type=int, default=20_000, help="in-process calls per run")
    parser.add_argument("--events", type=int, default=20_000, help="events per track run")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="splitedge-bench-") as tmp, ExitStack() as stack:
        lines, headline = measure(args, Path(tmp), stack)
    report = [*granian_environment("agents.py", argv), "", *lines]
    publish("agents.py", report, SECTION, args.write, headline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
