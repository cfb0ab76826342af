"""The decode-only baseline of bench/ingest.py: a minimal Starlette app on Granian,
configured exactly like ``splitedge serve`` (`edge.workers.granian_options`).

Its one ingest route reads the body of ``POST /v1/collect`` and decodes it with msgspec
into the same Structs as splitedge (`edge.ingest.schema.CollectRequest`), then answers
the JSON splitedge answers when it accepts every event of a batch. It checks nothing
else, buffers nothing and writes nothing: it is the least an ingest route on this stack
does for a batch, and the denominator of bench/ingest.py's ratio.

    POST /v1/collect   decode, answer {"data": {"accepted": n, "rejected": 0, ...}}
    GET  /readyz       200

    python bench/decode_app.py --port P [--workers N]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

# Python puts bench/ first on sys.path when it runs a script from it, and there "edge"
# names bench/edge.py, not the splitedge package. Keep bench/ on the path, but last.
_BENCH_DIR = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != _BENCH_DIR] + [_BENCH_DIR]

import msgspec  # noqa: E402
from granian import Granian  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from edge.ingest.schema import CollectRequest  # noqa: E402
from edge.workers import granian_options  # noqa: E402

__all__ = ["create_app", "main"]


class _Accepted(msgspec.Struct):
    accepted: int
    rejected: int
    rejected_reasons: dict[str, int]


class _Answer(msgspec.Struct):
    data: _Accepted


def create_app() -> Starlette:
    """The baseline app (a Granian factory)."""
    decoder = msgspec.json.Decoder(CollectRequest)
    encoder = msgspec.json.Encoder()

    async def collect(request: Request) -> Response:
        batch = decoder.decode(await request.body())
        answer = _Answer(_Accepted(len(batch.events), 0, {}))
        return Response(encoder.encode(answer), media_type="application/json")

    async def ready(request: Request) -> Response:
        return Response(b"ok", media_type="text/plain")

    return Starlette(
        routes=[
            Route("/v1/collect", collect, methods=["POST"]),
            Route("/readyz", ready, methods=["GET"]),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the baseline on loopback until SIGTERM."""
    parser = argparse.ArgumentParser(prog="decode_app.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    Granian(
        target="decode_app:create_app",
        factory=True,
        address="127.0.0.1",
        port=args.port,
        **granian_options(args.workers),
    ).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
