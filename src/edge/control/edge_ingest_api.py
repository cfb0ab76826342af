"""``POST /v1/edge/segments``: a spool segment an edge node relays (`edge.ingest.relay`),
stored durably in this control plane's spool, which its flusher inserts into ClickHouse.

The request
    An edge token (``Authorization: Bearer et_...``, `edge.control.edge_tokens`), the
    relay token as ``?token=`` (`edge.ingest.relay.RELAY_TOKEN_PATTERN`), and as the body
    one Arrow IPC stream of events with `edge.ingest.schema.EVENT_SCHEMA`, at most
    `MAX_SEGMENT_BODY` bytes (413 past it). A body that does not decode, has another
    schema, holds a null where its column has none, or invalid data (e.g. a string that
    is not UTF-8) is a 400 that says what is wrong: once stored, the flusher would retry
    it forever.

Storage
    The body is written as it came to a temporary ``.partial`` file (the flusher never
    reads one: `edge.ingest.spool.PARTIAL_SUFFIX`), fsynced, linked as the finished
    segment ``<token>.arrow`` and the directory fsynced: then 201. A link, unlike a
    rename, never replaces a file, so two relays of one segment racing store it once; a
    segment already there is a 200 (``duplicate``). The flusher inserts the segment with
    its name, the relay token, as ``insert_deduplication_token``: a relay retried after
    the flusher had inserted and deleted it is stored again, and ClickHouse drops the
    second insert. Relayed names begin like the workers' segment names (the time first),
    so the flusher takes them oldest first among its own. Over the spool's disk cap the
    answer is 503 with Retry-After, as for the workers' events
    (`edge.ingest.spool.SpoolFull`). The ``.partial`` file of a worker killed mid-write
    is removed, once stale, by the flusher's orphan sweep
    (`edge.ingest.segments.recover_orphans`).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import uuid
from pathlib import Path
from typing import Annotated

import msgspec
import pyarrow as pa
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from edge.control.api import query_params
from edge.control.edge_tokens import authenticate_edge
from edge.control.services import Services
from edge.errors import InvalidRequest, ServiceUnavailable
from edge.http import JSON_HEADERS, read_body, send_response
from edge.ingest.relay import (
    RELAY_TOKEN,
    RELAY_TOKEN_PATTERN,
    SEGMENTS_PATH,
    STREAM_MEDIA_TYPE,
)
from edge.ingest.schema import EVENT_SCHEMA
from edge.ingest.spool import (
    DEFAULT_MAX_SEGMENT_BYTES,
    PARTIAL_SUFFIX,
    READY_SUFFIX,
    SpoolFull,
    fsync_directory,
    spool_usage,
)
from edge.operation import DocumentedRoute, Operation

log = logging.getLogger("splitedge.edge_ingest")

__all__ = [
    "MAX_SEGMENT_BODY",
    "SEGMENTS_OPERATION",
    "EdgeSegmentsEndpoint",
    "RelayedSegment",
    "SegmentQuery",
    "routes",
]

MAX_SEGMENT_BODY = 2 * DEFAULT_MAX_SEGMENT_BYTES
"""The largest relayed segment, in bytes: a spool segment is finished once it passes
16 MiB, so it holds at most that and one batch."""

_TMP_PREFIX = ".relay-"


class SegmentQuery(msgspec.Struct, frozen=True):
    """The query of ``POST /v1/edge/segments``."""

    token: Annotated[
        str,
        msgspec.Meta(
            pattern=RELAY_TOKEN_PATTERN,
            description="The segment's relay token: its spool name and the edge node's id, "
            "{time_ns:020d}-{pid}-{seq:06d}-{16 hex digits}. The same token is the same "
            "segment: it is stored and inserted once.",
        ),
    ]


class RelayedSegment(msgspec.Struct, frozen=True):
    """A relayed segment, stored: its token and how many events it holds. ``duplicate``
    is true when it was already in the spool (a retried relay; the answer is 200)."""

    token: str
    rows: int
    duplicate: bool = False


class _Stored(msgspec.Struct):
    data: RelayedSegment


SEGMENTS_OPERATION = Operation(
    summary="An edge node's spool segment, relayed for this control plane to insert",
    description="Takes an edge token (Authorization: Bearer et_..., from `splitedge "
    "edge-tokens create`), not a workspace API key. The body is one Arrow IPC stream "
    f"({STREAM_MEDIA_TYPE}) of events with the ingest's event schema, at most "
    f"{MAX_SEGMENT_BODY} bytes. The segment is stored durably in the spool before the "
    "201, and inserted into ClickHouse exactly once: relaying the same token again is a 200. "
    "503 with Retry-After while the spool is over its disk cap.",
    data=RelayedSegment,
    statuses=(200, 201),
    query=SegmentQuery,
    errors=(400, 401, 403, 413, 503),
)


def _token(scope: Scope) -> str:
    params = query_params(scope)
    if "token" not in params:
        raise InvalidRequest(
            "the query has no token; send ?token= with the segment's relay token "
            "({time_ns:020d}-{pid}-{seq:06d}-{node id})"
        )
    token = params["token"]
    if RELAY_TOKEN.fullmatch(token) is None:
        raise InvalidRequest(
            f"the token {token[:100]!r} is not a relay token: it must be "
            "{time_ns:020d}-{pid}-{seq:06d}-{16 lowercase hex digits of the node id}"
        )
    return token


def _described(field: pa.Field) -> str:
    return f"{str(field.type)[:100]}{'' if field.nullable else ' not null'}"


def _schema_difference(schema: pa.Schema) -> str:
    expected = {field.name: field for field in EVENT_SCHEMA}
    got = {field.name: field for field in schema}
    problems: list[str] = []
    missing = [name for name in expected if name not in got]
    if missing:
        problems.append("missing columns: " + ", ".join(missing))
    unknown = [name[:64] for name in got if name not in expected]
    if unknown:
        problems.append("unknown columns: " + ", ".join(unknown[:10]))
    for name, field in expected.items():
        found = got.get(name)
        if found is not None and not found.equals(field):
            problems.append(f"column {name} is {_described(found)}, not {_described(field)}")
    return "; ".join(problems) or "its columns are in another order"


def segment_rows(body: bytes) -> int:
    """The events in a relayed body; 400 saying what is wrong when it is not a stream of
    valid events with the events schema."""
    if not body:
        raise InvalidRequest(f"the body is empty; send the segment as one {STREAM_MEDIA_TYPE}")
    try:
        table = pa.ipc.open_stream(pa.py_buffer(body)).read_all()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InvalidRequest(
            f"the body is not a whole Arrow IPC stream ({str(exc)[:200]}); send the segment "
            f"as one {STREAM_MEDIA_TYPE}"
        ) from None
    if not table.schema.equals(EVENT_SCHEMA):
        raise InvalidRequest(
            f"the stream's schema is not the events schema: {_schema_difference(table.schema)}; "
            "relay from an edge node of this control plane's version"
        )
    for field in EVENT_SCHEMA:
        nulls = table.column(field.name).null_count
        if not field.nullable and nulls:
            raise InvalidRequest(f"column {field.name} has {nulls} nulls; it may have none")
    try:
        table.validate(full=True)
    except (pa.ArrowException, ValueError) as exc:
        raise InvalidRequest(f"the stream holds invalid data: {str(exc)[:200]}") from None
    return int(table.num_rows)


def store_segment(spool_dir: Path, token: str, body: bytes, disk_cap_bytes: int) -> bool:
    """Write ``body`` durably as the finished segment ``<token>.arrow`` of ``spool_dir``;
    False (and nothing written) when it is there already. `SpoolFull` over the cap."""
    final = spool_dir / (token + READY_SUFFIX)
    if final.exists():
        return False
    used = spool_usage(spool_dir).bytes
    if used + len(body) > disk_cap_bytes:
        log.warning("spool %s is full: %d bytes, cap %d", spool_dir, used, disk_cap_bytes)
        raise SpoolFull(
            "the event spool is over its disk cap with this segment: ClickHouse is not "
            "taking events as fast as they come. The relay retries after Retry-After; "
            "operators: restore ClickHouse or raise --spool-cap-mb."
        )
    tmp = spool_dir / f"{_TMP_PREFIX}{token}-{uuid.uuid4().hex}{PARTIAL_SUFFIX}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(body)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, final)
        except FileExistsError:  # a concurrent relay of the same segment won
            return False
        fsync_directory(spool_dir)
        return True
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            log.warning("the disk of spool %s is full", spool_dir)
            raise SpoolFull(
                "the disk of the event spool is full; the relay retries later"
            ) from None
        log.error("spool %s cannot write: %s", spool_dir, exc)
        raise ServiceUnavailable(
            "the event spool cannot write (see the server log); retry"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)


class EdgeSegmentsEndpoint:
    """``POST /v1/edge/segments``; see the module docstring."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.spool_dir = services.settings.spool_dir.absolute()
        self.disk_cap_bytes = services.settings.spool_cap_mb << 20

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await authenticate_edge(self.services, scope)
        token = _token(scope)
        body = await read_body(scope, receive, MAX_SEGMENT_BODY)
        rows, created = await asyncio.to_thread(self._accept, token, body)
        answer = _Stored(RelayedSegment(token=token, rows=rows, duplicate=not created))
        await send_response(
            send, 201 if created else 200, JSON_HEADERS, msgspec.json.encode(answer)
        )

    def _accept(self, token: str, body: bytes) -> tuple[int, bool]:
        rows = segment_rows(body)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        return rows, store_segment(self.spool_dir, token, body, self.disk_cap_bytes)


def routes(services: Services) -> list[Route]:
    """The relay's route, storing into the settings' spool up to its cap in all."""
    endpoint = EdgeSegmentsEndpoint(services)
    return [DocumentedRoute(SEGMENTS_PATH, endpoint, {"POST": SEGMENTS_OPERATION})]
