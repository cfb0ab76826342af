"""The Numba kernels behind `analytics.bayes`: splitmix64 uniforms, the tabulated
posterior CDFs, the stratified conditional sums and the interval solvers.

`analytics.bayes` explains the method and is the API; everything here works on plain
arrays with one arm per row, as `tabulate` returns them: ``lo`` and ``width`` (each arm's
support starts at ``lo`` and spans `CELLS` cells of ``width``), ``cdf`` (the CDF at the cell
edges) and ``coef`` (each cell's cubic Hermite coefficients). An arm is given as
(kind, p, q): Beta(p, q) for `BETA`, Normal(mean p, sd q) for `NORMAL`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal, TypeVar, cast

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

__all__ = [
    "BETA",
    "CELLS",
    "GL_T",
    "GL_W",
    "LIFT_PIECES",
    "NORMAL",
    "REPLICATES",
    "TAIL_LOG_DENSITY",
    "FloatArray",
    "cdf_density",
    "intervals",
    "lift_bounds",
    "quantile",
    "sums_parallel",
    "sums_serial",
    "tabulate",
]

REPLICATES = 16
"""Independently randomised replicates behind every estimate and its standard error."""
CELLS = 512
"""Cells of each posterior's tabulated CDF."""
TAIL_LOG_DENSITY = 40.0
"""The support ends where the log-density is this far below its peak."""
LIFT_PIECES = 32
"""Gauss-Legendre pieces per arm behind the relative-lift interval."""


BETA = 0
NORMAL = 1
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(5)
GL_T = 0.5 * (_GL_NODES + 1.0)
GL_W = 0.5 * _GL_WEIGHTS


FloatArray = NDArray[np.float64]
_Function = TypeVar("_Function", bound=Callable[..., Any])


def _kernel(*, parallel: bool = False, inline: bool = False) -> Callable[[_Function], _Function]:
    """Numba-compile a function, cached on disk so a restart loads instead of compiling."""

    def compile_kernel(function: _Function) -> _Function:
        how: Literal["always", "never"] = "always" if inline else "never"
        return cast(_Function, njit(cache=True, parallel=parallel, inline=how)(function))

    return compile_kernel


# -- random numbers ------------------------------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@_kernel(inline=True)
def _mix64(z: np.uint64) -> np.uint64:
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@_kernel(inline=True)
def _stream_key(seed: np.uint64, stream: int) -> np.uint64:
    return _mix64(seed + np.uint64(stream + 1) * _GOLDEN)


@_kernel(inline=True)
def _uniform(key: np.uint64, counter: int) -> float:
    """Uniform in [0, 1): splitmix64 output number ``counter`` of the stream ``key``."""
    bits = _mix64(key + np.uint64(counter + 1) * _GOLDEN)
    return float(bits >> np.uint64(11)) * (1.0 / 9007199254740992.0)


# -- tabulated posteriors ------------------------------------------------------------------


@_kernel()
def _log_density(kind: int, p: float, q: float, mode: float, x: float) -> float:
    """Log-density at x minus that at the mode (Beta(p, q) or Normal(p, sd=q))."""
    if kind == NORMAL:
        z = (x - p) / q
        return -0.5 * z * z
    if x < 0.0 or x > 1.0:
        return -math.inf
    out = 0.0
    if p != 1.0:
        if x == 0.0:
            return -math.inf
        out += (p - 1.0) * math.log1p((x - mode) / mode)
    if q != 1.0:
        if x == 1.0:
            return -math.inf
        out += (q - 1.0) * math.log1p((mode - x) / (1.0 - mode))
    return out


@_kernel()
def _support_end(kind: int, p: float, q: float, mode: float, edge: float) -> float:
    """Between the mode and ``edge``, where the log-density falls to -TAIL_LOG_DENSITY."""
    if _log_density(kind, p, q, mode, edge) >= -TAIL_LOG_DENSITY:
        return edge
    inside, outside = mode, edge
    for _ in range(200):
        middle = 0.5 * (inside + outside)
        if middle == inside or middle == outside:
            break
        if _log_density(kind, p, q, mode, middle) >= -TAIL_LOG_DENSITY:
            inside = middle
        else:
            outside = middle
    return outside


@_kernel()
def tabulate(
    kind: int, p: FloatArray, q: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """Per arm: support start, cell width, node CDFs, Hermite coefficients and the mean.

    A cell's mass is Simpson's rule on the density at its ends and middle; the mean is
    that of the interpolated CDF itself, lo + integral of (1 - F), cell by cell.
    """
    arms = p.size
    lo = np.empty(arms)
    width = np.empty(arms)
    means = np.empty(arms)
    cdf = np.empty((arms, CELLS + 1))
    coef = np.empty((arms, CELLS, 4))
    density = np.empty(CELLS + 1)
    for k in range(arms):
        a, b = p[k], q[k]
        if kind == NORMAL:
            mode = a
            reach = math.sqrt(2.0 * TAIL_LOG_DENSITY) * b
            start, end = a - reach, a + reach
        else:
            mode = (a - 1.0) / (a + b - 2.0) if a + b > 2.0 else 0.5
            start = _support_end(kind, a, b, mode, 0.0)
            end = _support_end(kind, a, b, mode, 1.0)
        h = (end - start) / CELLS
        for i in range(CELLS + 1):
            density[i] = math.exp(_log_density(kind, a, b, mode, start + i * h))
        cdf[k, 0] = 0.0
        for i in range(CELLS):
            middle = math.exp(_log_density(kind, a, b, mode, start + (i + 0.5) * h))
            cdf[k, i + 1] = cdf[k, i] + h / 6.0 * (density[i] + 4.0 * middle + density[i + 1])
        total = cdf[k, CELLS]
        for i in range(CELLS + 1):
            cdf[k, i] /= total
            density[i] /= total
        cdf[k, CELLS] = 1.0
        above = 0.0
        for i in range(CELLS):
            p0, p1 = cdf[k, i], cdf[k, i + 1]
            m0, m1 = density[i] * h, density[i + 1] * h
            coef[k, i, 0] = p0
            coef[k, i, 1] = m0
            coef[k, i, 2] = 3.0 * (p1 - p0) - 2.0 * m0 - m1
            coef[k, i, 3] = 2.0 * (p0 - p1) + m0 + m1
            above += 1.0 - 0.5 * (p0 + p1) - (m0 - m1) / 12.0
        lo[k] = start
        width[k] = h
        means[k] = start + h * above
    return lo, width, cdf, coef, means


@_kernel(inline=True)
def cdf_density(
    lo: FloatArray, width: FloatArray, coef: FloatArray, k: int, x: float
) -> tuple[float, float]:
    """F_k(x) and its slope, from arm k's table."""
    pos = (x - lo[k]) / width[k]
    if pos <= 0.0:
        return 0.0, 0.0
    if pos >= CELLS:
        return 1.0, 0.0
    i = int(pos)
    t = pos - i
    c0, c1, c2, c3 = coef[k, i, 0], coef[k, i, 1], coef[k, i, 2], coef[k, i, 3]
    return c0 + t * (c1 + t * (c2 + t * c3)), (c1 + t * (2.0 * c2 + 3.0 * t * c3)) / width[k]


@_kernel()
def quantile(
    lo: FloatArray, width: FloatArray, cdf: FloatArray, coef: FloatArray, k: int, u: float
) -> float:
    """F_k^-1(u): the cell by bisection, then Newton on its cubic from the linear guess."""
    i = min(max(int(np.searchsorted(cdf[k], u, side="right")) - 1, 0), CELLS - 1)
    span = cdf[k, i + 1] - cdf[k, i]
    target = u - coef[k, i, 0]
    t = min(max(target / span, 0.0), 1.0) if span > 0.0 else 0.5
    c1, c2, c3 = coef[k, i, 1], coef[k, i, 2], coef[k, i, 3]
    # Near a zero of the density the root is double and Newton only halves the error.
    for _ in range(64):
        slope = c1 + t * (2.0 * c2 + 3.0 * t * c3)
        if slope <= 0.0:
            break
        step = (t * (c1 + t * (c2 + t * c3)) - target) / slope
        t = min(max(t - step, 0.0), 1.0)
        if abs(step) < 1e-14:
            break
    return float(lo[k] + (i + t) * width[k])


# -- the Monte Carlo kernel ----------------------------------------------------------------


@_kernel(inline=True)
def _replicate(
    lo: FloatArray,
    width: FloatArray,
    coef: FloatArray,
    edges: FloatArray,
    control: int,
    center: float,
    key: np.uint64,
) -> tuple[FloatArray, FloatArray, float]:
    """One randomised replicate: an antithetic pair of uniform points in every piece."""
    arms = lo.size
    best = np.zeros(arms)
    beat = np.zeros(arms)
    top = 0.0
    cdfs = np.empty(arms)
    densities = np.empty(arms)
    prefix = np.empty(arms + 1)
    prefix[0] = 1.0
    for s in range(edges.size - 1):
        start = edges[s]
        length = edges[s + 1] - start
        v = _uniform(key, s)
        for side in range(2):
            x = start + (v if side == 0 else 1.0 - v) * length
            for j in range(arms):
                cdfs[j], densities[j] = cdf_density(lo, width, coef, j, x)
                prefix[j + 1] = prefix[j] * cdfs[j]
            weight = 0.5 * length
            at_control = cdfs[control]
            suffix = 1.0
            max_density = 0.0
            for j in range(arms - 1, -1, -1):
                # density of x as arm j's draw times P(every other arm <= x)
                term = densities[j] * prefix[j] * suffix
                best[j] += weight * term
                beat[j] += weight * (densities[j] * at_control)
                max_density += term
                suffix *= cdfs[j]
            top += weight * (x - center) * max_density
    return best, beat, top


@_kernel()
def sums_serial(
    lo: FloatArray,
    width: FloatArray,
    coef: FloatArray,
    edges: FloatArray,
    control: int,
    center: float,
    seed: np.uint64,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per replicate: P(best), P(beat control) and E[max] - center, one thread."""
    best = np.empty((REPLICATES, lo.size))
    beat = np.empty((REPLICATES, lo.size))
    top = np.empty(REPLICATES)
    for r in range(REPLICATES):
        key = _stream_key(seed, r)
        best[r], beat[r], top[r] = _replicate(lo, width, coef, edges, control, center, key)
    return best, beat, top


@_kernel(parallel=True)
def sums_parallel(
    lo: FloatArray,
    width: FloatArray,
    coef: FloatArray,
    edges: FloatArray,
    control: int,
    center: float,
    seed: np.uint64,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """`sums_serial` with the replicates spread over threads: the same numbers."""
    best = np.empty((REPLICATES, lo.size))
    beat = np.empty((REPLICATES, lo.size))
    top = np.empty(REPLICATES)
    for r in prange(REPLICATES):
        key = _stream_key(seed, r)
        best[r], beat[r], top[r] = _replicate(lo, width, coef, edges, control, center, key)
    return best, beat, top


# -- the relative lift ---------------------------------------------------------------------


@_kernel()
def _ratio_cdf(
    lo: FloatArray,
    width: FloatArray,
    coef: FloatArray,
    k: int,
    c: int,
    ratio: float,
    negative: bool,
    gl_t: FloatArray,
    gl_w: FloatArray,
) -> tuple[float, float]:
    """P(X_k / X_c <= ratio) = integral of f_c(y) F_k(ratio y) dy (1 - that when X_c < 0)
    and its derivative in ratio, by Gauss-Legendre on the control's support cut where
    either arm's table changes scale."""
    c_lo = lo[c]
    c_span = CELLS * width[c]
    edges = np.empty(2 * LIFT_PIECES + 2)
    count = 0
    for i in range(LIFT_PIECES + 1):
        edges[count] = c_lo + c_span * i / LIFT_PIECES
        count += 1
    if ratio != 0.0:
        for i in range(LIFT_PIECES + 1):
            y = (lo[k] + CELLS * width[k] * i / LIFT_PIECES) / ratio
            if c_lo < y < c_lo + c_span:
                edges[count] = y
                count += 1
    cuts = np.sort(edges[:count])
    total = 0.0
    slope = 0.0
    for s in range(count - 1):
        length = cuts[s + 1] - cuts[s]
        for g in range(gl_t.size):
            y = cuts[s] + gl_t[g] * length
            weight = gl_w[g] * length * cdf_density(lo, width, coef, c, y)[1]
            cdf, density = cdf_density(lo, width, coef, k, ratio * y)
            total += weight * cdf
            slope += weight * y * density
    return (1.0 - total, -slope) if negative else (total, slope)


@_kernel()
def lift_bounds(
    lo: FloatArray,
    width: FloatArray,
    coef: FloatArray,
    means: FloatArray,
    control: int,
    lower: float,
    gl_t: FloatArray,
    gl_w: FloatArray,
) -> FloatArray:
    """Per arm, the ``lower`` and ``1 - lower`` quantiles of X_k / X_c - 1 (NaN for control):
    Newton from the ratio of the means, kept inside the bracket it builds."""
    negative = means[control] < 0.0
    out = np.full((lo.size, 2), np.nan)
    for k in range(lo.size):
        if k == control:
            continue
        for side in range(2):
            prob = lower if side == 0 else 1.0 - lower
            below, above = -math.inf, math.inf
            ratio = means[k] / means[control]
            for _ in range(200):
                value, slope = _ratio_cdf(lo, width, coef, k, control, ratio, negative, gl_t, gl_w)
                miss = value - prob
                if miss == 0.0:
                    break
                if miss < 0.0:
                    below = ratio
                else:
                    above = ratio
                step = max(abs(ratio), 1e-300)
                nxt = ratio - miss / slope if slope > 0.0 else math.nan
                if not below < nxt < above:
                    if math.isfinite(below) and math.isfinite(above):
                        nxt = 0.5 * (below + above)
                    else:
                        nxt = ratio + step if miss < 0.0 else ratio - step
                if abs(nxt - ratio) <= 1e-11 * step:
                    ratio = nxt
                    break
                ratio = nxt
            out[k, side] = ratio - 1.0
    return out


@_kernel()
def intervals(
    lo: FloatArray, width: FloatArray, cdf: FloatArray, coef: FloatArray, lower: float
) -> FloatArray:
    """Per arm, the ``lower`` and ``1 - lower`` quantiles."""
    out = np.empty((lo.size, 2))
    for k in range(lo.size):
        out[k, 0] = quantile(lo, width, cdf, coef, k, lower)
        out[k, 1] = quantile(lo, width, cdf, coef, k, 1.0 - lower)
    return out
