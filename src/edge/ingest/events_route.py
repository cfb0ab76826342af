"""``POST /v1/events``: agent task events (ClawTrait's trackTask), one or a batch,
authenticated by a workspace API key; answered 201 with the event ids.

An event naming an experiment must name a running experiment of the key's workspace
(another workspace's is unknown: 404), and a variant of it; or one that ended (completed,
deployed or archived) less than ``late_event_grace`` ago (`edge.settings.Settings`, 24 h
by default): a late event of a session that was running then. It is stored, and counts in
no result: an ended experiment's results are those of its run, up to its end.
"""

from __future__ import annotations

import time
import uuid

import msgspec
from starlette.types import Receive, Scope, Send

from edge.bearer import KeyLedger, require_principal
from edge.errors import InvalidRequest, NotFound
from edge.http import JSON_HEADERS, send_response
from edge.ingest.body import AGENT_EVENTS_DECODER, decode_agent_events, read_event_body
from edge.ingest.buffer import AgentChunk, EventBuffer
from edge.ingest.counters import IngestCounters
from edge.ingest.schema import AgentTaskEvent
from edge.kv import CatchUp, ConfigKV, KVHolder
from edge.operation import Operation

__all__ = ["EVENTS_OPERATION", "MAX_EVENTS_BODY", "CreatedEvent", "CreatedEvents", "EventsEndpoint"]

MAX_EVENTS_BODY = 1 << 20


class CreatedEvent(msgspec.Struct):
    """The answer to one event: its id (the one sent, or one made for it)."""

    id: str


class CreatedEvents(msgspec.Struct):
    """The answer to a batch: the events' ids, in the order sent."""

    ids: list[str]


class _Created(msgspec.Struct):
    data: CreatedEvent | CreatedEvents


EVENTS_OPERATION = Operation(
    summary="Agent task events (ClawTrait's trackTask), one or a batch",
    description="An event naming an experiment must name a running experiment of the key's "
    "workspace and one of its variants, or one that ended less than 24 h ago (a late event: "
    "stored, counted in no result). Not metered.",
    body=AGENT_EVENTS_DECODER,
    data=CreatedEvent | CreatedEvents,
    statuses=(201,),
    errors=(404, 503),
    example={
        "agentId": "support-bot",
        "task": "refund request",
        "outcome": "success",
        "cost": 0.012,
        "durationMs": 5300,
        "turns": 4,
        "session_id": "run-7",
    },
)


def _check_experiments(
    kv: ConfigKV, workspace_id: str, events: list[AgentTaskEvent], grace: float
) -> None:
    since = time.time() - grace
    for event in events:
        if not event.experiment_id:
            if event.variant_id:
                raise InvalidRequest("variant_id needs the experiment_id it belongs to")
            continue
        found = kv.assignable_by_id.get(event.experiment_id)
        experiment = None if found is None or found[0] != workspace_id else found[1][0]
        if experiment is None or not experiment.config.takes_events(since):
            raise NotFound(
                f"no running experiment {event.experiment_id!r} in this workspace; "
                "launch it first or drop experiment_id"
            )
        if event.variant_id and event.variant_id not in experiment.variant_ids:
            raise InvalidRequest(
                f"variant {event.variant_id!r} is not a variant of experiment "
                f"{event.experiment_id!r}; use the variant_id /v1/assign returned"
            )


class EventsEndpoint:
    """Raw ASGI endpoint for agent task events."""

    def __init__(
        self,
        holder: KVHolder,
        buffer: EventBuffer,
        counters: IngestCounters,
        ledger: KeyLedger | None = None,
        catch_up: CatchUp | None = None,
        late_event_grace: float = 86_400.0,
    ):
        self.holder = holder
        self.buffer = buffer
        self.counters = counters
        self.ledger = ledger
        self.catch_up = catch_up
        self.late_event_grace = late_event_grace

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kv, latest = (self.holder.require(), False)
        if self.catch_up is not None:
            kv, latest = await self.catch_up(kv)
        # At the store's latest version, the KV answers for the key.
        workspace_id, flavour = require_principal(
            kv, scope, "/v1/events", None if latest else self.ledger
        )
        text = await read_event_body(scope, receive, MAX_EVENTS_BODY, MAX_EVENTS_BODY)
        decoded, unknown = decode_agent_events(text)
        events = decoded if isinstance(decoded, list) else [decoded]
        self.counters.receive("agent", len(events))
        try:
            _check_experiments(kv, workspace_id, events, self.late_event_grace)
        except (InvalidRequest, NotFound) as exc:
            self.counters.reject("unknown_experiment", len(events))
            raise exc
        ids = [e.event_id or uuid.uuid4().hex for e in events]
        chunk = AgentChunk(workspace_id, time.time_ns() // 1_000_000, events, ids)
        await self.buffer.add(chunk)
        self.counters.accept("agent", len(events))
        if unknown:
            self.counters.ignore_unknown("agent", unknown)
        created = CreatedEvents(ids) if isinstance(decoded, list) else CreatedEvent(ids[0])
        # ClawTrait answers the event itself, as its stats and drift (docs/compatibility.md).
        answer = created if flavour == "clawtrait" else _Created(created)
        await send_response(send, 201, JSON_HEADERS, msgspec.json.encode(answer))
