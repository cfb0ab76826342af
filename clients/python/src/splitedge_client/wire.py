"""What the client sends and reads: the server's wire shapes, as the client's own Structs.

They mirror the server's (its assign request and answer, its task event and error
envelope) field for field, constraints included; the server's contract test
(tests/test_client_contract.py) fails when either side changes alone. A task event is
encoded once, when it is tracked, and checked there against the server's constraints,
so that a bad event is the caller's error at once and never a refused batch later.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Annotated, Any, Literal
from urllib.parse import quote

import msgspec
from msgspec import Meta

from splitedge_client.errors import ApiError, InvalidRequest

__all__ = [
    "MAX_EVENTS_PER_BATCH",
    "MAX_UNITS_PER_BATCH",
    "AgentTaskEvent",
    "AssignBatch",
    "AssignRequest",
    "AssignUnit",
    "AssignedVariant",
    "Assignment",
    "ErrorDetail",
    "ErrorEnvelope",
    "MetadataValue",
    "Outcome",
    "UnitAssignments",
    "api_error",
    "assign_batches",
    "assign_body",
    "assigned",
    "assigned_batch",
    "new_event_id",
    "results_data",
    "results_path",
    "task_event",
]

# The most units one assign request and events one events request may carry.
MAX_UNITS_PER_BATCH = 1000
MAX_EVENTS_PER_BATCH = 500

Outcome = Literal["success", "failure", "partial"]
MetadataValue = str | int | float | bool | None

UnitId = Annotated[str, Meta(min_length=1, max_length=1024)]
Url = Annotated[str, Meta(max_length=8192)]
AttributeName = Annotated[str, Meta(min_length=1, max_length=128)]
AttributeValue = str | int | float | bool | None
Attributes = Annotated[dict[AttributeName, AttributeValue], Meta(max_length=64)]
Id = Annotated[str, Meta(min_length=1, max_length=128)]
ShortText = Annotated[str, Meta(max_length=256)]
OptionalId = Annotated[str, Meta(max_length=128)]
# Milliseconds since the epoch, between 2000-01-01 and 2100-01-01.
EpochMillis = Annotated[int, Meta(ge=946_684_800_000, lt=4_102_444_800_000)]
Amount = Annotated[float, Meta(ge=-1e15, le=1e15)]
Metadata = Annotated[dict[ShortText, ShortText | int | float | bool | None], Meta(max_length=64)]


class AssignUnit(msgspec.Struct, omit_defaults=True):
    """One unit to assign (in a batch): an agent session or run id, and optionally the
    page ``url`` and targeting ``attributes`` a web unit has."""

    unit_id: UnitId
    url: Url | None = None
    attributes: Attributes = {}


class AssignRequest(msgspec.Struct, omit_defaults=True):
    """Body of ``POST /v1/assign``: what to assign in (exactly one of ``experiment_id``,
    ``public_key`` or ``site_id``; the client names an experiment), and one unit inline
    or many in ``units``."""

    experiment_id: Annotated[str, Meta(max_length=128)] | None = None
    public_key: Annotated[str, Meta(max_length=64)] | None = None
    site_id: Annotated[str, Meta(max_length=64)] | None = None
    unit_id: UnitId | None = None
    url: Url | None = None
    attributes: Attributes = {}
    units: (
        Annotated[list[AssignUnit], Meta(min_length=1, max_length=MAX_UNITS_PER_BATCH)] | None
    ) = None


class Assignment(msgspec.Struct, frozen=True):
    """One experiment's answer for a unit: the variant and its ``payload`` (an agent
    variant's config, any JSON); ``deployed``: the experiment's promoted winner;
    ``in_experiment`` false: the experiment no longer runs and counts no unit, ``reason``
    says why (every unit gets this variant: the deployed winner, else the control)."""

    experiment_id: str
    variant_id: str
    variant_name: str
    is_control: bool
    payload: Any
    deployed: bool
    in_experiment: bool = True
    reason: (
        Literal[
            "winner_deployed", "experiment_paused", "experiment_completed", "experiment_archived"
        ]
        | None
    ) = None


class UnitAssignments(msgspec.Struct, frozen=True):
    """A unit's answer: one `Assignment` for an experiment_id, or none when the unit is
    outside the experiment's coverage."""

    unit_id: str
    assignments: list[Assignment]


class AssignBatch(msgspec.Struct, frozen=True):
    """The answer to a batch (``units``): each unit's answer, in the order sent."""

    units: list[UnitAssignments]


class AgentTaskEvent(
    msgspec.Struct,
    rename={"agent_id": "agentId", "duration_ms": "durationMs"},
    gc=False,
):
    """One agent task, as ``POST /v1/events`` takes it: ClawTrait's trackTask fields as it
    spells them (``agentId``, ``durationMs``), and the experiment fields in snake_case.
    ``session_id`` is the unit the experiment assigned (an agent session or run).

    ``gc=False``: it holds only scalars and strings, and thousands may wait in a queue.
    """

    agent_id: Id
    task: ShortText
    outcome: Outcome
    cost: Amount = 0.0
    duration_ms: Annotated[float, Meta(ge=0, le=1e12)] = 0.0
    metadata: Metadata = {}
    turns: Annotated[int, Meta(ge=0, le=1_000_000)] | None = None
    experiment_id: OptionalId = ""
    variant_id: OptionalId = ""
    session_id: OptionalId = ""
    event_id: OptionalId = ""
    ts: EpochMillis | None = None


class ErrorDetail(msgspec.Struct):
    """What went wrong: the server's stable ``code`` and its ``message``."""

    code: str
    message: str


class ErrorEnvelope(msgspec.Struct):
    """The body of every error answer."""

    error: ErrorDetail


class AssignedVariant(msgspec.Struct, frozen=True):
    """The variant a unit got in an experiment, and its payload: an agent variant's config
    (a soul_md or system prompt, any JSON config, a config version hash).

    ``deployed``: the experiment is over and this is its promoted winner. Every unit gets
    it, and it counts nothing: ``track_task(..., assignment=...)`` then reports the task
    without the experiment's ids (the server refuses events naming a deployed experiment).
    """

    experiment_id: str
    unit_id: str
    variant_id: str
    variant_name: str
    is_control: bool
    payload: Any
    deployed: bool


class _Assigned(msgspec.Struct):
    data: UnitAssignments


class _AssignedBatch(msgspec.Struct):
    data: AssignBatch


_assigned = msgspec.json.Decoder(_Assigned)
_assigned_batch = msgspec.json.Decoder(_AssignedBatch)
_error = msgspec.json.Decoder(ErrorEnvelope)
_event_check = msgspec.json.Decoder(AgentTaskEvent)
_encode = msgspec.json.encode


def assign_body(experiment_id: str, unit_ids: Sequence[str] | str) -> bytes:
    """The body of ``POST /v1/assign`` for one unit (a string) or a batch."""
    if isinstance(unit_ids, str):
        return _encode(AssignRequest(experiment_id=experiment_id, unit_id=unit_ids))
    units = [AssignUnit(unit_id) for unit_id in unit_ids]
    return _encode(AssignRequest(experiment_id=experiment_id, units=units))


def assign_batches(experiment_id: str, unit_ids: Sequence[str]) -> Iterator[bytes]:
    """The bodies that assign ``unit_ids``, in batches of the most the server takes."""
    for start in range(0, len(unit_ids), MAX_UNITS_PER_BATCH):
        yield assign_body(experiment_id, list(unit_ids[start : start + MAX_UNITS_PER_BATCH]))


def results_path(experiment_id: str) -> str:
    """The path of an experiment's results."""
    return f"/v1/experiments/{quote(experiment_id, safe='')}/results"


class _Results(msgspec.Struct):
    data: dict[str, Any]


_results = msgspec.json.Decoder(_Results)


def results_data(body: bytes) -> dict[str, Any]:
    """The ``data`` of a results answer."""
    return _results.decode(body).data


def _variant(answer: UnitAssignments) -> AssignedVariant | None:
    if not answer.assignments:
        return None
    a = answer.assignments[0]
    return AssignedVariant(
        a.experiment_id, answer.unit_id, a.variant_id, a.variant_name, a.is_control,
        a.payload, a.deployed,
    )  # fmt: skip


def assigned(body: bytes) -> AssignedVariant | None:
    """The variant of an assign answer for one unit; None: outside the coverage."""
    return _variant(_assigned.decode(body).data)


def assigned_batch(body: bytes) -> list[AssignedVariant | None]:
    """The variants of an assign answer for a batch, in the order of its units."""
    return [_variant(unit) for unit in _assigned_batch.decode(body).data.units]


def api_error(status: int, body: bytes) -> ApiError:
    """The error a non-2xx answer carries (its envelope, or the raw text if it has none)."""
    try:
        detail = _error.decode(body).error
    except (msgspec.DecodeError, UnicodeDecodeError):
        return ApiError(status, "http_error", body[:200].decode("utf-8", "replace"))
    return ApiError(status, detail.code, detail.message)


def new_event_id() -> str:
    """A random event id (128 bits, hex): a retried batch carries the same ids."""
    return os.urandom(16).hex()


def task_event(
    agent_id: str,
    task: str,
    outcome: Outcome,
    *,
    cost: float = 0.0,
    duration_ms: float = 0.0,
    metadata: Mapping[str, MetadataValue] | None = None,
    turns: int | None = None,
    experiment_id: str | None = None,
    variant_id: str | None = None,
    session_id: str | None = None,
    assignment: AssignedVariant | None = None,
    event_id: str | None = None,
    ts: int | None = None,
) -> tuple[str, bytes]:
    """A task event's id and its JSON, checked as the server checks it; `InvalidRequest`
    says what is wrong.

    ``assignment`` fills what is not given: ``session_id`` (its unit) and, unless it is
    deployed, ``experiment_id`` and ``variant_id``. ``ts`` (ms since the epoch) defaults
    to now: the task's own time, not when its batch reaches the server.
    """
    if assignment is not None:
        session_id = session_id or assignment.unit_id
        if not assignment.deployed:
            experiment_id = experiment_id or assignment.experiment_id
            variant_id = variant_id or assignment.variant_id
    event = AgentTaskEvent(
        agent_id=agent_id,
        task=task,
        outcome=outcome,
        cost=cost,
        duration_ms=duration_ms,
        metadata=dict(metadata) if metadata else {},
        turns=turns,
        experiment_id=experiment_id or "",
        variant_id=variant_id or "",
        session_id=session_id or "",
        event_id=event_id or new_event_id(),
        ts=time.time_ns() // 1_000_000 if ts is None else ts,
    )
    try:
        encoded = _encode(event)
        _event_check.decode(encoded)
    except (msgspec.ValidationError, TypeError) as exc:
        raise InvalidRequest(f"invalid task event: {exc}") from None
    return event.event_id, encoded
