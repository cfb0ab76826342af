"""The decision rules of docs/statistics.md (sections 5 to 7): an experiment's status,
winner and guardrail, the sample-ratio test that blocks a winner, and the units each arm
still needs.

The rules take the primary metric's comparisons (`Statistics`) that `analytics.results`
computes from the aggregates, and the cost tests and early-look thresholds of
`analytics.guardrails`. Without a ``sample_size`` every verdict reads always-valid
p-values (`analytics.sequential`): the results may be read, and acted on, at any time.
With one, the fixed-horizon tests decide at the horizon.
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec

from analytics import bayes, frequentist, sequential
from analytics.aggregates import ExperimentSpec
from analytics.guardrails import (
    EARLY_ALPHA_SHARE,
    EARLY_MIN_UNITS,
    ArmCost,
    cost_excess_p_value,
    sequential_cost_excess_p_value,
)

__all__ = [
    "POWER",
    "Decision",
    "DecisionRules",
    "Method",
    "Statistics",
    "Status",
    "decide",
    "method_of",
    "metric_guardrail",
    "sample_ratio",
    "samples_needed",
]

Status = Literal["collecting", "running", "significant", "no_winner", "guardrail"]
Method = Literal["sequential", "fixed_horizon"]

POWER = 0.8


def method_of(spec: ExperimentSpec) -> Method:
    """How an experiment's p-values are computed: at its horizon when it has a
    ``sample_size``, else sequentially (valid at every look)."""
    return "fixed_horizon" if spec.sample_size is not None else "sequential"


class DecisionRules(msgspec.Struct, frozen=True):
    """The parameters the decision used. ``alpha`` is per comparison with control:
    (1 - confidence) / comparisons (Bonferroni). ``method`` says which p-values decide
    and are shown: ``sequential`` (always valid, `analytics.sequential`) or
    ``fixed_horizon`` (the z and Welch tests, at the sample size)."""

    confidence: float
    min_units_per_arm: int
    comparisons: int
    alpha: float
    power: float
    srm_threshold: float
    draws: int | None
    seed: int
    method: Method


class Statistics(msgspec.Struct):
    """One metric's comparisons: posterior figures of every arm, values and variances,
    the p-values of the rules' method (``p_values``: those shown and decided on) and the
    always-valid ones (``sequential_p_values``: the same list under the sequential
    method; the early guardrail's before a fixed horizon), None for the control."""

    bayes: bayes.BayesResult
    values: list[float]
    variances: list[float]
    p_values: list[float | None]
    sequential_p_values: list[float | None]


class Decision(msgspec.Struct, frozen=True):
    """The status, and the indices (into the experiment's variants) of the winner or the
    guardrail arm, with the reason the guardrail tripped and the p-value of the test that
    tripped it (the one the reason quotes)."""

    status: Status
    winner: int | None = None
    guardrail: int | None = None
    reason: str | None = None
    p_value: float | None = None


def sample_ratio(
    spec: ExperimentSpec, units: list[int], warnings: list[str]
) -> frequentist.SampleRatio | None:
    """The sample-ratio test of the arms' units against their weights."""
    if sum(units) == 0 or not any(v.weight_bps > 0 for v in spec.variants):
        return None
    weights = [float(v.weight_bps) for v in spec.variants]
    threshold = frequentist.DEFAULT_SRM_THRESHOLD
    result = frequentist.sample_ratio_test(units, weights, threshold=threshold)
    if result.flagged:
        warnings.append(
            f"sample ratio mismatch (p = {result.p_value:.2g} < {threshold}): the arms' "
            "units do not match the configured split, so the arms are not comparable and no "
            "winner is declared. Look for a weight change during the run, a variant that "
            "redirects or fails to load, or bots counted in one arm (docs/statistics.md)."
        )
    return result


def _units_to_detect(
    is_rate: bool, stats: Statistics, i: int, control: int, alpha: float, method: Method
) -> int | None:
    """Units per arm to detect the observed difference between arm i and control at this
    alpha with `POWER`, by the method's test; None when there is no difference to
    detect."""
    a, b = stats.values[control], stats.values[i]
    if is_rate and method == "fixed_horizon":
        # The sample size depends on the pair of rates only; base it on one strictly
        # inside (0, 1), as the formula needs.
        low, high = sorted((a, b))
        base, other = (high, low) if high < 1 else (low, high)
        if high == low or not 0 < base < 1:
            return None
        return frequentist.units_per_arm_for_proportions(
            base, (other - base) / base, alpha=alpha, power=POWER
        )
    std_dev = math.sqrt((stats.variances[control] + stats.variances[i]) / 2)
    if std_dev == 0 or a == b:
        return None
    if method == "sequential":
        return sequential.units_per_arm(std_dev, abs(b - a), alpha=alpha, power=POWER)
    return frequentist.units_per_arm_for_means(std_dev, abs(b - a), alpha=alpha, power=POWER)


def samples_needed(
    is_rate: bool,
    units: list[int],
    control: int,
    rules: DecisionRules,
    stats: Statistics | None,
) -> list[int]:
    """The units still to add to each arm: those missing to the rules' minimum, or, while
    a challenger is not significant, more to detect its observed difference from control
    by the rules' test (for that challenger and for control). ``is_rate`` says the
    primary metric is a rate, not a mean."""
    needed = [max(0, rules.min_units_per_arm - n) for n in units]
    if stats is None:
        return needed
    for i, p in enumerate(stats.p_values):
        if p is None or p < rules.alpha:
            continue
        target = _units_to_detect(is_rate, stats, i, control, rules.alpha, rules.method)
        if target is not None:
            for arm in (i, control):
                needed[arm] = max(needed[arm], target - units[arm])
    return needed


def _guardrail_test(units: list[int], rules: DecisionRules) -> tuple[bool, float] | None:
    """What a guardrail reads now: the always-valid p-values (True) or the method's, and
    the threshold; None while it may not trip yet."""
    fixed = rules.method == "fixed_horizon"
    if fixed and min(units) >= rules.min_units_per_arm:
        return False, rules.alpha
    if min(units) < EARLY_MIN_UNITS:
        return None
    return True, rules.alpha * EARLY_ALPHA_SHARE if fixed else rules.alpha


def metric_guardrail(
    stats: Statistics, units: list[int], control: int, rules: DecisionRules
) -> dict[int, float]:
    """The challengers significantly worse than control on one metric, each with the
    p-value that says so: P(beats control) <= 1 - confidence and a p-value under the
    guardrail's threshold (always valid before a fixed horizon or without one, at
    ``alpha * EARLY_ALPHA_SHARE`` before a fixed horizon, at ``alpha`` otherwise)."""
    test = _guardrail_test(units, rules)
    if test is None:
        return {}
    always_valid, alpha = test
    p_values = stats.sequential_p_values if always_valid else stats.p_values
    arms = stats.bayes.arms
    worse = {}
    for i, p in enumerate(p_values):
        beat = arms[i].prob_beat_control
        if i != control and p is not None and p < alpha and beat is not None:
            if beat <= 1 - rules.confidence:
                worse[i] = p
    return worse


def _cost_guardrail(
    spec: ExperimentSpec,
    units: list[int],
    control: int,
    rules: DecisionRules,
    costs: list[ArmCost] | None,
) -> Decision | None:
    """The cost bound's guardrail, if it trips: the most expensive such arm."""
    bound = spec.max_cost_increase
    test = _guardrail_test(units, rules)
    if costs is None or bound is None or test is None:
        return None
    always_valid, alpha = test
    p_value = sequential_cost_excess_p_value if always_valid else cost_excess_p_value
    excess = {
        i: p
        for i in range(len(units))
        if i != control
        and (p := p_value(costs[control], costs[i], bound)) is not None
        and p < alpha
    }
    if not excess:
        return None
    i = max(excess, key=lambda i: costs[i].mean)
    base = costs[control].mean
    more = f"{costs[i].mean / base - 1:.0%} more" if base > 0 else "more"
    return Decision(
        "guardrail",
        guardrail=i,
        reason=f"{spec.variants[i].name} costs {more} per unit than the control "
        f"({costs[i].mean:.4g} against {base:.4g}), significantly beyond the bound of "
        f"{bound:.0%} (p = {excess[i]:.3g})",
        p_value=excess[i],
    )


def _guardrail(
    spec: ExperimentSpec,
    units: list[int],
    control: int,
    rules: DecisionRules,
    stats: Statistics | None,
    cost: Decision | None,
) -> Decision | None:
    """The guardrail that trips, if any: the primary metric first (the worst such arm),
    then ``cost``, the cost bound's (`_cost_guardrail`)."""
    harmful = metric_guardrail(stats, units, control, rules) if stats is not None else {}
    if stats is not None and harmful:
        arms = stats.bayes.arms
        i = min(harmful, key=lambda i: arms[i].prob_beat_control or 0.0)
        return Decision(
            "guardrail",
            guardrail=i,
            reason=f"{spec.variants[i].name} is significantly worse than the control on "
            f"the primary metric (p = {harmful[i]:.3g}, P(beats control) = "
            f"{arms[i].prob_beat_control:.3g})",
            p_value=harmful[i],
        )
    return cost


def decide(
    spec: ExperimentSpec,
    units: list[int],
    control: int,
    rules: DecisionRules,
    stats: Statistics | None,
    costs: list[ArmCost] | None,
    srm_flagged: bool,
    warnings: list[str],
) -> Decision:
    """The status, winner and guardrail (with its reason) by the rules of
    docs/statistics.md."""
    ended = spec.status in ("completed", "archived")
    cost = _cost_guardrail(spec, units, control, rules, costs)
    if stats is None or min(units) < rules.min_units_per_arm:
        if not ended:
            early = _guardrail(spec, units, control, rules, stats, cost)
            return early if early is not None else Decision("collecting")
        warnings.append(
            f"the experiment ended before every arm had {rules.min_units_per_arm} units: "
            "no winner can be declared"
        )
        return Decision("no_winner")
    arms = stats.bayes.arms
    c = rules.confidence
    challengers = [i for i in range(len(units)) if i != control]

    def significant(i: int) -> bool:
        p = stats.p_values[i]
        return p is not None and p < rules.alpha

    winners = [i for i in challengers if arms[i].prob_best >= c and significant(i)]
    if winners and not srm_flagged and (cost is None or cost.guardrail != winners[0]):
        return Decision("significant", winner=winners[0])
    harm = _guardrail(spec, units, control, rules, stats, cost)
    if harm is not None:
        return harm
    if ended or spec.sample_size is not None:
        return Decision("no_winner")
    return Decision("running")
