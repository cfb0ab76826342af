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
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from analytics import bayes
from analytics.gateway import query_runner
from edge.assign_route import ASSIGN_OPERATION, AssignEndpoint
from edge.authoring import configured_author
from edge.control import (
    agents_api,
    experiments_api,
    ideas_api,
    intelligence_api,
    loops,
    loops_api,
    plans,
    results_api,
    schedules_api,
    sites_api,
    variants_api,
    webhooks,
    workspace_api,
)
from edge.control.docs_page import DocsPage
from edge.control.mcp_mount import McpMount
from edge.control.openapi import OpenApiEndpoint, openapi_document
from edge.control.report_page import ReportLinks, ReportPage
from edge.control.results_api import ResultsSource
from edge.control.snapshot import StoreSource
from edge.demo import DEMO_PATH, DemoPage
from edge.health import HEALTH_OPERATION, READY_OPERATION, Health, Readiness
from edge.hot_routes import HotRoute, HotRoutes
from edge.http import EXCEPTION_HANDLERS
from edge.ingest.buffer import EventBuffer
from edge.ingest.collect_route import COLLECT_OPERATION, PREFLIGHT_OPERATION, CollectEndpoint
from edge.ingest.events_route import EVENTS_OPERATION, EventsEndpoint
from edge.ingest.flusher import read_status
from edge.ingest.spool import SpoolWriter
from edge.kv import ConfigFollower, KVHolder
from edge.metrics import IngestCounters, MetricsEndpoint, flusher_families
from edge.operation import DocumentedRoute
from edge.settings import Settings
from edge.snippet import load_runtime
from edge.snippet_route import SNIPPET_OPERATION, SnippetEndpoint

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
    limits = plans.plan_limits(plans.load_plans(settings.limits))
    # One author per worker: its page cache serves every route that authors.
    author = configured_author()
    mcp = McpMount(settings.store_path, limits)

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
            async with mcp.lifespan():
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

    ingest = [
        DocumentedRoute("/v1/assign", AssignEndpoint(holder), {"POST": ASSIGN_OPERATION}),
        DocumentedRoute(
            "/v1/collect",
            CollectEndpoint(holder, buffer, counters),
            {"POST": COLLECT_OPERATION, "OPTIONS": PREFLIGHT_OPERATION},
        ),
        DocumentedRoute(
            "/v1/events", EventsEndpoint(holder, buffer, counters), {"POST": EVENTS_OPERATION}
        ),
    ]
    hot_routes = [HotRoute(r.path, r.operations, r.endpoint) for r in ingest]
    routes: list[BaseRoute] = [
        DocumentedRoute("/s/{public_key}.js", SnippetEndpoint(holder), {"GET": SNIPPET_OPERATION}),
        *ingest,
        DocumentedRoute("/healthz", Health(), {"GET": HEALTH_OPERATION}),
        DocumentedRoute(
            "/readyz",
            Readiness(holder, lambda: read_status(settings.spool_dir)),
            {"GET": READY_OPERATION},
        ),
        Route(
            "/metrics",
            MetricsEndpoint(settings.run_dir, flusher_families(settings.spool_dir)),
            methods=["GET"],
        ),
        Route(DEMO_PATH, DemoPage(holder), methods=["GET"]),
        *results_api.routes(results, links, limits),
        *agents_api.routes(
            settings.store_path, runner, limits, settings.agent_value_per_success or None
        ),
        Route("/reports/{experiment_id}", ReportPage(links, results), methods=["GET"]),
        *sites_api.routes(settings.store_path, limits),
        *intelligence_api.routes(settings.store_path, author, limits),
        *experiments_api.routes(settings.store_path, author, limits),
        *variants_api.routes(settings.store_path, author, limits),
        *ideas_api.routes(settings.store_path, author, limits),
        *schedules_api.routes(settings.store_path, limits),
        *loops_api.routes(settings.store_path, author, loops.source_results(results), limits),
        *webhooks.routes(settings.store_path, dev=settings.dev, limits=limits),
        *workspace_api.routes(settings.store_path, limits),
    ]
    # Built once per worker, from the routes above: what they declare is what they do.
    document = openapi_document(routes)
    # The MCP tools call the REST routes in this process (edge.control.mcp_mount).
    rest = Starlette(
        routes=[r for r in routes if isinstance(r, DocumentedRoute) and r.path.startswith("/v1/")],
        exception_handlers=dict(EXCEPTION_HANDLERS),
    )
    mcp.rest_app = rest
    routes += [
        Route("/mcp", mcp, methods=["GET", "POST", "DELETE"]),
        Route("/openapi.json", OpenApiEndpoint(document), methods=["GET"]),
        Route("/docs", DocsPage(document), methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers=dict(EXCEPTION_HANDLERS),
    )
    return HotRoutes(app, hot_routes, EXCEPTION_HANDLERS)
