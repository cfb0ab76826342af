"""The hot routes, dispatched by exact path ahead of Starlette.

Starlette's middleware stack and router cost an ingesting worker about a tenth of its
time per request (py-spy, bench/RESULTS.md): two middleware layers, an exception-handling
wrapper and a regex match per route. The ingest and assignment endpoints are raw ASGI
callables, so for their exact paths and methods `HotRoutes` calls them directly and
answers what they raise with the app's own exception handlers. Everything else (other methods
included, for Starlette's 405) goes through the Starlette app as before, lifespan too.

A write that reaches the app (any method but GET, HEAD and OPTIONS) and succeeds (2xx)
calls ``after_write`` before the last byte of its answer is sent
(`edge.serving.KVCatchUp.after_write`): by the time the client has read the answer, every
worker of the server serves what it wrote. Before the last byte rather than with the
status, because an MCP tool's answer may start before the tool has written.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from edge.errors import SplitedgeError
from edge.http import ExceptionHandler

__all__ = ["HotRoute", "HotRoutes"]

log = logging.getLogger("splitedge.app")

# The endpoints take the scope as a dict (Granian and Starlette pass one).
Endpoint = Callable[[Any, Receive, Send], Awaitable[None]]


_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class _WriteAnswer:
    """A write's ``send``: a 2xx answer's last body message waits for ``after_write``."""

    __slots__ = ("after_write", "send", "succeeded")

    def __init__(self, send: Send, after_write: Callable[[], Awaitable[None]]) -> None:
        self.send = send
        self.after_write = after_write
        self.succeeded = False

    async def __call__(self, message: MutableMapping[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.succeeded = 200 <= message["status"] < 300
        elif kind == "http.response.body" and self.succeeded and not message.get("more_body"):
            self.succeeded = False
            await self.after_write()
        await self.send(message)


class HotRoute:
    """An exact path, the methods it answers and its raw ASGI endpoint."""

    def __init__(self, path: str, methods: Iterable[str], endpoint: Endpoint):
        self.path = path
        self.methods = frozenset(methods)
        self.endpoint = endpoint


class HotRoutes:
    """An ASGI app: hot routes first, then the wrapped app. ``handlers`` are the app's
    exception handlers (`edge.http.EXCEPTION_HANDLERS`): what a hot route raises is
    answered as Starlette would answer it on the other routes. ``after_write`` is awaited
    before a successful write's answer ends."""

    def __init__(
        self,
        app: ASGIApp,
        routes: Iterable[HotRoute],
        handlers: Mapping[type[Exception], ExceptionHandler],
        after_write: Callable[[], Awaitable[None]] | None = None,
    ):
        self.app = app
        self.routes = {route.path: route for route in routes}
        self.handlers = handlers
        self.after_write = after_write

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = self.routes.get(scope["path"])
            if route is not None and scope["method"] in route.methods:
                await self._call(route.endpoint, scope, receive, send)
                return
            if self.after_write is not None and scope["method"] not in _SAFE_METHODS:
                await self.app(scope, receive, _WriteAnswer(send, self.after_write))
                return
        await self.app(scope, receive, send)

    async def _call(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracked_send(message: MutableMapping[str, Any]) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await endpoint(scope, receive, tracked_send)
        except Exception as exc:
            handler = next(
                (self.handlers[kind] for kind in type(exc).__mro__ if kind in self.handlers), None
            )
            if handler is None or started:
                raise
            response = handler(Request(scope), exc)
            if response.status_code >= 500 and not isinstance(exc, SplitedgeError):
                log.exception("unexpected error on %s %s", scope["method"], scope["path"])
            await response(scope, receive, send)
