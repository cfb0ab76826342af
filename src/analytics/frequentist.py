"""Frequentist tests and sample sizes for experiment results.

Every function takes aggregates (counts, means, sample variances), never raw events, and
states its formula so that a reader can check a figure by hand. Arm "a" is the control and
arm "b" the treatment: a positive statistic means b is higher. Invalid input (negative
counts, conversions above units, lengths that differ, alpha or power outside (0, 1)) raises
ValueError with a message that says what to fix.

- `two_proportion_p_value`: two-sided z-test of two conversion rates, pooled variance.
- `welch_t_test`: two-sided Welch t-test of two means (continuous metrics: value, cost,
  duration, turns), with the Welch–Satterthwaite degrees of freedom.
- `sample_ratio_test`: chi-square goodness-of-fit of observed exposures against the
  configured weights (sample ratio mismatch, SRM).
- `units_per_arm_for_proportions`, `units_per_arm_for_means`: units needed per arm to
  detect a minimum effect with the two-sided tests above (normal approximation).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

from msgspec import Struct

from analytics.special import chi2_sf, norm_ppf, norm_sf, student_t_sf

__all__ = [
    "DEFAULT_SRM_THRESHOLD",
    "SampleRatio",
    "WelchResult",
    "sample_ratio_test",
    "two_proportion_p_value",
    "units_per_arm_for_means",
    "units_per_arm_for_proportions",
    "welch_t_test",
]

DEFAULT_SRM_THRESHOLD = 0.005
"""SRM is flagged when the chi-square p-value is below this.

Stricter than the common 0.001 on purpose: a 50/50 split observed as 5,000 vs 5,300 (a 3%
imbalance, p = 0.0031) must be flagged, and a chance imbalance such as 5,000 vs 5,050
(p = 0.62) must not. At 0.005 a healthy experiment raises a false alarm on one check in
200; docs/statistics.md says what to do when it fires."""


class WelchResult(Struct, frozen=True):
    """Welch's t statistic (b minus a), its Welch–Satterthwaite df and two-sided p-value."""

    t: float
    df: float
    p_value: float


class SampleRatio(Struct, frozen=True):
    """The SRM chi-square statistic, its p-value, the verdict and the expected counts.

    ``expected`` holds, per arm in the order given, the exposures the weights predict for
    the observed total.
    """

    chi2: float
    p_value: float
    flagged: bool
    expected: list[float]


def _count(name: str, value: int) -> int:
    try:
        count = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a whole number, got {value!r}") from None
    if count < 0:
        raise ValueError(f"{name} must be >= 0, got {count}")
    return count


def _finite(name: str, value: float) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


def _probability(name: str, value: float) -> float:
    number = float(value)
    if not 0.0 < number < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1, got {value!r}")
    return number


def two_proportion_p_value(
    conversions_a: int, units_a: int, conversions_b: int, units_b: int
) -> float:
    """Two-sided p-value of the pooled two-proportion z-test.

    With p_a = conversions_a / units_a, p_b likewise, the pooled rate
    p = (conversions_a + conversions_b) / (units_a + units_b) and
    z = (p_b - p_a) / sqrt(p (1 - p) (1/units_a + 1/units_b)), the p-value is
    2 P(Z > |z|) = erfc(|z| / sqrt(2)). Assumes independent units and enough conversions
    and non-conversions per arm for the normal approximation (roughly >= 5 of each).

    An arm with zero units raises ValueError. When the pooled rate is 0 or 1 (no arm
    converted, or every unit did) the rates are identical and the p-value is 1.0.
    """
    ca = _count("conversions_a", conversions_a)
    na = _count("units_a", units_a)
    cb = _count("conversions_b", conversions_b)
    nb = _count("units_b", units_b)
    if na == 0 or nb == 0:
        raise ValueError("each arm needs at least one unit to compare conversion rates")
    if ca > na:
        raise ValueError(f"conversions_a ({ca}) cannot exceed units_a ({na})")
    if cb > nb:
        raise ValueError(f"conversions_b ({cb}) cannot exceed units_b ({nb})")
    pooled = (ca + cb) / (na + nb)
    if pooled in (0.0, 1.0):
        return 1.0
    standard_error = math.sqrt(pooled * (1.0 - pooled) * (1.0 / na + 1.0 / nb))
    z = (cb / nb - ca / na) / standard_error
    return min(1.0, 2.0 * norm_sf(abs(z)))


def welch_t_test(
    mean_a: float,
    variance_a: float,
    units_a: int,
    mean_b: float,
    variance_b: float,
    units_b: int,
) -> WelchResult:
    """Two-sided Welch t-test of mean_b against mean_a from per-arm summaries.

    The variances are sample variances (divisor n - 1). With u_a = variance_a / units_a
    and u_b likewise: t = (mean_b - mean_a) / sqrt(u_a + u_b),
    df = (u_a + u_b)^2 / (u_a^2 / (units_a - 1) + u_b^2 / (units_b - 1)) (Welch–
    Satterthwaite) and p = 2 P(T_df > |t|). Assumes independent units and means that are
    close to normal (the central limit theorem, for the sample sizes of experiments).

    Each arm needs at least 2 units (a sample variance needs them). When both variances
    are 0 the test is decided by the means alone: equal means give t = 0 and p = 1.0,
    different means give t = ±inf and p = 0.0, and df is the pooled units_a + units_b - 2
    (Welch–Satterthwaite is 0/0 there). With one variance 0, df is the other arm's n - 1.
    """
    ma = _finite("mean_a", mean_a)
    mb = _finite("mean_b", mean_b)
    va = _finite("variance_a", variance_a)
    vb = _finite("variance_b", variance_b)
    na = _count("units_a", units_a)
    nb = _count("units_b", units_b)
    if va < 0.0 or vb < 0.0:
        raise ValueError(f"variances must be >= 0, got variance_a={va!r}, variance_b={vb!r}")
    if na < 2 or nb < 2:
        raise ValueError(
            f"a Welch t-test needs at least 2 units per arm, got units_a={na}, units_b={nb}"
        )
    ua = va / na
    ub = vb / nb
    spread = ua + ub
    difference = mb - ma
    if spread == 0.0:
        df = float(na + nb - 2)
        if difference == 0.0:
            return WelchResult(t=0.0, df=df, p_value=1.0)
        return WelchResult(t=math.copysign(math.inf, difference), df=df, p_value=0.0)
    # Shares of the spread keep the df formula free of overflow for huge variances.
    share_a = ua / spread
    share_b = ub / spread
    df = 1.0 / (share_a * share_a / (na - 1) + share_b * share_b / (nb - 1))
    t = difference / math.sqrt(spread)
    return WelchResult(t=t, df=df, p_value=min(1.0, 2.0 * student_t_sf(abs(t), df)))


def sample_ratio_test(
    observed: Sequence[int], weights: Sequence[float], threshold: float = DEFAULT_SRM_THRESHOLD
) -> SampleRatio:
    """Chi-square sample-ratio-mismatch test of exposures against the configured weights.

    The weights are relative (they need not sum to 1). With N the total of ``observed`` and
    W the total weight, arm i expects e_i = N w_i / W; over the arms with w_i > 0,
    chi2 = Σ (o_i - e_i)^2 / e_i with (number of those arms - 1) degrees of freedom, and
    p = P(X > chi2). The verdict is ``flagged = p < threshold``.

    An arm of weight 0 must have no exposures: if one has any, the split is broken
    whatever the others show, and the result is chi2 = inf, p = 0.0, flagged. With no
    exposures at all, or a single arm of positive weight, there is nothing to test:
    chi2 = 0, p = 1.0, not flagged.
    """
    if len(observed) != len(weights):
        raise ValueError(
            f"observed has {len(observed)} arms but weights has {len(weights)}: "
            "give one weight per arm, in the same order"
        )
    if len(observed) < 2:
        raise ValueError("a sample ratio test needs at least 2 arms")
    counts = [_count(f"observed[{i}]", value) for i, value in enumerate(observed)]
    shares = [_finite(f"weights[{i}]", value) for i, value in enumerate(weights)]
    if any(weight < 0.0 for weight in shares):
        raise ValueError(f"weights must be >= 0, got {list(weights)!r}")
    total_weight = math.fsum(shares)
    if total_weight <= 0.0:
        raise ValueError("at least one weight must be > 0")
    cutoff = _probability("threshold", threshold)
    total = sum(counts)
    expected = [total * weight / total_weight for weight in shares]
    if any(weight == 0.0 and count > 0 for weight, count in zip(shares, counts, strict=True)):
        return SampleRatio(chi2=math.inf, p_value=0.0, flagged=True, expected=expected)
    tested = [(count, e) for count, e, w in zip(counts, expected, shares, strict=True) if w > 0]
    if total == 0 or len(tested) < 2:
        return SampleRatio(chi2=0.0, p_value=1.0, flagged=False, expected=expected)
    chi2 = math.fsum((count - e) ** 2 / e for count, e in tested)
    p_value = chi2_sf(chi2, len(tested) - 1)
    return SampleRatio(chi2=chi2, p_value=p_value, flagged=p_value < cutoff, expected=expected)


def _z_sum(alpha: float, power: float) -> tuple[float, float]:
    """(z_{1-alpha/2}, z_power): the two-sided critical value and the power quantile."""
    return norm_ppf(1.0 - 0.5 * alpha), norm_ppf(power)


def _whole_units(value: float) -> int:
    # The formulas are continuous; a result that is an integer up to rounding error (such as
    # 1568.0000000000002) must not cost a whole extra unit.
    return max(1, math.ceil(value * (1.0 - 1e-12)))


def units_per_arm_for_proportions(
    base_rate: float, relative_mde: float, alpha: float = 0.05, power: float = 0.8
) -> int:
    """Units per arm for the two-sided two-proportion z-test to detect a relative change.

    With p1 = base_rate, p2 = base_rate (1 + relative_mde), p = (p1 + p2) / 2,
    z_a = Φ^-1(1 - alpha/2) and z_b = Φ^-1(power):
    n = (z_a sqrt(2 p (1 - p)) + z_b sqrt(p1 (1 - p1) + p2 (1 - p2)))^2 / (p2 - p1)^2,
    rounded up (Fleiss, "Statistical Methods for Rates and Proportions", without the
    continuity correction; the pooled variance under the null matches
    `two_proportion_p_value`). Example: base 0.10, relative_mde 0.10, alpha 0.05,
    power 0.8 gives 14,751 per arm.

    relative_mde may be negative (detecting a drop) but not 0, and p2 must stay in [0, 1].
    """
    p1 = _probability("base_rate", base_rate)
    effect = _finite("relative_mde", relative_mde)
    z_alpha, z_power = _z_sum(_probability("alpha", alpha), _probability("power", power))
    if effect == 0.0:
        raise ValueError("relative_mde must be non-zero (e.g. 0.05 for a 5% relative lift)")
    p2 = p1 * (1.0 + effect)
    if not 0.0 <= p2 <= 1.0:
        raise ValueError(
            f"base_rate * (1 + relative_mde) = {p2!r} must be between 0 and 1: "
            "use a smaller relative_mde"
        )
    mean_rate = 0.5 * (p1 + p2)
    null_spread = z_alpha * math.sqrt(2.0 * mean_rate * (1.0 - mean_rate))
    alternative_spread = z_power * math.sqrt(p1 * (1.0 - p1) + p2 * (1.0 - p2))
    return _whole_units((null_spread + alternative_spread) ** 2 / (p2 - p1) ** 2)


def units_per_arm_for_means(
    std_dev: float, absolute_mde: float, alpha: float = 0.05, power: float = 0.8
) -> int:
    """Units per arm for a two-sided test of two means to detect an absolute difference.

    n = 2 (z_a + z_b)^2 std_dev^2 / absolute_mde^2, rounded up, with
    z_a = Φ^-1(1 - alpha/2) and z_b = Φ^-1(power); std_dev is the common per-unit standard
    deviation (normal approximation; the t-test needs a few units more when n is small).
    Example: std_dev 1, absolute_mde 0.1, alpha 0.05, power 0.8 gives 1,570 per arm.
    """
    sigma = _finite("std_dev", std_dev)
    effect = _finite("absolute_mde", absolute_mde)
    z_alpha, z_power = _z_sum(_probability("alpha", alpha), _probability("power", power))
    if sigma <= 0.0:
        raise ValueError(f"std_dev must be > 0, got {std_dev!r}")
    if effect == 0.0:
        raise ValueError("absolute_mde must be non-zero (the smallest difference worth detecting)")
    return _whole_units(2.0 * (z_alpha + z_power) ** 2 * sigma * sigma / (effect * effect))
