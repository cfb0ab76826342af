"""``GET /v1/edge/snapshot``: the served config, for remote edge nodes (``splitedge
edge``, `edge.node`), authenticated by an edge token (`edge.control.edge_tokens`).

The answer is the whole `edge.config.ConfigSnapshot` as JSON, with ``ETag: "<version>"``.
A node sends the version it has as ``If-None-Match``: the same version is a 304 without a
body. With ``wait=N`` (seconds, up to 60) a request for the version the node already has
is held until the store's config version changes (then 200 at once) or the wait ends
(304): a long poll, so a change reaches every node within a poll interval of the store
(`POLL_SECONDS`) instead of the node's own polling period. The encoded snapshot is kept
per version, so N nodes cost one encoding per change.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import msgspec
from starlette.types import Receive, Scope, Send

from edge.config import ConfigSnapshot
from edge.control.api import int_param, query_params
from edge.control.edge_tokens import authenticate_edge
from edge.control.services import Services
from edge.control.snapshot import StoreSource
from edge.http import header, send_response
from edge.operation import DocumentedRoute, Operation

__all__ = ["MAX_WAIT_SECONDS", "POLL_SECONDS", "SnapshotEndpoint", "SnapshotQuery", "routes"]

MAX_WAIT_SECONDS = 60
POLL_SECONDS = 0.05
"""How often a held request looks at the store's version (one indexed row)."""


class SnapshotQuery(msgspec.Struct, frozen=True):
    """The query of ``GET /v1/edge/snapshot``."""

    wait: Annotated[
        int,
        msgspec.Meta(
            ge=0,
            le=MAX_WAIT_SECONDS,
            description="Seconds to hold a request whose If-None-Match is the current "
            "version, until the config changes (long poll).",
        ),
    ] = 0


SNAPSHOT_OPERATION = Operation(
    summary="The config snapshot edge nodes serve (edge token)",
    description="Authorization: Bearer et_... (`splitedge edge-tokens create`). ETag is the "
    "config version; If-None-Match with it is a 304; wait=N long-polls for a change.",
    data=ConfigSnapshot,
    envelope=False,
    statuses=(200, 304),
    query=SnapshotQuery,
    errors=(403,),
)

_JSON = b"application/json"


def _etag(version: int) -> bytes:
    return b'"%d"' % version


class SnapshotEndpoint:
    """The route's endpoint, in one worker: its own store connection (opened on first
    use) and the encoded snapshot of the latest version it served."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._source: StoreSource | None = None
        self._encoded: tuple[int, bytes] | None = None

    def _store(self) -> StoreSource:
        if self._source is None:
            self._source = StoreSource(self.services.store_path)
        return self._source

    def _encode(self) -> tuple[int, bytes]:
        snapshot = self._store().snapshot()
        return snapshot.version, msgspec.json.encode(snapshot)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await authenticate_edge(self.services, scope)
        wait = int_param(query_params(scope), "wait", 0, 0, MAX_WAIT_SECONDS)
        known = header(scope, b"if-none-match")
        source = self._store()
        version = source.version()
        deadline = time.monotonic() + wait
        while known == _etag(version) and time.monotonic() < deadline:
            await asyncio.sleep(POLL_SECONDS)
            version = source.version()
        if known == _etag(version):
            headers = [(b"etag", _etag(version)), (b"cache-control", b"no-store")]
            await send_response(send, 304, headers)
            return
        if self._encoded is None or self._encoded[0] != version:
            self._encoded = await asyncio.to_thread(self._encode)
        served, body = self._encoded
        headers = [
            (b"content-type", _JSON),
            (b"etag", _etag(served)),
            (b"cache-control", b"no-store"),
        ]
        await send_response(send, 200, headers, body)


def routes(services: Services) -> list[DocumentedRoute]:
    """The route, over the worker's store."""
    return [
        DocumentedRoute(
            "/v1/edge/snapshot", SnapshotEndpoint(services), {"GET": SNAPSHOT_OPERATION}
        )
    ]
