"""Tests of analytics.bayes: the Monte Carlo kernel against the closed form, scipy and plain
numpy simulation; seeds and thread counts; the normal approximation; input validation."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import msgspec
import numba
import numpy as np
import pytest
from scipy import integrate, stats

from analytics import bayes, posterior_kernels
from analytics.bayes import (
    DEFAULT_DRAWS,
    MAX_DRAWS,
    MIN_DRAWS,
    BayesResult,
    BetaPrior,
    beta_binomial,
    normal_means,
    prob_beats_exact,
)

MILLION = 1 << 20

# (conversions_a, units_a, conversions_b, units_b): zero and full conversion, n = 10 and
# n = 1e8, unequal n, an empty arm.
GRID = [
    (0, 10, 3, 10),
    (10, 10, 7, 10),
    (0, 10, 0, 10),
    (10, 10, 10, 10),
    (480, 5000, 530, 5000),
    (10_000_000, 100_000_000, 10_002_000, 100_000_000),
    (50, 1000, 600, 10_000),
    (0, 100, 1, 100),
    (0, 100_000_000, 1, 100_000_000),
    (100_000_000, 100_000_000, 99_999_990, 100_000_000),
    (1, 11, 0, 0),
    (5, 10, 500_000, 1_000_000),
    (30, 100, 10_000_000, 100_000_000),
]


@pytest.fixture(scope="module", autouse=True)
def compiled() -> None:
    bayes.warm_up()


def _scipy_prob_beats(a: tuple[float, float], b: tuple[float, float]) -> float:
    """P(X_b > X_a) = integral of f_b F_a, by adaptive quadrature around X_b's bulk."""
    dist_a, dist_b = stats.beta(*a), stats.beta(*b)
    edges = dist_b.ppf([1e-15, 1e-6, 0.5, 1 - 1e-6, 1 - 1e-15])
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        total += integrate.quad(lambda x: dist_b.pdf(x) * dist_a.cdf(x), lo, hi, epsabs=1e-13)[0]
    return float(total)


# -- the closed form -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [((481, 4521), (531, 4471)), ((1, 11), (4, 8)), ((51, 951), (601, 9401)), ((3, 2), (2, 3))],
)
def test_exact_matches_scipy_quadrature(a: tuple[int, int], b: tuple[int, int]) -> None:
    value = prob_beats_exact(a[0] - 1, sum(a) - 2, b[0] - 1, sum(b) - 2)
    assert value == pytest.approx(_scipy_prob_beats(a, b), abs=1e-9)


def test_exact_non_integer_prior_uses_an_integer_parameter() -> None:
    prior = BetaPrior(alpha=1.5, beta=2.0)
    value = prob_beats_exact(30, 200, 40, 210, prior)
    reference = _scipy_prob_beats((31.5, 172.0), (41.5, 172.0))
    assert value == pytest.approx(reference, abs=1e-9)
    with pytest.raises(ValueError, match="integer prior"):
        prob_beats_exact(30, 200, 40, 210, BetaPrior(alpha=1.5, beta=2.5))


@pytest.mark.parametrize(("ca", "na", "cb", "nb"), GRID)
def test_exact_is_antisymmetric(ca: int, na: int, cb: int, nb: int) -> None:
    assert prob_beats_exact(ca, na, cb, nb) + prob_beats_exact(cb, nb, ca, na) == pytest.approx(
        1.0, abs=1e-8
    )


def test_exact_stays_fast_at_1e8() -> None:
    # Summed term by term, alpha = 5e7 would take tens of seconds.
    start = time.perf_counter()
    value = prob_beats_exact(50_000_000, 100_000_000, 50_010_000, 100_000_000)
    assert time.perf_counter() - start < 2.0
    # Normal approximation: difference 1e-4, sd sqrt(2 * 0.25 / 1e8).
    assert value == pytest.approx(0.5 * math.erfc(-1e-4 / math.sqrt(5e-9) / math.sqrt(2)), abs=1e-4)


# -- Monte Carlo against the closed form ---------------------------------------------------


@pytest.mark.parametrize(("ca", "na", "cb", "nb"), GRID)
def test_monte_carlo_matches_exact(ca: int, na: int, cb: int, nb: int) -> None:
    result = beta_binomial([ca, cb], [na, nb], draws=MILLION)
    control, arm = result.arms
    exact = prob_beats_exact(ca, na, cb, nb)
    assert arm.prob_beat_control is not None and arm.prob_beat_control_se is not None
    assert abs(arm.prob_beat_control - exact) < 0.002  # the acceptance bound
    # ... and far tighter: the tabulation bias is < 1e-6, the rest is Monte Carlo error.
    assert abs(arm.prob_beat_control - exact) < 1e-6 + 6 * arm.prob_beat_control_se
    assert arm.prob_best == arm.prob_beat_control
    assert control.prob_best + arm.prob_best == pytest.approx(1.0, abs=1e-6)
    assert control.prob_beat_control is None and control.lift_interval is None


def test_default_draws_meet_the_error_target() -> None:
    cases = [
        ([480, 530], [5000, 5000]),
        ([480, 530, 500, 520, 490], [5000] * 5),
        ([480 + 7 * i for i in range(10)], [5000] * 10),
        ([50, 600], [1000, 10_000]),
        ([0, 3], [10, 10]),
        ([1, 100_000], [10, 1_000_000]),
    ]
    for conversions, units in cases:
        result = beta_binomial(conversions, units)
        assert result.draws >= DEFAULT_DRAWS * 0.9
        for arm in result.arms:
            assert arm.prob_best_se < 1e-4
            assert arm.prob_beat_control_se is None or arm.prob_beat_control_se < 1e-4
        exact = prob_beats_exact(conversions[0], units[0], conversions[1], units[1])
        beat = result.arms[1].prob_beat_control
        assert beat is not None and abs(beat - exact) < 5e-4


def test_many_arms_against_numpy_simulation() -> None:
    conversions, units = [480, 530, 500, 520, 490], [5000] * 5
    result = beta_binomial(conversions, units, control=2, draws=1 << 17)
    rng = np.random.default_rng(7)
    n = 2_000_000
    draws = np.stack([rng.beta(1 + c, 1 + u - c, n) for c, u in zip(conversions, units)])
    best = np.bincount(draws.argmax(axis=0), minlength=5) / n
    loss = draws.max(axis=0).mean() - draws.mean(axis=1)
    assert sum(a.prob_best for a in result.arms) == pytest.approx(1.0, abs=1e-5)
    for k, arm in enumerate(result.arms):
        plain_se = math.sqrt(best[k] * (1 - best[k]) / n)
        assert abs(arm.prob_best - best[k]) < 5 * plain_se
        if k != 2:
            beat = float((draws[k] > draws[2]).mean())
            assert arm.prob_beat_control is not None
            assert abs(arm.prob_beat_control - beat) < 5 * math.sqrt(beat * (1 - beat) / n)
        # The loss of arm k is a mean of max - X_k; its plain MC error is below 1e-5 here.
        assert arm.expected_loss == pytest.approx(loss[k], abs=3e-5)
        assert 0 <= arm.expected_loss_se < 1e-6
    assert result.arms[2].prob_beat_control is None


def test_expected_loss_two_arms_closed_form() -> None:
    # E[(X_a - X_b)^+] for two Betas, by quadrature of P(X_a - X_b > t) over t.
    a, b = (481, 4521), (531, 4471)
    result = beta_binomial([480, 530], [5000, 5000], draws=1 << 18)
    dist_a, dist_b = stats.beta(*a), stats.beta(*b)
    xs = np.linspace(0.06, 0.15, 200_001)
    # E[max] = integral of (1 - F_a F_b) over [0, 1]; the product is 0 below xs[0], 1 above.
    e_max = xs[-1] - np.trapezoid(dist_a.cdf(xs) * dist_b.cdf(xs), xs)
    assert result.arms[0].expected_loss == pytest.approx(e_max - dist_a.mean(), abs=2e-8)
    assert result.arms[1].expected_loss == pytest.approx(e_max - dist_b.mean(), abs=2e-8)


# -- seeds and threads ---------------------------------------------------------------------


def _encoded(result: BayesResult) -> bytes:
    return msgspec.json.encode(result)


@pytest.mark.parametrize("draws", [DEFAULT_DRAWS, MILLION])
def test_same_seed_same_numbers_across_thread_counts(draws: int) -> None:
    conversions, units = [480, 530, 500, 520, 490], [5000] * 5
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = beta_binomial(conversions, units, draws=draws, seed=42)
        numba.set_num_threads(2)
        two = beta_binomial(conversions, units, draws=draws, seed=42)
    finally:
        numba.set_num_threads(threads)
    assert _encoded(one) == _encoded(two)
    other = beta_binomial(conversions, units, draws=draws, seed=43)
    assert other.arms[1].prob_best != one.arms[1].prob_best
    assert other.arms[1].prob_best == pytest.approx(one.arms[1].prob_best, abs=1e-4)


def test_serial_and_threaded_kernels_agree_bit_for_bit() -> None:
    p = np.array([481.0, 531.0, 11.0])
    q = np.array([4521.0, 4471.0, 91.0])
    lo, width, _, coef, _ = posterior_kernels.tabulate(0, p, q)
    edges = bayes._pieces(lo, width, 1 << 16)
    serial = posterior_kernels.sums_serial(lo, width, coef, edges, 1, 0.1, np.uint64(9))
    threaded = posterior_kernels.sums_parallel(lo, width, coef, edges, 1, 0.1, np.uint64(9))
    for x, y in zip(serial, threaded, strict=True):
        assert np.array_equal(x, y)


def test_same_seed_same_numbers_across_runs() -> None:
    code = (
        "import msgspec, sys\n"
        "from analytics.bayes import beta_binomial, normal_means\n"
        "a = beta_binomial([480, 530, 500], [5000] * 3, seed=5)\n"
        "b = normal_means([3.0, 2.9], [4.0, 4.5], [400, 380], seed=5, higher_is_better=False)\n"
        "sys.stdout.write(msgspec.json.encode([a, b]).decode())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600
    ).stdout
    here = [
        beta_binomial([480, 530, 500], [5000] * 3, seed=5),
        normal_means([3.0, 2.9], [4.0, 4.5], [400, 380], seed=5, higher_is_better=False),
    ]
    assert json.loads(out) == json.loads(msgspec.json.encode(here))


def test_restart_loads_the_compiled_kernels_from_the_cache() -> None:
    code = (
        "from analytics import bayes, posterior_kernels as pk\n"
        "bayes.warm_up()\n"
        "kernels = [pk.tabulate, pk.sums_serial, pk.sums_parallel, pk.lift_bounds, pk.intervals]\n"
        "print(sum(len(k.stats.cache_misses) for k in kernels),\n"
        "      sum(sum(k.stats.cache_hits.values()) for k in kernels))\n"
    )
    env = {**os.environ, "NUMBA_DEBUG_CACHE": "0"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    misses, hits = int(out[0]), int(out[1])
    assert misses == 0 and hits >= 5


# -- tabulation, intervals, lift -----------------------------------------------------------


@pytest.mark.parametrize(
    ("alpha", "beta"),
    [(1.0, 11.0), (11.0, 1.0), (1.0, 1.0), (481.0, 4521.0), (1e7 + 1, 9e7 + 1), (2.0, 1e8)],
)
def test_tabulated_cdf_and_quantiles_match_scipy(alpha: float, beta: float) -> None:
    lo, width, cdf, coef, means = posterior_kernels.tabulate(0, np.array([alpha]), np.array([beta]))
    dist = stats.beta(alpha, beta)
    for u in (1e-6, 0.025, 0.3, 0.5, 0.9, 0.975, 1 - 1e-6):
        x = posterior_kernels.quantile(lo, width, cdf, coef, 0, u)
        assert dist.cdf(x) == pytest.approx(u, abs=2e-7)
        assert posterior_kernels.cdf_density(lo, width, coef, 0, x)[0] == pytest.approx(
            u, abs=1e-12
        )
    assert means[0] == pytest.approx(dist.mean(), rel=1e-7, abs=1e-12)


def test_credible_interval_of_the_rate() -> None:
    result = beta_binomial([0, 480, 10], [10, 5000, 10], credibility=0.9)
    for arm, (a, b) in zip(result.arms, [(1, 11), (481, 4521), (11, 1)], strict=True):
        lo, hi = stats.beta(a, b).ppf([0.05, 0.95])
        assert arm.interval == pytest.approx((lo, hi), abs=1e-6)
    assert result.credibility == 0.9


@pytest.mark.parametrize(
    ("conversions", "units"),
    [([480, 530], [5000, 5000]), ([50, 600], [1000, 10_000]), ([3, 0], [10, 10])],
)
def test_lift_interval_against_numpy_simulation(conversions: list[int], units: list[int]) -> None:
    """The empirical CDF of 2M plain ratio draws at our bounds has a binomial standard
    error sqrt(q(1 - q) / 2e6) ~ 1.1e-4 at q = 0.025: it must be within 5 of those."""
    result = beta_binomial(conversions, units)
    lift = result.arms[1].lift_interval
    assert lift is not None
    rng = np.random.default_rng(11)
    n = 2_000_000
    (ca, cb), (na, nb) = conversions, units
    ratio = rng.beta(1 + cb, 1 + nb - cb, n) / rng.beta(1 + ca, 1 + na - ca, n) - 1.0
    tolerance = 5 * math.sqrt(0.025 * 0.975 / n)
    assert float((ratio <= lift[0]).mean()) == pytest.approx(0.025, abs=tolerance)
    assert float((ratio <= lift[1]).mean()) == pytest.approx(0.975, abs=tolerance)


# -- normal means --------------------------------------------------------------------------


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2))


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_normal_means_two_arms_closed_form(higher_is_better: bool) -> None:
    means, variances, units = [3.0, 3.2], [4.0, 5.0], [400, 500]
    result = normal_means(means, variances, units, higher_is_better=higher_is_better)
    sd_a, sd_b = math.sqrt(4.0 / 400), math.sqrt(5.0 / 500)
    spread = math.hypot(sd_a, sd_b)
    gap = 0.2 if higher_is_better else -0.2  # how much better B is
    beat, beat_se = result.arms[1].prob_beat_control, result.arms[1].prob_beat_control_se
    assert beat is not None and beat_se is not None
    assert beat == pytest.approx(_phi(gap / spread), abs=1e-7 + 6 * beat_se)
    # Loss of choosing A is E[(better of B - A)^+] for D ~ N(gap, spread^2)
    z = gap / spread
    loss_a = gap * _phi(z) + spread * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    loss_tolerance = 1e-7 + 6 * result.arms[0].expected_loss_se
    assert result.arms[0].expected_loss == pytest.approx(loss_a, abs=loss_tolerance)
    assert result.arms[1].expected_loss == pytest.approx(loss_a - gap, abs=loss_tolerance)
    half = stats.norm.ppf(0.975)
    assert result.arms[0].interval == pytest.approx((3.0 - half * sd_a, 3.0 + half * sd_a))
    lift = result.arms[1].lift_interval
    rng = np.random.default_rng(3)
    n = 2_000_000
    ratio = rng.normal(3.2, sd_b, n) / rng.normal(3.0, sd_a, n) - 1.0
    assert lift is not None
    tolerance = 5 * math.sqrt(0.025 * 0.975 / n)
    assert float((ratio <= lift[0]).mean()) == pytest.approx(0.025, abs=tolerance)
    assert float((ratio <= lift[1]).mean()) == pytest.approx(0.975, abs=tolerance)


def test_normal_means_control_straddling_zero_has_no_lift() -> None:
    result = normal_means([0.01, 0.5], [1.0, 1.0], [100, 100])
    arm = result.arms[1]
    assert arm.lift_interval is None
    assert arm.prob_beat_control is not None and arm.prob_beat_control_se is not None
    expected = _phi(0.49 / math.sqrt(0.02))
    assert arm.prob_beat_control == pytest.approx(expected, abs=6 * arm.prob_beat_control_se)


def test_normal_means_constant_metric() -> None:
    result = normal_means([2.0, 3.0, 3.0], [0.0, 0.0, 1.0], [50, 50, 50], higher_is_better=False)
    first = result.arms[0]
    assert (
        first.prob_best == pytest.approx(1.0, abs=6 * first.prob_best_se) and first.prob_best <= 1
    )
    assert result.arms[1].prob_beat_control == 0.0
    assert result.arms[0].interval == pytest.approx((2.0, 2.0))


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"conversions": [1], "units": [10]}, "between 2 and"),
        ({"conversions": [1, 2], "units": [10]}, "conversion counts"),
        ({"conversions": [11, 2], "units": [10, 10]}, "must not exceed"),
        ({"conversions": [-1, 2], "units": [10, 10]}, ">= 0"),
        ({"conversions": [1.5, 2], "units": [10, 10]}, "whole numbers"),
        ({"control": 2}, "control must be"),
        ({"draws": MIN_DRAWS - 1}, "draws must be"),
        ({"draws": MAX_DRAWS + 1}, "draws must be"),
        ({"seed": -1}, "seed must be"),
        ({"credibility": 1.0}, "credibility"),
        ({"prior": BetaPrior(alpha=0.5, beta=0.5)}, "prior alpha and beta"),
    ],
)
def test_beta_binomial_rejects_bad_input(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"conversions": [1, 2], "units": [10, 10], **kwargs}
    with pytest.raises(ValueError, match=message):
        beta_binomial(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("means", "variances", "units", "message"),
    [
        ([1.0, 2.0], [1.0], [5, 5], "one entry per arm"),
        ([1.0, math.nan], [1.0, 1.0], [5, 5], "finite"),
        ([1.0, 2.0], [-1.0, 1.0], [5, 5], "variances must be >= 0"),
        ([1.0, 2.0], [1.0, 1.0], [0, 5], "at least 1 unit"),
    ],
)
def test_normal_means_rejects_bad_input(
    means: list[float], variances: list[float], units: list[int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        normal_means(means, variances, units)


def test_exact_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="must not exceed"):
        prob_beats_exact(11, 10, 1, 10)
    with pytest.raises(ValueError, match=">= 0"):
        prob_beats_exact(1, 10, -1, 10)
