"""Guardrails and their calibration (analytics.guardrails, analytics.decision_rules): the
cost tests (fixed-horizon and always valid), early stops of a much worse arm, the cost
bound, guardrails without a sample size, and, over repeated simulations
of equal arms, how often each decision is reached: ``no_winner`` at the rate the
confidence implies, and few false stops from the early looks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analytics import frequentist
from analytics.aggregates import ArmAggregates, ExperimentSpec, VariantSpec
from analytics.guardrails import (
    EARLY_MIN_UNITS,
    ArmCost,
    cost_excess_p_value,
    sequential_cost_excess_p_value,
)
from analytics.results import ExperimentResults, compute_results


def spec(**fields: object) -> ExperimentSpec:
    base: dict[str, object] = dict(
        id="exp-guard", workspace_id="w", kind="agent", status="running",
        variants=(VariantSpec("a", "control", True, 5000), VariantSpec("b", "terse", False, 5000)),
        sample_size=500, primary_metric="task_completion",
    )  # fmt: skip
    return ExperimentSpec(**(base | fields))  # type: ignore[arg-type]


def arm(
    variant: str, units: int, successes: int, cost_mean: float = 0.01, cost_sd: float = 0.002
) -> ArmAggregates:
    """An agent arm whose per-unit costs have this mean and standard deviation."""
    total = cost_mean * units
    sumsq = (cost_sd**2) * (units - 1) + total * total / units
    return ArmAggregates(
        variant, units, converted=successes, tasks=units, successful_tasks=successes,
        sums={"cost": total}, sumsqs={"cost": sumsq},
    )  # fmt: skip


def test_the_cost_test_is_one_sided_against_the_bound() -> None:
    control = ArmCost(400, 0.010, 0.002**2)
    # 50% dearer with a 30% bound: far beyond it.
    assert (p := cost_excess_p_value(control, ArmCost(400, 0.015, 0.003**2), 0.3)) is not None
    assert p < 1e-6
    # 20% dearer with a 30% bound: within it, whatever the noise.
    within = cost_excess_p_value(control, ArmCost(400, 0.012, 0.003**2), 0.3)
    assert within is not None and within > 0.99
    # Exactly at the bound: p = 1/2.
    at = cost_excess_p_value(control, ArmCost(400, 0.013, 0.003**2), 0.3)
    assert at is not None and math.isclose(at, 0.5)
    assert cost_excess_p_value(ArmCost(1, 0.01, 0.0), ArmCost(400, 0.02, 0.0), 0.3) is None


def test_the_sequential_cost_test_is_one_sided_and_stricter() -> None:
    control = ArmCost(400, 0.010, 0.002**2)
    far = sequential_cost_excess_p_value(control, ArmCost(400, 0.015, 0.003**2), 0.3)
    assert far is not None and far < 1e-6
    # Within the bound, or at it: no evidence at all (a mixture ratio below 1).
    for mean in (0.012, 0.013):
        assert sequential_cost_excess_p_value(control, ArmCost(400, mean, 0.003**2), 0.3) == 1.0
    # Just beyond the bound: the fixed test at its horizon says so, the always-valid one
    # (valid at every look) not yet.
    near = ArmCost(400, 0.0134, 0.003**2)
    fixed, always = (
        cost_excess_p_value(control, near, 0.3),
        sequential_cost_excess_p_value(control, near, 0.3),
    )
    assert fixed is not None and always is not None and fixed < 0.05 < 0.2 < always
    assert sequential_cost_excess_p_value(ArmCost(1, 0.01, 0.0), near, 0.3) is None


def test_without_a_sample_size_guardrails_read_always_valid_p_values() -> None:
    sequential = spec(sample_size=None, max_cost_increase=0.3)
    worse = compute_results(sequential, [arm("a", 120, 108), arm("b", 120, 60)])
    assert worse.status == "guardrail" and worse.rules.method == "sequential"
    assert worse.guardrail_reason is not None and "primary metric" in worse.guardrail_reason
    dear = [arm("a", 150, 123, cost_mean=0.010), arm("b", 150, 124, cost_mean=0.030)]
    assert compute_results(sequential, dear).status == "guardrail"
    # Somewhat worse at 150 units: a fixed-horizon test would stop it (p = 0.025), not the
    # always-valid one.
    somewhat = compute_results(sequential, [arm("a", 150, 130), arm("b", 150, 115)])
    assert somewhat.status == "collecting"
    assert somewhat.p_value is not None and somewhat.p_value > 0.05
    assert frequentist.two_proportion_p_value(130, 150, 115, 150) < 0.05
    # Below the early minimum nothing may stop it.
    few = [arm("a", EARLY_MIN_UNITS - 1, 89), arm("b", EARLY_MIN_UNITS - 1, 30)]
    assert compute_results(sequential, few).status == "collecting"


def test_a_much_worse_arm_is_stopped_early() -> None:
    early = compute_results(spec(), [arm("a", 120, 108), arm("b", 120, 60)])
    assert early.status == "guardrail" and early.guardrail is not None
    assert early.guardrail.name == "terse" and early.winner is None
    assert early.guardrail_reason is not None
    assert early.guardrail_reason.startswith(
        "terse is significantly worse than the control on the primary metric"
    )
    # The p-value of the stop is the (always valid) one the reason quotes.
    assert early.guardrail_p_value is not None
    assert f"(p = {early.guardrail_p_value:.3g}," in early.guardrail_reason
    # Below the early minimum, or merely somewhat worse: keep collecting.
    too_few = compute_results(spec(), [arm("a", EARLY_MIN_UNITS - 1, 89), arm("b", 99, 50)])
    assert too_few.status == "collecting"
    somewhat = compute_results(spec(), [arm("a", 150, 130), arm("b", 150, 118)])
    assert somewhat.status == "collecting"


def test_the_cost_bound_stops_a_dearer_arm_even_when_it_succeeds_more() -> None:
    dear = [arm("a", 600, 492, cost_mean=0.010), arm("b", 600, 546, cost_mean=0.020)]
    stopped = compute_results(spec(max_cost_increase=0.3), dear)
    assert stopped.status == "guardrail" and stopped.guardrail is not None
    assert stopped.guardrail.name == "terse"
    assert stopped.guardrail_reason is not None
    assert "terse costs 100% more per unit than the control" in stopped.guardrail_reason
    assert "beyond the bound of 30%" in stopped.guardrail_reason
    # The cost test's p-value, which the reason quotes, not the primary metric's.
    assert stopped.guardrail_p_value is not None
    assert f"(p = {stopped.guardrail_p_value:.3g})" in stopped.guardrail_reason
    assert stopped.guardrail_p_value != stopped.p_value
    # Without a bound the same arms have a winner; with a generous one too.
    assert compute_results(spec(), dear).status == "significant"
    assert compute_results(spec(max_cost_increase=1.5), dear).status == "significant"
    # Early: a cost far over the bound stops the experiment before the sample size.
    early = [arm("a", 150, 123, cost_mean=0.010), arm("b", 150, 124, cost_mean=0.030)]
    assert compute_results(spec(max_cost_increase=0.3), early).status == "guardrail"


def test_a_cost_bound_with_arms_under_two_units_keeps_collecting() -> None:
    bound = spec(max_cost_increase=0.3)
    assert compute_results(bound, []).status == "collecting"
    one_each = [arm("a", 1, 1, cost_mean=0.01), arm("b", 1, 0, cost_mean=0.05)]
    assert compute_results(bound, one_each).status == "collecting"


def _simulate(
    rng: np.random.Generator, rate: float, looks: list[int], confidence: float
) -> list[ExperimentResults]:
    """One experiment of two equal arms, its results at each look (units per arm)."""
    outcomes = rng.random((2, looks[-1])) < rate
    costs = rng.normal(0.01, 0.002, (2, looks[-1]))
    answers = []
    for n in looks:
        arms = [
            ArmAggregates(
                variant, n, converted=int(outcomes[i, :n].sum()), tasks=n,
                successful_tasks=int(outcomes[i, :n].sum()),
                sums={"cost": float(costs[i, :n].sum())},
                sumsqs={"cost": float((costs[i, :n] ** 2).sum())},
            )
            for i, variant in enumerate(("a", "b"))
        ]  # fmt: skip
        judged = spec(max_cost_increase=0.3, confidence=confidence)
        answers.append(compute_results(judged, arms))
    return answers


@pytest.mark.simulation
@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_equal_arms_end_without_a_winner_at_the_rate_the_confidence_implies(
    confidence: float,
) -> None:
    """At the sample size (a fixed horizon), equal arms give ``no_winner`` with
    probability about ``confidence``: a false winner (challenger better) and a false
    guardrail (challenger worse) each take about (1 - c) / 2. Early looks (every 100 units
    per arm, as the decider sees the experiment grow) stop few equal arms."""
    rng = np.random.default_rng(20261202)
    runs = 1500
    looks = [100, 200, 300, 400, 500]
    finals: dict[str, int] = {}
    early_stops = 0
    for _ in range(runs):
        answers = _simulate(rng, 0.85, looks, confidence)
        if any(r.status == "guardrail" for r in answers[:-1]):
            early_stops += 1
        finals[answers[-1].status] = finals.get(answers[-1].status, 0) + 1
    no_winner = finals.get("no_winner", 0) / runs
    winners = finals.get("significant", 0) / runs
    se = math.sqrt(confidence * (1 - confidence) / runs)
    print(
        f"confidence {confidence}: no_winner {no_winner:.4f} (expected {confidence}, "
        f"se {se:.4f}), false winners {winners:.4f}, early false stops "
        f"{early_stops / runs:.4f}, finals {finals}"
    )
    # The Bonferroni/two-test rule is slightly conservative: no_winner is at least c
    # minus binomial error, and not far above it.
    assert confidence - 3 * se <= no_winner <= confidence + 0.03
    assert winners <= (1 - confidence) / 2 + 3 * math.sqrt(0.025 * 0.975 / runs)
    assert early_stops / runs <= 0.02
