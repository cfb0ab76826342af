"""The edge ASGI app: snippet, assignment, health and demo routes over the config KV.

Granian builds one app per worker process through `create_app` (a factory, so each
worker opens its own store connection). The lifespan loads the KV before the worker
reports ready and follows the config version until shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Route

from edge.assign_route import AssignEndpoint
from edge.control.snapshot import StoreSource
from edge.demo import DEMO_PATH, DemoPage
from edge.errors import SplitedgeError
from edge.health import Health, Readiness
from edge.http import (
    http_exception_response,
    splitedge_error_response,
    unexpected_error_response,
)
from edge.kv import ConfigFollower, KVHolder
from edge.settings import Settings
from edge.snippet import load_runtime
from edge.snippet_route import SnippetEndpoint

__all__ = ["create_app"]

log = logging.getLogger("splitedge.app")


def create_app(settings: Settings | None = None) -> Starlette:
    """The app for one worker process; settings default to the ``SPLITEDGE_*`` env."""
    settings = Settings.from_env() if settings is None else settings
    holder = KVHolder()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        source = await asyncio.to_thread(StoreSource, settings.store_path)
        follower = ConfigFollower(
            source, load_runtime(), holder, interval=settings.config_poll_interval
        )
        kv = await asyncio.to_thread(follower.load)
        log.info("ready at config version %d (%d sites)", kv.version, len(kv.by_public_key))
        task = asyncio.create_task(follower.follow(), name="config-follower")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            source.close()

    routes = [
        Route("/s/{public_key}.js", SnippetEndpoint(holder), methods=["GET", "HEAD"]),
        Route("/v1/assign", AssignEndpoint(holder), methods=["POST"]),
        Route("/healthz", Health(), methods=["GET"]),
        Route("/readyz", Readiness(holder), methods=["GET"]),
        Route(DEMO_PATH, DemoPage(holder), methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            SplitedgeError: splitedge_error_response,
            HTTPException: http_exception_response,
            Exception: unexpected_error_response,
        },
    )
