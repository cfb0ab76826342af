"""The edge ASGI app: snippet, assignment, event ingestion, health, metrics, demo, the
control-plane API and the console.

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
import logging
import threading
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from analytics import bayes
from analytics.summaries import SummaryReader
from edge.control import (
    agents_api,
    console,
    crewkit_api,
    edge_api,
    edge_ingest_api,
    experiments_api,
    ideas_api,
    intelligence_api,
    keys_api,
    loops,
    loops_api,
    previews,
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
from edge.control.report_links import ReportLinks
from edge.control.report_page import ReportPage
from edge.control.results_api import ResultsSource
from edge.control.services import Services
from edge.control.snapshot import StoreKeyLedger, StoreSource
from edge.demo import DEMO_PATH, DemoPage
from edge.hot_routes import HotRoutes
from edge.http import EXCEPTION_HANDLERS, PublicOrigin
from edge.operation import DocumentedRoute
from edge.serving import EdgeServing
from edge.settings import Settings

__all__ = ["create_app"]

log = logging.getLogger("splitedge.app")


def _warm_up_statistics() -> None:
    try:
        bayes.warm_up()
    except Exception:  # the first results request compiles instead
        log.exception("warming up the statistics kernels failed")


def create_app(settings: Settings | None = None) -> ASGIApp:
    """The app for one worker process; settings default to the ``SPLITEDGE_*`` env."""
    settings = Settings.from_env() if settings is None else settings
    ledger = StoreKeyLedger(settings.store_path)
    edge = EdgeServing(settings, ledger=ledger)
    # What every control-plane route shares, built once per worker.
    services = Services.from_settings(settings)
    # The server's parent keeps the running experiments' summaries (summary_keeper).
    results = ResultsSource(
        services.store_path,
        services.run,
        edge.holder,
        SummaryReader(services.run, settings.summary_from_events),
    )
    links = ReportLinks(services.store_path)
    mcp = McpMount(services)
    pages = console.Console(services)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        source = await asyncio.to_thread(StoreSource, settings.store_path)
        # Numba compiles (or loads from its cache) the kernels off the request path and
        # without holding up readiness; a results request before it ends waits for it.
        threading.Thread(target=_warm_up_statistics, name="warm-up", daemon=True).start()
        try:
            async with edge.lifespan(source), mcp.lifespan():
                yield
        finally:
            source.close()
            ledger.close()
            services.close()

    routes: list[BaseRoute] = [
        *edge.routes(),
        *previews.routes(services),
        Route(DEMO_PATH, DemoPage(edge.holder), methods=["GET"]),
        *results_api.routes(services, results, links),
        *agents_api.routes(services),
        Route("/reports/{experiment_id}", ReportPage(links, results), methods=["GET"]),
        *sites_api.routes(services),
        *intelligence_api.routes(services),
        *experiments_api.routes(services),
        *variants_api.routes(services),
        *ideas_api.routes(services),
        *schedules_api.routes(services),
        *loops_api.routes(services, loops.source_results(results)),
        *webhooks.routes(services),
        *keys_api.routes(services),
        *workspace_api.routes(services),
        *edge_api.routes(services),
        *edge_ingest_api.routes(services),
        # `/` and /console/...: before crewkit's /{org_id}/experiments, which would match
        # /console/experiments.
        *console.routes(pages),
        # After the /v1 routes, whose paths its /{org_id}/experiments would match too.
        *crewkit_api.routes(services, results),
    ]
    # Built once per worker, from the routes above: what they declare is what they do.
    document = openapi_document(routes)
    rest = Starlette(
        routes=[r for r in routes if isinstance(r, DocumentedRoute) and r.path.startswith("/v1/")],
        exception_handlers=dict(EXCEPTION_HANDLERS),
    )
    # The MCP tools and the console's pages call the REST routes in this process
    # (edge.control.in_process).
    mcp.rest_app = pages.rest_app = rest
    routes += [
        # Stateless transport: no stream to GET, no session to DELETE (405 at once).
        Route("/mcp", mcp, methods=["POST"]),
        Route("/openapi.json", OpenApiEndpoint(document), methods=["GET"]),
        Route("/docs", DocsPage(document), methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers=dict(EXCEPTION_HANDLERS),
    )
    # Read by `edge.control.api.base_url` through the scope's app, in both apps, so the
    # hot routes, which make no URL, pay nothing for it.
    app.state.public_origin = rest.state.public_origin = PublicOrigin(
        settings.public_url, settings.forwarded_allow_ips
    )
    hot = HotRoutes(app, edge.hot_routes(), EXCEPTION_HANDLERS, edge.catch_up.after_write)
    return edge.metrics.timed(hot)
