"""The exact-path dispatch ahead of Starlette: the same answers, errors included."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import Receive, Send

from edge.errors import ServiceUnavailable
from edge.hot_routes import HotRoute, HotRoutes
from edge.http import EXCEPTION_HANDLERS, send_response

calls: list[str] = []


async def ok(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    calls.append("hot")
    await send_response(send, 200, [(b"content-type", b"text/plain")], b"hot")


async def unavailable(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    raise ServiceUnavailable("not ready yet; retry")


async def broken(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    raise KeyError("bug")


def app() -> HotRoutes:
    hot = [
        HotRoute("/hot", ["POST"], ok),
        HotRoute("/full", ["POST"], unavailable),
        HotRoute("/bug", ["POST"], broken),
    ]
    starlette = Starlette(
        routes=[
            Route("/hot", ok, methods=["POST"]),
            Route("/other", lambda request: PlainTextResponse("starlette")),
        ]
    )
    return HotRoutes(starlette, hot, EXCEPTION_HANDLERS)


def request(method: str, path: str) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app(), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
            return await client.request(method, path)

    return asyncio.run(send())


def test_hot_paths_and_the_rest() -> None:
    calls.clear()
    assert request("POST", "/hot").text == "hot"
    assert calls == ["hot"]
    assert request("GET", "/other").text == "starlette"
    # A method the hot route does not answer goes to Starlette, which answers 405.
    assert request("GET", "/hot").status_code == 405


def test_errors_are_answered_like_the_app_handlers() -> None:
    full = request("POST", "/full")
    assert full.status_code == 503 and full.headers["retry-after"] == "1"
    assert full.json()["error"] == {"code": "not_ready", "message": "not ready yet; retry"}
    bug = request("POST", "/bug")
    assert bug.status_code == 500
    assert bug.json() == {
        "error": {"code": "internal", "message": "an unexpected error occurred; it has been logged"}
    }
