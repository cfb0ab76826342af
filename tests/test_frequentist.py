"""Tests of analytics.frequentist against scipy.stats and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from analytics.frequentist import (
    SampleRatio,
    WelchResult,
    sample_ratio_test,
    two_proportion_p_value,
    units_per_arm_for_means,
    units_per_arm_for_proportions,
    welch_t_test,
)

# --- two-proportion z-test ------------------------------------------------------------------


def _scipy_z_test(ca: int, na: int, cb: int, nb: int) -> float:
    pooled = (ca + cb) / (na + nb)
    se = math.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
    z = (cb / nb - ca / na) / se
    return float(2 * stats.norm.sf(abs(z)))


@pytest.mark.parametrize(
    ("ca", "na", "cb", "nb"),
    [
        (480, 5000, 530, 5000),
        (100, 1000, 130, 1000),
        (5, 40, 1, 35),
        (12_000, 100_000, 12_500, 100_000),
        (3, 10, 9, 10),
        (1_000_000, 100_000_000, 1_010_000, 100_000_000),
    ],
)
def test_two_proportion_p_value_matches_scipy(ca: int, na: int, cb: int, nb: int) -> None:
    got = two_proportion_p_value(ca, na, cb, nb)
    assert got == pytest.approx(_scipy_z_test(ca, na, cb, nb), rel=1e-12)
    assert got == two_proportion_p_value(cb, nb, ca, na)


def test_two_proportion_p_value_by_hand() -> None:
    # 480/5000 vs 530/5000: pooled 0.101, se = sqrt(0.101 * 0.899 * 2/5000) = 0.0060265,
    # z = 0.01 / se = 1.6593, p = 2 (1 - Φ(1.6593)) = 0.09705.
    assert two_proportion_p_value(480, 5000, 530, 5000) == pytest.approx(0.097052, abs=1e-6)
    # The 2x2 chi-square test without continuity correction is the same test (chi2 = z^2).
    table = np.array([[480, 4520], [530, 4470]])
    chi2 = stats.chi2_contingency(table, correction=False)
    assert two_proportion_p_value(480, 5000, 530, 5000) == pytest.approx(chi2.pvalue, rel=1e-10)


def test_two_proportion_degenerate_cases() -> None:
    assert two_proportion_p_value(0, 100, 0, 200) == 1.0
    assert two_proportion_p_value(100, 100, 200, 200) == 1.0
    assert two_proportion_p_value(50, 100, 50, 100) == 1.0
    # One arm at 0%, the other at 100%: as different as it gets.
    assert two_proportion_p_value(0, 1000, 1000, 1000) < 1e-200


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 0, 1, 10), "at least one unit"),
        ((1, 10, 0, 0), "at least one unit"),
        ((11, 10, 1, 10), "conversions_a \\(11\\) cannot exceed units_a \\(10\\)"),
        ((1, 10, 12, 10), "conversions_b \\(12\\) cannot exceed units_b"),
        ((-1, 10, 1, 10), "conversions_a must be >= 0"),
        ((1, -10, 1, 10), "units_a must be >= 0"),
        ((1.5, 10, 1, 10), "conversions_a must be a whole number"),
    ],
)
def test_two_proportion_rejects_invalid_counts(args: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        two_proportion_p_value(*args)


def test_two_proportion_accepts_numpy_integers() -> None:
    assert two_proportion_p_value(
        np.int64(480), np.int64(5000), np.uint32(530), 5000
    ) == two_proportion_p_value(480, 5000, 530, 5000)


# --- Welch t-test ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ma", "va", "na", "mb", "vb", "nb"),
    [
        (1.0, 1.0, 100, 1.3, 2.0, 120),
        (0.42, 0.09, 5000, 0.40, 0.11, 4800),
        (12.5, 400.0, 3, 30.0, 9.0, 4),
        (5.0, 2.0, 2, 5.0, 2.0, 2),
        (1e6, 1e14, 50_000, 1.001e6, 2e14, 60_000),
        (3.0, 0.0, 10, 3.5, 1.0, 12),
    ],
)
def test_welch_matches_scipy(ma: float, va: float, na: int, mb: float, vb: float, nb: int) -> None:
    result = welch_t_test(ma, va, na, mb, vb, nb)
    reference = stats.ttest_ind_from_stats(
        mb, math.sqrt(vb), nb, ma, math.sqrt(va), na, equal_var=False
    )
    assert result.t == pytest.approx(float(reference.statistic), rel=1e-12, abs=1e-300)
    assert result.p_value == pytest.approx(float(reference.pvalue), rel=1e-10)
    ua, ub = va / na, vb / nb
    satterthwaite = (ua + ub) ** 2 / (ua**2 / (na - 1) + ub**2 / (nb - 1))
    assert result.df == pytest.approx(satterthwaite, rel=1e-12)


def test_welch_by_hand() -> None:
    # u_a = 1/100, u_b = 2/120; t = 0.3 / sqrt(0.02667) = 1.8371;
    # df = 0.02667^2 / (0.01^2/99 + 0.016667^2/119) = 212.63.
    result = welch_t_test(1.0, 1.0, 100, 1.3, 2.0, 120)
    assert result.t == pytest.approx(1.837117, abs=1e-6)
    assert result.df == pytest.approx(212.6294, abs=1e-4)
    assert 0.06 < result.p_value < 0.07
    # One variance zero: df is the other arm's n - 1.
    assert welch_t_test(3.0, 0.0, 10, 3.5, 1.0, 12).df == pytest.approx(11.0, rel=1e-14)


def test_welch_zero_variance_in_both_arms() -> None:
    assert welch_t_test(2.0, 0.0, 10, 2.0, 0.0, 20) == WelchResult(t=0.0, df=28.0, p_value=1.0)
    lower = welch_t_test(2.0, 0.0, 10, 1.0, 0.0, 20)
    assert lower == WelchResult(t=-math.inf, df=28.0, p_value=0.0)
    assert welch_t_test(1.0, 0.0, 10, 2.0, 0.0, 20).t == math.inf


def test_welch_huge_variances_do_not_overflow() -> None:
    result = welch_t_test(0.0, 1e300, 1000, 1e150, 1e300, 1000)
    assert math.isfinite(result.df) and result.df == pytest.approx(1998.0, rel=1e-12)
    assert 0.0 < result.p_value < 1.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((1.0, 1.0, 1, 1.0, 1.0, 10), "at least 2 units per arm"),
        ((1.0, -1.0, 10, 1.0, 1.0, 10), "variances must be >= 0"),
        ((math.nan, 1.0, 10, 1.0, 1.0, 10), "mean_a must be a finite number"),
        ((1.0, 1.0, 10, 1.0, math.inf, 10), "variance_b must be a finite number"),
        ((1.0, 1.0, -3, 1.0, 1.0, 10), "units_a must be >= 0"),
    ],
)
def test_welch_rejects_invalid_input(args: tuple[float, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        welch_t_test(*args)  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(
    st.floats(-1e3, 1e3),
    st.floats(1e-3, 1e3),
    st.integers(2, 10**6),
    st.floats(-1e3, 1e3),
    st.floats(1e-3, 1e3),
    st.integers(2, 10**6),
)
def test_welch_properties(ma: float, va: float, na: int, mb: float, vb: float, nb: int) -> None:
    result = welch_t_test(ma, va, na, mb, vb, nb)
    swapped = welch_t_test(mb, vb, nb, ma, va, na)
    assert swapped.t == -result.t and swapped.df == result.df
    assert swapped.p_value == result.p_value
    assert 0.0 <= result.p_value <= 1.0
    assert min(na, nb) - 1 <= result.df * (1 + 1e-12)
    assert result.df <= (na + nb - 2) * (1 + 1e-12)


# --- sample ratio mismatch ------------------------------------------------------------------


def test_srm_issue_examples() -> None:
    # The issue's acceptance pair. 5,000 vs 5,300 on a 50/50 split gives chi2 = 8.738 and
    # p = 0.0031 (scipy.stats.chisquare agrees): flagged at the default threshold (0.005;
    # at the usual 0.001 it would not be). 5,000 vs 5,050 gives p = 0.618: never flagged.
    skewed = sample_ratio_test([5000, 5300], [0.5, 0.5])
    assert skewed.chi2 == pytest.approx(2 * 150**2 / 5150, rel=1e-14)
    assert skewed.p_value == pytest.approx(0.00311669383987, rel=1e-11)
    assert skewed.flagged
    assert not sample_ratio_test([5000, 5300], [0.5, 0.5], threshold=0.001).flagged
    close = sample_ratio_test([5000, 5050], [1, 1], threshold=0.01)
    assert close.p_value == pytest.approx(0.61795, abs=1e-5)
    assert not close.flagged
    assert not sample_ratio_test([5000, 5050], [0.5, 0.5]).flagged
    assert sample_ratio_test([5000, 5600], [0.5, 0.5]).flagged


@pytest.mark.parametrize(
    ("observed", "weights"),
    [
        ([5000, 5300], [0.5, 0.5]),
        ([1000, 1100, 950], [1, 1, 1]),
        ([700, 200, 100], [70, 20, 10]),
        ([8000, 1900, 95, 5], [0.8, 0.19, 0.009, 0.001]),
        ([10, 30], [0.3, 0.7]),
    ],
)
def test_srm_matches_scipy_chisquare(observed: list[int], weights: list[float]) -> None:
    total = sum(observed)
    expected = [total * w / sum(weights) for w in weights]
    reference = stats.chisquare(observed, expected)
    result = sample_ratio_test(observed, weights)
    assert result.chi2 == pytest.approx(float(reference.statistic), rel=1e-12)
    assert result.p_value == pytest.approx(float(reference.pvalue), rel=1e-10)
    assert result.expected == pytest.approx(expected, rel=1e-15)


def test_srm_weights_need_not_sum_to_one() -> None:
    assert sample_ratio_test([500, 500], [3, 3]) == sample_ratio_test([500, 500], [0.5, 0.5])
    assert sample_ratio_test([900, 100], [9, 1]).expected == [900.0, 100.0]


def test_srm_zero_weight_arms() -> None:
    # An arm of weight 0 with no exposures is left out of the test (df = 2 - 1 here).
    idle = sample_ratio_test([5000, 5050, 0], [0.5, 0.5, 0.0])
    assert idle.p_value == pytest.approx(sample_ratio_test([5000, 5050], [1, 1]).p_value)
    assert idle.expected[2] == 0.0 and not idle.flagged
    # Any exposure in an arm of weight 0 means the split is broken.
    leak = sample_ratio_test([5000, 5000, 1], [0.5, 0.5, 0.0])
    assert leak == SampleRatio(chi2=math.inf, p_value=0.0, flagged=True, expected=leak.expected)


def test_srm_nothing_to_test() -> None:
    empty = sample_ratio_test([0, 0], [1, 1])
    assert empty == SampleRatio(chi2=0.0, p_value=1.0, flagged=False, expected=[0.0, 0.0])
    single = sample_ratio_test([0, 40], [0, 1])
    assert not single.flagged and single.p_value == 1.0


@pytest.mark.parametrize(
    ("observed", "weights", "threshold", "message"),
    [
        ([1, 2, 3], [1, 1], 0.001, "observed has 3 arms but weights has 2"),
        ([1], [1], 0.001, "at least 2 arms"),
        ([1, -2], [1, 1], 0.001, "observed\\[1\\] must be >= 0"),
        ([1, 2], [1, -1], 0.001, "weights must be >= 0"),
        ([1, 2], [0, 0], 0.001, "at least one weight must be > 0"),
        ([1, 2], [1, math.nan], 0.001, "weights\\[1\\] must be a finite number"),
        ([1, 2], [1, 1], 0.0, "threshold must be strictly between 0 and 1"),
        ([1, 2], [1, 1], 1.5, "threshold must be strictly between 0 and 1"),
    ],
)
def test_srm_rejects_invalid_input(
    observed: list[int], weights: list[float], threshold: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        sample_ratio_test(observed, weights, threshold)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 10**7), min_size=2, max_size=10))
def test_srm_p_value_is_a_probability(observed: list[int]) -> None:
    result = sample_ratio_test(observed, [1.0] * len(observed))
    assert 0.0 <= result.p_value <= 1.0 and result.chi2 >= 0.0
    assert math.fsum(result.expected) == pytest.approx(sum(observed), rel=1e-12, abs=1e-9)


# --- sample sizes ---------------------------------------------------------------------------


def _fleiss_reference(p1: float, p2: float, alpha: float, power: float) -> float:
    z_alpha = float(stats.norm.ppf(1 - alpha / 2))
    z_power = float(stats.norm.ppf(power))
    mean = (p1 + p2) / 2
    spread = z_alpha * math.sqrt(2 * mean * (1 - mean)) + z_power * math.sqrt(
        p1 * (1 - p1) + p2 * (1 - p2)
    )
    return spread**2 / (p2 - p1) ** 2


def test_units_for_proportions_documented_example() -> None:
    # z_a = 1.959964, z_b = 0.841621, p = 0.105:
    # (1.959964 sqrt(0.18795) + 0.841621 sqrt(0.1879))^2 / 0.01^2 = 14750.79 -> 14751.
    assert units_per_arm_for_proportions(0.10, 0.10) == 14751
    assert _fleiss_reference(0.10, 0.11, 0.05, 0.8) == pytest.approx(14750.79, abs=0.01)


@pytest.mark.parametrize(
    ("base", "mde", "alpha", "power"),
    [
        (0.10, 0.10, 0.05, 0.8),
        (0.05, 0.20, 0.05, 0.9),
        (0.30, -0.10, 0.01, 0.8),
        (0.02, 0.05, 0.10, 0.95),
        (0.5, 0.5, 0.05, 0.5),
    ],
)
def test_units_for_proportions_match_scipy_formula(
    base: float, mde: float, alpha: float, power: float
) -> None:
    want = _fleiss_reference(base, base * (1 + mde), alpha, power)
    assert units_per_arm_for_proportions(base, mde, alpha, power) == math.ceil(want)


def test_units_for_proportions_reach_the_power_they_promise() -> None:
    # Under the alternative, the pooled z-test at n units per arm rejects with probability
    # Φ((|p2 - p1| - z_a sqrt(2 p̄ q̄ / n)) / sqrt((p1 q1 + p2 q2) / n)) >= power.
    p1, p2 = 0.10, 0.11
    n = units_per_arm_for_proportions(p1, 0.10)
    z_alpha = float(stats.norm.ppf(0.975))
    mean = (p1 + p2) / 2
    achieved = stats.norm.cdf(
        (abs(p2 - p1) - z_alpha * math.sqrt(2 * mean * (1 - mean) / n))
        / math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / n)
    )
    assert 0.8 <= achieved < 0.80002


def test_units_for_means() -> None:
    # 2 (1.959964 + 0.841621)^2 / 0.1^2 = 1569.78 -> 1570.
    assert units_per_arm_for_means(1.0, 0.1) == 1570
    assert units_per_arm_for_means(1.0, -0.1) == 1570
    assert units_per_arm_for_means(2.0, 0.2) == 1570
    z = float(stats.norm.ppf(0.995)) + float(stats.norm.ppf(0.9))
    assert units_per_arm_for_means(35.0, 4.0, 0.01, 0.9) == math.ceil(2 * z * z * 35**2 / 16)
    assert units_per_arm_for_means(1.0, 100.0) == 1


def test_units_for_proportions_up_to_a_rate_of_one() -> None:
    # p2 = 1 (or 0) is a valid alternative: its variance term is 0.
    assert units_per_arm_for_proportions(0.5, 1.0) == math.ceil(
        _fleiss_reference(0.5, 1.0, 0.05, 0.8)
    )
    assert units_per_arm_for_proportions(0.5, -1.0) == math.ceil(
        _fleiss_reference(0.5, 0.0, 0.05, 0.8)
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: units_per_arm_for_proportions(0.0, 0.1), "base_rate must be strictly"),
        (lambda: units_per_arm_for_proportions(0.1, 0.0), "relative_mde must be non-zero"),
        (lambda: units_per_arm_for_proportions(0.6, 1.0), "use a smaller relative_mde"),
        (lambda: units_per_arm_for_proportions(0.1, 0.1, alpha=1.0), "alpha must be strictly"),
        (lambda: units_per_arm_for_proportions(0.1, 0.1, power=0.0), "power must be strictly"),
        (lambda: units_per_arm_for_means(0.0, 1.0), "std_dev must be > 0"),
        (lambda: units_per_arm_for_means(1.0, 0.0), "absolute_mde must be non-zero"),
        (lambda: units_per_arm_for_means(1.0, 1.0, alpha=-0.1), "alpha must be strictly"),
        (lambda: units_per_arm_for_means(1.0, math.inf), "absolute_mde must be a finite"),
    ],
)
def test_sample_sizes_reject_invalid_input(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]
