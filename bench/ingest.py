"""Event ingestion under load: events/s from HTTP until queryable in ClickHouse, side by
side with a route that only decodes the same bodies, and chDB's raw insert rate.

Three measurements, in one run:

1. **End to end.** ``splitedge serve`` (1 worker, embedded chDB) on a freshly seeded
   data dir; wrk POSTs ``/v1/collect`` with 20-event batches (every event id unique:
   wrk's Lua joins a body's pieces with a per-request tag). When wrk stops, the clock
   keeps running until the flusher reports every accepted event inserted
   (``splitedge_events_flushed_total`` in ``/metrics``): events/s = events accepted /
   (load time + drain time). The HTTP side alone (req/s, events/s, p99 during the load)
   is reported too. Every round starts a new server on a new data dir and stops it
   afterwards, so no server runs (or merges parts) during another's load.
2. **Decode only.** bench/decode_app.py: a minimal Starlette app on Granian with the
   same `edge.workers.granian_options`, whose route reads the body and decodes it with
   ``msgspec.json.Decoder(CollectRequest)``, then answers the same JSON. Same wrk script.
   The ratio end-to-end / decode-only is the acceptance figure (target >= 60%).
3. **chDB insert_arrow.** A table of `EVENT_SCHEMA` (built by
   `edge.ingest.buffer.browser_batch`, whose own rate is shown too) of 10k and 100k rows,
   inserted repeatedly into a scratch chDB migrated by `analytics.warehouse.migrate`,
   with the flusher's insert settings (a new deduplication token per insert). It runs in
   a child process after the loads, so chDB's threads never share the CPU with a load.

The servers alternate (end to end first in odd rounds, decode-only first in even ones);
the table gives medians. The CPU time of the server processes (from /proc) is counted
per event, a figure the machine's noise disturbs less than req/s. At the end, each
end-to-end data dir is opened in a child process to check that ClickHouse holds every
accepted event exactly once.

``--profile DIR`` adds one unmeasured load on each server under py-spy (the workers'
GIL-holding samples, with native frames) and prints where the time goes.

    .venv/bin/python bench/ingest.py [--duration 10] [--rounds 2] [--connections 64]
                                     [--threads 1] [--warmup 2] [--chdb-seconds 5]
                                     [--profile DIR] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
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

import msgspec  # noqa: E402

from edge.ingest.schema import CollectRequest  # noqa: E402
from report import granian_environment, publish  # noqa: E402
from wrk_load import (  # noqa: E402
    Scenario,
    ServerProcess,
    WrkRun,
    fetch,
    free_port,
    run_wrk,
    running,
)

BENCH_DIR = Path(_BENCH_DIR)
BATCH = 20
TARGET = 0.60
DRAIN_TIMEOUT = 180.0
POLL_INTERVAL = 0.05
COUNTERS_SAVE_INTERVAL = 1.0  # workers write their counters for /metrics every second
T0_MS = 1_763_900_000_000
E2E, DECODE = "end-to-end", "decode-only"
RESULTS_INTRO = """\
## bench/ingest.py: events from HTTP into ClickHouse, against a decode-only route

`splitedge serve` (1 worker, embedded chDB) takes `POST /v1/collect` batches of 20 events
from wrk. The end-to-end figure is the events accepted during the load divided by the load
time plus the time the flusher then needs until `/metrics` reports every one of them
inserted into ClickHouse. The baseline (`bench/decode_app.py`) is a minimal Starlette app
on Granian with the same settings whose route only reads and decodes the same bodies
(msgspec, `CollectRequest`) and answers the same JSON. chDB's raw `insert_arrow` rate is
measured in the same run, in a child process after the loads. Each round runs on a new
server and data dir; the servers alternate; medians of the rounds. CPU per 1k events is
the CPU time of the server processes (worker; parent = flusher and chDB) over the load
and the drain, per 1,000 events.

    .venv/bin/python bench/ingest.py --duration 10 --rounds 3 --write

Acceptance target: end-to-end events/s >= 60% of the decode-only route's events/s.
"""


# -- request bodies ------------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    """What a body needs of a seeded store."""

    public_key: str
    experiment_id: str
    variant_ids: tuple[str, ...]


def seed(data_dir: Path) -> Site:
    from tests.support import seed_store

    data_dir.mkdir(parents=True)
    seeded = seed_store(data_dir / "splitedge.sqlite3")
    return Site(seeded.site.public_key, seeded.experiment_id, tuple(seeded.variant_ids))


def body_template(site: Site) -> str:
    """A ``/v1/collect`` body of `BATCH` exposures; ``~`` stands for the request's unique
    tag in every event id and visitor id."""
    for value in (site.public_key, site.experiment_id, *site.variant_ids):
        if not re.fullmatch(r"[\w-]+", value):
            raise ValueError(f"unexpected seeded id {value!r}")
    events = [
        {
            "event_id": f"~-{i}",
            "type": "exposure",
            "visitor_id": f"v~-{i}",
            "ts": T0_MS + i,
            "experiment_id": site.experiment_id,
            "variant_id": site.variant_ids[i % len(site.variant_ids)],
            "pathname": "/pricing",
            "device": "desktop",
        }
        for i in range(BATCH)
    ]
    return json.dumps({"public_key": site.public_key, "events": events}, separators=(",", ":"))


def instantiate(template: str, tag: str) -> bytes:
    """The body wrk sends for ``tag``, checked against the route's schema."""
    body = template.replace("~", tag).encode()
    msgspec.json.decode(body, type=CollectRequest)
    return body


def lua_script(template: str, tag: str, path: Path) -> Path:
    """A wrk script that sends a fresh body per request: the template's pieces joined by
    run tag, thread number and a per-thread counter (one ``table.concat`` per request,
    which costs wrk a fraction of what the server spends)."""
    pieces = ", ".join(f"[==[{piece}]==]" for piece in template.split("~"))
    path.write_text(f"""-- generated by bench/ingest.py
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local pieces = {{{pieces}}}
local threads, counter = 0, 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, table.concat(pieces, "{tag}-" .. tid .. "-" .. counter))
end
""")
    return path


class Scripts:
    """wrk scripts, each with its own tag: no two loads of a server share an event id."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.count = 0

    def __call__(self, template: str) -> Path:
        self.count += 1
        return lua_script(template, f"r{self.count}", self.workdir / f"load{self.count}.lua")


# -- loads ---------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_pid(server_pid: int) -> int:
    """The Granian worker of a server (a child that is not multiprocessing's helper)."""
    children = Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split()
    for pid in map(int, children):
        if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return pid
    raise RuntimeError(f"no worker process under {server_pid}")


@dataclass(frozen=True)
class Load:
    """One wrk run: its figures, its length, its 2xx count, and the worker's CPU seconds
    meanwhile."""

    wrk: WrkRun
    seconds: float
    ok: int
    cpu: float

    @property
    def rps(self) -> float:
        return self.ok / self.seconds

    @property
    def events_per_s(self) -> float:
        return self.ok * BATCH / self.seconds

    @property
    def cpu_ms_per_1k(self) -> float:
        return 1e6 * self.cpu / (self.ok * BATCH)

    def describe(self) -> str:
        errors = f" [{self.wrk.errors}]" if self.wrk.errors else ""
        return (
            f"{self.rps:,.0f} req/s, {self.events_per_s:,.0f} events/s for {self.seconds:.2f} s,"
            f" p99 {self.wrk.p99_ms:.1f} ms; worker CPU {self.cpu:.1f} s{errors}"
        )


@dataclass(frozen=True)
class EndToEnd:
    """One end-to-end round: the load, then the drain into ClickHouse."""

    load: Load
    events: int
    drain_seconds: float
    worker_cpu: float  # over load and drain
    parent_cpu: float
    accepted_total: int  # warm-up and checks included, for the exactly-once check
    data_dir: Path

    @property
    def events_per_s(self) -> float:
        return self.events / (self.load.seconds + self.drain_seconds)

    def cpu_ms_per_1k(self, cpu: float) -> float:
        return 1e6 * cpu / self.events

    def describe(self) -> str:
        return (
            f"HTTP {self.load.describe()}; {self.events:,} events flushed "
            f"{self.drain_seconds:.2f} s after the load: {self.events_per_s:,.0f} events/s end "
            f"to end; CPU over load and drain {self.worker_cpu:.1f} s worker, "
            f"{self.parent_cpu:.1f} s parent"
        )


_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def wrk_load(args: argparse.Namespace, port: int, worker: int, script: Path, secs: float) -> Load:
    """wrk against ``port``; its length is its requests / its req/s (wrk's own clock)."""
    before = cpu_seconds(worker)
    result = run_wrk(args, port, "/v1/collect", script, secs)
    cpu = cpu_seconds(worker) - before
    bad = _NON_2XX.search(result.errors)
    ok = result.requests - (int(bad.group(1)) if bad else 0)
    return Load(result, result.requests / result.rps if result.rps else secs, ok, cpu)


def ingest_counters(port: int) -> tuple[int, int]:
    """(browser events accepted, events flushed to ClickHouse) from ``/metrics``."""
    status, _, body = fetch(port, Scenario("metrics", "GET", "/metrics"))
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    values = dict(line.rpartition(" ")[::2] for line in body.decode().splitlines())
    accepted = values.get('splitedge_events_accepted_total{source="browser"}', "0")
    return int(float(accepted)), int(float(values.get("splitedge_events_flushed_total", "0")))


def wait_flushed(port: int, accepted_at_least: int, timeout: float = DRAIN_TIMEOUT) -> int:
    """Wait until /metrics shows at least ``accepted_at_least`` events accepted and every
    accepted one flushed; returns the events flushed."""
    deadline = time.monotonic() + timeout
    accepted = flushed = 0
    while time.monotonic() < deadline:
        accepted, flushed = ingest_counters(port)
        if accepted >= accepted_at_least and flushed >= accepted:
            return flushed
        time.sleep(POLL_INTERVAL)
    raise RuntimeError(
        f"not flushed in {timeout:.0f}s: {accepted} accepted (expected >= "
        f"{accepted_at_least}), {flushed} flushed"
    )


def settle(port: int, accepted_at_least: int) -> int:
    """`wait_flushed` once the worker saved its counters again: requests wrk had in flight
    when it stopped may have been accepted after it stopped counting."""
    time.sleep(COUNTERS_SAVE_INTERVAL * 1.5)
    return wait_flushed(port, accepted_at_least)


def check_answer(port: int, body: bytes, name: str, expected: bytes | None = None) -> bytes:
    """POST one body; the answer must accept all its events (and be ``expected``)."""
    headers = {"Content-Type": "application/json"}
    status, _, answer = fetch(port, Scenario("check", "POST", "/v1/collect", headers, body))
    if status != 200 or json.loads(answer)["data"]["accepted"] != BATCH:
        raise RuntimeError(f"{name} answered {status}: {answer[:300]!r}")
    if expected is not None and answer != expected:
        raise RuntimeError(f"{name} answered {answer!r}, the decode-only route {expected!r}")
    return answer


def server_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


@contextmanager
def splitedge(workdir: Path, name: str) -> Iterator[tuple[ServerProcess, Path, str]]:
    """A new seeded data dir and ``splitedge serve`` on it: (server, data dir, template)."""
    data_dir = workdir / name
    template = body_template(seed(data_dir))
    port = free_port()
    cmd = [
        sys.executable, "-m", "edge.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1", "--data-dir", str(data_dir),
    ]  # fmt: skip
    with running(name, cmd, port, workdir / f"{name}.log", server_env()) as server:
        yield server, data_dir, template


def end_to_end(
    args: argparse.Namespace, workdir: Path, scripts: Scripts, name: str, answer: bytes
) -> EndToEnd:
    """A new server: a warm-up load and its drain, the measured load and its drain."""
    with splitedge(workdir, name) as (server, data_dir, template):
        check_answer(server.port, instantiate(template, "check"), "splitedge", answer)
        parent, worker = server.proc.pid, worker_pid(server.proc.pid)
        accepted = BATCH  # the check
        if args.warmup > 0:
            warm = wrk_load(args, server.port, worker, scripts(template), args.warmup)
            accepted += warm.ok * BATCH
        base = settle(server.port, accepted)
        cpu = cpu_seconds(worker), cpu_seconds(parent)
        load = wrk_load(args, server.port, worker, scripts(template), args.duration)
        ended = time.monotonic()
        flushed = wait_flushed(server.port, base + load.ok * BATCH)
        drain = time.monotonic() - ended
        worker_cpu, parent_cpu = cpu_seconds(worker) - cpu[0], cpu_seconds(parent) - cpu[1]
        total = settle(server.port, flushed)
    return EndToEnd(load, flushed - base, drain, worker_cpu, parent_cpu, total, data_dir)


# -- chDB and the exactly-once check, in child processes ---------------------------------


def _child(*argv: str, timeout: float) -> Any:
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed:\n{done.stdout}{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _sample_chunks(rows: int) -> list[Any]:
    from edge.ingest.buffer import BrowserChunk
    from edge.ingest.schema import BrowserEvent

    events = [
        BrowserEvent(
            event_id=f"e-{i}", type="exposure", visitor_id=f"v-{i}", ts=T0_MS + i,
            experiment_id="exp-1", variant_id=("var-a", "var-b")[i % 2], pathname="/pricing",
            device="desktop",
        )
        for i in range(rows)
    ]  # fmt: skip
    return [
        BrowserChunk("ws-1", "site-1", T0_MS + i, events[i : i + BATCH])
        for i in range(0, rows, BATCH)
    ]


def chdb_rates(seconds: float, sizes: Sequence[int], batch_sizes: Sequence[int]) -> Any:
    """In a child process: insert_arrow rows/s per table size into a scratch chDB, and
    browser_batch rows/s per batch size (chunks of 20 events into one RecordBatch)."""
    import pyarrow as pa

    from analytics import warehouse
    from edge.ingest.buffer import browser_batch

    def timed(call: Callable[[], object]) -> float:
        started = time.perf_counter()
        call()
        return time.perf_counter() - started

    building = {}
    browser_batch(_sample_chunks(1_000))  # warm-up
    for size in batch_sizes:
        chunks = _sample_chunks(size)
        runs = max(3, 20_000 // size)
        building[str(size)] = size / statistics.median(
            timed(lambda: browser_batch(chunks)) for _ in range(runs)
        )
    inserting = {}
    with tempfile.TemporaryDirectory(prefix="splitedge-bench-chdb-") as tmp:
        client = warehouse.connect(f"chdb://{Path(tmp) / 'clickhouse'}")
        try:
            warehouse.migrate(client)
            count = 0
            for size in sizes:
                table = pa.Table.from_batches([browser_batch(_sample_chunks(size))])

                def insert(table: pa.Table = table, size: int = size) -> None:
                    nonlocal count
                    count += 1
                    settings = warehouse.insert_settings(f"bench-{size}-{count}")
                    client.insert_arrow(warehouse.EVENTS_TABLE, table, settings=settings)

                insert()  # warm-up
                times: list[float] = []
                deadline = time.perf_counter() + seconds
                while len(times) < 3 or time.perf_counter() < deadline:
                    times.append(timed(insert))
                rate = size * len(times) / sum(times)
                inserting[str(size)] = {"inserts": len(times), "rows_per_s": rate}
            rows = int(client.command(f"SELECT count() FROM {warehouse.EVENTS_TABLE}"))
            expected = sum(int(s) * (v["inserts"] + 1) for s, v in inserting.items())
            if rows != expected:
                raise RuntimeError(f"chDB holds {rows} rows, {expected} were inserted")
        finally:
            client.close()
    return {"insert": inserting, "browser_batch": building}


def clickhouse_counts(data_dir: Path) -> tuple[int, int]:
    """In a child process: (rows, distinct event ids) in a stopped server's chDB."""
    from tests.support import clickhouse_rows

    sql = "SELECT count(), uniqExact(event_id) FROM splitedge.events"
    ((rows, ids),) = clickhouse_rows(data_dir, sql)
    return int(str(rows)), int(str(ids))


# -- profiling -------------------------------------------------------------------------


def folded_summary(path: Path, title: str, top: int = 14) -> list[str]:
    """Where a py-spy profile (folded stacks) spends its samples: the functions on top of
    the stack (self), and the project's functions anywhere in it (inclusive)."""
    own: Counter[str] = Counter()
    project: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames, n = stack.split(";"), int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            if "(edge/" in frame or "(analytics/" in frame or "decode_app.py" in frame:
                project[frame] += n
    lines = [f"{title}: {total} samples holding the GIL", "", "self:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines += ["", "inclusive, project functions:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in project.most_common(top)]
    return lines


def profiled_load(
    args: argparse.Namespace, port: int, worker: int, script: Path, out: Path
) -> Load:
    """A load while py-spy records the worker's GIL-holding samples into ``out``."""
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
    cmd = [
        str(py_spy), "record", "--pid", str(worker), "--duration", f"{args.duration:.0f}",
        "--rate", "100", "--gil", "--native", "--nolineno", "--format", "raw", "-o", str(out),
    ]  # fmt: skip
    spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        load = wrk_load(args, port, worker, script, args.duration)
        _, err = spy.communicate(timeout=args.duration + 60)
        if spy.returncode != 0:
            raise RuntimeError(f"py-spy failed: {err}")
    finally:
        if spy.poll() is None:
            spy.kill()
            spy.wait()
    return load


def profile(
    args: argparse.Namespace, workdir: Path, scripts: Scripts, decoder: ServerProcess
) -> None:
    """One unmeasured load on each server under py-spy; print the summaries."""
    out: Path = args.profile
    out.mkdir(parents=True, exist_ok=True)
    with splitedge(workdir, "profiled") as (server, _, template):
        worker = worker_pid(server.proc.pid)
        wrk_load(args, server.port, worker, scripts(template), args.warmup or 2)
        real = profiled_load(args, server.port, worker, scripts(template), out / "splitedge.txt")
    worker = worker_pid(decoder.proc.pid)
    bare = profiled_load(args, decoder.port, worker, scripts(template), out / "decode.txt")
    for name, load in (("splitedge", real), (DECODE, bare)):
        file = out / ("splitedge.txt" if name == "splitedge" else "decode.txt")
        print(f"\n{name} worker under py-spy: {load.rps:,.0f} req/s (slowed by py-spy); {file}")
        print("\n".join(folded_summary(file, name)))


# -- the report ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    e2e: list[EndToEnd]
    decode: list[Load]
    chdb: Any
    checks: list[str]


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def table(m: Measured, args: argparse.Namespace) -> list[str]:
    e2e = _median([r.events_per_s for r in m.e2e])
    http_rps = _median([r.load.rps for r in m.e2e])
    http_eps = _median([r.load.events_per_s for r in m.e2e])
    dec_rps = _median([d.rps for d in m.decode])
    dec_eps = _median([d.events_per_s for d in m.decode])
    p99 = _median([r.load.wrk.p99_ms for r in m.e2e])
    dec_p99 = _median([d.wrk.p99_ms for d in m.decode])
    worker = _median([r.cpu_ms_per_1k(r.worker_cpu) for r in m.e2e])
    parent = _median([r.cpu_ms_per_1k(r.parent_cpu) for r in m.e2e])
    dec_cpu = _median([d.cpu_ms_per_1k for d in m.decode])
    ratio = e2e / dec_eps
    lines = [
        f"{args.rounds} rounds x {args.duration:g} s per server, wrk -t{args.threads} "
        f"-c{args.connections}, {BATCH} events per request, 1 Granian worker; medians.",
        "",
        "| scenario | figure | baseline (decode-only) | ratio |",
        "|---|---:|---:|---:|",
        f"| **end to end: HTTP until queryable in ClickHouse** | **{e2e:,.0f} events/s** | "
        f"{dec_eps:,.0f} events/s | **{ratio:.0%}** |",
        f"| HTTP only (spooled, 2xx), during the load | {http_rps:,.0f} req/s | "
        f"{dec_rps:,.0f} req/s | {http_rps / dec_rps:.0%} |",
        f"| HTTP only, events | {http_eps:,.0f} events/s | {dec_eps:,.0f} events/s | "
        f"{http_eps / dec_eps:.0%} |",
        f"| p99 latency during the load | {p99:.1f} ms | {dec_p99:.1f} ms | |",
        "| drain: load end until /metrics shows all flushed | "
        f"{_median([r.drain_seconds for r in m.e2e]):.2f} s | | |",
        f"| CPU per 1k events: worker + parent (flusher, chDB) | {worker:.1f} + {parent:.1f} "
        f"ms | {dec_cpu:.1f} ms | {dec_cpu / (worker + parent):.0%} |",
    ]
    for size, rate in m.chdb["insert"].items():
        lines.append(
            f"| chDB insert_arrow, {int(size):,}-row tables ({rate['inserts']} inserts) | "
            f"{rate['rows_per_s']:,.0f} rows/s | | |"
        )
    for size, rate in m.chdb["browser_batch"].items():
        lines.append(
            f"| browser_batch, {int(size):,} events (Structs) to a RecordBatch | "
            f"{rate:,.0f} rows/s | | |"
        )
    verdict = "met" if ratio >= TARGET else "NOT met"
    lines += [
        "",
        f"Target: end to end >= {TARGET:.0%} of decode-only events/s: **{verdict}** ({ratio:.0%}).",
        "",
        "Every run:",
        "",
    ]
    lines += [f"- round {i} {E2E}: {r.describe()}" for i, r in enumerate(m.e2e, 1)]
    lines += [f"- round {i} {DECODE}: {d.describe()}" for i, d in enumerate(m.decode, 1)]
    return [*lines, "", *m.checks]


def figures(m: Measured) -> dict[str, Any]:
    """The headline figures for bench/run_all.py's summary table."""
    return {
        "e2e_events_per_s": _median([r.events_per_s for r in m.e2e]),
        "decode_events_per_s": _median([d.events_per_s for d in m.decode]),
        "exactly_once": all("exactly once" in check for check in m.checks),
        "chdb_insert_rows_per_s": {
            size: rate["rows_per_s"] for size, rate in m.chdb["insert"].items()
        },
    }


# -- main ----------------------------------------------------------------------------------


def measure(args: argparse.Namespace, workdir: Path, stack: ExitStack) -> Measured:
    scripts = Scripts(workdir)
    # Decode-only bodies: the same shape, ids of the same length, from a store of its own.
    template = body_template(seed(workdir / "decode-site"))
    port = free_port()
    cmd = [sys.executable, str(BENCH_DIR / "decode_app.py"), "--port", str(port)]
    print(f"starting the decode-only baseline on :{port}", flush=True)
    decoder = stack.enter_context(running(DECODE, cmd, port, workdir / "decode.log", server_env()))
    decode_worker = worker_pid(decoder.proc.pid)
    answer = check_answer(decoder.port, instantiate(template, "check"), DECODE)
    if args.warmup > 0:
        wrk_load(args, decoder.port, decode_worker, scripts(template), args.warmup)
    e2e: list[EndToEnd] = []
    decode: list[Load] = []
    for n in range(1, args.rounds + 1):
        for which in (E2E, DECODE) if n % 2 else (DECODE, E2E):
            if which == E2E:
                e2e.append(end_to_end(args, workdir, scripts, f"e2e{n}", answer))
                done = e2e[-1].describe()
            else:
                decode.append(wrk_load(args, port, decode_worker, scripts(template), args.duration))
                done = decode[-1].describe()
            print(f"  round {n} {which}: {done}", flush=True)
    if args.profile is not None:
        profile(args, workdir, scripts, decoder)
    stack.close()  # the decode-only server: nothing else runs while chDB is measured
    print("checking ClickHouse, then measuring chDB insert_arrow", flush=True)
    checks = []
    for n, r in enumerate(e2e, 1):
        rows, ids = _child("_counts", str(r.data_dir), timeout=300)
        verdict = "exactly once" if rows == ids == r.accepted_total else "**MISMATCH**"
        checks.append(f"- round {n}: ClickHouse holds {rows:,} rows, {ids:,} distinct event "
                      f"ids; the server accepted {r.accepted_total:,}: {verdict}")  # fmt: skip
    chdb = _child("_chdb", str(args.chdb_seconds), "10000,100000", "20,1000,10000", timeout=600)
    return Measured(e2e, decode, chdb, checks)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_counts"]:  # child process modes
        print(json.dumps(clickhouse_counts(Path(argv[1]))))
        return 0
    if argv[:1] == ["_chdb"]:
        sizes, batch_sizes = ([int(s) for s in arg.split(",")] for arg in argv[2:4])
        print(json.dumps(chdb_rates(float(argv[1]), sizes, batch_sizes)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="runs per server")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up per server")
    parser.add_argument("--chdb-seconds", type=float, default=5, help="inserts per table size")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="py-spy profiles go here")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="splitedge-bench-ingest-") as tmp, ExitStack() as st:
        measured = measure(args, Path(tmp), st)
    report = [*granian_environment("ingest.py", argv), "", *table(measured, args)]
    publish("ingest.py", report, RESULTS_INTRO, args.write, figures(measured))
    return 0


if __name__ == "__main__":
    sys.exit(main())
