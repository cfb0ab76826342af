"""An agent's statistics (ClawTrait's ``GET /agents/:id/stats``) and its behavioural drift
(``GET /agents/:id/drift``), computed from `analytics.agent_aggregates.AgentWindow`s.

Pure functions over aggregates: no connection, no clock. docs/agents.md explains the method
for users, with a worked example; in short:

- **Stats.** Tasks, outcomes, cost; ``netROI = (successes * value_per_success - total
  cost) / total cost``, null without a value per success or without cost.
- **Drift.** A recent window against a baseline window, six dimensions, each a two-sample
  test and an effect size: the success rate (two-proportion z-test, difference in points),
  the cost, duration and turns per task on the log scale (Welch's t-test of the mean log,
  relative change of the geometric mean), and the mix of task names and of outcomes
  (chi-square test of homogeneity, Jensen–Shannon distance less its expected value under
  no change). A dimension scores 0
  unless its change is **significant** (p below ``alpha`` divided by the number of
  dimensions tested: Bonferroni) **and material** (at least `DimensionScale.material`);
  then ``min(1, |effect| / full)``. The drift score is the largest dimension score, and
  the status follows from it (`DriftRules.warning`, `DriftRules.drifting`). Noise alone
  raises no alarm: with no change, a status other than healthy needs some test to reject
  at its Bonferroni level, which happens in at most ``alpha`` of the windows.

Each task is one observation. The tests assume independent tasks; tasks that share a
session are not, which makes a difference look somewhat more certain than it is, and the
materiality bar is what keeps that from turning small differences into alarms.

Why the log scale: costs and durations are positive, heavy-tailed and change by factors (a
longer prompt, a slower model, a loop of retries). On their logarithms Welch's test holds
its level with a few dozen tasks, where on the raw values one expensive task in a small
window can make or hide a difference, and a change by a factor is a shift it detects best.
What it does not see is a change of the tail alone; the stats' ``costPerTask`` and
``totalCost`` are the arithmetic figures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Literal

import msgspec
import numpy as np
from numpy.typing import ArrayLike

from analytics.agent_aggregates import OUTCOMES, AgentWindow, Moments
from analytics.frequentist import two_proportion_p_value, welch_t_test
from analytics.special import chi2_sf

__all__ = [
    "OTHER_TASKS",
    "AgentStats",
    "DimensionName",
    "DimensionScale",
    "DriftChange",
    "DriftComparison",
    "DriftDimension",
    "DriftRules",
    "DriftStatus",
    "agent_stats",
    "chi_square_homogeneity",
    "compare_windows",
    "jensen_shannon_distance",
    "mix_shift",
]

DimensionName = Literal["success_rate", "cost", "duration", "turns", "task_mix", "outcome_mix"]
DriftStatus = Literal["healthy", "warning", "drifting"]
Measure = Literal["absolute", "relative", "js_distance"]
Test = Literal["two_proportion_z", "welch_t_log", "chi_square"]

OTHER_TASKS = "(other)"
"""The task mix's name for the task names beyond the most frequent ones."""

# Cochran's rule for the chi-square approximation: every expected count at least 5.
_MIN_EXPECTED = 5.0


def _wire_name(name: str) -> str:
    """ClawTrait's spelling of a field: camelCase, and its ``netROI``."""
    if name == "net_roi":
        return "netROI"
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


# --- stats -------------------------------------------------------------------------------


class AgentStats(msgspec.Struct, frozen=True, rename=_wire_name):
    """ClawTrait's agent stats (``agentId``, ``period``, ``totalTasks``, ``successRate``,
    ``costPerTask``, ``totalCost``, ``netROI``) and the figures behind them: the tasks per
    outcome, the mean duration and turns (over the tasks that reported them), the value per
    success used, the net value (value of the successes less the cost) and the window
    (``since <= task time < until``). Rates and means are null without tasks; ``netROI``
    is null without a value per success or when the total cost is not positive."""

    agent_id: str
    period: str
    total_tasks: int
    success_rate: float | None
    cost_per_task: float | None
    total_cost: float
    net_roi: float | None
    successful_tasks: int
    failed_tasks: int
    partial_tasks: int
    avg_duration_ms: float | None
    avg_turns: float | None
    value_per_success: float | None
    net_value: float | None
    since: datetime
    until: datetime


def _mean_or_none(moments: Moments) -> float | None:
    return moments.mean if moments.n > 0 else None


def agent_stats(
    agent_id: str,
    period: str,
    window: AgentWindow,
    since: datetime,
    until: datetime,
    value_per_success: float | None = None,
) -> AgentStats:
    """The stats of an agent's tasks in one window; ``value_per_success`` (in the currency
    of ``cost``) values each successful task, for ``netValue`` and ``netROI``."""
    tasks = window.tasks
    cost = window.cost_total
    net_value = None
    net_roi = None
    if value_per_success is not None:
        net_value = window.successes * value_per_success - cost
        net_roi = net_value / cost if cost > 0 else None
    return AgentStats(
        agent_id=agent_id,
        period=period,
        total_tasks=tasks,
        success_rate=window.successes / tasks if tasks else None,
        cost_per_task=cost / tasks if tasks else None,
        total_cost=cost,
        net_roi=net_roi,
        successful_tasks=window.successes,
        failed_tasks=window.outcomes.get("failure", 0),
        partial_tasks=window.outcomes.get("partial", 0),
        avg_duration_ms=_mean_or_none(window.duration_ms),
        avg_turns=_mean_or_none(window.turns),
        value_per_success=value_per_success,
        net_value=net_value,
        since=since,
        until=until,
    )


# --- the tests and distances -------------------------------------------------------------


def chi_square_homogeneity(table: ArrayLike) -> tuple[float, int, float]:
    """The chi-square test that the rows of a contingency table (windows × categories,
    counts) come from one distribution: (statistic, degrees of freedom, p-value).

    With row totals r_i, column totals c_j and N in all, E_ij = r_i c_j / N,
    X² = Σ (O_ij - E_ij)² / E_ij with (rows - 1)(columns - 1) degrees of freedom. Columns
    with no count are left out; with fewer than two rows or columns of counts there is
    nothing to compare: (0, 0, 1.0). The caller keeps expected counts at 5 or more.
    """
    counts = np.asarray(table, dtype=np.float64)
    if counts.ndim != 2 or (counts < 0).any() or not np.isfinite(counts).all():
        raise ValueError("a contingency table is a 2-D array of counts >= 0")
    counts = counts[counts.sum(axis=1) > 0][:, counts.sum(axis=0) > 0]
    rows, columns = counts.shape
    if rows < 2 or columns < 2:
        return 0.0, 0, 1.0
    expected = np.outer(counts.sum(axis=1), counts.sum(axis=0)) / counts.sum()
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    df = (rows - 1) * (columns - 1)
    return chi2, df, chi2_sf(chi2, df)


def _shares(counts: ArrayLike) -> np.ndarray:
    values = np.asarray(counts, dtype=np.float64)
    total = values.sum()
    if values.ndim != 1 or (values < 0).any() or total <= 0:
        raise ValueError("a distribution is a 1-D array of counts >= 0, not all 0")
    shares: np.ndarray = values / float(total)
    return shares


def jensen_shannon_distance(p: ArrayLike, q: ArrayLike) -> float:
    """The Jensen–Shannon distance of two distributions over the same categories (counts
    or shares, normalised here): the square root of JSD = ½ KL(p‖m) + ½ KL(q‖m),
    m = (p + q) / 2, in bits, so 0 for equal distributions and 1 for disjoint ones."""
    a, b = _shares(p), _shares(q)
    if a.shape != b.shape:
        raise ValueError("both distributions need the same categories")
    m = 0.5 * (a + b)

    def kl(x: np.ndarray) -> float:
        present = x > 0
        return float((x[present] * np.log2(x[present] / m[present])).sum())

    return math.sqrt(min(1.0, max(0.0, 0.5 * kl(a) + 0.5 * kl(b))))


def mix_shift(baseline: ArrayLike, recent: ArrayLike) -> float:
    """How far two windows' mixes (counts per category) are apart beyond sampling noise:
    the Jensen–Shannon distance with its expected value under no change taken out.

    For close distributions JSD ≈ Σ (p_j - q_j)² / (8 m_j ln 2), whose expectation when
    both windows sample one distribution over K categories is
    (K - 1)(1/n_baseline + 1/n_recent) / (8 ln 2): returned is
    sqrt(max(0, JSD - that)). Without it, 200 tasks over 10 task names would show a
    distance near 0.13 between two windows of the very same agent.
    """
    a = np.asarray(baseline, dtype=np.float64)
    b = np.asarray(recent, dtype=np.float64)
    categories = int(np.count_nonzero(a + b))
    distance = jensen_shannon_distance(a, b)
    bias = (categories - 1) * (1.0 / a.sum() + 1.0 / b.sum()) / (8.0 * math.log(2.0))
    return math.sqrt(max(0.0, distance * distance - bias))


def _testable(table: np.ndarray) -> np.ndarray:
    """The columns of a 2-row table with sparse ones merged, so that every expected count
    is at least 5 where that is possible at all: the columns too small for it are summed
    into one, and that one, if still too small, into the smallest other column."""
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or table.sum(axis=1).min() <= 0:
        return table
    # A column's pooled count c gives the smaller row an expected count of c * min_row / N.
    needed = _MIN_EXPECTED * table.sum() / table.sum(axis=1).min()
    pooled = table.sum(axis=0)
    kept, sparse = table[:, pooled >= needed], table[:, pooled < needed]
    if sparse.shape[1] == 0:
        return kept
    merged = sparse.sum(axis=1, keepdims=True)
    if merged.sum() >= needed or kept.shape[1] == 0:
        return np.hstack([kept, merged])
    smallest = int(np.argmin(kept.sum(axis=0)))
    kept = kept.copy()
    kept[:, smallest] += merged[:, 0]
    return kept


# --- drift -------------------------------------------------------------------------------


class DimensionScale(msgspec.Struct, frozen=True):
    """How a dimension's effect is scored: a change below ``material`` does not count
    however significant; a change of ``full`` or more scores 1."""

    material: float
    full: float


class DriftRules(msgspec.Struct, frozen=True):
    """The drift method's settings (docs/agents.md).

    ``alpha`` is the family-wise significance level, split evenly over the dimensions
    tested (Bonferroni). A dimension is tested when both windows have at least
    ``min_tasks`` tasks (for cost, duration and turns: tasks that reported a value above
    0). The task mix keeps the ``max_task_categories`` - 1 most frequent names and counts
    the rest as one. Scales: the success rate in absolute points (0.15 = 15 points), cost,
    duration and turns as the relative change of their geometric mean (0.45 = +45%), the
    mixes as a
    Jensen–Shannon distance. The status is ``warning`` from a score of ``warning``,
    ``drifting`` from ``drifting``."""

    alpha: float = 0.01
    min_tasks: int = 30
    max_task_categories: int = 10
    warning: float = 0.25
    drifting: float = 0.5
    success_rate: DimensionScale = DimensionScale(material=0.02, full=0.15)
    means: DimensionScale = DimensionScale(material=0.05, full=0.45)
    mixes: DimensionScale = DimensionScale(material=0.03, full=0.30)


class DriftDimension(msgspec.Struct, frozen=True, rename=_wire_name):
    """One dimension of the comparison. ``baseline`` and ``recent`` are the success rate
    or the geometric mean (cost, duration, turns) in each window (null for the mixes, which
    give ``baselineShares`` and ``recentShares``); ``delta`` is recent minus baseline in
    points for the success rate, the relative change of the geometric mean for cost,
    duration and turns, the noise-corrected Jensen–Shannon distance for the mixes; null
    when a window has nothing to measure. ``pValue`` is
    null when the dimension was not tested (too few tasks); ``significant`` compares it
    with ``alpha`` / dimensions tested; ``material`` says whether ``delta`` reaches the
    dimension's bar; ``score`` is 0 unless both hold."""

    dimension: DimensionName
    test: Test
    measure: Measure
    baseline: float | None
    recent: float | None
    delta: float | None
    p_value: float | None
    significant: bool
    material: bool
    score: float
    baseline_tasks: int
    recent_tasks: int
    baseline_shares: dict[str, float] | None = None
    recent_shares: dict[str, float] | None = None


class DriftChange(msgspec.Struct, frozen=True):
    """One of ClawTrait's ``topChanges``: a dimension that changed (score above 0), its
    delta and score."""

    dimension: DimensionName
    delta: float | None
    score: float


class DriftComparison(msgspec.Struct, frozen=True):
    """The comparison of two windows: the drift score (0 to 1), the status, the changes by
    score, every dimension, whether both windows had enough tasks to test anything, and
    the significance level each test was held to."""

    score: float
    status: DriftStatus
    top_changes: list[DriftChange]
    dimensions: list[DriftDimension]
    sufficient_data: bool
    per_test_alpha: float | None


def _untested(
    name: DimensionName,
    test: Test,
    measure: Measure,
    values: tuple[float | None, float | None],
    delta: float | None,
    p_value: float | None,
    tasks: tuple[int, int],
    shares: tuple[dict[str, float] | None, dict[str, float] | None] = (None, None),
) -> DriftDimension:
    """A dimension before the Bonferroni level is known: not yet significant, no score."""
    return DriftDimension(
        dimension=name,
        test=test,
        measure=measure,
        baseline=values[0],
        recent=values[1],
        delta=delta,
        p_value=p_value,
        significant=False,
        material=False,
        score=0.0,
        baseline_tasks=tasks[0],
        recent_tasks=tasks[1],
        baseline_shares=shares[0],
        recent_shares=shares[1],
    )


def _success_rate(baseline: AgentWindow, recent: AgentWindow, rules: DriftRules) -> DriftDimension:
    before = baseline.successes / baseline.tasks if baseline.tasks else None
    after = recent.successes / recent.tasks if recent.tasks else None
    delta = after - before if before is not None and after is not None else None
    smaller = min(baseline.tasks, recent.tasks)
    pooled = (baseline.successes + recent.successes) / max(1, baseline.tasks + recent.tasks)
    p_value = None
    # The normal approximation needs the expected successes and failures of the smaller
    # window at 5 or more (Cochran's rule, as for the mixes): 30 tasks at 90% have 3.
    if smaller >= rules.min_tasks and smaller * min(pooled, 1.0 - pooled) >= _MIN_EXPECTED:
        p_value = two_proportion_p_value(
            baseline.successes, baseline.tasks, recent.successes, recent.tasks
        )
    return _untested(
        "success_rate",
        "two_proportion_z",
        "absolute",
        (before, after),
        delta,
        p_value,
        (baseline.tasks, recent.tasks),
    )


def _scale_change(name: DimensionName, a: Moments, b: Moments, rules: DriftRules) -> DriftDimension:
    """A measure compared on the log scale: ``a`` and ``b`` are the moments of its
    logarithm. The windows' values are geometric means, the delta the relative change of
    the geometric mean, exp(mean_b - mean_a) - 1, and the test Welch's on the logs."""
    # A factor beyond e^50 is as unbounded as it gets; capped, it stays a finite number.
    delta = math.expm1(min(b.mean - a.mean, 50.0)) if a.n and b.n else None
    p_value = None
    if min(a.n, b.n) >= rules.min_tasks:
        p_value = welch_t_test(a.mean, a.variance, a.n, b.mean, b.variance, b.n).p_value
    geometric = (math.exp(a.mean) if a.n else None, math.exp(b.mean) if b.n else None)
    return _untested(name, "welch_t_log", "relative", geometric, delta, p_value, (a.n, b.n))


def _mix(
    name: DimensionName,
    baseline: Mapping[str, int],
    recent: Mapping[str, int],
    totals: tuple[int, int],
    categories: int,
    rules: DriftRules,
) -> DriftDimension:
    """A mix over the names counted in both windows; what the counts leave of the totals
    is one more category, `OTHER_TASKS`, as are the names beyond the ``categories`` - 1
    most frequent ones."""
    pooled = {n: baseline.get(n, 0) + recent.get(n, 0) for n in set(baseline) | set(recent)}
    names = sorted(pooled, key=lambda n: (-pooled[n], n))
    rest = (
        len(names) > categories
        or sum(baseline.values()) < totals[0]
        or sum(recent.values()) < totals[1]
    )
    shown = names[: categories - 1] if rest else names
    table = np.array(
        [[counts.get(n, 0) for n in shown] for counts in (baseline, recent)], dtype=np.float64
    )
    if rest:
        left = np.array(totals, dtype=np.float64) - table.sum(axis=1)
        table = np.hstack([table, left[:, None]])
        shown = [*shown, OTHER_TASKS]
    p_value = delta = None
    shares: list[dict[str, float] | None] = [None, None]
    for i, total in enumerate(totals):
        if total > 0:
            shares[i] = {n: float(c) / total for n, c in zip(shown, table[i], strict=True)}
    if min(totals) > 0:
        delta = mix_shift(table[0], table[1])
        if min(totals) >= rules.min_tasks:
            p_value = chi_square_homogeneity(_testable(table))[2]
    return _untested(
        name,
        "chi_square",
        "js_distance",
        (None, None),
        delta,
        p_value,
        totals,
        (shares[0], shares[1]),
    )


def _task_counts(window: AgentWindow, other: AgentWindow) -> dict[str, int]:
    """The window's count of every name whose count is known in both windows: listed, or
    absent from a complete listing (0)."""
    known = {}
    for name in set(window.task_counts) | set(other.task_counts):
        mine = window.task_counts.get(name)
        if mine is None and window.task_counts_complete:
            mine = 0
        theirs = other.task_counts.get(name)
        if theirs is None and not other.task_counts_complete:
            continue
        if mine is not None:
            known[name] = mine
    return known


def _scored(found: DriftDimension, level: float | None, rules: DriftRules) -> DriftDimension:
    """The dimension judged at the Bonferroni ``level`` (None: nothing was tested)."""
    scale = {"absolute": rules.success_rate, "relative": rules.means}.get(
        found.measure, rules.mixes
    )
    significant = level is not None and found.p_value is not None and found.p_value < level
    material = found.delta is not None and abs(found.delta) >= scale.material
    score = 0.0
    if significant and material and found.delta is not None:
        score = min(1.0, abs(found.delta) / scale.full)
    return msgspec.structs.replace(found, significant=significant, material=material, score=score)


def _status(score: float, rules: DriftRules) -> DriftStatus:
    if score >= rules.drifting:
        return "drifting"
    return "warning" if score >= rules.warning else "healthy"


def compare_windows(
    baseline: AgentWindow, recent: AgentWindow, rules: DriftRules | None = None
) -> DriftComparison:
    """How much the recent window differs from the baseline, dimension by dimension, with
    the drift score and status of `DriftRules` (the defaults when None)."""
    rules = DriftRules() if rules is None else rules
    if not 0.0 < rules.alpha < 1.0:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {rules.alpha!r}")
    totals = (baseline.tasks, recent.tasks)
    found = [
        _success_rate(baseline, recent, rules),
        _scale_change("cost", baseline.log_cost, recent.log_cost, rules),
        _scale_change("duration", baseline.log_duration_ms, recent.log_duration_ms, rules),
        _scale_change("turns", baseline.log_turns, recent.log_turns, rules),
        _mix(
            "task_mix",
            _task_counts(baseline, recent),
            _task_counts(recent, baseline),
            totals,
            rules.max_task_categories,
            rules,
        ),
        _mix(
            "outcome_mix",
            {o: baseline.outcomes.get(o, 0) for o in OUTCOMES},
            {o: recent.outcomes.get(o, 0) for o in OUTCOMES},
            totals,
            len(OUTCOMES) + 1,
            rules,
        ),
    ]
    tested = sum(f.p_value is not None for f in found)
    level = rules.alpha / tested if tested else None
    dimensions = [_scored(f, level, rules) for f in found]
    changes = sorted(
        (DriftChange(d.dimension, d.delta, d.score) for d in dimensions if d.score > 0),
        key=lambda c: -c.score,
    )
    score = max((d.score for d in dimensions), default=0.0)
    return DriftComparison(
        score=score,
        status=_status(score, rules),
        top_changes=changes,
        dimensions=dimensions,
        sufficient_data=min(totals) >= rules.min_tasks,
        per_test_alpha=level,
    )
