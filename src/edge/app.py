"""The edge ASGI app: snippet, assignment, event ingestion, health, metrics and demo.

Granian builds one app per worker process through `create_app` (a factory, so each
worker opens its own store connection). The ingest and assignment routes are also
dispatched by exact path ahead of Starlette (`edge.hot_routes`); a method they do not
answer still reaches Starlette's router, for its 405. The lifespan loads the KV before the worker
reports ready and follows the config version until shutdown; at shutdown it writes what
the event buffer holds to the spool and finishes the open spool segment.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp

from analytics import bayes
from analytics.gateway import query_runner
from edge.assign_route import AssignEndpoint
from edge.control import experiments_api, plans, sites_api, webhooks, workspace_api
from edge.control.report_page import ReportLinks, ReportPage
from edge.control.results_api import (
    ExperimentMetricsEndpoint,
    ExperimentResultsEndpoint,
    ResultsSource,
)
from edge.control.snapshot import StoreSource
from edge.demo import DEMO_PATH, DemoPage
from edge.health import Health, Readiness
from edge.hot_routes import HotRoute, HotRoutes
from edge.http import EXCEPTION_HANDLERS
from edge.ingest.buffer import EventBuffer
from edge.ingest.collect_route import CollectEndpoint
from edge.ingest.events_route import EventsEndpoint
from edge.ingest.flusher import read_status
from edge.ingest.spool import SpoolWriter
from edge.kv import ConfigFollower, KVHolder
from edge.metrics import IngestCounters, MetricsEndpoint, flusher_families
from edge.settings import Settings
from edge.snippet import load_runtime
from edge.snippet_route import SnippetEndpoint

__all__ = ["create_app"]

log = logging.getLogger("splitedge.app")


def _warm_up_statistics() -> None:
    try:
        bayes.warm_up()
    except Exception:  # the first results request compiles instead
        log.exception("warming up the statistics kernels failed")


async def _save_every(counters: IngestCounters, run_dir: Path, interval: float = 1.0) -> None:
    while True:
        await asyncio.sleep(interval)
        await asyncio.to_thread(counters.save, run_dir)


def create_app(settings: Settings | None = None) -> ASGIApp:
    """The app for one worker process; settings default to the ``SPLITEDGE_*`` env."""
    settings = Settings.from_env() if settings is None else settings
    # Requests allocate many short-lived objects and no cycles worth chasing often; with
    # the default (a young collection every 700 allocations) the collector took 14% of an
    # ingesting worker's time (py-spy, bench/RESULTS.md).
    gc.set_threshold(10_000, 10, 10)
    holder = KVHolder()
    spool = SpoolWriter(settings.spool_dir, disk_cap_bytes=settings.spool_cap_mb << 20)
    buffer = EventBuffer(spool)
    counters = IngestCounters()
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    runner = query_runner(settings.clickhouse_dsn, settings.run_dir)
    results = ResultsSource(settings.store_path, runner)
    links = ReportLinks(settings.store_path)
    plan_table = plans.load_plans(settings.limits)
    limits = plans.rate_limits(plan_table)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        source = await asyncio.to_thread(StoreSource, settings.store_path)
        # Numba compiles (or loads from its cache) the kernels off the request path and
        # without holding up readiness; a results request before it ends waits for it.
        threading.Thread(target=_warm_up_statistics, name="warm-up", daemon=True).start()
        follower = ConfigFollower(
            source, load_runtime(), holder, interval=settings.config_poll_interval
        )
        kv = await asyncio.to_thread(follower.load)
        # What start-up built lives as long as the worker: move it out of the cyclic
        # collector's sight, so collections under load only scan what requests create.
        gc.collect()
        gc.freeze()
        log.info("ready at config version %d (%d sites)", kv.version, len(kv.by_public_key))
        tasks = [
            asyncio.create_task(follower.follow(), name="config-follower"),
            asyncio.create_task(_save_every(counters, settings.run_dir), name="counters"),
        ]
        writer = asyncio.create_task(buffer.run(), name="event-writer")
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await buffer.close(writer)
            spool.close()
            counters.save(settings.run_dir)
            source.close()
            runner.close()

    hot_routes = [
        HotRoute("/v1/assign", ["POST"], AssignEndpoint(holder)),
        HotRoute("/v1/collect", ["POST", "OPTIONS"], CollectEndpoint(holder, buffer, counters)),
        HotRoute("/v1/events", ["POST"], EventsEndpoint(holder, buffer, counters)),
    ]
    routes = [
        Route("/s/{public_key}.js", SnippetEndpoint(holder), methods=["GET", "HEAD"]),
        *(Route(r.path, r.endpoint, methods=sorted(r.methods)) for r in hot_routes),
        Route("/healthz", Health(), methods=["GET"]),
        Route(
            "/readyz", Readiness(holder, lambda: read_status(settings.spool_dir)), methods=["GET"]
        ),
        Route(
            "/metrics",
            MetricsEndpoint(settings.run_dir, flusher_families(settings.spool_dir)),
            methods=["GET"],
        ),
        Route(DEMO_PATH, DemoPage(holder), methods=["GET"]),
        Route(
            "/v1/experiments/{experiment_id}/results",
            ExperimentResultsEndpoint(results, links, limits),
            methods=["GET"],
        ),
        Route(
            "/v1/experiments/{experiment_id}/metrics",
            ExperimentMetricsEndpoint(results, limits),
            methods=["GET"],
        ),
        Route("/reports/{experiment_id}", ReportPage(links, results), methods=["GET"]),
        *sites_api.routes(settings.store_path, plans.site_limits(plan_table), limits),
        *experiments_api.routes(settings.store_path, limits),
        *webhooks.routes(settings.store_path, dev=settings.dev, limits=limits),
        *workspace_api.routes(settings.store_path, limits),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers=dict(EXCEPTION_HANDLERS),
    )
    return HotRoutes(app, hot_routes, EXCEPTION_HANDLERS)
