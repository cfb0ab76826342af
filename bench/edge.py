"""Edge hot paths under load: ``splitedge serve`` side by side with a bare Starlette app.

Both servers run in this one run, on Granian with the same settings
(`edge.workers.granian_options`, plus any ``--set`` overrides, applied to both). The
baseline (bench/bare_app.py) serves, from ordinary Starlette routes and ``Response``
objects, the very bytes splitedge answered: its snippet (plain and gzip) and its
``POST /v1/assign`` JSON. The ratio is therefore what splitedge's routing, KV lookups and
assignment cost over the least a Starlette app on Granian can do for the same answer.

wrk drives each scenario against each server in turn (real, bare, then bare, real in the
next round, ...); the table shows the median of the rounds. The machine is shared, so
read ratios, not absolute figures.

``--candidate NAME=VALUE`` (repeatable) adds a third server to the rotation: splitedge
with those Granian settings changed, on a copy of the same store, so a tuning question
is answered by one run rather than by comparing runs taken minutes apart.

    .venv/bin/python bench/edge.py [--duration 10] [--connections 64] [--threads 1]
                                   [--workers 1] [--rounds 2] [--set NAME=VALUE]...
                                   [--candidate NAME=VALUE]... [--write]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

# Python puts bench/ first on sys.path when it runs a script from it, and there "edge"
# names bench/edge.py, not the splitedge package. Keep bench/ on the path, but last.
_BENCH_DIR = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != _BENCH_DIR] + [_BENCH_DIR]

from bare_app import parse_overrides, write_bodies  # noqa: E402
from report import granian_environment, publish  # noqa: E402
from wrk_load import Scenario, WrkRun, fetch, free_port, run_wrk, running  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
CANDIDATE = "candidate"
DEMO_KEY_SQL = (
    "SELECT s.public_key FROM meta m JOIN sites s ON s.id = m.value WHERE m.key = 'demo_site_id'"
)


@dataclass(frozen=True)
class Row:
    """A scenario's runs, by server name."""

    scenario: Scenario
    runs: dict[str, list[WrkRun]]

    def median(self, server: str, attr: str) -> float:
        return float(statistics.median(getattr(run, attr) for run in self.runs[server]))


def demo_public_key(data_dir: Path) -> str:
    db = sqlite3.connect(data_dir / "splitedge.sqlite3")
    try:
        row = db.execute(DEMO_KEY_SQL).fetchone()
    finally:
        db.close()
    if row is None:
        raise RuntimeError("the store has no demo site")
    return str(row[0])


def scenarios(public_key: str) -> list[Scenario]:
    snippet = f"/s/{public_key}.js"
    body = b'{"public_key": "%s", "unit_id": "bench-unit-1", "url": "/demo"}' % public_key.encode()
    return [
        Scenario("GET snippet (plain)", "GET", snippet),
        Scenario("GET snippet (gzip)", "GET", snippet, {"Accept-Encoding": "gzip"}),
        Scenario(
            "POST /v1/assign", "POST", "/v1/assign", {"Content-Type": "application/json"}, body
        ),
    ]


def lua_script(scenario: Scenario, directory: Path, index: int) -> Path:
    """A wrk script that only sets the request once (no per-request Lua)."""
    lines = [f'wrk.method = "{scenario.method}"']
    for name, value in scenario.headers.items():
        lines.append(f'wrk.headers["{name}"] = "{value}"')
    if scenario.body:
        lines.append(f"wrk.body = [==[{scenario.body.decode()}]==]")
    path = directory / f"scenario{index}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


def capture(port: int, scenario: Scenario) -> tuple[bytes, dict[str, str]]:
    status, headers, body = fetch(port, scenario)
    if status != 200:
        raise RuntimeError(f"{scenario.name}: splitedge answered {status}: {body[:300]!r}")
    return body, headers


def check_same_bytes(real_port: int, bare_port: int, cases: list[Scenario]) -> None:
    for scenario in cases:
        real, bare = fetch(real_port, scenario), fetch(bare_port, scenario)
        if real[0] != 200 or bare[0] != 200 or real[2] != bare[2]:
            raise RuntimeError(f"{scenario.name}: the servers disagree: {real} vs {bare}")
        print(f"  {scenario.name}: {len(real[2])} body bytes from both", flush=True)


def comparison(rows: list[Row], first: str, second: str) -> list[str]:
    """A Markdown table of two servers' medians."""
    lines = [
        f"| scenario | {first} req/s | {second} req/s | ratio | {first} p99 | {second} p99 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        rps1, rps2 = row.median(first, "rps"), row.median(second, "rps")
        lines.append(
            f"| {row.scenario.name} | {rps1:,.0f} | {rps2:,.0f} | {rps1 / rps2:.0%} | "
            f"{row.median(first, 'p99_ms'):.2f} ms | {row.median(second, 'p99_ms'):.2f} ms |"
        )
    return lines


def table(rows: list[Row], args: argparse.Namespace) -> list[str]:
    lines = [
        f"{args.rounds} rounds x {args.duration:g} s per server and scenario, "
        f"wrk -t{args.threads} -c{args.connections}, {args.workers} Granian worker(s); "
        "medians of the rounds.",
        "",
        *comparison(rows, "splitedge", "bare"),
    ]
    if args.candidate:
        lines += ["", *comparison(rows, CANDIDATE, "splitedge")]
    lines += ["", "Every run (req/s):", ""]
    for row in rows:
        runs = "; ".join(
            f"{name} " + ", ".join(f"{run.rps:,.0f}" for run in runs)
            for name, runs in row.runs.items()
        )
        lines.append(f"- {row.scenario.name}: {runs}")
    errors = [
        f"- {row.scenario.name} ({name}): {run.errors}"
        for row in rows
        for name, runs in row.runs.items()
        for run in runs
        if run.errors
    ]
    if errors:
        lines += ["", "wrk reported errors:", "", *errors]
    return lines


def copy_store(data_dir: Path, copy_dir: Path) -> None:
    """A consistent copy of a live store (SQLite's backup API), same demo key included."""
    copy_dir.mkdir()
    source = sqlite3.connect(data_dir / "splitedge.sqlite3")
    target = sqlite3.connect(copy_dir / "splitedge.sqlite3")
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def splitedge_command(port: int, data_dir: Path, workers: int, overrides: list[str]) -> list[str]:
    """``splitedge serve``; through bare_app.py's ``edge`` mode when Granian is overridden."""
    serve = [
        "serve", "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers), "--data-dir", str(data_dir),
    ]  # fmt: skip
    if not overrides:
        return [sys.executable, "-m", "edge.cli", *serve]
    sets = [f"--set={item}" for item in overrides]
    return [sys.executable, str(BENCH_DIR / "bare_app.py"), "edge", *sets, "--", *serve]


def measure(
    args: argparse.Namespace, workdir: Path, stack: ExitStack
) -> tuple[list[Row], dict[str, int]]:
    """The rows, and the sizes of the snippet bodies splitedge served (plain, gzip)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    data_dir = workdir / "data"
    port = free_port()
    print(f"starting splitedge on :{port}", flush=True)
    cmd = splitedge_command(port, data_dir, args.workers, args.set)
    real = stack.enter_context(running("splitedge", cmd, port, workdir / "real.log", env))
    cases = scenarios(demo_public_key(data_dir))
    captured = [capture(real.port, scenario) for scenario in cases]
    write_bodies(workdir, *captured)
    port = free_port()
    cmd = [
        sys.executable, str(BENCH_DIR / "bare_app.py"), "bare", "--port", str(port),
        "--workers", str(args.workers), "--bodies", str(workdir),
        *(f"--set={item}" for item in args.set),
    ]  # fmt: skip
    print(f"starting the bare baseline on :{port}", flush=True)
    bare = stack.enter_context(running("bare", cmd, port, workdir / "bare.log", env))
    check_same_bytes(real.port, bare.port, cases)
    servers = [real, bare]
    if args.candidate:
        copy_store(data_dir, workdir / "candidate")
        port = free_port()
        print(f"starting the candidate on :{port}", flush=True)
        overrides = [*args.set, *args.candidate]
        cmd = splitedge_command(port, workdir / "candidate", args.workers, overrides)
        log = workdir / "candidate.log"
        servers.append(stack.enter_context(running(CANDIDATE, cmd, port, log, env)))
        for scenario in cases:
            capture(servers[-1].port, scenario)
    scripts = [lua_script(scenario, workdir, i) for i, scenario in enumerate(cases)]
    if args.warmup > 0:
        for scenario, script in zip(cases, scripts, strict=True):
            for server in servers:
                run_wrk(args, server.port, scenario.path, script, args.warmup)
    rows = [Row(scenario, {server.name: [] for server in servers}) for scenario in cases]
    for round_no in range(args.rounds):
        # Each round starts with the next server, so none always runs first.
        shift = round_no % len(servers)
        order = servers[shift:] + servers[:shift]
        for row, script in zip(rows, scripts, strict=True):
            for server in order:
                result = run_wrk(args, server.port, row.scenario.path, script, args.duration)
                row.runs[server.name].append(result)
                print(
                    f"  round {round_no + 1} {row.scenario.name:<22} {server.name:<10} "
                    f"{result.rps:>10,.0f} req/s  p99 {result.p99_ms:.2f} ms"
                    + (f"  [{result.errors}]" if result.errors else ""),
                    flush=True,
                )
    sizes = {"snippet_bytes": len(captured[0][0]), "snippet_gzip_bytes": len(captured[1][0])}
    return rows, sizes


def figures(rows: list[Row], sizes: dict[str, int]) -> dict[str, object]:
    """The headline figures for bench/run_all.py's summary table."""
    by_scenario = {
        row.scenario.name: {
            f"{server}_{attr}": row.median(server, attr)
            for server in ("splitedge", "bare")
            for attr in ("rps", "p99_ms")
        }
        for row in rows
    }
    return {"scenarios": by_scenario, **sizes}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--workers", type=int, default=1, help="Granian workers (both servers)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per server and scenario")
    parser.add_argument(
        "--warmup", type=float, default=2, help="seconds of warm-up per server and scenario"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a Granian setting on both servers (loop, http, backpressure, ...)",
    )
    parser.add_argument(
        "--candidate",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="also run splitedge with this Granian setting changed, side by side",
    )
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args(argv)
    try:
        parse_overrides([*args.set, *args.candidate])
    except ValueError as exc:
        parser.error(str(exc))
    with tempfile.TemporaryDirectory(prefix="splitedge-bench-") as tmp, ExitStack() as stack:
        rows, sizes = measure(args, Path(tmp), stack)
    report = [
        *granian_environment("edge.py", argv, args.set, args.candidate),
        "",
        *table(rows, args),
    ]
    publish("edge.py", report, "## bench/edge.py\n", args.write, figures(rows, sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
