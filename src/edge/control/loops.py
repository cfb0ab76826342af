"""Continuous loops: their state machine (issue 8, docs/loops.md); their records are
`edge.control.loop_records`, their queries `edge.control.store.loops`.

A loop is a champion-challenger optimiser; each of its rounds is an experiment of two
arms, the champion's changes (control) against a challenger's, on the loop's primary
goal. One tick (`advance`) takes the round's decision (`analytics.loop_decisions`):

- **wait**: nothing changes but ``next_tick_at`` (an hour on);
- **promote**: the round's experiment completes with the challenger as its winner, whose
  changes become the champion's; **hold**: it completes, the champion stays;
  **inconclusive**: it completes, and the loop's streak grows;
- then the author writes a new challenger (the champion and every prior loser as its
  context) and round N+1 launches as a new experiment. The third inconclusive round in a
  row pauses the loop: round N+1 is still created, with its experiment launched and
  paused at once, so that ``resume`` resumes it like any paused round.

Every function takes the clock ``now``. A round's runtime excludes the time its loop was
paused. Ticking claims a loop in a transaction (``claimed_until``), and the change
re-checks the claim, so two tickers never advance one loop twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import msgspec

from analytics.loop_decisions import ArmCounts, LoopDecision, RoundData, decide
from edge.authoring.author import Author
from edge.config import MutationConfig
from edge.control import audit, lifecycle, webhooks
from edge.control.loop_records import Loop, LoopConfig, Outcome, Round
from edge.control.records import ExperimentRecord, NewExperiment, NewGoal, NewVariant
from edge.control.results_api import ResultsSource
from edge.control.store import Store
from edge.errors import InvalidRequest, NotFound

__all__ = [
    "CLAIM_SECONDS",
    "INCONCLUSIVE_LIMIT",
    "TICK_SECONDS",
    "LoopStatus",
    "RoundResults",
    "Toggle",
    "advance",
    "claim",
    "create_loop",
    "decision_of",
    "due_loops",
    "loop_status",
    "pause_loop",
    "require_loop",
    "resume_loop",
    "source_results",
]

TICK_SECONDS = 3600
"""How long after a tick a running loop is due again."""

CLAIM_SECONDS = 600
"""How long a ticker's claim on a loop lasts: longer than authoring a challenger takes."""

INCONCLUSIVE_LIMIT = 3
"""Inconclusive rounds in a row that pause a loop."""

RoundResults = Callable[[ExperimentRecord], RoundData]
"""The arms of a round's experiment so far (from ClickHouse, `edge.control.loops_api`)."""


def source_results(source: ResultsSource) -> RoundResults:
    """A round's arms from its experiment's results (ClickHouse, through ``source``):
    the control is the champion, the second arm the challenger."""

    def results(record: ExperimentRecord) -> RoundData:
        computed = source.compute(record).results
        champion, challenger = computed.variants[0], computed.variants[1]
        return RoundData(
            ArmCounts(champion.units, champion.conversions or 0),
            ArmCounts(challenger.units, challenger.conversions or 0),
            computed.srm_flagged,
        )

    return results


class LoopStatus(msgspec.Struct, frozen=True):
    """get_loop_status: the loop, its current round, its last 10 rounds (newest first)
    and what its next tick would decide."""

    loop: Loop
    current_round: Round | None
    history: list[Round]
    next_decision_eta: LoopDecision | None


class Toggle(msgspec.Struct, frozen=True):
    """What a pause or resume did: the loop after it, the experiment it moved (None:
    none was), whether it was a no-op, and a message."""

    loop: Loop
    experiment_id: str | None
    no_op: bool
    message: str


def _iso(now: datetime) -> str:
    return now.isoformat()


def require_loop(store: Store, workspace_id: str, loop_id: str) -> Loop:
    """The workspace's loop; the same 404 for an unknown id and another workspace's."""
    loop = store.get_loop(loop_id)
    if loop is None or loop.workspace_id != workspace_id:
        raise NotFound(
            f"no loop {loop_id[:100]!r} in the workspace of this API key; GET /v1/loops "
            "lists its loops"
        )
    return loop


def _launch_round(
    store: Store,
    loop: Loop,
    number: int,
    champion: Sequence[MutationConfig],
    challenger: Sequence[MutationConfig],
    hypothesis: str | None,
    now: datetime,
) -> Round:
    """Create and launch round ``number``'s experiment and insert its row."""
    goal = loop.primary_goal
    experiment_id = store.create_experiment(
        NewExperiment(
            workspace_id=loop.workspace_id,
            name=f"{loop.name} (round {number})"[:200],
            variants=(
                NewVariant("Champion", 1.0, tuple(champion)),
                NewVariant("Challenger", 1.0, tuple(challenger)),
            ),
            site_id=loop.site_id,
            goals=(NewGoal(goal.name, goal.type, goal.selector, goal.url_pattern),),
            url_pattern=loop.url_pattern,
            hypothesis=hypothesis,
            target_url=loop.target_url,
        )
    )
    record = lifecycle.transition(store, loop.workspace_id, experiment_id, "launch")
    control, test = record.variants[0], record.variants[1]
    round_ = Round(
        id=str(uuid.uuid4()),
        loop_id=loop.id,
        round_number=number,
        experiment_id=experiment_id,
        champion_variant_id=control.id,
        challenger_variant_id=test.id,
        challenger_changes=tuple(challenger),
        is_regression_check=False,
        outcome="pending",
        final_prob_to_win=None,
        final_lift=None,
        started_at=_iso(now),
        decided_at=None,
        paused_seconds=0.0,
        last_look=None,
    )
    store.start_round(round_, champion, _iso(now))
    return round_


def create_loop(
    store: Store,
    workspace_id: str,
    key_id: str | None,
    config: LoopConfig,
    challenger: Sequence[MutationConfig],
    hypothesis: str | None,
    now: datetime,
) -> tuple[Loop, Round]:
    """Create a loop whose round 1 tests ``challenger`` against the page as it is, and
    launch that round, with an audit entry; in the caller's transaction when there is one."""
    loop_id = str(uuid.uuid4())
    stamp = _iso(now)
    with store.transaction():
        store.insert_loop(
            loop_id, workspace_id, config, _iso(now + timedelta(seconds=TICK_SECONDS)), stamp
        )
        loop = require_loop(store, workspace_id, loop_id)
        first = _launch_round(store, loop, 1, (), challenger, hypothesis, now)
        audit.record(store, workspace_id, key_id, "loop.created", "loop", loop_id,
                     {"round_id": first.id, "experiment_id": first.experiment_id})  # fmt: skip
        return require_loop(store, workspace_id, loop_id), first


def _elapsed_days(loop: Loop, round_: Round, now: datetime) -> float:
    """The round's runtime in days, without its pauses (and the current one)."""
    seconds = (now - datetime.fromisoformat(round_.started_at)).total_seconds()
    seconds -= round_.paused_seconds
    if loop.paused_at is not None:
        seconds -= max(0.0, (now - datetime.fromisoformat(loop.paused_at)).total_seconds())
    return max(0.0, seconds / 86400)


def decision_of(
    store: Store, loop: Loop, results: RoundResults, now: datetime
) -> tuple[Round, ExperimentRecord, LoopDecision] | None:
    """What the loop's current round decides at ``now`` (None: it has no round), without
    changing anything."""
    round_ = store.current_round(loop)
    if round_ is None or round_.experiment_id is None:
        return None
    record = store.experiment_record(round_.experiment_id, loop.workspace_id)
    if record is None:
        return None
    ended = record.status in ("completed", "archived")
    data = (
        results(record) if record.status != "draft" else RoundData(ArmCounts(0, 0), ArmCounts(0, 0))
    )
    decision = decide(loop.rules(), _elapsed_days(loop, round_, now), data, round_.last_look, ended)
    return round_, record, decision


def loop_status(store: Store, loop: Loop, results: RoundResults, now: datetime) -> LoopStatus:
    """get_loop_status, computed from the live data without advancing the loop."""
    decided = decision_of(store, loop, results, now)
    current = None if decided is None else decided[0]
    return LoopStatus(
        loop=loop,
        current_round=current,
        history=store.loop_rounds(loop.id),
        next_decision_eta=None if decided is None else decided[2],
    )


def due_loops(store: Store, now: datetime) -> list[str]:
    """The ids of the running loops whose next tick is due at ``now``."""
    return store.due_loops(_iso(now))


def claim(store: Store, loop_id: str, now: datetime) -> str | None:
    """Claim a due, unclaimed running loop for one tick; the claim's token (its
    ``claimed_until``), or None when another ticker has it or it is not due."""
    until = _iso(now + timedelta(seconds=CLAIM_SECONDS))
    with store.transaction():
        claimed = store.claim_loop(loop_id, until, _iso(now))
    return until if claimed else None


def _release(store: Store, loop_id: str, token: str, now: datetime) -> None:
    with store.transaction():
        store.release_loop(loop_id, token, _iso(now + timedelta(seconds=TICK_SECONDS)))


_OUTCOMES: dict[str, Outcome] = {
    "promote": "challenger_promoted",
    "hold": "champion_held",
    "inconclusive": "inconclusive",
}


def advance(
    store: Store, loop_id: str, results: RoundResults, author: Author, now: datetime
) -> LoopDecision | None:
    """One tick of the loop: claim it, decide its round, and apply the decision (one
    transaction, re-checking the claim). The decision applied; None when the loop was
    not due, claimed by another ticker, or has no round."""
    token = claim(store, loop_id, now)
    if token is None:
        return None
    loop = store.get_loop(loop_id)
    decided = None if loop is None else decision_of(store, loop, results, now)
    if loop is None or decided is None:
        _release(store, loop_id, token, now)
        return None
    round_, record, decision = decided
    if decision.decision == "wait":
        with store.transaction():
            if decision.look is not None and store.holds_loop_claim(loop_id, token):
                store.set_round_look(round_.id, decision.look)
        _release(store, loop_id, token, now)
        return decision
    promoted = decision.decision == "promote"
    champion = round_.challenger_changes if promoted else store.champion_changes(loop_id)
    losers = store.loser_changes(loop_id)
    if not promoted:
        losers.append(round_.challenger_changes)
    draft = author.challenger(
        loop.target_url, loop.element_types, champion, losers, loop.selector_hints
    )
    with store.transaction():
        if not store.holds_loop_claim(loop_id, token):
            return None
        _decide_round(store, loop, round_, record, decision, now)
        streak = loop.consecutive_inconclusive + 1 if decision.decision == "inconclusive" else 0
        nxt = _launch_round(
            store, loop, round_.round_number + 1, champion, draft.mutations, draft.hypothesis, now
        )
        pause = streak >= INCONCLUSIVE_LIMIT
        if pause and nxt.experiment_id is not None:
            lifecycle.transition(store, loop.workspace_id, nxt.experiment_id, "pause")
        store.finish_loop_tick(
            loop_id, streak, "paused" if pause else "running",
            f"{streak} inconclusive rounds in a row: resume the loop to go on, or change "
            "its element_types or goal" if pause else None,
            _iso(now) if pause else None, _iso(now + timedelta(seconds=TICK_SECONDS)), _iso(now),
        )  # fmt: skip
        audit.record(store, loop.workspace_id, None, f"loop.{decision.decision}", "loop", loop_id,
                     {"round_id": round_.id, "next_round_id": nxt.id, "paused": pause})  # fmt: skip
        webhooks.enqueue_event(store, loop.workspace_id, "loop.round_decided", {
            "loop_id": loop_id, "round_id": round_.id, "round_number": round_.round_number,
            "experiment_id": round_.experiment_id, "outcome": _OUTCOMES[decision.decision],
            "prob_to_win": decision.prob_to_win, "lift": decision.lift,
            "next_round_id": nxt.id, "next_experiment_id": nxt.experiment_id,
        })  # fmt: skip
        if pause:
            webhooks.enqueue_event(store, loop.workspace_id, "loop.paused", {
                "loop_id": loop_id, "reason": "inconclusive_streak",
                "consecutive_inconclusive": streak,
            })  # fmt: skip
    return decision


def _decide_round(
    store: Store,
    loop: Loop,
    round_: Round,
    record: ExperimentRecord,
    decision: LoopDecision,
    now: datetime,
) -> None:
    """Complete the round's experiment (the challenger as winner on a promote) and record
    its outcome."""
    if decision.decision == "promote" and round_.challenger_variant_id is not None:
        lifecycle.promote(store, loop.workspace_id, record.id, round_.challenger_variant_id)
    elif record.status in ("running", "paused"):
        lifecycle.transition(store, loop.workspace_id, record.id, "complete")
    store.decide_round(
        round_.id, _OUTCOMES[decision.decision], decision.prob_to_win, decision.lift, _iso(now),
        decision.look,
    )  # fmt: skip


def _check_movable(loop: Loop, verb: str) -> None:
    if loop.status in ("completed", "archived"):
        raise InvalidRequest(f"loop {loop.id} is {loop.status}: only a running or paused loop "
                             f"can be {verb}d")  # fmt: skip


def pause_loop(
    store: Store, workspace_id: str, key_id: str | None, loop_id: str, now: datetime
) -> Toggle:
    """Pause the loop and its round's experiment (idempotent: no_op when paused)."""
    with store.transaction():
        loop = require_loop(store, workspace_id, loop_id)
        _check_movable(loop, "pause")
        if loop.status == "paused":
            return Toggle(loop, None, True, "Loop is already paused")
        round_ = store.current_round(loop)
        moved = None
        if round_ is not None and round_.experiment_id is not None:
            record = store.experiment_record(round_.experiment_id, workspace_id)
            if record is not None and record.status == "running":
                lifecycle.transition(store, workspace_id, record.id, "pause")
                moved = record.id
        store.mark_loop_paused(loop_id, "paused by the API", _iso(now))
        audit.record(store, workspace_id, key_id, "loop.paused", "loop", loop_id,
                     {"experiment_id": moved})  # fmt: skip
        return Toggle(require_loop(store, workspace_id, loop_id), moved, False, "Loop paused")


def resume_loop(
    store: Store, workspace_id: str, key_id: str | None, loop_id: str, now: datetime
) -> Toggle:
    """Resume the loop and its round's experiment, reset its inconclusive streak and make
    it due now (idempotent: no_op when running)."""
    with store.transaction():
        loop = require_loop(store, workspace_id, loop_id)
        _check_movable(loop, "resume")
        if loop.status == "running":
            return Toggle(loop, None, True, "Loop is already running")
        round_ = store.current_round(loop)
        moved = None
        if round_ is not None:
            if loop.paused_at is not None:
                pause = max(0.0, (now - datetime.fromisoformat(loop.paused_at)).total_seconds())
                store.add_round_pause(round_.id, pause)
            if round_.experiment_id is not None:
                record = store.experiment_record(round_.experiment_id, workspace_id)
                if record is not None and record.status == "paused":
                    lifecycle.transition(store, workspace_id, record.id, "resume")
                    moved = record.id
        store.mark_loop_running(loop_id, _iso(now))
        audit.record(store, workspace_id, key_id, "loop.resumed", "loop", loop_id,
                     {"experiment_id": moved})  # fmt: skip
        return Toggle(require_loop(store, workspace_id, loop_id), moved, False, "Loop resumed")
