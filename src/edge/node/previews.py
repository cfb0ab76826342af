"""``GET /s/{public_key}/preview/{token}.json`` on an edge node: relayed to the control
plane.

A snippet loaded from a node fetches a preview config from the node (`edge.snippet.
PREVIEW_PATH`), but the node's snapshot carries only what every visitor may see, never a
draft, and the token is checked with a secret only the control plane holds. So the node
passes the request on to ``--control-url`` and answers what the control plane answers,
status and body: a preview behaves the same through a node, a draft stays out of every
snapshot, and, as on the control plane, nothing is sent and nothing is counted. A
preview is a reviewer's request, rare: one relay per page load is no hot path. Without
the control plane the answer is a 502 saying so, and the snippet shows the page
unchanged.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from edge.http import error_body, send_response
from edge.snippet import PREVIEW_HEADERS, PREVIEW_PATH

__all__ = ["PreviewRelay"]

log = logging.getLogger("splitedge.node")

_TIMEOUT = 5.0
_RELAYED = (200, 404)


class PreviewRelay:
    """The node's preview route: relays each request to the control plane at
    ``control_url`` (its worker's own HTTP client, opened by `lifespan`)."""

    def __init__(self, control_url: str) -> None:
        self.control_url = control_url.rstrip("/")
        self._client: httpx.AsyncClient | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """The worker's client to the control plane, for as long as the worker serves."""
        async with httpx.AsyncClient(timeout=_TIMEOUT) as client:
            self._client = client
            try:
                yield
            finally:
                self._client = None

    def route(self) -> Route:
        return Route(PREVIEW_PATH, self, methods=["GET"])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = scope["path_params"]
        path = PREVIEW_PATH.format(
            public_key=quote(params["public_key"], safe=""), token=quote(params["token"], safe="")
        )
        assert self._client is not None, "the relay serves inside its lifespan"
        try:
            answer = await self._client.get(self.control_url + path)
        except httpx.HTTPError as exc:
            log.warning("preview relay to %s failed: %r", self.control_url, exc)
            answer = None
        if answer is None or answer.status_code not in _RELAYED:
            body = error_body(
                "control_plane_unavailable",
                "this edge node relays previews to its control plane, which did not answer; "
                "try again in a moment",
            )
            await send_response(send, 502, PREVIEW_HEADERS, body)
            return
        await send_response(send, answer.status_code, PREVIEW_HEADERS, answer.content)
