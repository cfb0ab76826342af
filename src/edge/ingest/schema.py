"""Wire shapes of the events the edge ingests, and the Arrow schema of one event row.

Two sources write one events table:

- **browser events** (``POST /v1/collect``), sent by the snippet with the site's public
  key: exposures, pageviews, goal conversions, custom events and runtime errors;
- **agent task events** (``POST /v1/events``), ClawTrait's ``trackTask`` shape with an
  API key, plus the experiment fields that tie a task to a variant.

Every row carries the workspace and the server's receive time; the client's fields are
kept as sent, validated for type and size.

The Structs are ``gc=False``: they hold only scalars, strings, lists of each other and
decoded JSON (``metadata``, a tree), so they can never be part of a reference cycle, and
events waiting for their group commit would otherwise be scanned again and again by the
cyclic garbage collector.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec
import pyarrow as pa
from msgspec import Meta

__all__ = [
    "EVENT_SCHEMA",
    "MAX_EVENTS_PER_BATCH",
    "MAX_METADATA_BYTES",
    "MAX_METADATA_DEPTH",
    "AgentTaskEvent",
    "BrowserEvent",
    "CollectRequest",
    "StrictAgentTaskEvent",
]

MAX_EVENTS_PER_BATCH = 500

Id = Annotated[str, Meta(min_length=1, max_length=128)]
ShortText = Annotated[str, Meta(max_length=256)]
Pathname = Annotated[str, Meta(max_length=2048)]
# Milliseconds since the epoch, between 2000-01-01 and 2100-01-01.
_MIN_MILLIS, _MAX_MILLIS = 946_684_800_000, 4_102_444_800_000
EpochMillis = Annotated[int, Meta(ge=_MIN_MILLIS, lt=_MAX_MILLIS)]
Amount = Annotated[float, Meta(ge=-1e15, le=1e15)]
# A task's cost is never negative: one negative cost turns an agent's total and every
# cost comparison of its experiments into nonsense. JSON has no NaN or infinity, and
# msgspec refuses a number too large for a float, so the bound is the whole check.
Cost = Annotated[float, Meta(ge=0, le=1e15)]
# "error": a change the snippet could not apply, reported once per page (name = message).
BrowserEventType = Literal["exposure", "pageview", "goal", "custom", "error"]
Device = Literal["desktop", "tablet", "mobile"]
Outcome = Literal["success", "failure", "partial"]
Metadata = Annotated[dict[ShortText, Any], Meta(max_length=64)]

MAX_METADATA_BYTES = 8192
"""The largest ``metadata`` of an agent event, as compact JSON (UTF-8 bytes)."""
MAX_METADATA_DEPTH = 8
"""How deep ``metadata`` may nest: the metadata object itself is level 1."""

_encode_json = msgspec.json.encode
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def _epoch_millis(ts: datetime) -> int:
    """An ISO-8601 ``ts`` as epoch milliseconds, a time without an offset read as UTC;
    exact integer arithmetic, so the ISO and millisecond forms of one instant are equal
    (the event-id dedup files an id by the second of ``ts``)."""
    millis = (ts.replace(tzinfo=ts.tzinfo or UTC) - _EPOCH) // _MILLISECOND
    if not _MIN_MILLIS <= millis < _MAX_MILLIS:
        raise ValueError("ts must be between 2000-01-01 and 2100-01-01")
    return millis


def _depth(value: Any) -> int:
    """How deep a JSON value nests (a scalar is 0, ``{}`` is 1)."""
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def _check_metadata(metadata: dict[str, Any], encoded: bytes) -> None:
    """Refuse ``metadata`` (``encoded`` as JSON) over `MAX_METADATA_BYTES` or
    `MAX_METADATA_DEPTH` deep."""
    if len(encoded) > MAX_METADATA_BYTES:
        raise ValueError(
            f"metadata is {len(encoded)} bytes as JSON, over the limit of "
            f"{MAX_METADATA_BYTES}; send less context per event"
        )
    if _depth(metadata) > MAX_METADATA_DEPTH:
        raise ValueError(f"metadata nests deeper than {MAX_METADATA_DEPTH} levels; flatten it")


class BrowserEvent(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """One event from the snippet. ``event_id`` is made by the client, so a beacon that
    is sent twice is recognisably the same event."""

    event_id: Id
    type: BrowserEventType
    visitor_id: Id
    ts: EpochMillis
    session_id: Annotated[str, Meta(max_length=128)] = ""
    experiment_id: Annotated[str, Meta(max_length=128)] = ""
    variant_id: Annotated[str, Meta(max_length=128)] = ""
    goal_id: Annotated[str, Meta(max_length=128)] = ""
    name: ShortText = ""
    value: Amount | None = None
    pathname: Pathname = ""
    device: Device | Literal[""] = ""


class CollectRequest(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """Body of ``POST /v1/collect``: the site's public key and a batch of events."""

    public_key: Annotated[str, Meta(min_length=1, max_length=64)]
    events: Annotated[list[BrowserEvent], Meta(min_length=1, max_length=MAX_EVENTS_PER_BATCH)]


class AgentTaskEvent(
    msgspec.Struct,
    rename={"agent_id": "agentId", "duration_ms": "durationMs"},
    gc=False,
):
    """One agent task: ClawTrait's trackTask fields as it spells them (``agentId``,
    ``durationMs``), and the experiment fields in the snake_case of the rest of the API.
    ``session_id`` is the unit the experiment assigned (an agent session or run).

    ``ts`` is epoch milliseconds or an ISO-8601 (RFC 3339) string, with an offset or
    ``Z``, or without one meaning UTC; once decoded it is always epoch milliseconds.
    ``metadata`` is any JSON object up to `MAX_METADATA_BYTES` and `MAX_METADATA_DEPTH`.
    A field this server does not know is ignored (a newer SDK's events are never refused
    for it); `StrictAgentTaskEvent` is the decoder's fast path that notices one."""

    agent_id: Id
    task: ShortText
    outcome: Outcome
    cost: Cost = 0.0
    duration_ms: Annotated[float, Meta(ge=0, le=1e12)] = 0.0
    metadata: Metadata = {}
    turns: Annotated[int, Meta(ge=0, le=1_000_000)] | None = None
    experiment_id: Annotated[str, Meta(max_length=128)] = ""
    variant_id: Annotated[str, Meta(max_length=128)] = ""
    session_id: Annotated[str, Meta(max_length=128)] = ""
    event_id: Annotated[str, Meta(max_length=128)] = ""
    ts: EpochMillis | datetime | None = None

    def __post_init__(self) -> None:
        # msgspec reports a ValueError here as a validation error at this event's path.
        if type(self.ts) is datetime:
            self.ts = _epoch_millis(self.ts)
        if self.metadata:
            encoded = _encode_json(self.metadata)
            # Each level opens a bracket, so metadata with few of them (in its text, in
            # strings too: counted in C) cannot be too deep, and is not walked.
            brackets = encoded.count(b"{") + encoded.count(b"[")
            if len(encoded) > MAX_METADATA_BYTES or brackets > MAX_METADATA_DEPTH:
                _check_metadata(self.metadata, encoded)


class StrictAgentTaskEvent(AgentTaskEvent, forbid_unknown_fields=True):
    """An `AgentTaskEvent` with no unknown field: decoded first, so that the usual body
    costs one decode and only a body with an unknown field is decoded again to count
    them (`edge.ingest.body.decode_agent_events`)."""


# One row of the events table, web and agent alike. A string a row does not have is "";
# only measures may be null; an agent event without its own clock gets the receive time.
# The columns the server fills per request (workspace, site) are dictionary-encoded: one
# dictionary entry per request instead of a string per event. The per-event strings are
# plain: converting Python strings into a dictionary column costs the worker about twice
# as much, and ClickHouse stores them as LowCardinality either way (analytics.warehouse).
_dict_string = pa.dictionary(pa.int32(), pa.string())


def _field(name: str, kind: pa.DataType, nullable: bool = False) -> pa.Field:
    return pa.field(name, kind, nullable=nullable)


EVENT_SCHEMA = pa.schema(
    [
        _field("event_id", pa.string()),
        _field("kind", pa.string()),
        _field("workspace_id", _dict_string),
        _field("site_id", _dict_string),
        _field("experiment_id", pa.string()),
        _field("variant_id", pa.string()),
        _field("unit_id", pa.string()),
        _field("session_id", pa.string()),
        _field("goal_id", pa.string()),
        _field("name", pa.string()),
        _field("value", pa.float64(), nullable=True),
        _field("pathname", pa.string()),
        _field("device", pa.string()),
        _field("agent_id", pa.string()),
        _field("outcome", pa.string()),
        _field("cost", pa.float64(), nullable=True),
        _field("duration_ms", pa.float64(), nullable=True),
        _field("turns", pa.int32(), nullable=True),
        _field("metadata", pa.string()),
        _field("client_ts", pa.timestamp("ms", tz="UTC")),
        _field("received_at", pa.timestamp("ms", tz="UTC")),
    ]
)
