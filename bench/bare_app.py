"""The baseline of bench/edge.py: a minimal Starlette app on Granian, configured exactly
like ``splitedge serve`` (`edge.workers.granian_options`).

It answers the edge's hot paths with ordinary Starlette routes and ``Response`` objects,
returning bytes captured from a running splitedge server (with the same headers, minus
the ones the server adds itself), so that the two servers put the same bytes on the wire:

    GET  /s/{public_key}.js   the snippet, gzipped when Accept-Encoding names gzip
    POST /v1/assign           reads the body, answers the captured assignment JSON
    GET  /readyz              200

Run by bench/edge.py, in one of two modes, each with optional Granian overrides used to
tune `granian_options` (``--set loop=asyncio --set http=auto ...``)::

    python bench/bare_app.py bare --port P --workers N --bodies DIR [--set NAME=VALUE]...
    python bench/bare_app.py edge [--set NAME=VALUE]... -- serve --port P ...

``edge`` runs the real ``splitedge`` command with the overrides applied to Granian.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# Python puts bench/ first on sys.path when it runs a script from it, and there "edge"
# names bench/edge.py, not the splitedge package. Keep bench/ on the path, but last.
_BENCH_DIR = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != _BENCH_DIR] + [_BENCH_DIR]

from granian import Granian  # noqa: E402
from granian.constants import HTTPModes, Loops, RuntimeModes, TaskImpl  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

import edge.workers  # noqa: E402
from edge.workers import granian_options  # noqa: E402

__all__ = [
    "BODIES_ENV",
    "SERVER_HEADERS",
    "create_app",
    "main",
    "parse_overrides",
    "write_bodies",
]

BODIES_ENV = "SPLITEDGE_BENCH_BODIES"
# Headers the HTTP server or Starlette set on every response; not copied to the baseline.
SERVER_HEADERS = frozenset({"content-length", "date", "server", "connection", "keep-alive"})


def _optional_int(value: str) -> int | None:
    return None if value.lower() == "none" else int(value)


_OVERRIDES: dict[str, Callable[[str], Any]] = {
    "workers": int,
    "loop": Loops,
    "http": HTTPModes,
    "runtime_mode": RuntimeModes,
    "task_impl": TaskImpl,
    "runtime_threads": int,
    "runtime_blocking_threads": _optional_int,
    "blocking_threads": _optional_int,
    "backlog": int,
    "backpressure": _optional_int,
}


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``NAME=VALUE`` strings as typed Granian keyword arguments."""
    overrides: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in _OVERRIDES:
            known = ", ".join(sorted(_OVERRIDES))
            raise ValueError(f"--set {item!r}: expected NAME=VALUE, NAME one of {known}")
        try:
            overrides[name] = _OVERRIDES[name](value)
        except ValueError as exc:
            raise ValueError(f"--set {item!r}: {exc}") from None
    return overrides


def write_bodies(
    directory: Path,
    snippet: tuple[bytes, dict[str, str]],
    snippet_gzip: tuple[bytes, dict[str, str]],
    assign: tuple[bytes, dict[str, str]],
) -> None:
    """Store captured (body, headers) pairs where `create_app` finds them."""
    parts = {"snippet": snippet, "snippet_gzip": snippet_gzip, "assign": assign}
    meta = {}
    for name, (body, headers) in parts.items():
        (directory / f"{name}.bin").write_bytes(body)
        meta[name] = {k: v for k, v in headers.items() if k.lower() not in SERVER_HEADERS}
    (directory / "headers.json").write_text(json.dumps(meta, indent=2))


def create_app() -> Starlette:
    """The baseline app (a Granian factory); the bytes come from ``$SPLITEDGE_BENCH_BODIES``."""
    directory = Path(os.environ[BODIES_ENV])
    headers: dict[str, dict[str, str]] = json.loads((directory / "headers.json").read_text())
    plain = (directory / "snippet.bin").read_bytes()
    gzipped = (directory / "snippet_gzip.bin").read_bytes()
    assigned = (directory / "assign.bin").read_bytes()

    async def snippet(request: Request) -> Response:
        if "gzip" in request.headers.get("accept-encoding", ""):
            return Response(gzipped, headers=headers["snippet_gzip"])
        return Response(plain, headers=headers["snippet"])

    async def assign(request: Request) -> Response:
        await request.body()
        return Response(assigned, headers=headers["assign"])

    async def ready(request: Request) -> Response:
        return Response(b"ok", media_type="text/plain")

    return Starlette(
        routes=[
            Route("/s/{public_key}.js", snippet, methods=["GET", "HEAD"]),
            Route("/v1/assign", assign, methods=["POST"]),
            Route("/readyz", ready, methods=["GET"]),
        ]
    )


def _serve_bare(port: int, workers: int, bodies: Path, overrides: dict[str, Any]) -> int:
    os.environ[BODIES_ENV] = str(bodies.resolve())
    Granian(
        target="bare_app:create_app",
        factory=True,
        address="127.0.0.1",
        port=port,
        **{**granian_options(workers), **overrides},
    ).serve()
    return 0


def _serve_edge(argv: list[str], overrides: dict[str, Any]) -> int:
    from edge.cli import main as splitedge

    base = edge.workers.granian_options

    def tuned(workers: int) -> dict[str, Any]:
        return {**base(workers), **overrides}

    edge.workers.granian_options = tuned
    return splitedge(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the baseline (``bare``) or splitedge (``edge``), with Granian overrides."""
    parser = argparse.ArgumentParser(prog="bare_app.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    bare = sub.add_parser("bare", help="serve the baseline app")
    bare.add_argument("--port", type=int, required=True)
    bare.add_argument("--workers", type=int, default=1)
    bare.add_argument("--bodies", type=Path, required=True, help="see write_bodies")
    real = sub.add_parser("edge", help="run splitedge with the overrides")
    real.add_argument("splitedge_args", nargs=argparse.REMAINDER, help="-- then splitedge args")
    for mode in (bare, real):
        mode.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    try:
        overrides = parse_overrides(args.set)
    except ValueError as exc:
        parser.error(str(exc))
    if args.mode == "bare":
        return _serve_bare(args.port, args.workers, args.bodies, overrides)
    rest = args.splitedge_args
    return _serve_edge(rest[1:] if rest[:1] == ["--"] else rest, overrides)


if __name__ == "__main__":
    sys.exit(main())
