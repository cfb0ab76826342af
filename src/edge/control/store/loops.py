"""Continuous loops and their rounds (`edge.control.loops` is their state machine)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from edge.authoring.drafts import ElementType
from edge.config import MutationConfig
from edge.control.loop_records import Loop, LoopConfig, LoopGoal, LoopState, Outcome, Round
from edge.control.store.connection import StoreConnection
from edge.control.store.schema import insert_sql

__all__ = ["LoopQueries"]

_LOOP_COLUMNS = (
    "id, workspace_id, site_id, name, target_url, url_pattern, element_types, selector_hints, "
    "primary_goal, status, current_round_id, current_champion_variant_id, min_round_days, "
    "max_round_days, min_samples_per_arm, decision_threshold, consecutive_inconclusive, "
    "rounds_since_check, pause_reason, paused_at, next_tick_at, created_at, updated_at"
)
_ROUND_COLUMNS = (
    "id, loop_id, round_number, experiment_id, champion_variant_id, challenger_variant_id, "
    "challenger_changes, is_regression_check, outcome, final_prob_to_win, final_lift, "
    "started_at, decided_at, paused_seconds, last_look"
)
_changes_decoder = msgspec.json.Decoder(tuple[MutationConfig, ...])


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


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


class LoopQueries(StoreConnection):
    """The queries of the ``loops`` and ``loop_rounds`` tables."""

    def insert_loop(
        self, loop_id: str, workspace_id: str, config: LoopConfig, next_tick_at: str, stamp: str
    ) -> None:
        """Store a new running loop, without rounds yet, due at ``next_tick_at``."""
        self.conn.execute(
            insert_sql("loops", _LOOP_COLUMNS),
            (loop_id, workspace_id, config.site_id, config.name, config.target_url,
             config.url_pattern, _json(config.element_types),
             None if config.selector_hints is None else _json(config.selector_hints),
             _json(config.primary_goal), "running", None, None, config.min_round_days,
             config.max_round_days, config.min_samples_per_arm, config.decision_threshold,
             0, 0, None, None, next_tick_at, stamp, stamp),
        )  # fmt: skip

    def get_loop(self, loop_id: str) -> Loop | None:
        """The loop ``loop_id`` of any workspace (the ticker's view)."""
        row = self.conn.execute(
            f"SELECT {_LOOP_COLUMNS} FROM loops WHERE id = ?", (loop_id,)
        ).fetchone()
        return None if row is None else _loop(row)

    def list_loops(self, workspace_id: str, limit: int, offset: int) -> tuple[list[Loop], int]:
        """A page of the workspace's loops, newest first, and how many it has."""
        rows = self.conn.execute(
            f"SELECT {_LOOP_COLUMNS} FROM loops WHERE workspace_id = ? "
            "ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
            (workspace_id, limit, offset),
        ).fetchall()
        (total,) = self.conn.execute(
            "SELECT COUNT(*) FROM loops WHERE workspace_id = ?", (workspace_id,)
        ).fetchone()
        return [_loop(r) for r in rows], int(total)

    def loop_rounds(self, loop_id: str, limit: int = 10) -> list[Round]:
        """The loop's last ``limit`` rounds, newest first."""
        rows = self.conn.execute(
            f"SELECT {_ROUND_COLUMNS} FROM loop_rounds WHERE loop_id = ? "
            "ORDER BY round_number DESC LIMIT ?",
            (loop_id, limit),
        ).fetchall()
        return [_round(r) for r in rows]

    def current_round(self, loop: Loop) -> Round | None:
        """The loop's current round; None when it has none."""
        if loop.current_round_id is None:
            return None
        row = self.conn.execute(
            f"SELECT {_ROUND_COLUMNS} FROM loop_rounds WHERE id = ?", (loop.current_round_id,)
        ).fetchone()
        return None if row is None else _round(row)

    def champion_changes(self, loop_id: str) -> tuple[MutationConfig, ...]:
        """The changes of the loop's champion (none: the page as it is)."""
        (raw,) = self.conn.execute(
            "SELECT champion_changes FROM loops WHERE id = ?", (loop_id,)
        ).fetchone()
        return _changes_decoder.decode(raw)

    def loser_changes(self, loop_id: str) -> list[tuple[MutationConfig, ...]]:
        """The changes of every challenger that lost or was inconclusive, oldest first."""
        rows = self.conn.execute(
            "SELECT challenger_changes FROM loop_rounds WHERE loop_id = ? "
            "AND outcome IN ('champion_held', 'inconclusive') ORDER BY round_number",
            (loop_id,),
        ).fetchall()
        return [_changes_decoder.decode(r[0]) for r in rows]

    def start_round(
        self, round_: Round, champion: Sequence[MutationConfig], updated_at: str
    ) -> None:
        """Store a new round and make it its loop's current one, with ``champion`` as the
        loop's champion changes (its control variant), in one transaction."""
        with self.transaction() as conn:
            conn.execute(
                insert_sql("loop_rounds", _ROUND_COLUMNS),
                (round_.id, round_.loop_id, round_.round_number, round_.experiment_id,
                 round_.champion_variant_id, round_.challenger_variant_id,
                 _json(round_.challenger_changes), int(round_.is_regression_check),
                 round_.outcome, round_.final_prob_to_win, round_.final_lift, round_.started_at,
                 round_.decided_at, round_.paused_seconds, round_.last_look),
            )  # fmt: skip
            conn.execute(
                "UPDATE loops SET current_round_id = ?, current_champion_variant_id = ?, "
                "champion_changes = ?, updated_at = ? WHERE id = ?",
                (round_.id, round_.champion_variant_id, _json(champion), updated_at,
                 round_.loop_id),
            )  # fmt: skip

    def due_loops(self, now: str) -> list[str]:
        """The ids of the running loops whose next tick is at or before ``now``, the most
        overdue first."""
        rows = self.conn.execute(
            "SELECT id FROM loops WHERE status = 'running' AND next_tick_at <= ? "
            "ORDER BY next_tick_at",
            (now,),
        ).fetchall()
        return [r[0] for r in rows]

    def claim_loop(self, loop_id: str, until: str, now: str) -> bool:
        """Claim a running loop due at ``now`` until ``until`` unless another claim on it
        still holds; whether this one took it."""
        cursor = self.conn.execute(
            "UPDATE loops SET claimed_until = ? WHERE id = ? AND status = 'running' "
            "AND next_tick_at <= ? AND (claimed_until IS NULL OR claimed_until < ?)",
            (until, loop_id, now, now),
        )
        return cursor.rowcount == 1

    def holds_loop_claim(self, loop_id: str, token: str) -> bool:
        """Whether the claim ``token`` (its ``claimed_until``) is still the running loop's."""
        row = self.conn.execute(
            "SELECT 1 FROM loops WHERE id = ? AND claimed_until = ? AND status = 'running'",
            (loop_id, token),
        ).fetchone()
        return row is not None

    def release_loop(self, loop_id: str, token: str, next_tick_at: str) -> None:
        """Drop the claim ``token`` on the loop, due again at ``next_tick_at`` (nothing when
        the claim is no longer that one)."""
        self.conn.execute(
            "UPDATE loops SET claimed_until = NULL, next_tick_at = ? "
            "WHERE id = ? AND claimed_until = ?",
            (next_tick_at, loop_id, token),
        )

    def set_round_look(self, round_id: str, look: int) -> None:
        """Record the sequential look a round's decision has taken."""
        self.conn.execute("UPDATE loop_rounds SET last_look = ? WHERE id = ?", (look, round_id))

    def decide_round(
        self,
        round_id: str,
        outcome: Outcome,
        prob_to_win: float | None,
        lift: float | None,
        decided_at: str,
        look: int | None,
    ) -> None:
        """Record a round's outcome and its final figures."""
        self.conn.execute(
            "UPDATE loop_rounds SET outcome = ?, final_prob_to_win = ?, final_lift = ?, "
            "decided_at = ?, last_look = ? WHERE id = ?",
            (outcome, prob_to_win, lift, decided_at, look, round_id),
        )

    def add_round_pause(self, round_id: str, seconds: float) -> None:
        """Add ``seconds`` to the time a round's loop spent paused."""
        self.conn.execute(
            "UPDATE loop_rounds SET paused_seconds = paused_seconds + ? WHERE id = ?",
            (seconds, round_id),
        )

    def finish_loop_tick(
        self,
        loop_id: str,
        consecutive_inconclusive: int,
        status: LoopState,
        pause_reason: str | None,
        paused_at: str | None,
        next_tick_at: str,
        updated_at: str,
    ) -> None:
        """A loop after a decided round: its streak and status, and its claim dropped."""
        self.conn.execute(
            "UPDATE loops SET consecutive_inconclusive = ?, status = ?, pause_reason = ?, "
            "paused_at = ?, claimed_until = NULL, next_tick_at = ?, updated_at = ? WHERE id = ?",
            (consecutive_inconclusive, status, pause_reason, paused_at, next_tick_at, updated_at,
             loop_id),
        )  # fmt: skip

    def mark_loop_paused(self, loop_id: str, reason: str, now: str) -> None:
        """Pause a loop at ``now`` for ``reason``."""
        self.conn.execute(
            "UPDATE loops SET status = 'paused', paused_at = ?, pause_reason = ?, "
            "updated_at = ? WHERE id = ?",
            (now, reason, now, loop_id),
        )

    def mark_loop_running(self, loop_id: str, now: str) -> None:
        """Resume a loop at ``now``: no pause, no inconclusive streak, due at once."""
        self.conn.execute(
            "UPDATE loops SET status = 'running', paused_at = NULL, pause_reason = NULL, "
            "consecutive_inconclusive = 0, next_tick_at = ?, updated_at = ? WHERE id = ?",
            (now, now, loop_id),
        )
