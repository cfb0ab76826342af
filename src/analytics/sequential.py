"""Always-valid p-values: tests that stay calibrated however often the results are read.

A fixed-horizon p-value (`analytics.frequentist`) is valid at one look, fixed in advance.
Read at every recomputation and acted on at the first p < alpha, it declares far more
false verdicts than alpha (about 15% at alpha 0.05 over ten looks). The p-values here are
valid at every look at once: for equal arms, the chance that the p-value is *ever* below
alpha, over any number of looks taken at any times, is at most alpha.

The method is the mixture sequential probability ratio test (mSPRT) of Johari, Pekelis
and Walsh, "Always Valid Inference: Continuous Monitoring of A/B Tests" (Operations
Research 70(3), 2022), on the normal approximation of a difference of means. With the
estimate d of the difference (challenger minus control), its variance V (from the data:
sample variances, or the pooled rate for conversion rates, as the fixed tests use) and a
normal mixture N(0, tau^2) over the true difference, z = d / sqrt(V) and r = tau^2 / V:

- two-sided: Lambda = (1 + r)^(-1/2) exp(z^2 r / (2 (1 + r)));
- one-sided (a half-normal mixture over positive differences, for the cost bound):
  Lambda = 2 (1 + r)^(-1/2) exp(z^2 r / (2 (1 + r))) Phi(z sqrt(r / (1 + r))).

Lambda is a martingale under no difference (a supermartingale under a negative one, for
the one-sided test), so by Ville's inequality P(ever Lambda >= 1 / alpha) <= alpha, and
p = min(1, 1 / Lambda) is the always-valid p-value. Rates are means of 0/1 outcomes.

The mixing spread: tau = `MIXING_SD` per-unit standard deviations of the compared metric
(tau^2 = MIXING_SD^2 * (var_control + var_challenger) / 2), so that the test reads the
same on any scale (rates, dollars, milliseconds). The critical |z| of the two-sided test
at alpha 0.05 is then 3.2 at 500 units per arm, 3.1 at 5,000 and 3.4 at 50,000 (a
fixed-horizon test: 1.96), the price of looking at will. A smaller tau would lower it at
large samples and raise it steeply at small ones (5.8 at 500 for tau = 0.03); a larger
one the reverse, more gently. In the simulations of bench/sequential.py, tau = 0.05 had
the same power with later winners and 0.2 less power; docs/statistics.md gives the
measured cost in power against a fixed-horizon test.

Every function is element-wise on numpy arrays (the simulations of bench/sequential.py
call the same code as the results); on floats it returns a 0-d array: take ``float()``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special  # type: ignore[import-untyped]  # no stubs shipped

from analytics.special import norm_ppf

__all__ = [
    "MIXING_SD",
    "critical_z",
    "excess_p_value",
    "means_p_value",
    "mixture_p_value",
    "proportions_p_value",
    "units_per_arm",
]

FloatArray = NDArray[np.float64]

MIXING_SD = 0.1
"""The mixture's standard deviation, in per-unit standard deviations of the metric."""

_LOG_2 = math.log(2.0)


def mixture_p_value(
    difference: ArrayLike, variance: ArrayLike, unit_variance: ArrayLike, one_sided: bool = False
) -> FloatArray:
    """The always-valid p-value of "no difference" from the estimated ``difference``, its
    ``variance`` and the per-unit variance that scales the mixture (tau^2 =
    MIXING_SD^2 * unit_variance). ``one_sided``: of "difference <= 0", small when the
    difference is significantly positive. A zero variance decides by the difference
    alone: 1.0 when it is 0 (or, one-sided, negative), else 0.0."""
    d = np.asarray(difference, dtype=np.float64)
    v = np.asarray(variance, dtype=np.float64)
    tau2 = MIXING_SD * MIXING_SD * np.asarray(unit_variance, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r = tau2 / v
        z2 = d * d / v
        log_ratio = -0.5 * np.log1p(r) + 0.5 * z2 * r / (1.0 + r)
        if one_sided:
            w = d / np.sqrt(v) * np.sqrt(r / (1.0 + r))
            log_ratio = log_ratio + _LOG_2 + special.log_ndtr(w)
        p = np.minimum(1.0, np.exp(-log_ratio))
    decided = (d > 0.0) if one_sided else (d != 0.0)
    result: FloatArray = np.where(v > 0.0, p, np.where(decided, 0.0, 1.0))
    return result


def proportions_p_value(
    conversions_a: ArrayLike, units_a: ArrayLike, conversions_b: ArrayLike, units_b: ArrayLike
) -> FloatArray:
    """Two-sided always-valid p-value of two conversion rates (b against a), with the
    pooled rate's variance, as the fixed-horizon z-test (`frequentist.two_proportion_p_value`).
    Every arm needs a unit."""
    ca, na = np.asarray(conversions_a, np.float64), np.asarray(units_a, np.float64)
    cb, nb = np.asarray(conversions_b, np.float64), np.asarray(units_b, np.float64)
    pooled = (ca + cb) / (na + nb)
    unit_variance = pooled * (1.0 - pooled)
    return mixture_p_value(cb / nb - ca / na, unit_variance * (1.0 / na + 1.0 / nb), unit_variance)


def means_p_value(
    mean_a: ArrayLike,
    variance_a: ArrayLike,
    units_a: ArrayLike,
    mean_b: ArrayLike,
    variance_b: ArrayLike,
    units_b: ArrayLike,
) -> FloatArray:
    """Two-sided always-valid p-value of two means (b against a) from sample variances,
    as the fixed-horizon Welch test (`frequentist.welch_t_test`)."""
    va, vb = np.asarray(variance_a, np.float64), np.asarray(variance_b, np.float64)
    na, nb = np.asarray(units_a, np.float64), np.asarray(units_b, np.float64)
    difference = np.asarray(mean_b, np.float64) - np.asarray(mean_a, np.float64)
    return mixture_p_value(difference, va / na + vb / nb, 0.5 * (va + vb))


def excess_p_value(
    mean_a: ArrayLike,
    variance_a: ArrayLike,
    units_a: ArrayLike,
    mean_b: ArrayLike,
    variance_b: ArrayLike,
    units_b: ArrayLike,
    bound: float,
) -> FloatArray:
    """One-sided always-valid p-value of "mean b is at most (1 + bound) times mean a"
    (small: b is significantly above that), the sequential form of
    `guardrails.cost_excess_p_value`: a test of b against a scaled by (1 + bound)."""
    scale = 1.0 + bound
    va = np.asarray(variance_a, np.float64) * scale * scale
    vb = np.asarray(variance_b, np.float64)
    na, nb = np.asarray(units_a, np.float64), np.asarray(units_b, np.float64)
    difference = np.asarray(mean_b, np.float64) - scale * np.asarray(mean_a, np.float64)
    return mixture_p_value(difference, va / na + vb / nb, 0.5 * (va + vb), one_sided=True)


def critical_z(units_per_arm: float, alpha: float) -> float:
    """The |z| the two-sided test needs at ``alpha`` with this many units in each of two
    arms of equal variance (r = MIXING_SD^2 * units / 2)."""
    r = MIXING_SD * MIXING_SD * units_per_arm / 2.0
    return math.sqrt((1.0 + 1.0 / r) * (2.0 * math.log(1.0 / alpha) + math.log1p(r)))


def units_per_arm(std_dev: float, absolute_mde: float, alpha: float, power: float) -> int:
    """Units per arm for the two-sided test to reach ``alpha`` on a true difference of
    ``absolute_mde`` with probability about ``power``: the smallest n whose expected z,
    absolute_mde / (std_dev sqrt(2 / n)), is `critical_z` plus the power quantile (the
    chance of crossing earlier is left out, so the estimate errs high)."""
    if std_dev <= 0.0 or absolute_mde == 0.0:
        raise ValueError("units_per_arm needs std_dev > 0 and a non-zero absolute_mde")
    effect = abs(absolute_mde) / std_dev
    z_power = norm_ppf(power)

    def enough(n: int) -> bool:
        return effect * math.sqrt(n / 2.0) >= critical_z(n, alpha) + z_power

    high = 2
    while not enough(high):
        high *= 2
    low = high // 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high
