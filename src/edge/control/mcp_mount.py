"""``/mcp`` as the app mounts it: the gateway (`edge.control.mcp_gateway`) loads in the
background once the worker has started.

The MCP SDK takes about a second to import, a third of a worker's start-up. Loading it on
the start-up path would hold up readiness (and every restart) for an endpoint most
deployments rarely call; so the worker becomes ready without it, and a request to
``/mcp`` that arrives before the gateway is up waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

from edge.control.services import Services
from edge.errors import ServiceUnavailable

if TYPE_CHECKING:
    from edge.control.mcp_gateway import McpGateway

__all__ = ["McpMount"]

log = logging.getLogger(__name__)


class McpMount:
    """The ``/mcp`` endpoint of a worker. ``rest_app`` (the REST routes the tools call)
    is set once the app is built; ``lifespan`` is entered once by the app's lifespan."""

    rest_app: ASGIApp

    def __init__(self, services: Services) -> None:
        self.services = services
        self._gateway: McpGateway | None = None
        self._settled = asyncio.Event()

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(self._serve(stop), name="mcp-gateway")
        try:
            yield
        finally:
            stop.set()
            if not self._settled.is_set():  # still importing: nothing to close
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _serve(self, stop: asyncio.Event) -> None:
        # The SDK's session manager must be entered and left by one task: this one.
        try:
            gateway = await asyncio.to_thread(self._build)
            async with gateway.lifespan():
                self._gateway = gateway
                self._settled.set()
                await stop.wait()
        except Exception:
            log.exception("the MCP gateway failed to start; /mcp answers 503")
            self._settled.set()

    def _build(self) -> McpGateway:
        from edge.control.mcp_gateway import McpGateway  # the slow import, off start-up

        gateway = McpGateway(self.services)
        gateway.rest_app = self.rest_app
        return gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._settled.wait()
        if self._gateway is None:
            raise ServiceUnavailable("the MCP gateway failed to start; see the server log")
        await self._gateway(scope, receive, send)
