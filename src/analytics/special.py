"""Distribution functions for the statistics, on floats, from plain Python.

scipy.special computes them (the tests check the answers against scipy and, at the
extremes, against mpmath); this module adds the domain checks, whose ValueError names the
argument and its range, and picks the form that keeps relative precision in both tails.

- `norm_cdf`, `norm_sf`, `norm_ppf`: the standard normal (``ndtr``, ``ndtri``).
- `student_t_sf`: P(T > t) for Student's t with any real df > 0 (Welch's df is
  fractional), from the regularized incomplete beta function.
- `chi2_sf`: P(X > x) for chi-square with k > 0 degrees of freedom (``chdtrc``).
- `log_beta`: ln B(a, b), hand-written: scipy's ``betaln`` is off by up to 1e-9 relative
  when one argument is 1e4 or more and the other small (the sample sizes the Bayesian
  kernels see), where Stirling's series with the ``ln`` terms combined keeps full
  precision (B(1e8, 1) does not lose eight digits to ``lgamma`` cancellation).

None of them is called from Numba-compiled code, which cannot call scipy.
"""

from __future__ import annotations

import math

from scipy import special  # type: ignore[import-untyped]  # no stubs shipped

__all__ = [
    "chi2_sf",
    "log_beta",
    "norm_cdf",
    "norm_ppf",
    "norm_sf",
    "student_t_sf",
]

_LOG_2PI = math.log(2.0 * math.pi)
# Stirling's series for ln Γ is used from this argument up; at 10 the omitted term is 3e-17.
_STIRLING_FROM = 10.0


def norm_cdf(x: float) -> float:
    """P(Z <= x) for a standard normal Z."""
    return float(special.ndtr(x))


def norm_sf(x: float) -> float:
    """P(Z > x) for a standard normal Z, as P(Z <= -x): exact in the upper tail."""
    return float(special.ndtr(-x))


def norm_ppf(p: float) -> float:
    """The x with P(Z <= x) = p for a standard normal Z; p = 0 gives -inf and p = 1 +inf."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"norm_ppf needs a probability p in [0, 1], got {p!r}")
    return float(special.ndtri(p))


def _stirling_correction(z: float) -> float:
    """ln Γ(z) - [(z - 1/2) ln z - z + ln(2π)/2] for z >= 10, by Stirling's series."""
    w = 1.0 / (z * z)
    return (
        1.0 / 12.0
        - w
        * (
            1.0 / 360.0
            - w
            * (
                1.0 / 1260.0
                - w * (1.0 / 1680.0 - w * (1.0 / 1188.0 - w * (691.0 / 360360.0 - w / 156.0)))
            )
        )
    ) / z


def _lgamma_shift(large: float, small: float) -> float:
    """ln Γ(large + small) - ln Γ(large) for large >= 10, without cancelling big logs."""
    return (
        (large - 0.5) * math.log1p(small / large)
        + small * math.log(large + small)
        - small
        + _stirling_correction(large + small)
        - _stirling_correction(large)
    )


def _check_shape(name: str, value: float) -> None:
    if not (value > 0.0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


# Hand-written: scipy.special.betaln loses up to 1e-9 relative at the counts bayes sees.
def log_beta(a: float, b: float) -> float:
    """ln B(a, b) = ln Γ(a) + ln Γ(b) - ln Γ(a + b), for a, b > 0.

    When both are >= 10 the Stirling series gives
    ln B = ln(2π)/2 - (a - 1/2) ln(1 + b/a) - (b - 1/2) ln(1 + a/b) - ln(a+b)/2
    + δ(a) + δ(b) - δ(a+b), with δ the series remainder; when only one is, the difference
    ln Γ(large + small) - ln Γ(large) is formed analytically. Otherwise ``math.lgamma``.
    """
    _check_shape("a", a)
    _check_shape("b", b)
    small, large = (a, b) if a <= b else (b, a)
    if small >= _STIRLING_FROM:
        total = a + b
        return (
            0.5 * _LOG_2PI
            - (a - 0.5) * math.log1p(b / a)
            - (b - 0.5) * math.log1p(a / b)
            - 0.5 * math.log(total)
            + _stirling_correction(a)
            + _stirling_correction(b)
            - _stirling_correction(total)
        )
    if large >= _STIRLING_FROM:
        return math.lgamma(small) - _lgamma_shift(large, small)
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def student_t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with df > 0 degrees of freedom (df may be fractional or inf).

    For t >= 0, P(T > t) = I_x(df/2, 1/2) / 2 with x = df / (df + t^2), and
    = (1 - I_y(1/2, df/2)) / 2 with y = 1 - x = t^2 / (df + t^2). The one of x and y
    below 1/2 is formed as a ratio and passed, never 1 minus it; from y, the complement
    is scipy's ``betaincc`` where ``1 - I`` would cancel. t < 0 is 1 - P(T > -t).
    df = inf is the standard normal.
    """
    if math.isnan(t):
        raise ValueError("student_t_sf needs a number t, got nan")
    if not df > 0.0:
        raise ValueError(f"student_t_sf needs degrees of freedom df > 0, got {df!r}")
    if math.isinf(df):
        return norm_sf(t)
    if math.isinf(t):
        return 0.0 if t > 0.0 else 1.0
    t2 = t * t
    if t2 > df:
        ratio = df / t2
        tail = 0.5 * float(special.betainc(0.5 * df, 0.5, ratio / (1.0 + ratio)))
    else:
        ratio = t2 / df
        y = ratio / (1.0 + ratio)
        inner = float(special.betainc(0.5, 0.5 * df, y))
        tail = (
            0.5 * (1.0 - inner) if inner <= 0.5 else 0.5 * float(special.betaincc(0.5, 0.5 * df, y))
        )
    return tail if t >= 0.0 else 1.0 - tail


def chi2_sf(x: float, k: float) -> float:
    """P(X > x) for X chi-square with k > 0 degrees of freedom; x <= 0 gives 1.0 and
    x = inf 0.0."""
    if math.isnan(x):
        raise ValueError("chi2_sf needs a number x, got nan")
    _check_shape("k (degrees of freedom)", k)
    return float(special.chdtrc(k, x)) if x > 0.0 else 1.0  # scipy: nan below 0
