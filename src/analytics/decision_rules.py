"""The decision rules of docs/statistics.md (sections 5 to 7): an experiment's status,
winner and guardrail, the sample-ratio test that blocks a winner, and the units each arm
still needs.

The rules take the primary metric's comparisons (`Statistics`) that `analytics.results`
computes from the aggregates, and the cost test and early-look thresholds of
`analytics.guardrails`.
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec

from analytics import bayes, frequentist
from analytics.aggregates import ExperimentSpec
from analytics.guardrails import EARLY_ALPHA_SHARE, EARLY_MIN_UNITS, ArmCost, cost_excess_p_value

__all__ = [
    "POWER",
    "Decision",
    "DecisionRules",
    "Statistics",
    "Status",
    "decide",
    "sample_ratio",
    "samples_needed",
]

Status = Literal["collecting", "running", "significant", "no_winner", "guardrail"]

POWER = 0.8


class DecisionRules(msgspec.Struct, frozen=True):
    """The parameters the decision used. ``alpha`` is per comparison with control:
    (1 - confidence) / comparisons (Bonferroni)."""

    confidence: float
    min_units_per_arm: int
    comparisons: int
    alpha: float
    power: float
    srm_threshold: float
    draws: int | None
    seed: int


class Statistics(msgspec.Struct):
    """The primary metric's comparisons: posterior figures of every arm, and p-values,
    values and variances (None where a figure does not apply)."""

    bayes: bayes.BayesResult
    values: list[float]
    variances: list[float]
    p_values: list[float | None]


class Decision(msgspec.Struct, frozen=True):
    """The status, and the indices (into the experiment's variants) of the winner or the
    guardrail arm, with the reason the guardrail tripped."""

    status: Status
    winner: int | None = None
    guardrail: int | None = None
    reason: str | None = None


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
    is_rate: bool, stats: Statistics, i: int, control: int, alpha: float
) -> int | None:
    """Units per arm to detect the observed difference between arm i and control at this
    alpha with `POWER`; None when there is no difference to detect."""
    a, b = stats.values[control], stats.values[i]
    if is_rate:
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
    return frequentist.units_per_arm_for_means(std_dev, abs(b - a), alpha=alpha, power=POWER)


def samples_needed(
    is_rate: bool,
    units: list[int],
    control: int,
    min_units: int,
    stats: Statistics | None,
    alpha: float,
) -> list[int]:
    """The units still to add to each arm: those missing to ``min_units``, or, while a
    challenger is not significant, more to detect its observed difference from control
    (for that challenger and for control). ``is_rate`` says the primary metric is a rate,
    not a mean."""
    needed = [max(0, min_units - n) for n in units]
    if stats is None:
        return needed
    for i, p in enumerate(stats.p_values):
        if p is None or p < alpha:
            continue
        target = _units_to_detect(is_rate, stats, i, control, alpha)
        if target is not None:
            for arm in (i, control):
                needed[arm] = max(needed[arm], target - units[arm])
    return needed


def _guardrail(
    spec: ExperimentSpec,
    units: list[int],
    control: int,
    rules: DecisionRules,
    stats: Statistics | None,
    costs: list[ArmCost] | None,
    alpha: float,
) -> Decision | None:
    """The guardrail that trips at ``alpha``, if any: the primary metric first (the worst
    such arm), then the cost bound (the most expensive such arm)."""
    challengers = [i for i in range(len(units)) if i != control]
    c = rules.confidence
    if stats is not None:
        arms = stats.bayes.arms

        def worse(i: int) -> bool:
            p = stats.p_values[i]
            return p is not None and p < alpha and (arms[i].prob_beat_control or 0.0) <= 1 - c

        harmful = [i for i in challengers if worse(i)]
        if harmful:
            i = min(harmful, key=lambda i: arms[i].prob_beat_control or 0.0)
            return Decision(
                "guardrail",
                guardrail=i,
                reason=f"{spec.variants[i].name} is significantly worse than the control on "
                f"the primary metric (p = {stats.p_values[i]:.3g}, P(beats control) = "
                f"{arms[i].prob_beat_control:.3g})",
            )
    if costs is None or spec.max_cost_increase is None:
        return None
    bound = spec.max_cost_increase
    excess = {
        i: p
        for i in challengers
        if (p := cost_excess_p_value(costs[control], costs[i], bound)) is not None and p < alpha
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
    )


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
    if stats is None or min(units) < rules.min_units_per_arm:
        if not ended:
            if min(units) >= EARLY_MIN_UNITS:
                early = _guardrail(
                    spec, units, control, rules, stats, costs, rules.alpha * EARLY_ALPHA_SHARE
                )
                if early is not None:
                    return early
            return Decision("collecting")
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

    cost = _guardrail(spec, units, control, rules, None, costs, rules.alpha)
    winners = [i for i in challengers if arms[i].prob_best >= c and significant(i)]
    if winners and not srm_flagged and (cost is None or cost.guardrail != winners[0]):
        return Decision("significant", winner=winners[0])
    harm = _guardrail(spec, units, control, rules, stats, costs, rules.alpha)
    if harm is not None:
        return harm
    if ended or spec.sample_size is not None:
        return Decision("no_winner")
    return Decision("running")
