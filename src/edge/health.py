"""``/healthz`` (the process answers) and ``/readyz`` (its config KV is loaded)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Literal

import msgspec
from starlette.types import Receive, Send

from edge.http import JSON_HEADERS, send_response
from edge.ingest.flusher import FlusherStatus
from edge.kv import KVHolder
from edge.operation import Operation

__all__ = [
    "HEALTH_OPERATION",
    "READY_OPERATION",
    "Health",
    "HealthStatus",
    "ReadyStatus",
    "Readiness",
]


# A flusher rewrites its status every 0.5 s; older than this, none is running.
STALE_STATUS_SECONDS = 5.0


class HealthStatus(msgspec.Struct):
    """The answer of ``/healthz``."""

    status: Literal["ok"]


class ReadyStatus(msgspec.Struct):
    """The answer of ``/readyz``: whether this worker has its config (``status``), which
    worker it is (``pid``) and its config version, and ClickHouse as the flusher last saw
    it (its state: ``starting``, ``ok``, ``unavailable``, ``stopped``; ``no_flusher`` when
    none reported lately, ``unknown`` before any did) with the spool segments pending."""

    status: Literal["loading", "ready"]
    config_version: int | None
    sites: int
    pid: int
    clickhouse: str
    clickhouse_error: str
    spool_segments: int


HEALTH_OPERATION = Operation(
    summary="The process answers", data=HealthStatus, envelope=False, auth="none"
)
READY_OPERATION = Operation(
    summary="This worker has its config (200), or is still loading it (503)",
    data=ReadyStatus,
    envelope=False,
    statuses=(200, 503),
    auth="none",
)

_HEALTHY = msgspec.json.encode(HealthStatus("ok"))


class Health:
    """Always 200 while the process serves requests."""

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send_response(send, 200, JSON_HEADERS, _HEALTHY)


class Readiness:
    """200 once this worker has its config KV, 503 before. The answer names the worker
    (its pid) and its config version, so an operator can see every worker converge, and
    reports ClickHouse as the flusher last saw it. ClickHouse being down does not make the
    edge unready: events are spooled until it is back."""

    def __init__(self, holder: KVHolder, flusher_status: Callable[[], FlusherStatus | None]):
        self.holder = holder
        self.flusher_status = flusher_status

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        kv = self.holder.kv
        flusher = self.flusher_status()
        if flusher is None:
            clickhouse, error, segments = "unknown", "", 0
        else:
            stale = flusher.age() > STALE_STATUS_SECONDS
            clickhouse = "no_flusher" if stale else flusher.clickhouse
            error, segments = flusher.last_error, flusher.pending_segments
        ready = ReadyStatus(
            status="loading" if kv is None else "ready",
            config_version=None if kv is None else kv.version,
            sites=0 if kv is None else len(kv.by_public_key),
            pid=os.getpid(),
            clickhouse=clickhouse,
            clickhouse_error=error,
            spool_segments=segments,
        )
        body = msgspec.json.encode(ready)
        if kv is None:
            await send_response(send, 503, [*JSON_HEADERS, (b"retry-after", b"1")], body)
        else:
            await send_response(send, 200, JSON_HEADERS, body)
