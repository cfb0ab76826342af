"""Tests of analytics.special against scipy (moderate arguments) and mpmath (extremes).

analytics.special calls scipy.special for most of them and adds domain checks and the form
of each call that keeps precision in both tails. Where scipy's plain calls lose digits
(``betaln(0.1, 1e6)`` to 1.4e-9, ``stdtr`` near t = 0, huge degrees of freedom), the cases
are checked against values computed once with mpmath at 50 significant digits, written out
below.
"""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special as sp
from scipy import stats

from analytics.special import (
    chi2_sf,
    log_beta,
    norm_cdf,
    norm_ppf,
    norm_sf,
    student_t_sf,
)

RTOL = 1e-12


def _close(got: float, want: float, rtol: float = RTOL) -> bool:
    return got == want or abs(got - want) <= rtol * abs(want)


# --- normal distribution -----------------------------------------------------------------

NORMAL_GRID = [i / 8 for i in range(-300, 301)] + [-37.5, -37.0, 37.0, 37.5]


def test_norm_cdf_and_sf_match_scipy_into_both_tails() -> None:
    for x in NORMAL_GRID:
        assert _close(norm_cdf(x), float(sp.ndtr(x))), x
        assert _close(norm_sf(x), float(stats.norm.sf(x))), x


def test_norm_tails_keep_relative_precision_near_1e_300() -> None:
    # P(Z > 37) = 5.7e-300: 1 - cdf would give 0, erfc keeps every digit.
    assert norm_sf(37.0) > 0.0
    assert _close(norm_sf(37.0), float(stats.norm.sf(37.0)))
    assert norm_cdf(-37.0) == norm_sf(37.0)
    assert norm_sf(-math.inf) == 1.0 and norm_sf(math.inf) == 0.0


def _ppf_points() -> list[float]:
    points = [i / 1000 for i in range(1, 1000)]
    for exponent in range(-300, 0):
        for mantissa in (1.0, 3.7):
            p = mantissa * 10.0**exponent
            points.extend([p, 1.0 - p] if 1.0 - p < 1.0 else [p])
    return points


def test_norm_ppf_matches_scipy_to_full_double_precision() -> None:
    worst = max(
        abs(norm_ppf(p) - float(sp.ndtri(p))) / abs(float(sp.ndtri(p)))
        for p in _ppf_points()
        if p != 0.5
    )
    assert worst < 2e-15


def test_norm_ppf_endpoints_and_domain() -> None:
    assert norm_ppf(0.5) == 0.0
    assert norm_ppf(0.0) == -math.inf
    assert norm_ppf(1.0) == math.inf
    assert _close(norm_ppf(0.975), 1.959963984540054, 1e-15)
    for bad in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match="probability p in \\[0, 1\\]"):
            norm_ppf(bad)


@given(st.floats(min_value=1e-300, max_value=1.0 - 1e-16))
def test_norm_ppf_inverts_cdf(p: float) -> None:
    x = norm_ppf(p)
    # Where the CDF is steep in relative terms, x pins p down to a few ulps of x.
    assert _close(norm_cdf(x), p, 1e-13 * max(1.0, abs(x)) ** 2)


@given(st.floats(min_value=-40.0, max_value=40.0), st.floats(min_value=-40.0, max_value=40.0))
def test_norm_cdf_is_monotone_and_symmetric(x: float, y: float) -> None:
    if x <= y:
        assert norm_cdf(x) <= norm_cdf(y)
    assert norm_cdf(x) == norm_sf(-x)
    assert 0.0 <= norm_cdf(x) <= 1.0


# --- log_beta ---------------------------------------------------------------------

SHAPES = [1e-3, 0.1, 0.5, 1.0, 2.5, 7.0, 9.99, 10.0, 30.0, 100.0, 1e3, 1e4, 1e5]


def test_log_beta_matches_scipy() -> None:
    # scipy's betaln is itself off by up to 2.4e-11 when one argument is 1e4 or more and the
    # other small (mpmath: log_beta here is within 5e-16 on this whole grid).
    for a, b in itertools.product(SHAPES, SHAPES):
        assert _close(log_beta(a, b), float(sp.betaln(a, b)), 5e-11), (a, b)


@pytest.mark.parametrize("a", [1e-3, 0.5, 3.0, 9.99, 10.0, 123.4, 1e5, 1e8])
def test_log_beta_closed_forms(a: float) -> None:
    # B(a, 1) = 1/a and B(a, 2) = 1/(a (a + 1)).
    assert _close(log_beta(a, 1.0), -math.log(a), 1e-14)
    assert _close(log_beta(2.0, a), -math.log(a) - math.log1p(a), 1e-14)


@pytest.mark.parametrize(
    ("a", "b", "want"),
    [
        (0.1, 1e6, 0.8711616409377844),
        (1e-3, 1e4, 6.897968594962708),
        (1e8, 1.0, -18.420680743952367),
        (1e8, 1e8, -138629444.05681732),
        (2.5, 1e7, -40.01055644442287),
        (30.0, 1e8, -481.36338770140253),
    ],
)
def test_log_beta_large_arguments_against_mpmath(a: float, b: float, want: float) -> None:
    assert _close(log_beta(a, b), want, 1e-14)
    assert log_beta(b, a) == log_beta(a, b)


# --- Student t ----------------------------------------------------------------------------

T_VALUES = [-50.0, -5.0, -2.0, -1.0, -0.1, 0.0, 0.1, 0.5, 1.0, 1.96, 3.0, 5.0, 10.0, 30.0, 1e3]
DFS = [0.5, 1.0, 1.5, 2.0, 3.7, 10.0, 30.0, 100.0, 1e3, 1e4, 1e5]


def test_student_t_sf_matches_scipy() -> None:
    for t, df in itertools.product(T_VALUES, DFS):
        want = float(stats.t.sf(t, df))
        if want < 1e-290:
            continue
        assert _close(student_t_sf(t, df), want, 1e-11), (t, df)


@pytest.mark.parametrize(
    ("t", "df", "want"),
    [
        (2.0, 1e6, 0.022750266925659603),
        (2.0, 1e10, 0.02275013196167695),
        (4.0, 1e15, 3.1671241833122194e-05),
        (-3.0, 1e9, 0.998650101935131),
        (37.0, 1e4, 2.811315617639758e-281),
        (1.5, 3.3, 0.11125159835964593),
    ],
)
def test_student_t_sf_against_mpmath(t: float, df: float, want: float) -> None:
    assert _close(student_t_sf(t, df), want, 1e-12)


def test_student_t_sf_closed_forms_and_limits() -> None:
    # df = 1 is the Cauchy distribution: P(T > t) = 1/2 - atan(t)/π (scipy is off near 0).
    for t in (1e-8, 0.3, 1.0, 7.0):
        assert _close(student_t_sf(t, 1.0), 0.5 - math.atan(t) / math.pi, 1e-14)
    # df = 2: P(T > t) = (1 - t / sqrt(2 + t^2)) / 2.
    for t in (0.5, 3.0):
        assert _close(student_t_sf(t, 2.0), 0.5 * (1.0 - t / math.sqrt(2.0 + t * t)), 1e-14)
    assert student_t_sf(0.0, 7.0) == 0.5
    assert student_t_sf(1.3, math.inf) == norm_sf(1.3)
    assert student_t_sf(math.inf, 3.0) == 0.0 and student_t_sf(-math.inf, 3.0) == 1.0
    assert student_t_sf(1e200, 3.0) == 0.0
    for df in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="df > 0"):
            student_t_sf(1.0, df)
    with pytest.raises(ValueError, match="number t"):
        student_t_sf(math.nan, 3.0)


@settings(max_examples=150, deadline=None)
@given(st.floats(min_value=-1e3, max_value=1e3), st.floats(min_value=0.05, max_value=1e12))
def test_student_t_sf_is_symmetric_and_heavier_tailed_than_normal(t: float, df: float) -> None:
    upper = student_t_sf(t, df)
    assert 0.0 <= upper <= 1.0
    assert abs(upper + student_t_sf(-t, df) - 1.0) < 1e-14
    if t > 0.0:
        assert upper >= norm_sf(t) * (1.0 - 1e-12)


# --- chi-square ---------------------------------------------------------------------------


def test_chi2_sf_matches_scipy() -> None:
    for k in (0.5, 1.0, 2.0, 3.0, 5.0, 9.0, 10.0, 20.0, 50.0, 100.0, 1e3, 1e4):
        for x in (1e-10, 0.01, 0.5, 1.0, 2.0, 5.0, 0.5 * k, k - 1.0, k, k + 1.0, 1.5 * k, 3 * k):
            if x <= 0.0:
                continue
            want = float(stats.chi2.sf(x, k))
            if want < 1e-290:
                continue
            assert _close(chi2_sf(x, k), want, 1e-11), (x, k)
    # Far tail: 1 - cdf would be 0 here.
    assert _close(chi2_sf(1300.0, 2.0), float(stats.chi2.sf(1300.0, 2.0)), 1e-12)
    assert _close(chi2_sf(2.0, 2.0), math.exp(-1.0), 1e-15)


@pytest.mark.parametrize(
    ("x", "k", "want"),
    [(103000.0, 1e5, 1.5289130117302352e-11), (10050000.0, 1e7, 3.1315957887537176e-29)],
)
def test_chi2_sf_large_k_against_mpmath(x: float, k: float, want: float) -> None:
    assert _close(chi2_sf(x, k), want, 1e-10)


def test_chi2_sf_limits_and_domain() -> None:
    assert chi2_sf(0.0, 3.0) == 1.0 and chi2_sf(-1.0, 3.0) == 1.0
    assert chi2_sf(math.inf, 3.0) == 0.0
    with pytest.raises(ValueError, match="degrees of freedom"):
        chi2_sf(1.0, 0.0)
    with pytest.raises(ValueError, match="number x"):
        chi2_sf(math.nan, 1.0)


@settings(max_examples=150, deadline=None)
@given(st.floats(min_value=0.0, max_value=1e4), st.floats(min_value=0.0, max_value=1e4))
def test_chi2_sf_is_decreasing(x: float, y: float) -> None:
    low, high = sorted((x, y))
    assert 1.0 >= chi2_sf(low, 4.0) >= chi2_sf(high, 4.0) >= 0.0
    # One degree of freedom: the square of a standard normal.
    assert abs(chi2_sf(low, 1.0) - 2.0 * norm_sf(math.sqrt(low))) < 1e-14
