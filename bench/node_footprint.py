"""The footprint of an edge node (``splitedge edge``): what its processes import and how
much memory they hold.

1. **Imports.** In fresh interpreters: the number of modules in ``sys.modules`` and the
   cumulative ``-X importtime`` of ``edge.cli`` (what the console script loads first,
   and what each spawned Granian worker re-imports as its main module), ``edge.node.run``
   (the node's parent) and ``edge.node.app`` (each worker's app). Best of ``--rounds``.
2. **Memory.** A control plane (``splitedge serve``) over a seeded store and a node of
   it with ``--workers`` workers; after 200 snippet and 200 assign requests to the node,
   the VmRSS of the node's parent and of every process under it (the workers, and
   multiprocessing's resource tracker).

    .venv/bin/python bench/node_footprint.py [--workers 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

# Python puts bench/ first on sys.path when it runs a script from it, and there "edge"
# names bench/edge.py, not the splitedge package. Keep bench/ on the path, but last; the
# repository root is there for tests.support (seeded stores).
_BENCH_DIR = os.path.dirname(os.path.realpath(__file__))
_ROOT_DIR = os.path.dirname(_BENCH_DIR)
_AFTER = [_ROOT_DIR, _BENCH_DIR]
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") not in _AFTER] + _AFTER

import httpx  # noqa: E402
from tests.support import running_server, seed_store  # noqa: E402

MODULES = ("edge.cli", "edge.node.run", "edge.node.app")


def _fresh(*args: str) -> subprocess.CompletedProcess[str]:
    # Not from bench/, whose edge.py would shadow the package.
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, check=True, cwd=_ROOT_DIR
    )


def imports(module: str, rounds: int) -> tuple[int, float]:
    """Modules loaded by ``import module`` and its best cumulative import time (ms)."""
    count = int(_fresh("-c", f"import sys, {module}; print(len(sys.modules))").stdout)
    times = []
    for _ in range(rounds):
        last = _fresh("-X", "importtime", "-c", f"import {module}").stderr.splitlines()[-1]
        times.append(int(last.split("|")[1]) / 1000)
    return count, min(times)


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except (OSError, ValueError):
            continue
        if entry.isdigit() and int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found += [int(entry), *_children(int(entry))]
    return found


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def node_rss(workers: int) -> tuple[float, list[float]]:
    """The VmRSS (MiB) of a serving node's parent and of each process under it."""
    root = Path(tempfile.mkdtemp(prefix="node-footprint-"))
    data = root / "control"
    seed = seed_store(data / "splitedge.sqlite3")
    token = _fresh(
        "-m", "edge.cli", "edge-tokens", "create", "--name", "bench", "--data-dir", str(data)
    ).stdout.strip()
    with ExitStack() as stack:
        control = stack.enter_context(running_server(data))
        node = stack.enter_context(
            running_server(
                root / "node",
                workers=workers,
                command="edge",
                args=["--control-url", control.base_url],
                env={"SPLITEDGE_EDGE_TOKEN": token},
            )
        )
        key = seed.site.public_key
        with httpx.Client(base_url=node.base_url, timeout=10) as client:
            for n in range(200):
                client.get(f"/s/{key}.js").raise_for_status()
                body = {"public_key": key, "unit_id": f"u{n}"}
                client.post("/v1/assign", json=body).raise_for_status()
        time.sleep(1)
        return _rss_mib(node.proc.pid), [_rss_mib(pid) for pid in _children(node.proc.pid)]


def main(argv: Sequence[str] | None = None) -> int:
    """Print the figures as Markdown lines."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    for module in MODULES:
        count, ms = imports(module, args.rounds)
        print(f"- `import {module}`: {count} modules, {ms:.0f} ms (best of {args.rounds})")
    parent, others = node_rss(args.workers)
    shown = ", ".join(f"{mib:.0f}" for mib in others)
    print(f"- node RSS with {args.workers} workers: {parent + sum(others):.0f} MiB "
          f"(parent {parent:.0f} MiB; processes under it {shown} MiB)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
