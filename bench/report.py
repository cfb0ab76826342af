"""The head and the home of a benchmark report: the lines that open it (command, date,
machine, versions) and its block of bench/RESULTS.md, replaced in place with --write.

It imports nothing of splitedge at module level: a script that keeps bench/ first on
sys.path (bench/stats.py) sees bench/edge.py as ``edge``, not the package.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS_PATH = Path(__file__).resolve().parent / "RESULTS.md"
# A directory where each script also leaves its headline figures, as bench/<script>.json
# without the .py: bench/run_all.py sets it and builds RESULTS.md's summary table from them.
FIGURES_ENV = "SPLITEDGE_BENCH_FIGURES"


def command_line(script: str, argv: Sequence[str]) -> str:
    """The report's command line: how to run ``bench/<script>`` as it was run."""
    return f"- command: `{shlex.join(['.venv/bin/python', f'bench/{script}', *argv])}`"


def date_line() -> str:
    return f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}"


def machine() -> str:
    """The CPUs this process may run on, and their model."""
    cpu = "unknown"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"nproc {len(os.sched_getaffinity(0))}, {cpu}"


def environment(script: str, argv: Sequence[str], versions: str) -> list[str]:
    """The lines that head a report: command, date, machine and OS, then Python and the
    ``versions`` of what the script measures."""
    return [
        command_line(script, argv),
        date_line(),
        f"- machine: {machine()}; {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}, {versions}",
    ]


def granian_environment(
    script: str, argv: Sequence[str], overrides: Sequence[str] = (), candidate: Sequence[str] = ()
) -> list[str]:
    """`environment` of a script that loads Granian servers with wrk, with the Granian
    settings both servers run with."""
    # Imported here, not above: see the module docstring.
    import granian

    from edge.workers import granian_options

    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    wrk_version = (wrk.stdout + wrk.stderr).split("\n")[0].split(" [")[0].strip()
    settings = granian_options(0)
    settings.pop("workers")
    shown = ", ".join(f"{k}={getattr(v, 'value', v)}" for k, v in settings.items())
    return [
        *environment(script, argv, f"Granian {granian.__version__}, {wrk_version}"),
        f"- Granian settings (edge.workers.granian_options): {shown}"
        + (f"; overridden here: {', '.join(overrides)}" if overrides else ""),
        *([f"- candidate: splitedge with {', '.join(candidate)}"] if candidate else []),
    ]


def replace_results_block(script: str, report: list[str], section: str) -> None:
    """Put ``report`` in ``bench/<script>``'s block of bench/RESULTS.md, keeping everything
    around it; with no such block yet, append ``section`` and the block."""
    begin, end = f"<!-- bench/{script}: begin -->", f"<!-- bench/{script}: end -->"
    block = "\n".join([begin, *report, end])
    text = RESULTS_PATH.read_text() if RESULTS_PATH.exists() else "# Benchmark results\n"
    if begin in text and end in text:
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n" + block + "\n"
    RESULTS_PATH.write_text(text)


def publish(
    script: str,
    report: list[str],
    section: str,
    write: bool,
    figures: dict[str, Any] | None = None,
) -> None:
    """Print the report; with ``write``, put it in bench/RESULTS.md too; with
    ``$SPLITEDGE_BENCH_FIGURES`` set, leave ``figures`` there for the summary table."""
    print("\n" + "\n".join(report))
    if write:
        replace_results_block(script, report, section)
        print(f"\nwrote {RESULTS_PATH}")
    directory = os.environ.get(FIGURES_ENV)
    if directory and figures is not None:
        path = Path(directory) / f"{Path(script).stem}.json"
        path.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {path}")
