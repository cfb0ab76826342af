"""`make bench`: every benchmark in one run, then one summary table at the top of
bench/RESULTS.md with each figure beside its baseline from this same run.

The benchmarks run one after the other, never two at once (each loads the whole 2-core
machine), each with ``--write`` so it regenerates its own section of RESULTS.md, and each
leaves its headline figures as JSON in a temporary directory (``report.FIGURES_ENV``).
Their durations and rounds (`BENCHES`) are chosen so the whole run takes about 10 minutes
on 2 cores. The summary then adds what needs no load: the gzip size of the built browser
runtime (``src/edge/static/runtime.js``, level 9 as the edge serves it) against the
hosted product's ~5 KB.

bench/soak.py is not run here: it is a fault test of five minutes with its own figures
(its section of RESULTS.md), not a measurement against a baseline.

    .venv/bin/python bench/run_all.py [--figures DIR]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from report import FIGURES_ENV, RESULTS_PATH, date_line, machine

BENCH_DIR = Path(__file__).resolve().parent
RUNTIME_JS = BENCH_DIR.parent / "src" / "edge" / "static" / "runtime.js"
# The hosted product's claim for its snippet ("~5 KB"), taken as 5,000 bytes gzipped.
REFERENCE_SNIPPET_BYTES = 5_000
BEGIN, END = "<!-- make bench: begin -->", "<!-- make bench: end -->"

BENCHES: list[tuple[str, list[str]]] = [
    ("edge.py", ["--duration", "8", "--rounds", "3"]),
    ("ingest.py", ["--duration", "10", "--rounds", "3"]),
    ("stats.py", ["--repeats", "30"]),
    ("results_query.py", ["--runs", "5"]),
    ("agents.py", ["--duration", "5", "--rounds", "3"]),
]


def run_benches(figures_dir: Path) -> list[tuple[str, float]]:
    """Run every benchmark; (its command line, its wall seconds), in order."""
    env = {**os.environ, FIGURES_ENV: str(figures_dir), "PYTHONUNBUFFERED": "1"}
    timings = []
    for script, args in BENCHES:
        argv = [*args, "--write"]
        shown = shlex.join([".venv/bin/python", f"bench/{script}", *argv])
        print(f"\n=== {shown}", flush=True)
        started = time.monotonic()
        done = subprocess.run([sys.executable, str(BENCH_DIR / script), *argv], env=env)
        took = time.monotonic() - started
        if done.returncode != 0:
            raise SystemExit(f"bench/{script} failed (exit {done.returncode}) after {took:.0f} s")
        if not (figures_dir / f"{Path(script).stem}.json").exists():
            raise SystemExit(f"bench/{script} left no figures in {figures_dir}")
        timings.append((shown, took))
    return timings


def load_figures(figures_dir: Path) -> dict[str, Any]:
    return {
        Path(script).stem: json.loads((figures_dir / f"{Path(script).stem}.json").read_text())
        for script, _ in BENCHES
    }


def rate_ratio(ours: float, base: float) -> str:
    """A rate or a size as a percentage of its baseline's."""
    return f"{ours / base:.0%}"


def time_ratio(ours: float, base: float) -> str:
    """A time against its baseline's: how many times faster or slower."""
    ratio = ours / base
    times = 1 / ratio if ratio < 1 else ratio
    shown = f"{times:,.0f}" if times >= 100 else f"{times:.1f}"
    return f"{shown}x {'faster' if ratio < 1 else 'slower'}"


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def summary_rows(figures: dict[str, Any], runtime_gzip: int) -> list[str]:
    edge, ingest, stats, agents = (figures[k] for k in ("edge", "ingest", "stats", "agents"))
    rows = []

    def row(what: str, ours: str, base: str, ratio: str, note: str = "") -> None:
        rows.append(f"| {what} | {ours} | {base} | {ratio} | {note} |")

    bare = "bare Starlette route on Granian, same bytes"
    for name, label in (
        ("GET snippet (plain)", "GET snippet, req/s"),
        ("GET snippet (gzip)", "GET snippet (gzip), req/s"),
        ("POST /v1/assign", "POST /v1/assign by public key, req/s"),
    ):
        s = edge["scenarios"][name]
        row(
            label,
            f"{s['splitedge_rps']:,.0f}",
            f"{s['bare_rps']:,.0f} ({bare})",
            rate_ratio(s["splitedge_rps"], s["bare_rps"]),
            f"p99 {s['splitedge_p99_ms']:.1f} vs {s['bare_p99_ms']:.1f} ms; bench/edge.py",
        )
    row(
        "POST /v1/assign by experiment id + API key, req/s",
        f"{agents['assign_rps']:,.0f}",
        f"{agents['bare_rps']:,.0f} ({bare})",
        rate_ratio(agents["assign_rps"], agents["bare_rps"]),
        "bench/agents.py",
    )
    e2e, decode = ingest["e2e_events_per_s"], ingest["decode_events_per_s"]
    once = "every event in ClickHouse exactly once" if ingest["exactly_once"] else "**MISMATCH**"
    row(
        "ingest, HTTP until queryable in ClickHouse, events/s",
        f"{e2e:,.0f}",
        f"{decode:,.0f} (decode-only route)",
        rate_ratio(e2e, decode),
        f"{once}; bench/ingest.py",
    )
    size, raw_insert = max(ingest["chdb_insert_rows_per_s"].items(), key=lambda kv: kv[1])
    row(
        "ingest, events/s, against chDB's raw insert",
        f"{e2e:,.0f}",
        f"{raw_insert:,.0f} rows/s (`insert_arrow`, {int(size):,}-row tables)",
        rate_ratio(e2e, raw_insert),
        "the ceiling of one embedded chDB; bench/ingest.py",
    )
    gb = agents["growthbook"]
    row(
        "assign one unit in process, ns/op: hash and pick",
        f"{gb['ours']:,.0f}",
        f"{gb['gb_core']:,.0f} (GrowthBook `gbhash` v2 + `chooseVariation`)",
        time_ratio(gb["ours"], gb["gb_core"]),
        "`AssignmentTable.assign`; bench/agents.py",
    )
    row(
        "assign one unit in process, ns/op: the API call",
        f"{agents['endpoint_ns']:,.0f}",
        f"{gb['gb_run']:,.0f} (GrowthBook SDK `set_attributes` + `run`)",
        time_ratio(agents["endpoint_ns"], gb["gb_run"]),
        "ours: the whole assign endpoint (JSON in, API key, JSON out); bench/agents.py",
    )
    for arms in ("2", "5"):
        s = stats["speed"][arms]
        row(
            f"prob to win, {arms} arms, se <= 1e-4, ms",
            f"{s['ours_ms']:.2f}",
            f"{s['numpy_ms']:,.0f} (numpy `Generator.beta` Monte Carlo)",
            time_ratio(s["ours_ms"], s["numpy_ms"]),
            "numpy timed at up to 1M draws per arm, scaled to the draws it needs; bench/stats.py",
        )
    s = stats["speed"]["2"]
    row(
        "prob to win, 2 arms, se <= 1e-4, ms",
        f"{s['ours_ms']:.2f}",
        f"{s['exact_ms']:.3f} (the exact formula, P(beat control) only)",
        time_ratio(s["ours_ms"], s["exact_ms"]),
        f"max abs(ours - exact) {s['max_abs_gap_exact']:.1e}; bench/stats.py",
    )
    c = stats["gbstats"]
    row(
        "chance to win, 2 arms, ms",
        f"{c['ours_ms']:.3f}",
        f"{c['gbstats_ms']:.3f} (gbstats 0.8 `EffectBayesianABTest`)",
        time_ratio(c["ours_ms"], c["gbstats_ms"]),
        f"max abs(ours - gbstats) {c['max_abs_gap_within']:.4f} over its {c['cases_within']} "
        "in-domain cases; ours is the whole result (loss, intervals); bench/stats.py",
    )
    reference = f"{REFERENCE_SNIPPET_BYTES:,} (the hosted product's ~5 KB)"
    row(
        "snippet runtime, gzip bytes",
        f"{runtime_gzip:,}",
        reference,
        rate_ratio(runtime_gzip, REFERENCE_SNIPPET_BYTES),
        "`src/edge/static/runtime.js` without a site's config; gzip -9 as the edge "
        "compresses it (Python's zlib; snippet/build.mjs's node zlib differs by a few bytes)",
    )
    row(
        "snippet as served, gzip bytes",
        f"{edge['snippet_gzip_bytes']:,}",
        reference,
        rate_ratio(edge["snippet_gzip_bytes"], REFERENCE_SNIPPET_BYTES),
        "the demo site's `/s/{key}.js`, its config inlined; bench/edge.py",
    )
    web = figures["results_query"]["exp_web_big"]
    row(
        f"results + timeline read from the kept summary, {web['rows']:,} events, warm ms",
        f"{web['results_ms']:,.0f}",
        f"{web['uniq_ms']:,.0f} (`uniqExact(unit_id)` of the same range)",
        time_ratio(web["results_ms"], web["uniq_ms"]),
        "bench/results_query.py",
    )
    return rows


def summary(figures: dict[str, Any], timings: list[tuple[str, float]], total: float) -> str:
    runtime_gzip = len(gzip.compress(RUNTIME_JS.read_bytes(), compresslevel=9, mtime=0))
    lines = [
        BEGIN,
        "## Summary (`make bench`)",
        "",
        f"- command: `make bench` (`.venv/bin/python bench/run_all.py`), {minutes(total)} in all",
        date_line(),
        f"- machine: {machine()}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}",
        "",
        "Every figure is beside its baseline from this same run. The ratio of a rate or a "
        "size is splitedge's as a percentage of the baseline's (above 100%: more requests or "
        "events per second, or more bytes); of a time, how many times faster or slower "
        "splitedge is. The machine is shared: compare within this table, not across runs.",
        "",
        "| benchmark | splitedge | baseline (same run) | ratio | note |",
        "|---|---:|---|---:|---|",
        *summary_rows(figures, runtime_gzip),
        "",
        "Each benchmark as run (its own section below has the details):",
        "",
        *(f"- `{shown}`: {minutes(took)}" for shown, took in timings),
        END,
    ]
    return "\n".join(lines)


def write_summary(block: str) -> None:
    """Replace the summary between its markers, or put it under the file's title."""
    text = RESULTS_PATH.read_text()
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        text = head + block + rest.partition(END)[2]
    else:
        title, _, rest = text.partition("\n")
        text = f"{title}\n\n{block}\n{rest}"
    RESULTS_PATH.write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--figures", type=Path, metavar="DIR", help="keep each benchmark's figures here"
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("the benchmarks need wrk on PATH; on Debian: apt-get install -y wrk")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="splitedge-bench-figures-") as tmp:
        figures_dir = args.figures or Path(tmp)
        figures_dir.mkdir(parents=True, exist_ok=True)
        timings = run_benches(figures_dir)
        figures = load_figures(figures_dir)
    block = summary(figures, timings, time.monotonic() - started)
    write_summary(block)
    print(f"\n{block}\n\nwrote {RESULTS_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
