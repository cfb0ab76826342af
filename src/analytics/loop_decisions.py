"""The decision of a continuous loop's round: wait, hold, promote or inconclusive.

A round is an A/B test of the loop's champion (the control) against a challenger, on the
loop's primary goal. Its decision rests on P(challenger > champion), the Beta-Binomial
posterior probability with uniform priors (`analytics.bayes.prob_beats_exact`, exact),
under four rules:

- no decision before ``min_round_days`` of runtime, nor before every arm has
  ``min_samples_per_arm`` units;
- **promote** when the probability reaches the current look's boundary, **hold** when it
  falls to one minus it (the challenger is credibly worse);
- **inconclusive** when the round reaches ``max_round_days`` (or its experiment ends)
  without crossing either boundary;
- **wait** otherwise.

Peeking. The scheduler ticks a loop every hour for up to 28 days. Checking
P >= ``decision_threshold`` at every tick would promote a challenger no better than its
champion in about one round in five instead of one in twenty: tests/test_loop_decisions.py
measures 19% that way, against 4.8% promotes (and 4.4% holds) with the design below, on
1,500 simulated rounds of equal arms. So a round is a group-sequential test:

- It is *looked at* once per day of runtime at most: on days ``min_round_days``,
  ``min_round_days + 1``, ..., ``max_round_days`` (`look_days`). A tick between two looks
  decides nothing (`look_due`); a tick that finds a day's look done waits for the next.
- Each look has its own boundary (`look_boundaries`), from a Lan-DeMets alpha-spending
  function of O'Brien-Fleming type, ``alpha(t) = 2 - 2 Phi(Phi^-1(threshold) / sqrt(t))``
  for the two-sided ``2 (1 - threshold)``, with the information fraction ``t`` = runtime /
  ``max_round_days`` (steady traffic assumed). The boundaries are solved by the recursive
  numerical integration of Armitage, McPherson and Rowe (Jennison and Turnbull, "Group
  Sequential Methods", ch. 19) so that, on equal arms, the chance of a promote over the
  whole round is ``1 - threshold`` and likewise for a hold. A look that is skipped (too
  few samples that day) only lowers that chance.
- O'Brien-Fleming spends little early: at the defaults (7 to 28 days, threshold 0.95)
  the first look (day 7) needs P >= 0.9995 and the last (day 28) P >= 0.9727, where a
  single test at the end would need 0.95: the price of 22 looks. A strong challenger is
  still promoted at its first look.

Rounds whose arms fail the sample-ratio test (``srm_flagged``) are not compared: their
look waits, and their last look is inconclusive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Literal

import msgspec
import numpy as np
from numba import njit

from analytics.bayes import prob_beats_exact
from analytics.special import norm_cdf, norm_ppf, norm_sf

__all__ = [
    "GRID_POINTS",
    "ArmCounts",
    "Decision",
    "LoopDecision",
    "LoopRules",
    "RoundData",
    "decide",
    "look_boundaries",
    "look_days",
    "look_due",
    "look_index",
]

Decision = Literal["wait", "hold", "promote", "inconclusive"]

GRID_POINTS = 201
"""Simpson points over each look's continuation region in the boundary recursion (odd;
201 already gives the boundaries to 1e-8)."""

# Bisection bounds of a look's z boundary; 40 is beyond any spending a look can get.
_Z_MAX = 40.0
_BISECTIONS = 80


class LoopRules(msgspec.Struct, frozen=True):
    """A loop's decision rules: runtime bounds of a round in whole days, the units every
    arm needs, and the posterior probability a single end-of-round test would need."""

    min_round_days: int = 7
    max_round_days: int = 28
    min_samples_per_arm: int = 500
    decision_threshold: float = 0.95

    def __post_init__(self) -> None:
        if not 1 <= self.min_round_days <= self.max_round_days:
            raise ValueError(
                "min_round_days must be at least 1 and at most max_round_days, got "
                f"{self.min_round_days} and {self.max_round_days}"
            )
        if self.min_samples_per_arm < 1:
            raise ValueError(f"min_samples_per_arm must be >= 1, got {self.min_samples_per_arm}")
        if not 0.5 < self.decision_threshold < 1.0:
            raise ValueError(
                f"decision_threshold must be in (0.5, 1), got {self.decision_threshold}"
            )


class ArmCounts(msgspec.Struct, frozen=True):
    """One arm of a round: units exposed, and units that converted on the primary goal."""

    units: int
    conversions: int


class RoundData(msgspec.Struct, frozen=True):
    """A round's arms so far, and whether their split fails the sample-ratio test."""

    champion: ArmCounts
    challenger: ArmCounts
    srm_flagged: bool = False


class LoopDecision(msgspec.Struct, frozen=True):
    """What a look decides, and why. ``samples_needed`` (units still missing on the
    lagging arm) and ``days_needed`` (whole days until the next look) say what a ``wait``
    waits for; ``days_needed`` is None when it cannot be estimated (no traffic yet).
    ``look`` is the index of the look taken (None: the data was not compared), with
    ``prob_to_win`` = P(challenger > champion), ``lift`` (relative, of the challenger's
    rate over the champion's) and that look's promote ``boundary``."""

    decision: Decision
    reason: str
    samples_needed: int | None
    days_needed: int | None
    look: int | None = None
    prob_to_win: float | None = None
    lift: float | None = None
    boundary: float | None = None


def look_days(rules: LoopRules) -> tuple[int, ...]:
    """The runtime, in days, of each look: ``min_round_days`` to ``max_round_days``."""
    return tuple(range(rules.min_round_days, rules.max_round_days + 1))


def look_index(rules: LoopRules, elapsed_days: float) -> int | None:
    """The look a round at ``elapsed_days`` of runtime is at (the last one whose day it
    has reached, capped at the final look); None before the first."""
    if elapsed_days < rules.min_round_days:
        return None
    return min(int(elapsed_days), rules.max_round_days) - rules.min_round_days


def look_due(
    rules: LoopRules, elapsed_days: float, last_look: int | None, ended: bool = False
) -> bool:
    """Whether a tick at ``elapsed_days`` may decide anything, given the index of the last
    look taken (None: none yet): a look is due once per day of runtime, and at the end."""
    if ended or elapsed_days >= rules.max_round_days:
        return True
    k = look_index(rules, elapsed_days)
    return k is not None and (last_look is None or k > last_look)


@njit(cache=True)
def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


@njit(cache=True)
def _crossing(grid: np.ndarray, mass: np.ndarray, c: float, root_t: float, sigma: float) -> float:
    """P(|Z_k| >= c and no earlier crossing), from the earlier continuation region's
    score grid and its probability mass (density times quadrature weight)."""
    total = 0.0
    edge = c * root_t
    for i in range(grid.size):
        s = grid[i]
        total += mass[i] * (_phi((-edge - s) / sigma) + _phi((s - edge) / sigma))
    return total


@njit(cache=True)
def _solve_boundaries(fractions: np.ndarray, spent: np.ndarray, points: int) -> np.ndarray:
    """The z boundary of every look, for a symmetric two-sided test whose cumulative
    type I error at information fraction ``fractions[k]`` is ``spent[k]``. The score
    S_k = Z_k sqrt(t_k) has independent N(0, t_k - t_{k-1}) increments under the null;
    its sub-density on the continuation region is carried from look to look on a
    Simpson grid."""
    looks = fractions.size
    bounds = np.empty(looks)
    grid = np.zeros(1)
    mass = np.ones(1)
    previous_t = 0.0
    previous_spent = 0.0
    for k in range(looks):
        t = fractions[k]
        sigma = math.sqrt(t - previous_t)
        root_t = math.sqrt(t)
        target = spent[k] - previous_spent
        lo, hi = 0.0, _Z_MAX
        for _ in range(_BISECTIONS):
            mid = 0.5 * (lo + hi)
            if _crossing(grid, mass, mid, root_t, sigma) > target:
                lo = mid
            else:
                hi = mid
        c = hi
        bounds[k] = c
        # The sub-density of S_k on (-c sqrt(t), c sqrt(t)), times Simpson's weights.
        edge = c * root_t
        step = 2.0 * edge / (points - 1)
        new_grid = np.empty(points)
        new_mass = np.empty(points)
        norm = 1.0 / (sigma * math.sqrt(2.0 * math.pi))
        for j in range(points):
            u = -edge + j * step
            density = 0.0
            for i in range(grid.size):
                d = (u - grid[i]) / sigma
                density += mass[i] * norm * math.exp(-0.5 * d * d)
            weight = 1.0 if j == 0 or j == points - 1 else (4.0 if j % 2 == 1 else 2.0)
            new_grid[j] = u
            new_mass[j] = density * weight * step / 3.0
        grid, mass = new_grid, new_mass
        previous_t, previous_spent = t, spent[k]
    return bounds


@lru_cache(maxsize=64)
def _boundaries(min_days: int, max_days: int, threshold: float) -> tuple[float, ...]:
    fractions = np.array([d / max_days for d in range(min_days, max_days + 1)])
    z = norm_ppf(threshold)
    spent = np.array([2.0 * norm_sf(z / math.sqrt(t)) for t in fractions])
    return tuple(norm_cdf(c) for c in _solve_boundaries(fractions, spent, GRID_POINTS))


def look_boundaries(rules: LoopRules) -> tuple[float, ...]:
    """The promote boundary of every look, as a posterior probability P(challenger >
    champion); a look holds at one minus it. Decreasing, ending a little above
    ``decision_threshold`` (exactly it when a round has a single look)."""
    return _boundaries(rules.min_round_days, rules.max_round_days, rules.decision_threshold)


def _arms_short(needed: Sequence[int]) -> str:
    """E.g. "240 more samples on the challenger arm", from the units each arm misses."""
    arms = zip(("champion", "challenger"), needed, strict=True)
    return ", ".join(f"{n} more samples on the {name} arm" for name, n in arms if n)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _days_to_samples(elapsed_days: float, units: int, missing: int) -> int | None:
    """Days until the lagging arm has its samples, at its rate so far."""
    if units == 0 or elapsed_days <= 0:
        return None
    return math.ceil(missing / (units / elapsed_days))


def _lift(data: RoundData) -> float | None:
    champion, challenger = data.champion, data.challenger
    if champion.conversions == 0 or challenger.units == 0:
        return None
    base = champion.conversions / champion.units
    return (challenger.conversions / challenger.units - base) / base


def decide(
    rules: LoopRules,
    elapsed_days: float,
    data: RoundData,
    last_look: int | None = None,
    ended: bool = False,
) -> LoopDecision:
    """The decision of a round at ``elapsed_days`` of runtime with ``data`` so far, the
    index of its last look (None: none yet), and whether its experiment has ended (then
    this is its final look). Pure: the caller records ``look`` when it acts on it."""
    days = look_days(rules)
    k = look_index(rules, elapsed_days)
    final = ended or elapsed_days >= rules.max_round_days
    arms = (data.champion, data.challenger)
    needed = [max(0, rules.min_samples_per_arm - arm.units) for arm in arms]
    missing = max(needed)
    runtime = f"{elapsed_days:.1f} days"
    if k is None and not final:
        wait_days = math.ceil(rules.min_round_days - elapsed_days)
        what = f"{_arms_short(needed)} and " if missing else ""
        return LoopDecision(
            "wait",
            f"Needs {what}{_plural(wait_days, 'more day')} of runtime before the decision "
            "threshold can be evaluated.",
            missing,
            wait_days,
        )
    if missing:
        if final:
            return LoopDecision(
                "inconclusive",
                f"The round ended after {runtime} still {_arms_short(needed)} short of "
                f"min_samples_per_arm ({rules.min_samples_per_arm}): no decision.",
                missing,
                0,
            )
        lagging = min(arm.units for arm in arms)
        return LoopDecision(
            "wait",
            f"Needs {_arms_short(needed)} before the decision threshold can be evaluated "
            f"(every arm needs {rules.min_samples_per_arm}).",
            missing,
            _days_to_samples(elapsed_days, lagging, missing),
        )
    if k is None:
        return LoopDecision(
            "inconclusive",
            f"The round's experiment ended after {runtime}, before min_round_days "
            f"({rules.min_round_days}): no decision.",
            0,
            0,
        )
    if not final and last_look is not None and k <= last_look:
        upcoming = days[min(last_look + 1, len(days) - 1)]
        return LoopDecision(
            "wait",
            f"Look {last_look + 1} of {len(days)} (day {days[last_look]}) was taken; the "
            f"next is on day {upcoming} of runtime.",
            0,
            math.ceil(upcoming - elapsed_days),
        )
    boundary = look_boundaries(rules)[k]
    where = f"look {k + 1} of {len(days)}, day {days[k]}"
    next_look = None if final else math.ceil(days[k + 1] - elapsed_days)
    if data.srm_flagged:
        reason = (
            f"The arms' units do not match the 50/50 split (sample ratio mismatch, {where}): "
            "the arms are not comparable"
        )
        if final:
            return LoopDecision("inconclusive", f"{reason}; no decision.", 0, 0, look=k)
        return LoopDecision("wait", f"{reason}; the next look decides.", 0, next_look, look=k)
    champion, challenger = data.champion, data.challenger
    p = prob_beats_exact(champion.conversions, champion.units, challenger.conversions,
                         challenger.units)  # fmt: skip
    # Any: the figures mix the look index (int) and probabilities (float).
    figures: dict[str, Any] = {
        "look": k,
        "prob_to_win": p,
        "lift": _lift(data),
        "boundary": boundary,
    }
    if p >= boundary:
        return LoopDecision(
            "promote",
            f"P(challenger > champion) = {p:.4f} reached the boundary {boundary:.4f} "
            f"({where}): the challenger becomes the champion.",
            0,
            0,
            **figures,
        )
    if p <= 1.0 - boundary:
        return LoopDecision(
            "hold",
            f"P(challenger > champion) = {p:.4f} fell to the boundary {1 - boundary:.4f} "
            f"({where}): the champion is held.",
            0,
            0,
            **figures,
        )
    inside = f"P(challenger > champion) = {p:.4f} is inside ({1 - boundary:.4f}, {boundary:.4f})"
    if final:
        return LoopDecision(
            "inconclusive",
            f"{inside} at the round's end ({where}): no decision.",
            0,
            0,
            **figures,
        )
    return LoopDecision(
        "wait",
        f"{inside} ({where}); the next look is in {_plural(next_look or 0, 'day')}.",
        0,
        next_look,
        **figures,
    )
