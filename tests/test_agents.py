"""The agent statistics and the drift method, as pure functions over aggregates: the tests
and distances against scipy, the stats' figures, the gates of the score (significant and
material), and, by simulation with fixed seeds, the false-alarm rate on stable agents and
the power to detect a success drop of 10 points or a cost rise of 30%.

``pytest tests/test_agents.py -s -k simulated`` prints the measured rates."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec
import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency

from analytics.agent_aggregates import (
    AgentWindow,
    Moments,
    log_moments_of,
    moments_of,
    window_from_arrays,
)
from analytics.agents import (
    OTHER_TASKS,
    DriftComparison,
    DriftDimension,
    DriftRules,
    agent_stats,
    chi_square_homogeneity,
    compare_windows,
    jensen_shannon_distance,
    mix_shift,
)

# --- a simulated agent -------------------------------------------------------------------

# Five kinds of task with their share of the traffic, success rate and typical cost: the
# fleet's cost per task is a mixture of lognormals, coefficient of variation about 1.3.
TASKS = np.array(["resolve-ticket", "refund", "triage", "escalate", "faq"])
MIX = np.array([0.4, 0.2, 0.2, 0.1, 0.1])
SUCCESS = np.array([0.92, 0.85, 0.95, 0.70, 0.97])
COST = np.array([0.04, 0.06, 0.01, 0.08, 0.005])
# "Realistic" windows: 100 tasks a day, a 30-day baseline against the last 7 days.
BASELINE, RECENT = 3000, 700


def simulate(
    rng: np.random.Generator,
    n: int,
    *,
    success_shift: float = 0.0,
    cost_factor: float = 1.0,
    sigma: float = 0.8,
    mix: np.ndarray = MIX,
) -> AgentWindow:
    """``n`` tasks of the agent: a task kind by the mix, an outcome (a failure is partial
    three times in ten), a lognormal cost around the kind's, a lognormal duration and
    Poisson turns."""
    kind = rng.choice(len(TASKS), size=n, p=mix)
    rate = np.clip(SUCCESS[kind] + success_shift, 0.0, 1.0)
    u = rng.random(n)
    partial = u < rate + 0.3 * (1 - rate)
    outcome = np.where(u < rate, "success", np.where(partial, "partial", "failure"))
    cost = COST[kind] * cost_factor * rng.lognormal(-0.5 * sigma**2, sigma, n)
    duration = 3000.0 * rng.lognormal(-0.18, 0.6, n)
    turns = 1.0 + rng.poisson(3, n)
    return window_from_arrays(outcome, TASKS[kind], cost, duration, turns)


class Rates(msgspec.Struct):
    runs: int
    flagged: int  # warning or drifting
    drifting: int
    significant: int  # some dimension rejected at its Bonferroni level

    def rate(self, count: int) -> float:
        return count / self.runs


Simulated = Callable[[np.random.Generator], AgentWindow]


def measure(runs: int, seed: int, baseline: Simulated, recent: Simulated) -> Rates:
    rng = np.random.default_rng(seed)
    rates = Rates(runs, 0, 0, 0)
    for _ in range(runs):
        result = compare_windows(baseline(rng), recent(rng))
        rates.flagged += result.status != "healthy"
        rates.drifting += result.status == "drifting"
        rates.significant += any(d.significant for d in result.dimensions)
    return rates


def bound(alpha: float, runs: int) -> float:
    """The most a rate of at most ``alpha`` can show in ``runs`` trials but for a 3-sigma
    binomial accident."""
    return alpha + 3.0 * math.sqrt(alpha * (1.0 - alpha) / runs)


def report(record_property: Callable[[str, object], None], name: str, rates: Rates) -> None:
    flagged, drifting, significant = (
        rates.rate(n) for n in (rates.flagged, rates.drifting, rates.significant)
    )
    line = (
        f"{name}: {rates.runs} windows, flagged {flagged:.1%}, drifting {drifting:.1%}, "
        f"some test significant {significant:.1%}"
    )
    print(line)
    record_property(name, line)


# --- the false-alarm rate and the power ------------------------------------------------


def test_simulated_stable_agent_false_alarm_rate(
    record_property: Callable[[str, object], None],
) -> None:
    """1,000 pairs of windows of one unchanged agent: a status other than healthy needs
    some test to reject at alpha / m, which Bonferroni bounds at alpha per comparison."""
    alpha = DriftRules().alpha
    rates = measure(
        1000, 20260215, lambda rng: simulate(rng, BASELINE), lambda rng: simulate(rng, RECENT)
    )
    report(record_property, "stable agent (3000 vs 700 tasks)", rates)
    assert rates.rate(rates.significant) <= bound(alpha, rates.runs)
    assert rates.rate(rates.flagged) <= bound(alpha, rates.runs)
    assert rates.flagged <= rates.significant  # nothing flagged without significance


def test_simulated_false_alarms_with_small_windows_and_heavy_tails(
    record_property: Callable[[str, object], None],
) -> None:
    """Where the normal approximations are weakest: 200 against 50 tasks, costs with a
    coefficient of variation near 3."""
    alpha = DriftRules().alpha
    rates = measure(
        1000,
        7,
        lambda rng: simulate(rng, 200, sigma=1.5),
        lambda rng: simulate(rng, 50, sigma=1.5),
    )
    report(record_property, "stable agent, heavy-tailed cost (200 vs 50 tasks)", rates)
    assert rates.rate(rates.flagged) <= bound(alpha, rates.runs)


def test_simulated_success_drop_of_10_points_is_flagged(
    record_property: Callable[[str, object], None],
) -> None:
    rates = measure(
        300,
        11,
        lambda rng: simulate(rng, BASELINE),
        lambda rng: simulate(rng, RECENT, success_shift=-0.10),
    )
    report(record_property, "success -10 points (3000 vs 700 tasks)", rates)
    assert rates.rate(rates.flagged) >= 0.97
    assert rates.rate(rates.drifting) >= 0.9


def test_simulated_cost_rise_of_30_percent_is_flagged(
    record_property: Callable[[str, object], None],
) -> None:
    rates = measure(
        300,
        13,
        lambda rng: simulate(rng, BASELINE),
        lambda rng: simulate(rng, RECENT, cost_factor=1.3),
    )
    report(record_property, "cost +30% (3000 vs 700 tasks)", rates)
    assert rates.rate(rates.flagged) >= 0.85
    assert rates.rate(rates.drifting) >= 0.7


def test_a_task_mix_shift_is_flagged_on_the_task_mix() -> None:
    rng = np.random.default_rng(3)
    shifted = np.array([0.2, 0.2, 0.2, 0.3, 0.1])  # escalations triple
    result = compare_windows(simulate(rng, BASELINE), simulate(rng, RECENT, mix=shifted))
    task_mix = dimension(result, "task_mix")
    assert task_mix.significant and task_mix.material and task_mix.score > 0
    assert result.status != "healthy"
    assert task_mix.recent_shares is not None
    assert task_mix.recent_shares["escalate"] == pytest.approx(0.3, abs=0.05)


# --- the gates of the score ----------------------------------------------------------------


def window(
    tasks: int,
    successes: int,
    cost: float = 0.04,
    names: dict[str, int] | None = None,
    task_counts_complete: bool = True,
    log_cost: Moments | None = None,
) -> AgentWindow:
    """Tasks of one name with this many successes (the rest failures), cost and duration
    moments (log cost: mean -3.2, variance 1), no turns."""
    failures = tasks - successes
    return AgentWindow(
        tasks=tasks,
        outcomes={"success": successes, "failure": failures, "partial": 0},
        task_counts=names if names is not None else {"triage": tasks},
        cost_total=cost * tasks,
        cost=Moments(tasks, cost, 1e-3),
        duration_ms=Moments(tasks, 1000.0, 1e4),
        log_cost=Moments(tasks, -3.2, 1.0) if log_cost is None else log_cost,
        log_duration_ms=Moments(tasks, 6.9, 0.36),
        task_counts_complete=task_counts_complete,
    )


def dimension(result: DriftComparison, name: str) -> DriftDimension:
    (found,) = [d for d in result.dimensions if d.dimension == name]
    return found


def test_identical_windows_score_zero() -> None:
    result = compare_windows(window(1000, 900), window(250, 225))
    assert (result.score, result.status, result.top_changes) == (0.0, "healthy", [])
    assert result.sufficient_data
    # success, cost, duration, task mix, outcome mix (no turns reported)
    assert result.per_test_alpha == pytest.approx(0.01 / 5)
    assert dimension(result, "turns").p_value is None


def test_a_significant_change_too_small_to_matter_scores_zero() -> None:
    # 1 point of success on a million tasks: certain, and immaterial.
    result = compare_windows(window(1_000_000, 900_000), window(1_000_000, 890_000))
    success = dimension(result, "success_rate")
    assert success.significant and not success.material
    assert success.delta == pytest.approx(-0.01)
    assert success.score == 0.0 and result.status == "healthy"


def test_a_large_change_on_too_few_tasks_scores_zero() -> None:
    # From 90% to 70% on 20 tasks: material, but 20 tasks are below min_tasks.
    result = compare_windows(window(1000, 900), window(20, 14))
    assert not result.sufficient_data and result.per_test_alpha is None
    success = dimension(result, "success_rate")
    assert success.material and not success.significant and success.p_value is None
    assert result.score == 0.0 and result.status == "healthy"


def test_a_large_significant_change_scores_by_its_size() -> None:
    result = compare_windows(window(3000, 2700), window(700, 560))  # 90% -> 80%
    success = dimension(result, "success_rate")
    assert success.significant and success.material
    assert success.score == pytest.approx(0.10 / 0.15)
    assert result.score == success.score and result.status == "drifting"
    assert result.top_changes[0].dimension == "success_rate"
    assert result.top_changes[0].delta == pytest.approx(-0.10)
    assert dimension(result, "outcome_mix").significant


def test_cost_is_compared_on_the_tasks_that_reported_one() -> None:
    # A window whose tasks sent no cost (the events carry 0) has nothing to compare.
    unpriced = window(500, 450, log_cost=Moments())
    result = compare_windows(unpriced, window(500, 450))
    cost = dimension(result, "cost")
    assert cost.p_value is None and cost.delta is None and cost.baseline is None
    assert result.status == "healthy"


def test_a_cost_rise_by_a_factor_is_its_geometric_mean_change() -> None:
    result = compare_windows(window(3000, 2700), window(700, 630, log_cost=Moments(700, -2.9, 1.0)))
    cost = dimension(result, "cost")
    assert cost.baseline == pytest.approx(math.exp(-3.2))
    assert cost.delta == pytest.approx(math.exp(0.3) - 1)
    assert cost.significant and cost.score == pytest.approx(min(1.0, (math.exp(0.3) - 1) / 0.45))
    assert result.status == "drifting"


def test_the_statuses_follow_the_score_thresholds() -> None:
    rules = DriftRules()
    for recent_rate, status in ((0.87, "healthy"), (0.85, "warning"), (0.82, "drifting")):
        result = compare_windows(window(20_000, 18_000), window(20_000, int(20_000 * recent_rate)))
        assert result.status == status, (recent_rate, result.score)
        assert (result.score >= rules.warning) == (status != "healthy")


def test_task_names_cut_from_a_listing_are_counted_as_other() -> None:
    # The recent listing was cut (too many names): "rare" is listed in the baseline only,
    # and its recent count is unknown, so it is part of (other) in both windows.
    baseline = window(1000, 900, names={"triage": 700, "rare": 300})
    recent = window(1000, 900, names={"triage": 690}, task_counts_complete=False)
    result = compare_windows(baseline, recent)
    mix = dimension(result, "task_mix")
    assert mix.baseline_shares == {"triage": 0.7, OTHER_TASKS: 0.3}
    assert mix.recent_shares == {"triage": 0.69, OTHER_TASKS: 0.31}
    assert not mix.significant


def test_alpha_must_be_a_probability() -> None:
    with pytest.raises(ValueError, match="alpha"):
        compare_windows(window(100, 90), window(100, 90), DriftRules(alpha=0.0))


# --- the tests and distances against scipy --------------------------------------------------


def test_chi_square_homogeneity_matches_scipy() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        table = rng.integers(5, 400, size=(2, int(rng.integers(2, 8))))
        chi2, df, p = chi_square_homogeneity(table)
        expected = chi2_contingency(table, correction=False)
        assert chi2 == pytest.approx(expected.statistic, rel=1e-12)
        assert df == expected.dof
        assert p == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    # empty columns are left out; one column is nothing to compare
    assert chi_square_homogeneity([[3, 0, 4], [5, 0, 1]])[1] == 1
    assert chi_square_homogeneity([[3], [5]]) == (0.0, 0, 1.0)
    with pytest.raises(ValueError):
        chi_square_homogeneity([[1, -1], [2, 2]])


def test_jensen_shannon_distance_matches_scipy() -> None:
    rng = np.random.default_rng(9)
    for _ in range(20):
        p, q = rng.random(6), rng.random(6)
        assert jensen_shannon_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2))
    assert jensen_shannon_distance([1, 0], [0, 1]) == 1.0
    assert jensen_shannon_distance([2, 2], [1, 1]) == 0.0


def test_mix_shift_takes_out_the_noise_of_sampling() -> None:
    """Two samples of one distribution: the raw distance is well above 0, the corrected
    one near it; a real shift keeps its size."""
    rng = np.random.default_rng(1)
    shares = np.full(10, 0.1)
    raw, corrected = [], []
    for _ in range(500):
        a, b = rng.multinomial(1000, shares), rng.multinomial(200, shares)
        raw.append(jensen_shannon_distance(a, b))
        corrected.append(mix_shift(a, b))
    assert np.mean(raw) > 0.08
    assert np.mean(corrected) < 0.04
    a, b = np.array([5000, 5000]), np.array([3000, 7000])
    assert mix_shift(a, b) == pytest.approx(jensen_shannon_distance(a, b), abs=0.005)


# --- stats -----------------------------------------------------------------------------------


SINCE, UNTIL = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 31, tzinfo=UTC)


def test_agent_stats_figures_and_net_roi() -> None:
    tasks = window_from_arrays(
        ["success", "success", "failure", "partial"],
        ["a", "a", "b", "a"],
        [0.5, 0.25, 0.25, 0.0],
        [1000.0, 2000.0, 3000.0, 6000.0],
        [2, np.nan, 4, np.nan],
    )
    stats = agent_stats("bot", "30d", tasks, SINCE, UNTIL, value_per_success=1.0)
    assert (stats.total_tasks, stats.successful_tasks, stats.failed_tasks) == (4, 2, 1)
    assert stats.partial_tasks == 1 and stats.success_rate == 0.5
    assert stats.total_cost == 1.0 and stats.cost_per_task == 0.25
    assert stats.net_value == 1.0 and stats.net_roi == 1.0  # (2 * 1.0 - 1.0) / 1.0
    assert stats.avg_duration_ms == 3000.0 and stats.avg_turns == 3.0
    wire = msgspec.json.decode(msgspec.json.encode(stats))
    for name in ("agentId", "totalTasks", "successRate", "costPerTask", "totalCost", "netROI"):
        assert name in wire


def test_agent_stats_without_value_or_tasks_have_nulls() -> None:
    stats = agent_stats("bot", "7d", AgentWindow(), SINCE, UNTIL)
    assert stats.total_tasks == 0 and stats.total_cost == 0.0
    assert stats.success_rate is None and stats.cost_per_task is None
    assert stats.net_roi is None and stats.avg_turns is None
    free = window_from_arrays(["success"], ["a"], [0.0], [1.0])
    assert agent_stats("bot", "7d", free, SINCE, UNTIL, 2.0).net_roi is None  # no cost
    assert agent_stats("bot", "7d", free, SINCE, UNTIL, 2.0).net_value == 2.0


def test_moments_skip_what_was_not_reported() -> None:
    assert moments_of([1.0, np.nan, 3.0]) == Moments(2, 2.0, 2.0)
    assert moments_of([5.0]) == Moments(1, 5.0, 0.0)
    assert moments_of([]) == Moments()
    assert log_moments_of([math.e, 0.0, np.nan, math.e**3]) == Moments(2, 2.0, 2.0)
