"""A loop round's decision (analytics.loop_decisions): the boundaries of its looks, and,
measured by simulation with the scheduler's hourly ticks, its error rates on equal arms
against the naive rule it replaces, and its power on a better or worse challenger."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analytics.bayes import prob_beats_exact
from analytics.loop_decisions import (
    ArmCounts,
    Decision,
    LoopRules,
    RoundData,
    decide,
    look_boundaries,
    look_days,
    look_due,
)

RULES = LoopRules()  # 7 to 28 days, 500 samples per arm, threshold 0.95
UNITS_PER_HOUR = 6  # per arm: 144 a day, 1,008 by day 7
ROUNDS = 1500


def test_boundaries_at_the_defaults() -> None:
    bounds = look_boundaries(RULES)
    assert len(bounds) == len(look_days(RULES)) == 22
    assert bounds[0] == pytest.approx(0.9995, abs=5e-5)
    assert bounds[-1] == pytest.approx(0.9727, abs=5e-5)
    assert all(a > b for a, b in zip(bounds, bounds[1:], strict=False))
    assert bounds[-1] > RULES.decision_threshold
    # A round with a single look is a single test at the threshold.
    single = LoopRules(min_round_days=14, max_round_days=14)
    assert look_boundaries(single) == pytest.approx((0.95,), abs=1e-6)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"min_round_days": 0}, "min_round_days must be at least 1"),
        ({"min_round_days": 10, "max_round_days": 9}, "at most max_round_days"),
        ({"min_samples_per_arm": 0}, "min_samples_per_arm must be >= 1"),
        ({"decision_threshold": 0.5}, "decision_threshold must be in"),
        ({"decision_threshold": 1.0}, "decision_threshold must be in"),
    ],
)
def test_rules_refuse_what_cannot_be_decided(fields: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LoopRules(**fields)  # type: ignore[arg-type]


def simulate_round(
    rng: np.random.Generator, rates: tuple[float, float], rules: LoopRules = RULES
) -> tuple[Decision, float, bool]:
    """One round ticked every hour as the scheduler does (the look taken is passed back
    in): its decision, the runtime it took, and whether the naive rule (promote once
    P >= threshold at any tick with enough samples) would have promoted it."""
    hours = rules.max_round_days * 24
    conversions = [np.cumsum(rng.binomial(UNITS_PER_HOUR, rate, hours)) for rate in rates]
    last_look: int | None = None
    naive = False
    decision: Decision = "wait"
    for hour in range(1, hours + 1):
        days = hour / 24
        units = hour * UNITS_PER_HOUR
        a, b = int(conversions[0][hour - 1]), int(conversions[1][hour - 1])
        if not naive and days >= rules.min_round_days and units >= rules.min_samples_per_arm:
            naive = prob_beats_exact(a, units, b, units) >= rules.decision_threshold
        if decision == "wait":
            if not look_due(rules, days, last_look):
                continue
            made = decide(rules, days, RoundData(ArmCounts(units, a), ArmCounts(units, b)),
                          last_look)  # fmt: skip
            if made.look is not None:
                last_look = made.look
            decision = made.decision
            if decision != "wait":
                ended_at = days
                if naive:
                    break
    return decision, ended_at, naive


def binomial_bound(p: float, n: int, sigmas: float = 3.5) -> float:
    return p + sigmas * math.sqrt(p * (1 - p) / n)


@pytest.mark.simulation
def test_equal_arms_promote_at_the_designed_rate_where_peeking_every_hour_would_not() -> None:
    rng = np.random.default_rng(2026)
    outcomes = [simulate_round(rng, (0.05, 0.05)) for _ in range(ROUNDS)]
    promote = sum(d == "promote" for d, _, _ in outcomes) / ROUNDS
    hold = sum(d == "hold" for d, _, _ in outcomes) / ROUNDS
    naive = sum(n for _, _, n in outcomes) / ROUNDS
    print(
        f"\nequal arms, {ROUNDS} rounds ticked hourly: promote {promote:.1%}, hold {hold:.1%}, "
        f"inconclusive {1 - promote - hold:.1%}; naive P >= 0.95 at any tick: {naive:.1%}"
    )
    alpha = 1 - RULES.decision_threshold
    # The design spends its alpha: neither far above 5% (peeking) nor far below (wasted).
    for rate in (promote, hold):
        assert 0.02 < rate <= binomial_bound(alpha, ROUNDS), (promote, hold)
    assert naive > 0.15, naive
    assert sum(d == "inconclusive" for d, _, _ in outcomes) / ROUNDS > 0.8


def test_a_clearly_better_challenger_is_promoted_at_its_first_look() -> None:
    rng = np.random.default_rng(7)
    rounds = [simulate_round(rng, (0.05, 0.10)) for _ in range(200)]
    promoted = [days for d, days, _ in rounds if d == "promote"]
    assert len(promoted) >= 0.97 * len(rounds)
    first_look = sum(days == RULES.min_round_days for days in promoted) / len(promoted)
    assert first_look > 0.8, first_look
    worse = [simulate_round(rng, (0.10, 0.05))[0] for _ in range(200)]
    assert worse.count("hold") >= 0.97 * len(worse)


def test_waits_say_what_they_wait_for() -> None:
    few = RoundData(ArmCounts(100, 5), ArmCounts(80, 4))
    early = decide(RULES, 2.0, few)
    assert early.decision == "wait" and early.days_needed == 5
    assert early.samples_needed == 420 and "420 more samples on the challenger arm" in early.reason
    # Past min_round_days but short of samples: the days at the lagging arm's rate.
    short = decide(RULES, 8.0, RoundData(ArmCounts(600, 30), ArmCounts(400, 20)))
    assert (short.decision, short.samples_needed, short.days_needed) == ("wait", 100, 2)
    # The same day's look is not taken twice.
    data = RoundData(ArmCounts(2000, 100), ArmCounts(2000, 104))
    taken = decide(RULES, 9.5, data)
    assert taken.decision == "wait" and taken.look == 2
    again = decide(RULES, 9.9, data, last_look=2)
    assert again.look is None and again.days_needed == 1 and "next is on day 10" in again.reason
    # At the end, or when the experiment ended, a round inside the boundaries is
    # inconclusive, and one short of samples too.
    assert decide(RULES, 28.0, data, last_look=20).decision == "inconclusive"
    assert decide(RULES, 12.0, data, last_look=4, ended=True).decision == "inconclusive"
    assert decide(RULES, 28.0, few).decision == "inconclusive"


def test_a_sample_ratio_mismatch_is_never_compared() -> None:
    skewed = RoundData(ArmCounts(3000, 150), ArmCounts(2000, 400), srm_flagged=True)
    looked = decide(RULES, 10.0, skewed)
    assert looked.decision == "wait" and looked.prob_to_win is None and looked.look == 3
    assert "sample ratio mismatch" in looked.reason
    assert decide(RULES, 28.0, skewed, last_look=20).decision == "inconclusive"
