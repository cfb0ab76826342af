"""Guardrails: when a challenger is harmful enough to stop an experiment.

Two harms stop an experiment (docs/statistics.md, section 5): a challenger significantly
worse than the control on the primary metric, and, for an agent experiment with a cost
bound (``max_cost_increase``), a challenger whose mean cost per unit is significantly
more than ``(1 + bound)`` times the control's. `analytics.decision_rules` applies them;
this module holds the cost tests and the thresholds of an early look.

A guardrail may trip before the arms reach the minimum sample, because waiting for the
minimum means serving a harmful arm to hundreds more units. Every such look reads an
always-valid p-value (`analytics.sequential`), which no number of looks inflates, once
every arm has `EARLY_MIN_UNITS` (below that the normal approximation behind every test
here is poor). Without a ``sample_size`` that is the guardrail's test throughout, at
alpha. With one, the fixed-horizon test decides at the horizon at alpha, and the looks
before it spend ``alpha * EARLY_ALPHA_SHARE`` more: the false stops of the whole run stay
within (1 + EARLY_ALPHA_SHARE) alpha.
"""

from __future__ import annotations

import msgspec

from analytics import frequentist, sequential

__all__ = [
    "EARLY_ALPHA_SHARE",
    "EARLY_MIN_UNITS",
    "ArmCost",
    "cost_excess_p_value",
    "sequential_cost_excess_p_value",
]

EARLY_MIN_UNITS = 100
"""Units every arm needs before a guardrail may stop an experiment early."""

EARLY_ALPHA_SHARE = 0.1
"""The share of alpha the early looks of a fixed-horizon experiment spend."""


class ArmCost(msgspec.Struct, frozen=True):
    """One arm's cost per unit: units, mean and sample variance."""

    units: int
    mean: float
    variance: float


def cost_excess_p_value(control: ArmCost, challenger: ArmCost, bound: float) -> float | None:
    """The one-sided p-value of "the challenger's mean cost is at most ``1 + bound`` times
    the control's" (small: it costs significantly more than the bound allows), from a
    Welch test of the challenger against the control scaled by ``1 + bound``: valid at one
    look, the horizon. None when an arm has fewer than 2 units."""
    if control.units < 2 or challenger.units < 2:
        return None
    scale = 1.0 + bound
    test = frequentist.welch_t_test(
        control.mean * scale,
        control.variance * scale * scale,
        control.units,
        challenger.mean,
        challenger.variance,
        challenger.units,
    )
    return test.p_value / 2 if test.t > 0 else 1.0 - test.p_value / 2


def sequential_cost_excess_p_value(
    control: ArmCost, challenger: ArmCost, bound: float
) -> float | None:
    """The always-valid form of `cost_excess_p_value` (`sequential.excess_p_value`): valid
    at every look. None when an arm has fewer than 2 units."""
    if control.units < 2 or challenger.units < 2:
        return None
    return float(
        sequential.excess_p_value(
            control.mean,
            control.variance,
            control.units,
            challenger.mean,
            challenger.variance,
            challenger.units,
            bound,
        )  # fmt: skip
    )
