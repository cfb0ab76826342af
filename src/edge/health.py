"""``/healthz`` (the process answers) and ``/readyz`` (its config KV is loaded)."""

from __future__ import annotations

import os
from typing import Any

import msgspec
from starlette.types import Receive, Send

from edge.http import JSON_HEADERS, send_response
from edge.kv import KVHolder

__all__ = ["Health", "Readiness"]


class _Ready(msgspec.Struct):
    status: str
    config_version: int | None
    sites: int
    pid: int


class Health:
    """Always 200 while the process serves requests."""

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send_response(send, 200, JSON_HEADERS, b'{"status":"ok"}')


class Readiness:
    """200 once this worker has its config KV, 503 before. The answer names the worker
    (its pid) and its config version, so an operator can see every worker converge."""

    def __init__(self, holder: KVHolder) -> None:
        self.holder = holder

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        kv = self.holder.kv
        if kv is None:
            body = msgspec.json.encode(_Ready("loading", None, 0, os.getpid()))
            await send_response(send, 503, [*JSON_HEADERS, (b"retry-after", b"1")], body)
            return
        body = msgspec.json.encode(_Ready("ready", kv.version, len(kv.by_public_key), os.getpid()))
        await send_response(send, 200, JSON_HEADERS, body)
