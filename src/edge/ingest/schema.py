"""Wire shapes of the events the edge ingests, and the Arrow schema of one event row.

Two sources write one events table:

- **browser events** (``POST /v1/collect``), sent by the snippet with the site's public
  key: exposures, pageviews, goal conversions, custom events and runtime errors;
- **agent task events** (``POST /v1/events``), ClawTrait's ``trackTask`` shape with an
  API key, plus the experiment fields that tie a task to a variant.

Every row carries the workspace and the server's receive time; the client's fields are
kept as sent, validated for type and size.

The Structs are ``gc=False``: they hold only scalars, strings and lists of each other, so
they can never be part of a reference cycle, and events waiting for their group commit
would otherwise be scanned again and again by the cyclic garbage collector.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
import pyarrow as pa
from msgspec import Meta

__all__ = [
    "EVENT_SCHEMA",
    "MAX_EVENTS_PER_BATCH",
    "AgentTaskEvent",
    "BrowserEvent",
    "CollectRequest",
]

MAX_EVENTS_PER_BATCH = 500

Id = Annotated[str, Meta(min_length=1, max_length=128)]
ShortText = Annotated[str, Meta(max_length=256)]
Pathname = Annotated[str, Meta(max_length=2048)]
# Milliseconds since the epoch, between 2000-01-01 and 2100-01-01.
EpochMillis = Annotated[int, Meta(ge=946_684_800_000, lt=4_102_444_800_000)]
Amount = Annotated[float, Meta(ge=-1e15, le=1e15)]
# "error": a change the snippet could not apply, reported once per page (name = message).
BrowserEventType = Literal["exposure", "pageview", "goal", "custom", "error"]
Device = Literal["desktop", "tablet", "mobile"]
Outcome = Literal["success", "failure", "partial"]
Metadata = Annotated[dict[ShortText, ShortText | int | float | bool | None], Meta(max_length=64)]


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
    forbid_unknown_fields=True,
    rename={"agent_id": "agentId", "duration_ms": "durationMs"},
    gc=False,
):
    """One agent task: ClawTrait's trackTask fields as it spells them (``agentId``,
    ``durationMs``), and the experiment fields in the snake_case of the rest of the API.
    ``session_id`` is the unit the experiment assigned (an agent session or run)."""

    agent_id: Id
    task: ShortText
    outcome: Outcome
    cost: Amount = 0.0
    duration_ms: Annotated[float, Meta(ge=0, le=1e12)] = 0.0
    metadata: Metadata = {}
    turns: Annotated[int, Meta(ge=0, le=1_000_000)] | None = None
    experiment_id: Annotated[str, Meta(max_length=128)] = ""
    variant_id: Annotated[str, Meta(max_length=128)] = ""
    session_id: Annotated[str, Meta(max_length=128)] = ""
    event_id: Annotated[str, Meta(max_length=128)] = ""
    ts: EpochMillis | None = None


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
