"""What a process really loads: an edge node (``splitedge edge``, its parent's modules and
its workers' app) and the hot path, each imported in a fresh interpreter. lint-imports
checks the same layers statically (pyproject.toml); this checks sys.modules."""

from __future__ import annotations

import json
import subprocess
import sys

NODE_FORBIDDEN = ("edge.control", "edge.authoring", "numba", "bs4", "mcp")
HOT_PATH = (
    "edge.kv",
    "edge.snippet",
    "edge.snippet_route",
    "edge.assign_route",
    "edge.bearer",
    "edge.hot_routes",
    "edge.serving",
    "edge.health",
    "edge.metrics",
    "edge.ingest.collect_route",
    "edge.ingest.events_route",
)

# `splitedge edge --help` through the console script's entry point, then what the node's
# parent runs and what its workers build.
NODE_PROGRAM = """
import contextlib, io, sys
import edge.cli
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    edge.cli.main(["edge", "--help"])
import edge.node.run, edge.node.app
"""


def loaded_after(program: str) -> list[str]:
    """The modules in sys.modules after ``program`` runs in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", program + "\nimport json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    modules: list[str] = json.loads(out.stdout.splitlines()[-1])
    return modules


def under(modules: list[str], packages: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in packages)]


def test_an_edge_node_loads_no_control_plane_authoring_or_statistics() -> None:
    modules = loaded_after(NODE_PROGRAM)
    assert "edge.node.app" in modules and "edge.node.run" in modules
    assert under(modules, NODE_FORBIDDEN) == []
    # analytics.warehouse is the node's one analytics module (its flusher, --clickhouse).
    assert under(modules, ("analytics",)) in ([], ["analytics", "analytics.warehouse"])


def test_the_hot_path_loads_no_control_plane() -> None:
    modules = loaded_after("import sys\n" + "\n".join(f"import {m}" for m in HOT_PATH))
    assert set(HOT_PATH) <= set(modules)
    assert under(modules, ("edge.control",)) == []
