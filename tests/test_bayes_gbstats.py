"""Cross-check of analytics.bayes against GrowthBook's engine (gbstats 0.8), same inputs.

gbstats approximates the difference of the two rates by a normal, so its chance to win
matches ours only where that approximation holds: moderate or large n, rates away from
0 and 1. There the two agree within 0.01 (the issue's bound), and in fact far closer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gbstats.bayesian.tests import EffectBayesianABTest, EffectBayesianConfig
from gbstats.models.statistics import ProportionStatistic

from analytics.bayes import beta_binomial, prob_beats_exact

# (conversions_a, units_a, conversions_b, units_b), within gbstats' domain and outside it;
# bench/stats.py tabulates the same cases.
CASES = json.loads((Path(__file__).parent / "vectors" / "gbstats.json").read_text())


def gbstats_chance_to_win(ca: int, na: int, cb: int, nb: int, difference_type: str) -> float:
    """gbstats' chance that B beats A, rates compared as absolute or relative differences."""
    test = EffectBayesianABTest(
        ProportionStatistic(n=na, sum=ca),
        ProportionStatistic(n=nb, sum=cb),
        EffectBayesianConfig(difference_type=difference_type),
    )
    return float(test.compute_result().chance_to_win)


def test_lead_reference_figure() -> None:
    assert gbstats_chance_to_win(480, 5000, 530, 5000, "absolute") == pytest.approx(
        0.951497, abs=1e-6
    )
    assert prob_beats_exact(480, 5000, 530, 5000) == pytest.approx(0.951418, abs=1e-6)


@pytest.mark.parametrize(("ca", "na", "cb", "nb"), CASES["within"])
def test_chance_to_win_matches_gbstats(ca: int, na: int, cb: int, nb: int) -> None:
    ours = beta_binomial([ca, cb], [na, nb]).arms[1].prob_beat_control
    assert ours is not None
    theirs = gbstats_chance_to_win(ca, na, cb, nb, "absolute")
    assert abs(ours - theirs) < 0.01
    # The gap is gbstats' approximation, not our sampling: the closed form agrees with us.
    assert abs(ours - prob_beats_exact(ca, na, cb, nb)) < 1e-4


@pytest.mark.parametrize(("ca", "na", "cb", "nb"), CASES["outside"])
def test_gbstats_approximation_breaks_down(ca: int, na: int, cb: int, nb: int) -> None:
    """Outside its domain (few conversions, a skewed posterior) the normal approximation
    is off by more than 0.01, while ours still matches the closed form."""
    exact = prob_beats_exact(ca, na, cb, nb)
    assert abs(gbstats_chance_to_win(ca, na, cb, nb, "absolute") - exact) > 0.01
    ours = beta_binomial([ca, cb], [na, nb]).arms[1].prob_beat_control
    assert ours is not None and abs(ours - exact) < 1e-4
