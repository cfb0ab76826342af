"""``/healthz`` (the process answers) and ``/readyz`` (its config KV is loaded)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Literal

import msgspec
from starlette.types import Receive, Scope, Send

from edge.http import JSON_HEADERS, send_response
from edge.ingest.status import FlusherStatus
from edge.kv import KVHolder
from edge.operation import Operation

__all__ = [
    "HEALTH_OPERATION",
    "READY_OPERATION",
    "Health",
    "HealthStatus",
    "ReadyState",
    "ReadyStatus",
    "Readiness",
    "SnapshotState",
]


# A flusher rewrites its status every 0.5 s, from a thread of its own whatever its inserts
# and backoffs are doing; older than this, none is running.
STALE_STATUS_SECONDS = 5.0
# Older than this, the worker is not ready: nothing takes its spool to ClickHouse (its
# server is gone). A wide margin over the above, so that a server stalled for a while
# (a slow disk, a swapping machine) is not taken out of a load balancer at once.
FLUSHER_GONE_SECONDS = 30.0


class HealthStatus(msgspec.Struct):
    """The answer of ``/healthz``."""

    status: Literal["ok"]


class SnapshotState(msgspec.Struct, frozen=True):
    """A remote edge node's config snapshot (`edge.node`): its version, the seconds since
    the control plane last confirmed it current (both null before the node has one),
    where the node's first one came from (``control``, or ``disk`` on a cold start while
    the control plane was away), and the last error pulling a newer one ("" when none)."""

    version: int | None
    age_seconds: float | None
    source: Literal["control", "disk"]
    error: str


ReadyState = Literal["loading", "ready", "unready"]
"""A worker's readiness: loading its config, ready, or unready (no flusher runs)."""


class ReadyStatus(msgspec.Struct, omit_defaults=True):
    """The answer of ``/readyz``: whether this worker has its config (``status``), which
    worker it is (``pid``), its config version and when it was loaded (Unix seconds),
    and ClickHouse as the flusher last saw it (its state: ``starting``, ``ok``,
    ``unavailable``, ``stopped``; ``no_flusher`` when none reported lately, ``unknown``
    before any did) with the spool segments pending. On
    a remote edge node, ``snapshot`` says how fresh its config is (on a relaying node the
    "ClickHouse" state is that of the relay to the control plane). While it loads, or
    when it is ``unready`` (the flusher stopped, or has not reported for
    `FLUSHER_GONE_SECONDS`),
    ``reason`` says why."""

    status: ReadyState
    config_version: int | None
    config_loaded_at: float | None
    sites: int
    pid: int
    clickhouse: str
    clickhouse_error: str
    spool_segments: int
    snapshot: SnapshotState | None = None
    reason: str = ""


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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_response(send, 200, JSON_HEADERS, _HEALTHY)


def _loading_reason(snapshot: SnapshotState | None) -> str:
    if snapshot is not None and snapshot.version is None:
        return (
            "no config snapshot yet: none on disk and none pulled from the control plane "
            f"({snapshot.error or 'first pull in progress'}); check --control-url and the "
            "edge token"
        )
    return "loading the config; retry in a second"


_GONE_REASON = (
    f"no flusher runs (it stopped, or has not reported for over {FLUSHER_GONE_SECONDS:g} "
    "s): nothing takes this worker's events to ClickHouse; restart the server"
)


class Readiness:
    """200 once this worker has its config KV, 503 before. The answer names the worker
    (its pid) and its config version, so an operator can see every worker converge, and
    reports ClickHouse as the flusher last saw it. ClickHouse being down does not make the
    edge unready: events are spooled until it is back."""

    def __init__(
        self,
        holder: KVHolder,
        flusher_status: Callable[[], FlusherStatus | None],
        snapshot_state: Callable[[], SnapshotState | None] | None = None,
    ) -> None:
        self.holder = holder
        self.flusher_status = flusher_status
        self.snapshot_state = snapshot_state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kv = self.holder.kv
        flusher = self.flusher_status()
        gone = False
        if flusher is None:
            clickhouse, error, segments = "unknown", "", 0
        else:
            stale = flusher.age() > STALE_STATUS_SECONDS
            # Silent for long (the server is gone) or stopped (its thread ended).
            gone = flusher.age() > FLUSHER_GONE_SECONDS or flusher.clickhouse == "stopped"
            clickhouse = "no_flusher" if stale else flusher.clickhouse
            error, segments = flusher.last_error, flusher.pending_segments
        snapshot = None if self.snapshot_state is None else self.snapshot_state()
        status: ReadyState = "ready"
        reason = ""
        if kv is None:
            status, reason = "loading", _loading_reason(snapshot)
        elif gone:
            status, reason = "unready", _GONE_REASON
        ready = ReadyStatus(
            status=status,
            config_version=None if kv is None else kv.version,
            config_loaded_at=None if kv is None else kv.built_at,
            sites=0 if kv is None else len(kv.by_public_key),
            pid=os.getpid(),
            clickhouse=clickhouse,
            clickhouse_error=error,
            spool_segments=segments,
            snapshot=snapshot,
            reason=reason,
        )
        body = msgspec.json.encode(ready)
        if status != "ready":
            await send_response(send, 503, [*JSON_HEADERS, (b"retry-after", b"1")], body)
        else:
            await send_response(send, 200, JSON_HEADERS, body)
