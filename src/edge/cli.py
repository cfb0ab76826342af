"""The ``splitedge`` command line.

Each command imports what it runs only once chosen: ``splitedge edge`` loads no control
plane, and the control plane's commands (keys, credits, tick, edge-tokens) bring their
own parsers, built only when the command line may need them.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging.config
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

from edge.http import PublicOrigin
from edge.logs import LOG_LEVELS, logging_config
from edge.processes import PortInUse
from edge.settings import ENV_PREFIX, Settings, env_flag

__all__ = ["main", "serve_settings"]

# The control plane's commands, in the order ``--help`` lists them: the module of each
# has ``add_parser(sub)`` and ``run(args)``, which tells its commands apart by
# ``args.command``.
_CONTROL_COMMANDS = {
    "keys": "edge.control.keys_cli",
    "credits": "edge.control.credits_cli",
    "tick": "edge.control.tick_cli",
    "edge-tokens": "edge.control.edge_tokens_cli",
    "backup": "edge.control.backup",
    "restore": "edge.control.backup",
}


def _env(name: str, default: str) -> str:
    return os.environ.get(ENV_PREFIX + name.upper(), default)


def _server_arguments(serve: argparse.ArgumentParser) -> None:
    """The flags ``serve`` and ``edge`` share."""
    defaults = Settings()
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
    serve.add_argument(
        "--spool-cap-mb",
        type=int,
        default=int(_env("spool_cap_mb", str(defaults.spool_cap_mb))),
        help="disk the spool may use while ClickHouse lags; past it, events get 503 "
        "with Retry-After (SPLITEDGE_SPOOL_CAP_MB)",
    )
    serve.add_argument(
        "--clickhouse-cluster",
        default=_env("clickhouse_cluster", defaults.clickhouse_cluster),
        metavar="NAME",
        help="create the events table as ReplicatedMergeTree + Distributed ON CLUSTER NAME "
        "(SPLITEDGE_CLICKHOUSE_CLUSTER)",
    )
    serve.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=_env("log_level", defaults.log_level).lower(),
        help="level of the server's and its workers' logs (SPLITEDGE_LOG_LEVEL)",
    )


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    defaults = Settings()
    serve = sub.add_parser(
        "serve",
        help="run the server (control plane and edge) on Granian",
        description="Every flag can also be set with its SPLITEDGE_* environment variable.",
    )
    _server_arguments(serve)
    serve.add_argument(
        "--dev",
        action="store_true",
        default=env_flag("dev"),
        help="development mode: webhooks may use http://, and page fetches and webhooks may "
        "reach loopback and private addresses (SPLITEDGE_DEV)",
    )
    serve.add_argument(
        "--allow-private-targets",
        action="store_true",
        default=env_flag("allow_private_targets"),
        help="page fetches and webhooks may reach loopback and private addresses, e.g. to "
        "test against a local site; off by default (SPLITEDGE_ALLOW_PRIVATE_TARGETS)",
    )
    serve.add_argument(
        "--tick-interval",
        type=float,
        default=float(_env("tick_interval", str(defaults.tick_interval))),
        metavar="SECONDS",
        help="seconds between scheduler passes over loops and idea schedules; 0: none "
        "(run `splitedge tick` from cron instead) (SPLITEDGE_TICK_INTERVAL)",
    )
    serve.add_argument(
        "--limits",
        default=_env("limits", defaults.limits),
        metavar="off|reference|FILE",
        help="plans: requests per minute per API key and sites per workspace; 'off' "
        "(default: unmetered), 'reference' (Starter/Pro/Team/Enterprise) or a plans JSON "
        "file (SPLITEDGE_LIMITS)",
    )
    serve.add_argument(
        "--public-url",
        default=_env("public_url", defaults.public_url),
        metavar="URL",
        help="the origin clients reach this server at, e.g. https://ab.example.com behind a "
        "TLS proxy: every URL the server hands out (snippet tag, report links) starts with "
        "it; default: each request's own scheme and host (SPLITEDGE_PUBLIC_URL)",
    )
    serve.add_argument(
        "--forwarded-allow-ips",
        default=_env("forwarded_allow_ips", defaults.forwarded_allow_ips),
        metavar="IPS",
        help="comma-separated IPs or CIDRs of the proxies whose Forwarded and "
        "X-Forwarded-Proto/-Host headers are believed, e.g. 127.0.0.1; '*': any peer; "
        "default: none (SPLITEDGE_FORWARDED_ALLOW_IPS)",
    )


def _edge_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    edge = sub.add_parser(
        "edge",
        help="run a stateless edge node that serves the control plane's config",
        description="Snippet, assign, collect and events, with no store: the config comes "
        "from the control plane (GET /v1/edge/snapshot), kept on disk for cold starts. "
        "Every flag can also be set with its SPLITEDGE_* environment variable.",
    )
    _server_arguments(edge)
    edge.add_argument(
        "--control-url",
        default=_env("control_url", ""),
        metavar="URL",
        help="the control plane, e.g. http://control:8000 (SPLITEDGE_CONTROL_URL)",
    )
    edge.add_argument(
        "--edge-token",
        default=_env("edge_token", ""),
        metavar="TOKEN",
        help="from `splitedge edge-tokens create` on the control plane; prefer the "
        "SPLITEDGE_EDGE_TOKEN variable, which process listings do not show",
    )


def _parser(control: bool = True) -> argparse.ArgumentParser:
    """The command line's parser; without ``control``, the control plane's commands are
    there by name only (so usage lines stay the same) and none of their modules loads."""
    parser = argparse.ArgumentParser(
        prog="splitedge", description="splitedge: self-hosted A/B tests and agent experiments"
    )
    version = importlib.metadata.version("splitedge")
    parser.add_argument("--version", action="version", version=f"splitedge {version}")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _edge_parser(sub)
    if control:
        # One module may add several commands (backup and restore).
        for module in dict.fromkeys(_CONTROL_COMMANDS.values()):
            importlib.import_module(module).add_parser(sub)
    else:
        for name in _CONTROL_COMMANDS:
            sub.add_parser(name)
    return parser


def _common_settings(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Settings:
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if not 0 < args.port < 65536:
        parser.error("--port must be between 1 and 65535")
    if args.spool_cap_mb < 1:
        parser.error("--spool-cap-mb must be at least 1")
    # argparse checks the choices of a flag given, not of a default from the environment.
    if args.log_level not in LOG_LEVELS:
        parser.error(f"--log-level (or SPLITEDGE_LOG_LEVEL) must be one of {', '.join(LOG_LEVELS)}")
    # Settings without a flag (e.g. the webhook_* ones) come from the environment.
    return msgspec.structs.replace(
        Settings.from_env(),
        host=args.host,
        port=args.port,
        workers=args.workers,
        data_dir=str(Path(args.data_dir).resolve()),
        clickhouse=args.clickhouse,
        clickhouse_cluster=args.clickhouse_cluster,
        spool_cap_mb=args.spool_cap_mb,
        log_level=args.log_level,
    )


def _public_url(parser: argparse.ArgumentParser, url: str) -> str:
    """``--public-url`` without its trailing slash; a parser error unless it is an origin
    (and maybe a path prefix the proxy strips): no query, no fragment."""
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        parser.error(
            f"--public-url {url!r} is not an http(s):// origin: give e.g. https://ab.example.com"
        )
    return url.rstrip("/")


def _settings(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Settings:
    from edge.control import plans

    if args.tick_interval < 0:
        parser.error("--tick-interval must be 0 (off) or a positive number of seconds")
    limits = args.limits
    if limits not in (plans.OFF, plans.REFERENCE):
        # Absolute, so that every worker reads the same file whatever its directory.
        limits = str(Path(limits).resolve())
    try:
        plans.load_plans(limits)
    except plans.PlansError as exc:
        parser.error(f"--limits: {exc}")
    try:
        PublicOrigin(forwarded_allow_ips=args.forwarded_allow_ips)
    except ValueError as exc:
        parser.error(f"--forwarded-allow-ips: {exc}; give IPs or CIDRs, comma-separated, or *")
    return msgspec.structs.replace(
        _common_settings(parser, args),
        dev=args.dev,
        allow_private_targets=args.allow_private_targets,
        tick_interval=args.tick_interval,
        limits=limits,
        public_url=_public_url(parser, args.public_url),
        forwarded_allow_ips=args.forwarded_allow_ips,
    )


def _edge_settings(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Settings:
    if not args.control_url.startswith(("http://", "https://")):
        parser.error("--control-url is required: the control plane's http(s):// address")
    if not args.edge_token.startswith("et_"):
        parser.error(
            "--edge-token (or SPLITEDGE_EDGE_TOKEN) is required: an et_... token from "
            "`splitedge edge-tokens create --name NODE` on the control plane"
        )
    return msgspec.structs.replace(
        _common_settings(parser, args),
        control_url=args.control_url.rstrip("/"),
        edge_token=args.edge_token,
    )


def serve_settings(argv: Sequence[str]) -> Settings:
    """The settings ``splitedge serve ARGV`` runs with: flags over env vars over defaults."""
    parser = _parser()
    return _settings(parser, parser.parse_args(["serve", *argv]))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    # `python -m edge.cli` puts the working directory first on the import path: nothing
    # imported from here on may come from it (a stray mcp.py, say).
    sys.path[:] = [entry for entry in sys.path if entry not in ("", ".", os.getcwd())]
    argv = sys.argv[1:] if argv is None else list(argv)
    # The top-level parser has no option but --help and --version: the command is the first
    # argument.
    parser = _parser(control=argv[:1] != ["edge"])
    args = parser.parse_args(argv)
    if args.command in _CONTROL_COMMANDS:
        if args.command == "tick":
            logging.config.dictConfig(logging_config(_env("log_level", Settings().log_level)))
        code: int = importlib.import_module(_CONTROL_COMMANDS[args.command]).run(args)
        return code
    logging.config.dictConfig(logging_config(args.log_level))
    try:
        if args.command == "edge":
            edge_settings = _edge_settings(parser, args)
            from edge.node.run import run_node  # Granian loads only when serving

            return run_node(edge_settings)
        settings = _settings(parser, args)
        from edge.server import run  # Granian and chDB load only when serving

        return run(settings)
    except PortInUse as exc:
        print(f"splitedge: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
