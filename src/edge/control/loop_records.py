"""Continuous loops' records (`edge.control.loops` is their state machine, and
`edge.control.store.loops` reads and writes them): a loop, its rounds, and what a loop is
created with."""

from __future__ import annotations

from typing import Literal

import msgspec

from analytics.loop_decisions import LoopRules
from edge.authoring.drafts import ElementType
from edge.config import MutationConfig

__all__ = [
    "Loop",
    "LoopConfig",
    "LoopGoal",
    "LoopState",
    "Outcome",
    "Round",
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
