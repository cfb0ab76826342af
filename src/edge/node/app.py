"""The ASGI app of an edge node's Granian worker: the edge routes (`edge.serving`) over
the node's snapshot file, which the parent's puller keeps current, and the preview route,
relayed to the control plane (`edge.node.previews`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.types import ASGIApp

from edge.hot_routes import HotRoutes
from edge.http import EXCEPTION_HANDLERS
from edge.node.previews import PreviewRelay
from edge.node.snapshot_file import FileSource, SnapshotFile
from edge.serving import EdgeServing
from edge.settings import Settings

__all__ = ["create_node_app"]


def create_node_app(settings: Settings | None = None) -> ASGIApp:
    """The app for one worker of an edge node; settings default to the env."""
    settings = Settings.from_env() if settings is None else settings
    file = SnapshotFile(settings.data_dir)
    edge = EdgeServing(settings, file.state)
    previews = PreviewRelay(settings.control_url)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with edge.lifespan(FileSource(file), file.exists), previews.lifespan():
            yield

    app = Starlette(
        routes=[*edge.routes(), previews.route()],
        lifespan=lifespan,
        exception_handlers=dict(EXCEPTION_HANDLERS),
    )
    return edge.metrics.timed(HotRoutes(app, edge.hot_routes(), EXCEPTION_HANDLERS))
