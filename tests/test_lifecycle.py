"""The experiment lifecycle on a real SQLite store: every (status, action) pair of the
reference's table moves or is refused with a 409 naming the allowed moves, launch
preconditions, promote, re-split, delete, and the webhook events queued in the same
transaction as the change (none when it is refused)."""

from __future__ import annotations

import itertools

import msgspec
import pytest

from edge.control import lifecycle
from edge.control.lifecycle import InvalidTransition, LaunchBlocked
from edge.control.records import ExperimentStatus, NewGoal
from edge.control.store import Store
from edge.errors import Conflict, InvalidRequest, NotFound
from tests.support import Seed, add_experiment, seed_store

STATUSES: tuple[ExperimentStatus, ...] = ("draft", "running", "paused", "completed", "archived")

# The reference's table (abtestbot REST API, PATCH /v1/experiments/:id).
ALLOWED = {
    ("draft", "launch"): "running",
    ("running", "pause"): "paused",
    ("paused", "resume"): "running",
    ("running", "complete"): "completed",
    ("paused", "complete"): "completed",
    ("completed", "archive"): "archived",
    ("draft", "archive"): "archived",
}

ALL_EVENTS = (
    "experiment.launched", "experiment.started", "experiment.completed",
    "experiment.stopped", "variant.promoted",
)  # fmt: skip


@pytest.fixture
def seeded(store: Store) -> Seed:
    seed = seed_store(store.path)
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO webhooks (id, workspace_id, url, events, secret, created_at) "
            "VALUES ('wh', ?, 'https://hooks.example.invalid/', ?, 's', '2026-01-01')",
            (seed.workspace_id, msgspec.json.encode(ALL_EVENTS).decode()),
        )
    return seed


def queued(store: Store) -> list[tuple[str, dict[str, object]]]:
    return [
        (event, msgspec.json.decode(payload))
        for event, payload in store.conn.execute(
            "SELECT event, payload FROM webhook_deliveries ORDER BY id"
        )
    ]


def experiment_in(store: Store, seed: Seed, status: ExperimentStatus, goals: int = 1) -> str:
    experiment_id, _, _ = add_experiment(
        store,
        seed,
        f"in {status}",
        ["Control", "B"],
        [NewGoal("Buy", "click", ".buy")] * goals,
        start=False,
    )
    if status != "draft":
        store.set_experiment_status(experiment_id, status)
    return experiment_id


@pytest.mark.parametrize(("status", "action"), list(itertools.product(STATUSES, lifecycle.ACTIONS)))
def test_every_status_and_action(
    store: Store, seeded: Seed, status: ExperimentStatus, action: lifecycle.Action
) -> None:
    experiment_id = experiment_in(store, seeded, status)
    target = ALLOWED.get((status, action))
    if target is None:
        with pytest.raises(InvalidTransition, match=f"it is {status}, and {action} moves"):
            lifecycle.transition(store, seeded.workspace_id, experiment_id, action)
        record = lifecycle.load(store, seeded.workspace_id, experiment_id)
        assert record.status == status
        assert queued(store) == []
        return
    moved = lifecycle.transition(store, seeded.workspace_id, experiment_id, action)
    assert moved.status == target
    events = [event for event, _ in queued(store)]
    assert events == list(lifecycle.TRANSITIONS[action].events)
    if action == "complete":
        assert moved.ended_at is not None
    if target == "running":
        assert moved.started_at is not None


def test_refusal_names_the_allowed_moves(store: Store, seeded: Seed) -> None:
    experiment_id = experiment_in(store, seeded, "paused")
    with pytest.raises(InvalidTransition) as caught:
        lifecycle.transition(store, seeded.workspace_id, experiment_id, "launch")
    assert caught.value.status == 409
    assert caught.value.message == (
        f"cannot launch experiment {experiment_id}: it is paused, and launch moves a draft "
        'experiment to running; its actions are {"action": "resume"}, {"action": "complete"}'
    )
    archived = experiment_in(store, seeded, "archived")
    with pytest.raises(InvalidTransition, match="no action applies to it"):
        lifecycle.transition(store, seeded.workspace_id, archived, "resume")


def test_launch_needs_a_goal(store: Store, seeded: Seed) -> None:
    experiment_id = experiment_in(store, seeded, "draft", goals=0)
    with pytest.raises(LaunchBlocked) as caught:
        lifecycle.transition(store, seeded.workspace_id, experiment_id, "launch")
    assert caught.value.status == 400
    assert caught.value.message == (
        "experiment has 2 variant(s) and 0 goal(s); launch requires ≥2 variants and ≥1 goal."
    )
    assert lifecycle.load(store, seeded.workspace_id, experiment_id).status == "draft"
    assert queued(store) == []


def test_agent_experiments_launch_without_goals(store: Store, seeded: Seed) -> None:
    experiment_id, _, _ = add_experiment(
        store, seeded, "agent", ["control", "concise"], kind="agent", start=False
    )
    record = lifecycle.transition(store, seeded.workspace_id, experiment_id, "launch")
    assert record.status == "running"


def test_event_payload(store: Store, seeded: Seed) -> None:
    experiment_id = experiment_in(store, seeded, "draft")
    lifecycle.transition(store, seeded.workspace_id, experiment_id, "launch")
    (_, launched), _ = queued(store)
    assert launched["event"] == "experiment.launched"
    assert launched["experiment_id"] == experiment_id
    assert launched["experiment_name"] == "in draft"
    assert launched["status"] == "running" and launched["kind"] == "web"
    assert launched["site_id"] == seeded.site.id
    assert str(launched["id"]).startswith("evt_") and "timestamp" in launched


def test_another_workspace_is_not_found_and_unchanged(store: Store, seeded: Seed) -> None:
    theirs = seeded.other_experiment_id
    workspace = seeded.workspace_id
    for attempt in (
        lambda: lifecycle.transition(store, workspace, theirs, "pause"),
        lambda: lifecycle.promote(store, workspace, theirs, "Bold"),
        lambda: lifecycle.resplit(store, workspace, theirs, 10),
        lambda: lifecycle.delete(store, workspace, theirs),
    ):
        with pytest.raises(NotFound, match="no experiment"):
            attempt()
    record = store.experiment_record(theirs, None)
    assert record is not None and record.status == "running"
    assert [v.weight_bps for v in record.variants] == [5000, 5000]


@pytest.mark.parametrize("status", ["running", "paused", "completed"])
def test_promote(store: Store, seeded: Seed, status: ExperimentStatus) -> None:
    experiment_id = experiment_in(store, seeded, status)
    record = lifecycle.promote(store, seeded.workspace_id, experiment_id, "B")
    winner = record.variants[1]
    assert record.status == "completed" and record.winner_variant_id == winner.id
    assert [v.weight_bps for v in record.variants] == [0, 10_000]
    events = [event for event, _ in queued(store)]
    if status == "completed":
        assert events == ["variant.promoted"]
    else:
        assert events == ["experiment.completed", "experiment.stopped", "variant.promoted"]
    promoted = queued(store)[-1][1]
    assert promoted["variant_id"] == winner.id and promoted["variant_name"] == "B"
    with pytest.raises(Conflict, match="already promoted"):
        lifecycle.promote(store, seeded.workspace_id, experiment_id, winner.id)


def test_promoting_an_ambiguous_name_asks_for_the_id(store: Store, seeded: Seed) -> None:
    experiment_id, variant_ids, _ = add_experiment(
        store, seeded, "twins", ["Control", "same", "same"], [NewGoal("Buy", "click", ".buy")]
    )
    with pytest.raises(InvalidRequest, match="2 variants named 'same'; pass the id") as asked:
        lifecycle.promote(store, seeded.workspace_id, experiment_id, "same")
    assert variant_ids[1] in asked.value.message and variant_ids[2] in asked.value.message
    record = store.experiment_record(experiment_id, None)
    assert record is not None and record.winner_variant_id is None and queued(store) == []
    promoted = lifecycle.promote(store, seeded.workspace_id, experiment_id, variant_ids[2])
    assert promoted.winner_variant_id == variant_ids[2]


@pytest.mark.parametrize("status", ["draft", "archived"])
def test_promote_needs_a_launched_experiment(
    store: Store, seeded: Seed, status: ExperimentStatus
) -> None:
    experiment_id = experiment_in(store, seeded, status)
    with pytest.raises(InvalidTransition, match=f"it is {status}"):
        lifecycle.promote(store, seeded.workspace_id, experiment_id, "B")
    with pytest.raises(InvalidRequest, match="has no variant 'C'; pass a variant id or one of"):
        lifecycle.promote(store, seeded.workspace_id, experiment_id, "C")
    assert queued(store) == []


@pytest.mark.parametrize("status", STATUSES)
def test_resplit(store: Store, seeded: Seed, status: ExperimentStatus) -> None:
    experiment_id = experiment_in(store, seeded, status)
    if status in ("completed", "archived"):
        with pytest.raises(InvalidTransition, match="traffic split"):
            lifecycle.resplit(store, seeded.workspace_id, experiment_id, 20)
        return
    record = lifecycle.resplit(store, seeded.workspace_id, experiment_id, 20)
    assert [v.weight_bps for v in record.variants] == [8000, 2000]


def test_split_weights_share_the_variants_part() -> None:
    assert lifecycle.split_weights(2, 30) == [70, 30]
    assert lifecycle.split_weights(3, 50) == [50, 25, 25]


@pytest.mark.parametrize("status", STATUSES)
def test_delete(store: Store, seeded: Seed, status: ExperimentStatus) -> None:
    experiment_id = experiment_in(store, seeded, status)
    if status not in ("draft", "archived"):
        with pytest.raises(Conflict, match="only draft or archived experiments can be deleted"):
            lifecycle.delete(store, seeded.workspace_id, experiment_id)
        assert store.experiment_record(experiment_id, seeded.workspace_id) is not None
        return
    lifecycle.delete(store, seeded.workspace_id, experiment_id)
    assert store.experiment_record(experiment_id, seeded.workspace_id) is None
    (rows,) = store.conn.execute(
        "SELECT count(*) FROM variants WHERE experiment_id = ?", (experiment_id,)
    ).fetchone()
    assert rows == 0


def test_changes_bump_the_config_version(store: Store, seeded: Seed) -> None:
    experiment_id = experiment_in(store, seeded, "draft")
    for action in ("launch", "pause", "resume", "complete"):
        before = store.config_version()
        lifecycle.transition(store, seeded.workspace_id, experiment_id, action)
        assert store.config_version() > before


def test_list_experiment_records(store: Store, seeded: Seed) -> None:
    drafts = [experiment_in(store, seeded, "draft") for _ in range(3)]
    page, total = store.list_experiment_records(
        seeded.workspace_id, site_id=seeded.site.id, status="draft", limit=2, offset=0
    )
    assert total == 3 and [r.id for r in page] == drafts[::-1][:2]
    rest, _ = store.list_experiment_records(
        seeded.workspace_id, site_id=None, status="draft", limit=2, offset=2
    )
    assert [r.id for r in rest] == [drafts[0]]
    assert rest[0].site_name == seeded.site.name and len(rest[0].variants) == 2
