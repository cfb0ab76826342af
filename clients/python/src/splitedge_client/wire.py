"""What the client sends and reads, in the server's own wire shapes.

Assign requests and answers are `edge.wire`'s Structs, task events are
`edge.ingest.schema.AgentTaskEvent`: the client encodes with the very types the server
decodes with, so the two cannot drift apart. A task event is encoded once, when it is
tracked, and checked there against the server's constraints, so that a bad event is the
caller's error at once and never a refused batch later.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal
from urllib.parse import quote

import msgspec

from edge.client.errors import ApiError
from edge.errors import InvalidRequest
from edge.http import ErrorEnvelope
from edge.ingest.schema import AgentTaskEvent
from edge.wire import MAX_UNITS_PER_BATCH, AssignBatch, AssignRequest, AssignUnit, UnitAssignments

__all__ = [
    "AssignedVariant",
    "MetadataValue",
    "Outcome",
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

Outcome = Literal["success", "failure", "partial"]
MetadataValue = str | int | float | bool | None


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
