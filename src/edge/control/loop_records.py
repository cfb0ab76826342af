"""Continuous loops' store rows (`edge.control.loops` is their state machine): a loop,
its rounds, and the reads of them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from analytics.loop_decisions import LoopRules
from edge.authoring.drafts import ElementType
from edge.config import MutationConfig
from edge.control.store import Store
from edge.errors import NotFound

__all__ = [
    "LOOP_COLUMNS",
    "ROUND_COLUMNS",
    "Loop",
    "LoopConfig",
    "LoopGoal",
    "LoopState",
    "Outcome",
    "Round",
    "champion_changes",
    "current_round",
    "get_loop",
    "list_loops",
    "loser_changes",
    "require_loop",
    "rounds_of",
]

LoopState = Literal["running", "paused", "completed", "archived"]
Outcome = Literal["pending", "challenger_promoted", "champion_held", "inconclusive"]


class LoopGoal(msgspec.Struct, frozen=True, omit_defaults=True):
    """A loop's primary goal, in create_experiment's goal shape."""

    name: str
    type: str
    selector: str | None = None
    url_pattern: str | None = None


class LoopConfig(msgspec.Struct, frozen=True):
    """What a loop is created with (validated by the caller)."""

    name: str
    site_id: str
    target_url: str
    element_types: tuple[ElementType, ...]
    primary_goal: LoopGoal
    url_pattern: str | None = None
    selector_hints: dict[str, str] | None = None
    min_round_days: int = 7
    max_round_days: int = 28
    min_samples_per_arm: int = 500
    decision_threshold: float = 0.95


class Loop(msgspec.Struct, frozen=True):
    """A loop as the API shows it (the reference's fields)."""

    id: str
    workspace_id: str
    site_id: str
    name: str
    target_url: str
    url_pattern: str | None
    element_types: tuple[ElementType, ...]
    selector_hints: dict[str, str] | None
    primary_goal: LoopGoal
    status: LoopState
    current_round_id: str | None
    current_champion_variant_id: str | None
    min_round_days: int
    max_round_days: int
    min_samples_per_arm: int
    decision_threshold: float
    consecutive_inconclusive: int
    rounds_since_check: int
    pause_reason: str | None
    paused_at: str | None
    next_tick_at: str
    created_at: str
    updated_at: str

    def rules(self) -> LoopRules:
        """The loop's decision rules."""
        return LoopRules(
            self.min_round_days,
            self.max_round_days,
            self.min_samples_per_arm,
            self.decision_threshold,
        )


class Round(msgspec.Struct, frozen=True):
    """A round as the API shows it."""

    id: str
    loop_id: str
    round_number: int
    experiment_id: str | None
    champion_variant_id: str | None
    challenger_variant_id: str | None
    challenger_changes: tuple[MutationConfig, ...]
    is_regression_check: bool
    outcome: Outcome
    final_prob_to_win: float | None
    final_lift: float | None
    started_at: str
    decided_at: str | None
    paused_seconds: float
    last_look: int | None


LOOP_COLUMNS = (
    "id, workspace_id, site_id, name, target_url, url_pattern, element_types, selector_hints, "
    "primary_goal, status, current_round_id, current_champion_variant_id, min_round_days, "
    "max_round_days, min_samples_per_arm, decision_threshold, consecutive_inconclusive, "
    "rounds_since_check, pause_reason, paused_at, next_tick_at, created_at, updated_at"
)
ROUND_COLUMNS = (
    "id, loop_id, round_number, experiment_id, champion_variant_id, challenger_variant_id, "
    "challenger_changes, is_regression_check, outcome, final_prob_to_win, final_lift, "
    "started_at, decided_at, paused_seconds, last_look"
)
_changes_decoder = msgspec.json.Decoder(tuple[MutationConfig, ...])


def _loop(row: Sequence[Any]) -> Loop:
    values = list(row)
    values[6] = msgspec.json.decode(values[6], type=tuple[ElementType, ...])
    values[7] = None if values[7] is None else msgspec.json.decode(values[7], type=dict[str, str])
    values[8] = msgspec.json.decode(values[8], type=LoopGoal)
    values[12], values[13] = int(values[12]), int(values[13])
    return Loop(*values)


def _round(row: Sequence[Any]) -> Round:
    values = list(row)
    values[6] = _changes_decoder.decode(values[6])
    values[7] = bool(values[7])
    return Round(*values)


def get_loop(store: Store, loop_id: str) -> Loop | None:
    """The loop ``loop_id`` of any workspace (the ticker's view)."""
    row = store.conn.execute(
        f"SELECT {LOOP_COLUMNS} FROM loops WHERE id = ?", (loop_id,)
    ).fetchone()
    return None if row is None else _loop(row)


def require_loop(store: Store, workspace_id: str, loop_id: str) -> Loop:
    """The workspace's loop; the same 404 for an unknown id and another workspace's."""
    loop = get_loop(store, loop_id)
    if loop is None or loop.workspace_id != workspace_id:
        raise NotFound(
            f"no loop {loop_id[:100]!r} in the workspace of this API key; GET /v1/loops "
            "lists its loops"
        )
    return loop


def list_loops(store: Store, workspace_id: str, limit: int, offset: int) -> tuple[list[Loop], int]:
    """A page of the workspace's loops, newest first, and how many it has."""
    rows = store.conn.execute(
        f"SELECT {LOOP_COLUMNS} FROM loops WHERE workspace_id = ? "
        "ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
        (workspace_id, limit, offset),
    ).fetchall()
    (total,) = store.conn.execute(
        "SELECT COUNT(*) FROM loops WHERE workspace_id = ?", (workspace_id,)
    ).fetchone()
    return [_loop(r) for r in rows], int(total)


def rounds_of(store: Store, loop_id: str, limit: int = 10) -> list[Round]:
    """The loop's last ``limit`` rounds, newest first."""
    rows = store.conn.execute(
        f"SELECT {ROUND_COLUMNS} FROM loop_rounds WHERE loop_id = ? "
        "ORDER BY round_number DESC LIMIT ?",
        (loop_id, limit),
    ).fetchall()
    return [_round(r) for r in rows]


def current_round(store: Store, loop: Loop) -> Round | None:
    """The loop's current round; None when it has none."""
    if loop.current_round_id is None:
        return None
    row = store.conn.execute(
        f"SELECT {ROUND_COLUMNS} FROM loop_rounds WHERE id = ?", (loop.current_round_id,)
    ).fetchone()
    return None if row is None else _round(row)


def champion_changes(store: Store, loop_id: str) -> tuple[MutationConfig, ...]:
    """The changes of the loop's champion (none: the page as it is)."""
    (raw,) = store.conn.execute(
        "SELECT champion_changes FROM loops WHERE id = ?", (loop_id,)
    ).fetchone()
    return _changes_decoder.decode(raw)


def loser_changes(store: Store, loop_id: str) -> list[tuple[MutationConfig, ...]]:
    """The changes of every challenger that lost or was inconclusive, oldest first."""
    rows = store.conn.execute(
        "SELECT challenger_changes FROM loop_rounds WHERE loop_id = ? "
        "AND outcome IN ('champion_held', 'inconclusive') ORDER BY round_number",
        (loop_id,),
    ).fetchall()
    return [_changes_decoder.decode(r[0]) for r in rows]
