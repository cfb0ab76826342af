"""REST requests run in this process, as a caller already authenticated: what the MCP
gateway's tools (`edge.control.mcp_gateway`) and the console's pages
(`edge.control.console`) do instead of reimplementing a route.

The request reaches the REST routes' app with the caller's `Auth` in its scope
(`edge.control.api.AUTH_SCOPE_KEY`), so the route answers exactly what the key's workspace
may see, through the same authorisation, validation, credits, audit and webhooks as over
HTTP, without authenticating or counting the request a second time. It carries the outer
request's host, scheme, addresses and forwarded headers, so links in answers point where
the caller reached us.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import msgspec
from starlette.types import ASGIApp, Message, Scope

from edge.control.api import AUTH_SCOPE_KEY, TOOL_SCOPE_KEY, Auth
from edge.errors import SplitedgeError
from edge.http import FORWARDED_HEADERS

__all__ = ["InProcessRest", "RestAnswer", "RestFailure"]


class RestFailure(SplitedgeError):
    """A REST request answered an error: its status and the route's error object
    (``{code, message, ...}``, with any fields the route added, e.g. ``existing_site``)."""

    code = "rest_failed"

    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(str(error.get("message", "")))
        self.status = status
        self.error = error


class RestAnswer(msgspec.Struct, frozen=True):
    """A success answer: its status, ``data`` and ``meta`` (a list's ``total``, ...);
    both None for an answer without a body (204)."""

    status: int
    data: Any
    meta: Any = None


class _ErrorAnswer(msgspec.Struct):
    error: dict[str, Any]


class _Envelope(msgspec.Struct):
    data: Any
    meta: Any = None


_error_decoder = msgspec.json.Decoder(_ErrorAnswer)
_envelope_decoder = msgspec.json.Decoder(_Envelope)


class InProcessRest:
    """Runs REST requests on ``app`` (the REST routes) for the caller of ``outer`` (the
    request being answered) as ``auth``, always in splitedge's shapes whatever the key's
    flavour (docs/compatibility.md). ``tool``: the answers' next-step texts name MCP tools
    rather than routes (`edge.control.api.TOOL_SCOPE_KEY`)."""

    def __init__(self, app: ASGIApp, outer: Scope, auth: Auth, *, tool: bool = False) -> None:
        self.app = app
        self.outer = outer
        self.auth = msgspec.structs.replace(auth, flavour="splitedge")
        self.tool = tool

    async def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
    ) -> Any:
        """The ``data`` of the answer; `RestFailure` for an error answer."""
        return (await self.answer(method, path, body, query)).data

    async def answer(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
    ) -> RestAnswer:
        """The whole success answer (status, ``data``, ``meta``); `RestFailure` for an
        error answer."""
        payload = b"" if body is None else msgspec.json.encode(body)
        host = next((v for k, v in self.outer["headers"] if k == b"host"), b"localhost")
        scope: Scope = {
            "type": "http",
            "asgi": self.outer.get("asgi", {"version": "3.0"}),
            "http_version": "1.1",
            "method": method,
            "scheme": self.outer.get("scheme", "http"),
            "server": self.outer.get("server"),
            "client": self.outer.get("client"),
            "root_path": "",
            "path": path,
            "raw_path": path.encode(),
            "query_string": urlencode(query or {}, doseq=True).encode(),
            "headers": [
                (b"host", host),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                # So the URLs in answers name the origin the caller reached.
                *((k, v) for k, v in self.outer["headers"] if k in FORWARDED_HEADERS),
            ],
            AUTH_SCOPE_KEY: self.auth,
        }
        if self.tool:
            scope[TOOL_SCOPE_KEY] = True
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": payload, "more_body": False}

        status = 500
        chunks: list[bytes] = []

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        raw = b"".join(chunks)
        if status >= 400:
            try:
                error = _error_decoder.decode(raw).error
            except msgspec.DecodeError:
                error = {"code": "error", "message": raw.decode("utf-8", "replace")[:500]}
            raise RestFailure(status, error)
        if not raw:
            return RestAnswer(status, None)
        envelope = _envelope_decoder.decode(raw)
        return RestAnswer(status, envelope.data, envelope.meta)
