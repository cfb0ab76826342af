"""``splitedge tick``: one scheduler pass (`edge.control.scheduler.tick_once`), for cron.

It may run beside a serving server (its own scheduler included) and beside other ticks:
loops and schedules are claimed before they are advanced. With embedded ClickHouse it
queries through the running server's warehouse gateway, or opens the data directory
itself when no server holds it. It prints what the pass did as one JSON object and
exits 1 when a due loop failed to advance.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from analytics.gateway import SOCKET_NAME, ClickHouseRunner, GatewayRunner
from edge.authoring import configured_author
from edge.control import loops, plans
from edge.control.keys_cli import data_dir_parent
from edge.control.results_api import ResultsSource
from edge.control.scheduler import tick_once
from edge.outbound import OutboundGuard
from edge.settings import ENV_PREFIX, Settings, env_flag

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``tick`` command."""
    tick = sub.add_parser(
        "tick",
        parents=[data_dir_parent()],
        help="advance the due continuous loops and run the due idea schedules, once",
    )
    tick.add_argument(
        "--clickhouse",
        default=os.environ.get(ENV_PREFIX + "CLICKHOUSE", ""),
        help="ClickHouse DSN, as for serve (SPLITEDGE_CLICKHOUSE)",
    )
    tick.add_argument(
        "--limits",
        default=os.environ.get(ENV_PREFIX + "LIMITS", plans.OFF),
        metavar="off|reference|FILE",
        help="plans, as for serve: which plans pay for scheduled idea runs (SPLITEDGE_LIMITS)",
    )
    tick.add_argument(
        "--allow-private-targets",
        action="store_true",
        default=env_flag("allow_private_targets"),
        help="as for serve: page fetches may reach loopback and private addresses "
        "(SPLITEDGE_ALLOW_PRIVATE_TARGETS)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the ``tick`` command."""
    settings = Settings(
        data_dir=str(Path(args.data_dir).resolve()),
        clickhouse=args.clickhouse,
        allow_private_targets=args.allow_private_targets,
    )
    if not settings.store_path.exists():
        where = settings.store_path
        print(f"splitedge: no store at {where}; is --data-dir right?", file=sys.stderr)
        return 2
    try:
        limits = plans.plan_limits(plans.load_plans(args.limits))
    except plans.PlansError as exc:
        print(f"splitedge: --limits: {exc}", file=sys.stderr)
        return 2
    socket_path = settings.run_dir / SOCKET_NAME
    dsn = settings.clickhouse_dsn
    # A serving server holds the embedded directory; without one, this process opens it.
    runner = (
        GatewayRunner(socket_path)
        if dsn.startswith("chdb:") and socket_path.exists()
        else ClickHouseRunner(dsn)
    )
    try:
        results = loops.source_results(ResultsSource(settings.store_path, runner))
        author = configured_author(OutboundGuard.from_settings(settings))
        report = tick_once(settings.store_path, results, author, datetime.now(UTC), limits)
    finally:
        runner.close()
    print(msgspec.json.encode(report).decode())
    return 1 if report.failed_loops else 0
