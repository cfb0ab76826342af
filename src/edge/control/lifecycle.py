"""The experiment lifecycle: which action moves an experiment from which status to which,
what a launch needs, promoting a winner, and the webhook events each change queues.

    draft ──launch──▶ running ──pause──▶ paused ──complete──▶ completed ──archive──▶ archived
                         ▲  ◀──resume───┘                        ▲
                         └──────────────complete─────────────────┘      draft ──archive──▶ archived

These are the reference's rules (``PATCH /v1/experiments/{id}`` with ``{"action": ...}``);
crewkit's ``start``, ``stop`` and ``archive`` are the same moves (`CREWKIT_ACTIONS`);
``/v1``'s ``deploy`` is `promote`, crewkit's own (``/{org_id}/experiments/{id}/deploy``)
is `deploy`: promote, then archive. Each change runs in one store transaction with the
webhook deliveries it queues (`edge.control.webhooks.enqueue_event`), so an event is queued if
and only if the change commits; the edge follows the change through the store's config
version (the schema's triggers), within a second.

A move the current status does not allow is a 409 naming the moves it does allow; a
launch whose preconditions fail is a 400 that says what is missing.

What the edge serves follows the status (`edge.control.snapshot`): a running experiment
counts its units; one launched once and not running now answers every unit, uncounted,
with its deployed winner, else its control. A deployment (`promote`) lasts until the
experiment is deleted: archiving keeps it served (crewkit's lifecycle archives on deploy),
and only `delete` ends it.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from edge.control.records import ExperimentRecord, ExperimentStatus, VariantRecord
from edge.control.store import Store
from edge.control.webhooks import enqueue_event
from edge.errors import Conflict, InvalidRequest, NotFound

__all__ = [
    "ACTIONS",
    "CREWKIT_ACTIONS",
    "PROMOTABLE",
    "TRANSITIONS",
    "Action",
    "InvalidTransition",
    "LaunchBlocked",
    "Transition",
    "check_editable",
    "delete",
    "deploy",
    "event_payload",
    "launch_blocker",
    "load",
    "promote",
    "resplit",
    "split_weights",
    "transition",
]

Action = Literal["launch", "pause", "resume", "complete", "archive"]


class Transition(msgspec.Struct, frozen=True):
    """One action: the statuses it moves from, the status it moves to, and the webhook
    events it queues."""

    sources: tuple[ExperimentStatus, ...]
    target: ExperimentStatus
    events: tuple[str, ...] = ()


# experiment.completed is abtestbot's name for a concluded experiment, experiment.stopped
# ClawSplit's for a manually stopped one: a manual complete is both, so both are queued
# (a subscriber picks the one its integration knows). Likewise launched and started.
TRANSITIONS: dict[Action, Transition] = {
    "launch": Transition(("draft",), "running", ("experiment.launched", "experiment.started")),
    "pause": Transition(("running",), "paused"),
    "resume": Transition(("paused",), "running"),
    "complete": Transition(
        ("running", "paused"), "completed", ("experiment.completed", "experiment.stopped")
    ),
    "archive": Transition(("completed", "draft"), "archived"),
}
ACTIONS: tuple[Action, ...] = tuple(TRANSITIONS)

CREWKIT_ACTIONS: dict[str, Action] = {"start": "launch", "stop": "complete", "archive": "archive"}
"""crewkit's lifecycle endpoints (``POST .../experiments/{id}/start`` ...) as actions."""

# What a traffic split may still change: not a concluded experiment's.
_RESPLITTABLE: tuple[ExperimentStatus, ...] = ("draft", "running", "paused")
PROMOTABLE: tuple[ExperimentStatus, ...] = ("running", "paused", "completed")
"""The statuses in which a variant can be promoted (`promote`)."""
_DELETABLE: tuple[ExperimentStatus, ...] = ("draft", "archived")


class InvalidTransition(Conflict):
    """The action does not apply to the experiment's current status."""

    code = "invalid_transition"


class LaunchBlocked(InvalidRequest):
    """A launch whose preconditions (variants, goals) are not met."""

    code = "launch_preconditions_failed"


def load(store: Store, workspace_id: str, experiment_id: str) -> ExperimentRecord:
    """The workspace's experiment; 404 when it has none of that id (another workspace's
    experiment is the same 404)."""
    record = store.experiment_record(experiment_id, workspace_id)
    if record is None:
        raise NotFound(
            f"no experiment {experiment_id!r} in the workspace of this API key; check the id "
            "(GET /v1/experiments lists them), and that the key belongs to its workspace"
        )
    return record


def launch_blocker(record: ExperimentRecord) -> str | None:
    """Why the experiment cannot launch (the reference's text), or None when it can. A web
    experiment needs a control and at least one more variant and a goal; an agent
    experiment is judged on task outcomes, so it needs no goal."""
    variants, goals = len(record.variants), len(record.goals)
    if record.kind == "agent":
        if variants >= 2:
            return None
        return f"experiment has {variants} variant(s); launch requires ≥2 variants."
    if variants >= 2 and goals >= 1:
        return None
    return (
        f"experiment has {variants} variant(s) and {goals} goal(s); "
        "launch requires ≥2 variants and ≥1 goal."
    )


def check_editable(record: ExperimentRecord, fields: tuple[str, ...]) -> None:
    """A 409 unless the experiment is a draft: once launched, its variants, goals and
    pages are what its units were assigned and its results measure (its traffic split
    still changes, `resplit`)."""
    if record.status != "draft":
        raise InvalidTransition(
            f"cannot change the {', '.join(fields)} of experiment {record.id}: it is "
            f"{record.status}, and only a draft's content changes (a launched experiment's "
            "arms and goals are those its results measure); create a new experiment to "
            "test another variant"
        )


def _moves_from(status: ExperimentStatus) -> str:
    moves = [action for action, rule in TRANSITIONS.items() if status in rule.sources]
    if not moves:
        return "no action applies to it"
    return "its actions are " + ", ".join(f'{{"action": "{a}"}}' for a in moves)


def event_payload(record: ExperimentRecord, **extra: Any) -> dict[str, Any]:
    """The fields every experiment event carries (flat, as the references' examples)."""
    return {
        "experiment_id": record.id,
        "experiment_name": record.name,
        "site_id": record.site_id,
        "kind": record.kind,
        "status": record.status,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        **extra,
    }


def transition(
    store: Store, workspace_id: str, experiment_id: str, action: Action
) -> ExperimentRecord:
    """Apply a lifecycle action to the workspace's experiment and queue its webhook
    events, in one transaction; returns the experiment as it is after the move."""
    rule = TRANSITIONS[action]
    with store.transaction():
        record = load(store, workspace_id, experiment_id)
        if record.status not in rule.sources:
            raise InvalidTransition(
                f"cannot {action} experiment {record.id}: it is {record.status}, and {action} "
                f"moves a {' or '.join(rule.sources)} experiment to {rule.target}; "
                f"{_moves_from(record.status)}"
            )
        if action == "launch":
            blocker = launch_blocker(record)
            if blocker is not None:
                raise LaunchBlocked(blocker)
        store.set_experiment_status(record.id, rule.target)
        moved = load(store, workspace_id, experiment_id)
        for event in rule.events:
            enqueue_event(store, workspace_id, event, event_payload(moved))
    return moved


def _find_variant(record: ExperimentRecord, variant: str) -> VariantRecord:
    for candidate in record.variants:
        if candidate.id == variant:
            return candidate
    named = [candidate for candidate in record.variants if candidate.name == variant]
    if len(named) == 1:
        return named[0]
    if named:
        # Promoting is final: never guess which of two same-named variants was meant.
        ids = ", ".join(v.id for v in named)
        raise InvalidRequest(
            f"experiment {record.id} has {len(named)} variants named {variant!r}; pass "
            f"the id of the one to promote instead: {ids}"
        )
    names = ", ".join(repr(v.name) for v in record.variants)
    raise InvalidRequest(
        f"experiment {record.id} has no variant {variant!r}; pass a variant id or one of "
        f"its names: {names}"
    )


def promote(store: Store, workspace_id: str, experiment_id: str, variant: str) -> ExperimentRecord:
    """Promote a variant (by id or name) to production: it gets 100% of the traffic and
    the experiment is completed with it as the winner (crewkit's deploy). Queues
    variant.promoted, and experiment.completed and experiment.stopped when the
    experiment was still running or paused."""
    with store.transaction():
        record = load(store, workspace_id, experiment_id)
        winner = _find_variant(record, variant)
        if record.winner_variant_id is not None:
            raise Conflict(
                f"experiment {record.id} already promoted variant {record.winner_variant_id}; "
                "a promotion is final: create a new experiment to test again"
            )
        if record.status not in PROMOTABLE:
            raise InvalidTransition(
                f"cannot promote a variant of experiment {record.id}: it is {record.status}, "
                "and only a running, paused or completed experiment has a winner to promote"
                + (
                    '; launch it first with {"action": "launch"}'
                    if record.status == "draft"
                    else ""
                )
            )
        store.promote_variant(record.id, winner.id)
        promoted = load(store, workspace_id, experiment_id)
        if record.status != "completed":
            for event in TRANSITIONS["complete"].events:
                enqueue_event(store, workspace_id, event, event_payload(promoted))
        enqueue_event(
            store,
            workspace_id,
            "variant.promoted",
            event_payload(promoted, variant_id=winner.id, variant_name=winner.name),
        )
    return promoted


def deploy(store: Store, workspace_id: str, experiment_id: str, variant: str) -> ExperimentRecord:
    """crewkit's deploy: `promote` the variant (by id or name), then archive the
    experiment, in one transaction, so that an experiment is never left promoted but not
    archived. The promoted winner stays what assign serves after the archive."""
    with store.transaction():
        promote(store, workspace_id, experiment_id, variant)
        return transition(store, workspace_id, experiment_id, "archive")


def split_weights(variants: int, percent: int) -> list[float]:
    """Relative weights for a traffic split: ``100 - percent`` on the control (the first
    variant), ``percent`` shared equally by the others."""
    return [100 - percent, *([percent / (variants - 1)] * (variants - 1))]


def resplit(store: Store, workspace_id: str, experiment_id: str, percent: int) -> ExperimentRecord:
    """Set the share of traffic (1 to 99 %) on the non-control variants. A running
    experiment takes it at once: units are re-bucketed by the new weights."""
    if not 1 <= percent <= 99:
        raise InvalidRequest(
            f"traffic_split must be a whole number from 1 to 99 (the percent of traffic on "
            f"the variant), not {percent}"
        )
    with store.transaction():
        record = load(store, workspace_id, experiment_id)
        if record.status not in _RESPLITTABLE:
            raise InvalidTransition(
                f"cannot change the traffic split of experiment {record.id}: it is "
                f"{record.status}; only a draft, running or paused experiment's split changes"
            )
        if len(record.variants) < 2:
            raise InvalidRequest(
                f"experiment {record.id} has only a control; a traffic split needs a variant"
            )
        store.set_variant_weights(record.id, split_weights(len(record.variants), percent))
        return load(store, workspace_id, experiment_id)


def delete(store: Store, workspace_id: str, experiment_id: str) -> None:
    """Delete a draft or archived experiment with its variants and goals, which ends its
    deployment if it has one (its id is unknown to the edge from then on); 409 saying the
    way there for any other status."""
    with store.transaction():
        record = load(store, workspace_id, experiment_id)
        if record.status not in _DELETABLE:
            way = {
                "running": '{"action": "complete"} then {"action": "archive"}',
                "paused": '{"action": "complete"} then {"action": "archive"}',
                "completed": '{"action": "archive"}',
            }[record.status]
            raise Conflict(
                f"only draft or archived experiments can be deleted; experiment {record.id} "
                f"is {record.status}: archive it first with PATCH /v1/experiments/{record.id} "
                f"{way}"
            )
        store.delete_experiment(record.id)
