"""The ``splitedge`` command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from edge.settings import ENV_PREFIX, Settings

__all__ = ["main"]


def _env(name: str, default: str) -> str:
    return os.environ.get(ENV_PREFIX + name.upper(), default)


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    defaults = Settings()
    serve = sub.add_parser(
        "serve",
        help="run the server (control plane and edge) on Granian",
        description="Every flag can also be set with its SPLITEDGE_* environment variable.",
    )
    serve.add_argument("--host", default=_env("host", defaults.host), help="SPLITEDGE_HOST")
    serve.add_argument(
        "--port", type=int, default=int(_env("port", str(defaults.port))), help="SPLITEDGE_PORT"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=int(_env("workers", str(defaults.workers))),
        help="worker processes (SPLITEDGE_WORKERS); each has its own config KV",
    )
    serve.add_argument(
        "--data-dir",
        default=_env("data_dir", defaults.data_dir),
        help="SQLite store and embedded ClickHouse live here (SPLITEDGE_DATA_DIR)",
    )
    serve.add_argument(
        "--clickhouse",
        default=_env("clickhouse", defaults.clickhouse),
        help="ClickHouse DSN, e.g. http://host:8123 (SPLITEDGE_CLICKHOUSE); "
        "default chdb://<data-dir>/clickhouse, embedded",
    )


def _serve(args: argparse.Namespace) -> int:
    from edge.server import run

    if args.workers < 1:
        print("splitedge: --workers must be at least 1", file=sys.stderr)
        return 2
    settings = Settings(
        host=args.host,
        port=args.port,
        workers=args.workers,
        data_dir=str(Path(args.data_dir).resolve()),
        clickhouse=args.clickhouse,
    )
    return run(settings)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = argparse.ArgumentParser(prog="splitedge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.command == "serve":
        return _serve(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
