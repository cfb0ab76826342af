"""Always-valid p-values (analytics.sequential) and the verdicts that read them: the
formulas by hand, the guarantee on simulated random walks, the results' p-value and
method, and (marked ``simulation``) the acceptance of issue 21: 1,500 A/A experiments
read every 100 units per arm and as the decider reads them, through
`analytics.results.compute_results` (bench/sequential.py)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from analytics import frequentist, sequential
from analytics.special import norm_cdf
from tests.support import decide

# Appended, not first: bench/edge.py must not shadow the edge package.
sys.path.append(str(Path(__file__).resolve().parent.parent / "bench"))
import sequential as simulation  # noqa: E402  # bench/sequential.py


def by_hand(d: float, v: float, unit_variance: float, one_sided: bool = False) -> float:
    """Johari, Pekelis and Walsh's mixture likelihood ratio, written out."""
    tau2 = sequential.MIXING_SD**2 * unit_variance
    ratio = math.sqrt(v / (v + tau2)) * math.exp(tau2 * d * d / (2 * v * (v + tau2)))
    if one_sided:
        ratio *= 2 * norm_cdf(d / math.sqrt(v) * math.sqrt(tau2 / (v + tau2)))
    return min(1.0, 1 / ratio)


def test_the_mixture_p_value_is_the_formula() -> None:
    for d, v, s2 in [(0.02, 1e-4, 0.2), (-0.05, 4e-4, 0.25), (0.0, 1e-3, 1.0), (3.0, 1.0, 50.0)]:
        assert float(sequential.mixture_p_value(d, v, s2)) == pytest.approx(by_hand(d, v, s2))
        one = float(sequential.mixture_p_value(d, v, s2, one_sided=True))
        assert one == pytest.approx(by_hand(d, v, s2, one_sided=True))
    # No difference: no evidence (the mixture ratio is below 1).
    assert float(sequential.mixture_p_value(0.0, 1e-4, 0.2)) == 1.0
    # Element-wise on arrays, as bench/sequential.py calls it.
    d = np.array([0.02, -0.05, 0.0])
    assert sequential.mixture_p_value(d, 1e-4, 0.2).tolist() == [
        float(sequential.mixture_p_value(x, 1e-4, 0.2)) for x in d
    ]


def test_the_critical_z_reaches_alpha_exactly() -> None:
    for n in (100, 500, 5000, 50_000):
        for alpha in (0.05, 0.1, 0.025):
            z = sequential.critical_z(n, alpha)
            # Two arms of n units, per-unit variance 0.3.
            v = 2 * 0.3 / n
            p = float(sequential.mixture_p_value(z * math.sqrt(v), v, 0.3))
            assert p == pytest.approx(alpha, rel=1e-9)
    # The price of looking at will: a wider threshold than the fixed test's 1.96,
    # flattest around thousands of units per arm.
    zs = {n: sequential.critical_z(n, 0.05) for n in (500, 5000, 50_000)}
    assert 3.1 < zs[5000] < zs[500] < 3.2 < zs[50_000] < 3.45


def test_the_tests_match_their_fixed_horizon_counterparts() -> None:
    # Rates: the pooled variance of the z-test.
    pooled = 250 / 2000
    v = pooled * (1 - pooled) * (2 / 1000)
    assert float(sequential.proportions_p_value(100, 1000, 150, 1000)) == pytest.approx(
        by_hand(0.05, v, pooled * (1 - pooled))
    )
    # Means: the unpooled variance of the Welch test.
    p = float(sequential.means_p_value(0.030, 1e-4, 600, 0.025, 2e-4, 400))
    assert p == pytest.approx(by_hand(-0.005, 1e-4 / 600 + 2e-4 / 400, 1.5e-4))
    # The cost bound: one-sided against the control scaled by 1 + bound; at the bound
    # itself there is no evidence, far beyond it there is.
    assert float(sequential.excess_p_value(0.01, 4e-6, 400, 0.013, 9e-6, 400, 0.3)) == 1.0
    assert float(sequential.excess_p_value(0.01, 4e-6, 400, 0.02, 9e-6, 400, 0.3)) < 1e-6
    assert float(sequential.excess_p_value(0.01, 4e-6, 400, 0.011, 9e-6, 400, 0.3)) == 1.0
    # Zero variance decides by the difference alone, as the Welch test does.
    assert float(sequential.means_p_value(1.0, 0.0, 10, 1.0, 0.0, 10)) == 1.0
    assert float(sequential.means_p_value(1.0, 0.0, 10, 2.0, 0.0, 10)) == 0.0
    assert float(sequential.proportions_p_value(0, 10, 0, 10)) == 1.0


def test_ever_below_alpha_on_random_walks_at_most_alpha() -> None:
    """Ville's inequality, checked: 4,000 null random walks of 2,000 steps, the p-value
    read at every step, are ever below alpha at most alpha of the time."""
    rng = np.random.default_rng(7)
    steps = rng.normal(0.0, 1.0, (4000, 2000))
    n = np.arange(1, 2001)
    p = sequential.mixture_p_value(steps.cumsum(axis=1) / n, 1.0 / n, 1.0)
    for alpha in (0.05, 0.1):
        ever = float((p.min(axis=1) < alpha).mean())
        assert ever <= alpha + 2 * math.sqrt(alpha * (1 - alpha) / 4000)
    # Against the fixed-horizon z-test read at every step: far above alpha.
    z = np.abs(steps.cumsum(axis=1)) / np.sqrt(n)
    assert float((z.max(axis=1) > 1.96).mean()) > 0.3


def test_units_per_arm_is_the_smallest_that_reaches_the_threshold() -> None:
    n = sequential.units_per_arm(0.3, 0.01, 0.05, 0.8)
    z_power = 0.8416212335729143

    def reaches(k: int) -> bool:
        return 0.01 / 0.3 * math.sqrt(k / 2) >= sequential.critical_z(k, 0.05) + z_power

    assert reaches(n) and not reaches(n - 1)
    fixed = frequentist.units_per_arm_for_means(0.3, 0.01, 0.05, 0.8)
    assert 1.5 * fixed < n < 3 * fixed
    with pytest.raises(ValueError):
        sequential.units_per_arm(0.0, 0.01, 0.05, 0.8)


def test_results_show_the_p_value_they_decide_on() -> None:
    seq = decide((1000, 100), (1000, 150))
    assert seq.rules.method == "sequential" and seq.status == "significant"
    assert seq.p_value == pytest.approx(float(sequential.proportions_p_value(100, 1000, 150, 1000)))
    fixed = decide((1000, 100), (1000, 150), sample_size=1000)
    assert fixed.rules.method == "fixed_horizon"
    assert fixed.p_value == pytest.approx(frequentist.two_proportion_p_value(100, 1000, 150, 1000))
    # A difference the fixed test calls significant at its horizon, the sequential test
    # does not yet: p = 0.006 at a horizon, 0.10 read at will.
    assert decide((1000, 100), (1000, 140), sample_size=1000).status == "significant"
    assert decide((1000, 100), (1000, 140)).status == "running"


def test_the_simulation_misses_no_verdict() -> None:
    """bench/sequential.py sends to `compute_results` only the looks whose vectorised
    p-values could give a verdict: on random looks of A/A and lifted experiments, every
    verdict of `compute_results` is at such a look, and the p-values agree."""
    rng = np.random.default_rng(3)
    verdicts = 0
    for metric in ("rate", "cost"):
        for cadence in ("every 100", "decider"):
            units = simulation.looks(rng, cadence, 40)
            for lift in (0.0, 0.3):
                streams = simulation.simulate(rng, metric, lift, 40)
                verdicts += simulation.check(streams, units, metric, 60, seed=1)
    assert verdicts > 50  # the lifted experiments give the check verdicts to test


@pytest.mark.simulation
def test_equal_arms_under_peeking_rarely_show_a_verdict() -> None:
    """The acceptance of issue 21: 1,500 A/A experiments per row, ever a verdict within
    binomial error of 1 - confidence, read every 100 units per arm and as the decider
    does; with a true 10% improvement, the sequential test finds it in a good share of
    the experiments the fixed-horizon test does (the measured price, in
    docs/statistics.md)."""
    runs = 1500
    rows = list(simulation.run_scenarios(runs, 20261205, ("rate", "cost"), checks=0))
    print("\n".join(simulation.table(rows, runs)))
    for row in rows:
        alpha = 1 - row.confidence
        assert simulation.within(1 - row.aa.share(simulation.NONE), alpha, runs), row
        power = row.lift.share("significant", 1)
        if row.fixed_lift is not None:
            assert 0.5 * row.fixed_lift.share("significant", 1) < power
        if row.fixed_aa is not None:
            assert simulation.within(1 - row.fixed_aa.share(simulation.NONE), alpha, runs)
