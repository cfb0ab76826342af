"""Experiment results: one aggregate query per experiment, the statistics on top of it, the
decision (collecting, running, significant, no_winner, guardrail) and the API shapes.

The rules, and why each is what it is, are written for users in docs/statistics.md; this
module implements them. The query runs through a `QueryRunner` (``sql, parameters ->
pyarrow.Table``), so this module never opens a connection: a worker passes the warehouse
gateway's runner, a test a chDB client's ``query_arrow``.

What counts (the SQL below):

- **web**: a unit (visitor) is in the experiment once it has an exposure row, and in the
  variant of its first exposure (earliest ``received_at``; see docs/statistics.md for
  same-millisecond ties, and why they are not broken by a second key). A unit
  converts on a goal when it has at least one goal row for it, counted once however often
  it converts; goal rows of units never exposed to this experiment are ignored, and a unit
  exposed to two variants counts, with its goals, for the first. Its value on a goal is the
  sum of its goal rows' values (a missing value is 0).
- **agent**: a unit (agent session or run) is in the experiment once it has a task row,
  in the variant of its first task; it succeeds when at least one of its tasks succeeded.
  Cost, duration and turns are summed per unit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any, Literal

import msgspec
import pyarrow as pa
import xxhash

from analytics import bayes, frequentist
from analytics.warehouse import EVENTS_TABLE

__all__ = [
    "AGENT_METRICS",
    "DEFAULT_CONFIDENCE",
    "DEFAULT_MIN_UNITS",
    "POWER",
    "SRM_THRESHOLD",
    "AgentMetrics",
    "ArmAggregates",
    "ClawSplitResults",
    "ClawSplitVariant",
    "CrewkitArm",
    "CrewkitMetrics",
    "CrewkitSignificance",
    "DecisionRules",
    "ExperimentResults",
    "ExperimentSpec",
    "GoalAggregates",
    "GoalResult",
    "GoalSpec",
    "MetricSummary",
    "QueryRunner",
    "Status",
    "TimelinePoint",
    "VariantRef",
    "VariantResult",
    "VariantSpec",
    "aggregate",
    "clawsplit_view",
    "compute_results",
    "crewkit_metrics_view",
    "fetch_aggregates",
    "fetch_results",
    "fetch_timeline",
    "monte_carlo_seed",
    "results_query",
    "timeline_query",
]

QueryRunner = Callable[[str, dict[str, Any]], pa.Table]
"""Runs one SQL query with clickhouse-connect ``{name:Type}`` parameters; returns Arrow."""

Status = Literal["collecting", "running", "significant", "no_winner", "guardrail"]
ExperimentStatus = Literal["draft", "running", "paused", "completed", "archived"]
AgentMetric = Literal["task_completion", "success_rate", "avg_cost", "avg_duration", "avg_turns"]

DEFAULT_CONFIDENCE = 0.95
# The reference's minimum before a winner is declared: ">= 500 samples/arm".
DEFAULT_MIN_UNITS = 500
POWER = 0.8
# The project's one SRM threshold (frequentist.py says why it is 0.005, not 0.001).
SRM_THRESHOLD = frequentist.DEFAULT_SRM_THRESHOLD
AGENT_METRICS: tuple[AgentMetric, ...] = (
    "task_completion", "success_rate", "avg_cost", "avg_duration", "avg_turns",
)  # fmt: skip
# The per-unit column of each lower-is-better agent metric.
_AGENT_MEANS = {"avg_cost": "cost", "avg_duration": "duration_ms", "avg_turns": "turns"}


# --- what the results need from the control plane ------------------------------------


class VariantSpec(msgspec.Struct, frozen=True):
    """One variant as configured: its weight in basis points and whether it is control."""

    id: str
    name: str
    is_control: bool
    weight_bps: int


class GoalSpec(msgspec.Struct, frozen=True):
    """One goal of a web experiment."""

    id: str
    name: str
    type: str


class ExperimentSpec(msgspec.Struct, frozen=True):
    """What the results need to know of an experiment (built by the control plane from its
    store). Variants and goals are in position order; the first goal is the primary one.
    ``sample_size`` is per arm; ``primary_metric`` names an agent metric (`AGENT_METRICS`)
    and is ignored for web experiments."""

    id: str
    workspace_id: str
    kind: Literal["web", "agent"]
    status: ExperimentStatus
    variants: tuple[VariantSpec, ...]
    goals: tuple[GoalSpec, ...] = ()
    sample_size: int | None = None
    confidence: float | None = None
    primary_metric: str | None = None
    started_at: datetime | None = None


# --- the query -------------------------------------------------------------------------

# Both queries read only the experiment's ranges of the sorting key (experiment_id, kind),
# aggregate per unit first (first exposure, goals converted, per-unit sums), then per arm,
# all inside ClickHouse: one round trip returns a few rows per variant.
_SCOPE = "experiment_id = {exp:String} AND workspace_id = {ws:String}"

# Two ranges of the key, one per side of a join on unit_id. Left, "exposed": every exposed
# unit with the variant of its first exposure. Right, "converted": every unit with goal
# rows, as parallel arrays of its goals and their summed values; it is the small side
# (converters), so it is the join's hash table. A goal-only unit has no left row and
# drops out. LEFT ARRAY JOIN then makes one row per (unit, goal converted), or one row
# with goal_id '' and i = 0 for a unit without goals; the grouping sets give each
# variant's units (each unit counted at its first goal, i <= 1) and, per goal, its
# converted units and their values (p95 over converted units only, i > 0). is_total is 1
# on the per-variant rows. argMin by received_at alone: a tuple key (received_at,
# variant_id) to break same-millisecond ties doubled the query's CPU time.
_WEB_SQL = f"""
SELECT
    variant_id,
    goal_id,
    grouping(goal_id) AS is_total,
    countIf(i <= 1) AS units,
    count() AS converted,
    sum(value) AS value_sum,
    sum(value * value) AS value_sumsq,
    quantileExactInclusiveIf(0.95)(value, i > 0) AS value_p95
FROM (
    SELECT unit_id, argMin(variant_id, received_at) AS variant_id
    FROM {EVENTS_TABLE}
    WHERE {_SCOPE} AND kind = 'exposure'
    GROUP BY unit_id
) AS exposed
LEFT JOIN (
    SELECT unit_id, groupArray(goal_id) AS goal_ids, groupArray(value) AS goal_values
    FROM (
        SELECT unit_id, goal_id, sum(ifNull(value, 0.)) AS value
        FROM {EVENTS_TABLE}
        WHERE {_SCOPE} AND kind = 'goal'
        GROUP BY unit_id, goal_id
    )
    GROUP BY unit_id
) AS converted USING unit_id
LEFT ARRAY JOIN goal_ids AS goal_id, goal_values AS value, arrayEnumerate(goal_ids) AS i
GROUP BY GROUPING SETS ((variant_id), (variant_id, goal_id))
ORDER BY variant_id, is_total DESC, goal_id
"""

_AGENT_SQL = f"""
SELECT
    variant_id,
    count() AS units,
    countIf(successes > 0) AS converted,
    sum(tasks) AS tasks,
    sum(successes) AS successful_tasks,
    sum(cost) AS cost_sum,
    sum(cost * cost) AS cost_sumsq,
    quantileExactInclusive(0.95)(cost) AS cost_p95,
    sum(duration_ms) AS duration_ms_sum,
    sum(duration_ms * duration_ms) AS duration_ms_sumsq,
    quantileExactInclusive(0.95)(duration_ms) AS duration_ms_p95,
    sum(turns) AS turns_sum,
    sum(turns * turns) AS turns_sumsq,
    quantileExactInclusive(0.95)(turns) AS turns_p95
FROM (
    SELECT
        unit_id,
        argMin(variant_id, received_at) AS variant_id,
        count() AS tasks,
        countIf(outcome = 'success') AS successes,
        sum(ifNull(cost, 0.)) AS cost,
        sum(ifNull(duration_ms, 0.)) AS duration_ms,
        toFloat64(sum(ifNull(turns, 0))) AS turns
    FROM {EVENTS_TABLE}
    WHERE {_SCOPE} AND kind = 'task'
    GROUP BY unit_id
)
GROUP BY variant_id
ORDER BY variant_id
"""


def results_query(kind: Literal["web", "agent"]) -> str:
    """The aggregate query of an experiment of this kind; parameters ``exp`` and ``ws``."""
    return _WEB_SQL if kind == "web" else _AGENT_SQL


class MetricSummary(msgspec.Struct, frozen=True):
    """A continuous per-unit metric of one arm: mean per unit, total, sample standard
    deviation and 95th percentile (None where there are too few units)."""

    mean: float | None
    sum: float
    std_dev: float | None
    p95: float | None


class GoalAggregates(msgspec.Struct, frozen=True):
    """One goal in one arm, as the query returns it: units that converted, and the sum, sum
    of squares and p95 (over converted units) of the per-unit value."""

    goal_id: str
    converted: int
    value_sum: float
    value_sumsq: float
    value_p95: float | None


class ArmAggregates(msgspec.Struct, frozen=True):
    """One variant's aggregates. Web: ``goals``. Agent: ``converted`` (units with a
    successful task), task counts and ``sums`` / ``sumsqs`` / ``p95s`` of the per-unit
    ``cost``, ``duration_ms`` and ``turns``."""

    variant_id: str
    units: int
    goals: tuple[GoalAggregates, ...] = ()
    converted: int = 0
    tasks: int = 0
    successful_tasks: int = 0
    sums: dict[str, float] = {}
    sumsqs: dict[str, float] = {}
    p95s: dict[str, float | None] = {}


def _finite(value: Any) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    """A small answer's rows; String columns as str even when the runner's server sent
    them as Arrow binary (``output_format_arrow_string_as_string`` off)."""
    binary = [i for i, f in enumerate(table.schema) if pa.types.is_binary(f.type)]
    for i in binary:
        table = table.set_column(i, table.field(i).name, table.column(i).cast(pa.string()))
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def aggregate(kind: Literal["web", "agent"], table: pa.Table) -> list[ArmAggregates]:
    """The query's answer as one `ArmAggregates` per variant id found in the data."""
    rows = _rows(table)
    if kind == "agent":
        columns = tuple(_AGENT_MEANS.values())
        return [
            ArmAggregates(
                variant_id=row["variant_id"],
                units=row["units"],
                converted=row["converted"],
                tasks=row["tasks"],
                successful_tasks=row["successful_tasks"],
                sums={c: row[f"{c}_sum"] for c in columns},
                sumsqs={c: row[f"{c}_sumsq"] for c in columns},
                p95s={c: _finite(row[f"{c}_p95"]) for c in columns},
            )
            for row in rows
        ]
    arms: list[ArmAggregates] = []
    for row in rows:  # per variant: its total row first, then its goals
        if row["is_total"]:
            arms.append(ArmAggregates(variant_id=row["variant_id"], units=row["units"]))
        elif row["goal_id"]:
            goal = GoalAggregates(
                goal_id=row["goal_id"],
                converted=row["converted"],
                value_sum=row["value_sum"],
                value_sumsq=row["value_sumsq"],
                value_p95=_finite(row["value_p95"]),
            )
            arms[-1] = msgspec.structs.replace(arms[-1], goals=(*arms[-1].goals, goal))
    return arms


def fetch_aggregates(run: QueryRunner, spec: ExperimentSpec) -> list[ArmAggregates]:
    """Run the experiment's aggregate query (one round trip)."""
    table = run(results_query(spec.kind), {"exp": spec.id, "ws": spec.workspace_id})
    return aggregate(spec.kind, table)


# --- the results -----------------------------------------------------------------------


class VariantRef(msgspec.Struct, frozen=True):
    """A variant named in a decision (winner, guardrail, leader)."""

    id: str
    name: str


class GoalResult(msgspec.Struct, frozen=True):
    """One goal in one arm: units converted (once each), their rate among exposed units,
    and the per-unit value (mean and std_dev per exposed unit, p95 over converted units)."""

    goal_id: str
    name: str
    type: str
    conversions: int
    rate: float | None
    value: MetricSummary


class AgentMetrics(msgspec.Struct, frozen=True):
    """One arm of an agent experiment: tasks, units with a successful task, and the per-unit
    (summed over the unit's tasks) cost, duration and turns."""

    tasks: int
    successful_tasks: int
    success_units: int
    success_rate: float | None
    task_success_rate: float | None
    cost: MetricSummary
    duration_ms: MetricSummary
    turns: MetricSummary


class VariantResult(msgspec.Struct, frozen=True):
    """One arm. ``value`` is its primary metric (a rate, or a mean per unit) with the
    credible ``interval``; the comparisons with control (``prob_beat_control``, ``lift``
    with its credible interval, ``p_value``) are None for the control arm; the Bayesian
    figures are None until every arm has data. ``samples_needed`` are units still to add
    to this arm (docs/statistics.md)."""

    id: str
    name: str
    is_control: bool
    weight_bps: int
    units: int
    value: float | None
    conversions: int | None
    interval: tuple[float, float] | None
    prob_to_win: float | None
    prob_to_win_se: float | None
    prob_beat_control: float | None
    prob_beat_control_se: float | None
    expected_loss: float | None
    expected_loss_se: float | None
    lift: float | None
    lift_interval: tuple[float, float] | None
    p_value: float | None
    samples_needed: int
    goals: tuple[GoalResult, ...] = ()
    agent: AgentMetrics | None = None


class DecisionRules(msgspec.Struct, frozen=True):
    """The parameters the decision used. ``alpha`` is per comparison with control:
    (1 - confidence) / comparisons (Bonferroni)."""

    confidence: float
    min_units_per_arm: int
    comparisons: int
    alpha: float
    power: float
    srm_threshold: float
    draws: int | None
    seed: int


class ExperimentResults(msgspec.Struct, frozen=True):
    """An experiment's results and decision. The top-level ``prob_to_win``,
    ``expected_loss``, ``lift``, ``lift_interval`` and ``p_value`` are those of ``leader``:
    the winner, else the guardrail arm, else the challenger most likely to be best.
    ``mc_error`` is the largest Monte Carlo standard error of the reported probabilities."""

    experiment_id: str
    kind: Literal["web", "agent"]
    experiment_status: ExperimentStatus
    status: Status
    primary_metric: str
    primary_metric_name: str
    higher_is_better: bool
    winner: VariantRef | None
    guardrail: VariantRef | None
    leader: VariantRef | None
    prob_to_win: float | None
    expected_loss: float | None
    lift: float | None
    lift_interval: tuple[float, float] | None
    p_value: float | None
    units: int
    variants: tuple[VariantResult, ...]
    srm: frequentist.SampleRatio | None
    srm_flagged: bool
    samples_needed: int
    mc_error: float | None
    rules: DecisionRules
    warnings: tuple[str, ...]


def monte_carlo_seed(experiment_id: str) -> int:
    """The Monte Carlo seed of an experiment: fixed by its id, so the same data always gives
    the same probabilities."""
    return int(xxhash.xxh32_intdigest(experiment_id.encode()))


def _summary(units: int, total: float, sumsq: float, p95: float | None) -> MetricSummary:
    return MetricSummary(
        mean=total / units if units else None,
        sum=total,
        std_dev=math.sqrt(_variance(units, total, sumsq)) if units > 1 else None,
        p95=p95,
    )


def _variance(units: int, total: float, sumsq: float) -> float:
    """Sample variance from a sum and a sum of squares (clamped: rounding can make a
    zero variance slightly negative)."""
    return max(0.0, (sumsq - total * total / units) / (units - 1))


def _rate(count: int, units: int) -> float | None:
    return count / units if units else None


def _goal_results(spec: ExperimentSpec, arm: ArmAggregates) -> tuple[GoalResult, ...]:
    found = {g.goal_id: g for g in arm.goals}
    results = []
    for goal in spec.goals:
        g = found.get(goal.id, GoalAggregates(goal.id, 0, 0.0, 0.0, None))
        value = _summary(arm.units, g.value_sum, g.value_sumsq, g.value_p95)
        results.append(
            GoalResult(
                goal.id, goal.name, goal.type, g.converted, _rate(g.converted, arm.units), value
            )
        )
    return tuple(results)


def _agent_metrics(arm: ArmAggregates) -> AgentMetrics:
    def summary(column: str) -> MetricSummary:
        total = arm.sums.get(column, 0.0)
        return _summary(arm.units, total, arm.sumsqs.get(column, 0.0), arm.p95s.get(column))

    return AgentMetrics(
        tasks=arm.tasks,
        successful_tasks=arm.successful_tasks,
        success_units=arm.converted,
        success_rate=_rate(arm.converted, arm.units),
        task_success_rate=_rate(arm.successful_tasks, arm.tasks),
        cost=summary("cost"),
        duration_ms=summary("duration_ms"),
        turns=summary("turns"),
    )


class _Primary(msgspec.Struct):
    """The primary metric of every arm: conversions (a rate) or sums (a mean)."""

    key: str
    name: str
    is_rate: bool
    higher_is_better: bool
    conversions: list[int]
    sums: list[float]
    sumsqs: list[float]


def _primary(spec: ExperimentSpec, arms: list[ArmAggregates], warnings: list[str]) -> _Primary:
    if spec.kind == "web":
        if not spec.goals:
            warnings.append("the experiment has no goal: add one to measure conversions")
            return _Primary("", "", True, True, [0] * len(arms), [], [])
        goal = spec.goals[0]
        conversions = [
            next((g.converted for g in arm.goals if g.goal_id == goal.id), 0) for arm in arms
        ]
        return _Primary(goal.id, goal.name, True, True, conversions, [], [])
    metric = spec.primary_metric or "task_completion"
    if metric not in AGENT_METRICS:
        warnings.append(f"unknown primary metric {metric!r}: task_completion is used instead")
        metric = "task_completion"
    column = _AGENT_MEANS.get(metric)
    if column is None:
        return _Primary(metric, metric, True, True, [a.converted for a in arms], [], [])
    sums = [a.sums.get(column, 0.0) for a in arms]
    sumsqs = [a.sumsqs.get(column, 0.0) for a in arms]
    return _Primary(metric, metric, False, False, [], sums, sumsqs)


class _Statistics(msgspec.Struct):
    """The primary metric's comparisons: posterior figures of every arm, and p-values,
    values and variances (None where a figure does not apply)."""

    bayes: bayes.BayesResult
    values: list[float]
    variances: list[float]
    p_values: list[float | None]


def _statistics(
    primary: _Primary, units: list[int], control: int, seed: int, confidence: float
) -> _Statistics | None:
    """The comparisons, once every arm has enough units to compare (1 for a rate, 2 for
    a mean); None before."""
    c = control
    if primary.is_rate:
        if not primary.key or min(units) < 1:
            return None
        conv = primary.conversions
        posterior = bayes.beta_binomial(conv, units, control=c, seed=seed, credibility=confidence)
        rates = [x / n for x, n in zip(conv, units, strict=True)]
        p_values: list[float | None] = [
            None if i == c else frequentist.two_proportion_p_value(conv[c], units[c], x, n)
            for i, (x, n) in enumerate(zip(conv, units, strict=True))
        ]
        return _Statistics(posterior, rates, [r * (1 - r) for r in rates], p_values)
    if min(units) < 2:
        return None
    means = [s / n for s, n in zip(primary.sums, units, strict=True)]
    variances = [
        _variance(n, s, ss) for n, s, ss in zip(units, primary.sums, primary.sumsqs, strict=True)
    ]
    posterior = bayes.normal_means(
        means, variances, units, control=c, higher_is_better=primary.higher_is_better,
        seed=seed, credibility=confidence,
    )  # fmt: skip
    p_values = [
        None
        if i == c
        else frequentist.welch_t_test(
            means[c], variances[c], units[c], means[i], variances[i], units[i]
        ).p_value
        for i in range(len(units))
    ]
    return _Statistics(posterior, means, variances, p_values)


def _srm(
    spec: ExperimentSpec, units: list[int], warnings: list[str]
) -> frequentist.SampleRatio | None:
    """The sample-ratio test of the arms' units against their weights."""
    if sum(units) == 0 or not any(v.weight_bps > 0 for v in spec.variants):
        return None
    weights = [float(v.weight_bps) for v in spec.variants]
    result = frequentist.sample_ratio_test(units, weights, threshold=SRM_THRESHOLD)
    if result.flagged:
        warnings.append(
            f"sample ratio mismatch (p = {result.p_value:.2g} < {SRM_THRESHOLD}): the arms' "
            "units do not match the configured split, so the arms are not comparable and no "
            "winner is declared. Look for a weight change during the run, a variant that "
            "redirects or fails to load, or bots counted in one arm (docs/statistics.md)."
        )
    return result


def _units_to_detect(
    primary: _Primary, stats: _Statistics, i: int, control: int, alpha: float
) -> int | None:
    """Units per arm to detect the observed difference between arm i and control at this
    alpha with `POWER`; None when there is no difference to detect."""
    a, b = stats.values[control], stats.values[i]
    if primary.is_rate:
        # The sample size depends on the pair of rates only; base it on one strictly
        # inside (0, 1), as the formula needs.
        low, high = sorted((a, b))
        base, other = (high, low) if high < 1 else (low, high)
        if high == low or not 0 < base < 1:
            return None
        return frequentist.units_per_arm_for_proportions(
            base, (other - base) / base, alpha=alpha, power=POWER
        )
    std_dev = math.sqrt((stats.variances[control] + stats.variances[i]) / 2)
    if std_dev == 0 or a == b:
        return None
    return frequentist.units_per_arm_for_means(std_dev, abs(b - a), alpha=alpha, power=POWER)


def _samples_needed(
    primary: _Primary,
    units: list[int],
    control: int,
    min_units: int,
    stats: _Statistics | None,
    alpha: float,
) -> list[int]:
    needed = [max(0, min_units - n) for n in units]
    if stats is None:
        return needed
    for i, p in enumerate(stats.p_values):
        if p is None or p < alpha:
            continue
        target = _units_to_detect(primary, stats, i, control, alpha)
        if target is not None:
            for arm in (i, control):
                needed[arm] = max(needed[arm], target - units[arm])
    return needed


def _decide(
    spec: ExperimentSpec,
    units: list[int],
    control: int,
    rules: DecisionRules,
    stats: _Statistics | None,
    srm_flagged: bool,
    warnings: list[str],
) -> tuple[Status, int | None, int | None]:
    """(status, winner index, guardrail index) by the rules of docs/statistics.md."""
    ended = spec.status in ("completed", "archived")
    if stats is None or min(units) < rules.min_units_per_arm:
        if not ended:
            return "collecting", None, None
        warnings.append(
            f"the experiment ended before every arm had {rules.min_units_per_arm} units: "
            "no winner can be declared"
        )
        return "no_winner", None, None
    arms = stats.bayes.arms
    c = rules.confidence
    challengers = [i for i in range(len(units)) if i != control]

    def significant(i: int) -> bool:
        p = stats.p_values[i]
        return p is not None and p < rules.alpha

    winners = [i for i in challengers if arms[i].prob_best >= c and significant(i)]
    if winners and not srm_flagged:
        return "significant", winners[0], None
    worse = [
        i for i in challengers if (arms[i].prob_beat_control or 0.0) <= 1 - c and significant(i)
    ]
    if worse:
        return "guardrail", None, min(worse, key=lambda i: arms[i].prob_beat_control or 0.0)
    if ended or spec.sample_size is not None:
        return "no_winner", None, None
    return "running", None, None


def compute_results(spec: ExperimentSpec, found: Sequence[ArmAggregates]) -> ExperimentResults:
    """The results and decision of an experiment from its per-variant aggregates.

    Raises ValueError for an experiment with fewer than 2 variants (the store refuses to
    create one)."""
    if len(spec.variants) < 2:
        raise ValueError(f"experiment {spec.id} has {len(spec.variants)} variants: results need 2")
    warnings: list[str] = []
    known = {v.id for v in spec.variants}
    strays = [a for a in found if a.variant_id not in known]
    if strays:
        names = ", ".join(sorted(a.variant_id for a in strays))
        warnings.append(
            f"{sum(a.units for a in strays)} units are in variants the experiment no longer "
            f"has ({names}); they are left out"
        )
    by_id = {a.variant_id: a for a in found}
    arms = [by_id.get(v.id, ArmAggregates(v.id, 0)) for v in spec.variants]
    units = [a.units for a in arms]
    k = len(arms)
    control = next((i for i, v in enumerate(spec.variants) if v.is_control), 0)
    if not spec.variants[control].is_control:
        warnings.append("no variant is marked as control: the first one is used")
    confidence = spec.confidence or DEFAULT_CONFIDENCE
    comparisons = k - 1
    seed = monte_carlo_seed(spec.id)
    primary = _primary(spec, arms, warnings)
    stats = _statistics(primary, units, control, seed, confidence)
    rules = DecisionRules(
        confidence=confidence,
        min_units_per_arm=spec.sample_size or DEFAULT_MIN_UNITS,
        comparisons=comparisons,
        alpha=(1 - confidence) / comparisons,
        power=POWER,
        srm_threshold=SRM_THRESHOLD,
        draws=stats.bayes.draws if stats else None,
        seed=seed,
    )
    srm = _srm(spec, units, warnings)
    srm_flagged = srm is not None and srm.flagged
    status, winner, guardrail = _decide(spec, units, control, rules, stats, srm_flagged, warnings)
    needed = _samples_needed(primary, units, control, rules.min_units_per_arm, stats, rules.alpha)

    variants = []
    for i, (v, arm) in enumerate(zip(spec.variants, arms, strict=True)):
        post = stats.bayes.arms[i] if stats else None
        value: float | None
        if primary.is_rate:
            value = _rate(primary.conversions[i], arm.units) if primary.key else None
        else:
            value = primary.sums[i] / arm.units if arm.units else None
        base = stats.values[control] if stats else None
        variants.append(
            VariantResult(
                id=v.id,
                name=v.name,
                is_control=i == control,
                weight_bps=v.weight_bps,
                units=arm.units,
                value=value,
                conversions=primary.conversions[i] if primary.is_rate and primary.key else None,
                interval=post.interval if post else None,
                prob_to_win=post.prob_best if post else None,
                prob_to_win_se=post.prob_best_se if post else None,
                prob_beat_control=post.prob_beat_control if post else None,
                prob_beat_control_se=post.prob_beat_control_se if post else None,
                expected_loss=post.expected_loss if post else None,
                expected_loss_se=post.expected_loss_se if post else None,
                lift=(value - base) / base if i != control and value is not None and base else None,
                lift_interval=post.lift_interval if post else None,
                p_value=stats.p_values[i] if stats else None,
                samples_needed=needed[i],
                goals=_goal_results(spec, arm) if spec.kind == "web" else (),
                agent=_agent_metrics(arm) if spec.kind == "agent" else None,
            )
        )

    leader = winner if winner is not None else guardrail
    if leader is None and stats is not None:
        leader = max(
            (i for i in range(k) if i != control), key=lambda i: stats.bayes.arms[i].prob_best
        )
    lead = variants[leader] if leader is not None else None
    errors = [
        se for v in variants for se in (v.prob_to_win_se, v.prob_beat_control_se) if se is not None
    ]
    return ExperimentResults(
        experiment_id=spec.id,
        kind=spec.kind,
        experiment_status=spec.status,
        status=status,
        primary_metric=primary.key,
        primary_metric_name=primary.name,
        higher_is_better=primary.higher_is_better,
        winner=_ref(variants, winner),
        guardrail=_ref(variants, guardrail),
        leader=_ref(variants, leader),
        prob_to_win=lead.prob_to_win if lead else None,
        expected_loss=lead.expected_loss if lead else None,
        lift=lead.lift if lead else None,
        lift_interval=lead.lift_interval if lead else None,
        p_value=lead.p_value if lead else None,
        units=sum(units),
        variants=tuple(variants),
        srm=srm,
        srm_flagged=srm_flagged,
        samples_needed=max(needed, default=0),
        mc_error=max(errors) if errors else None,
        rules=rules,
        warnings=tuple(warnings),
    )


def _ref(variants: list[VariantResult], index: int | None) -> VariantRef | None:
    return None if index is None else VariantRef(variants[index].id, variants[index].name)


def fetch_results(run: QueryRunner, spec: ExperimentSpec) -> ExperimentResults:
    """Query an experiment's aggregates and compute its results (one round trip)."""
    return compute_results(spec, fetch_aggregates(run, spec))


# --- the reference shapes ----------------------------------------------------------------


class ClawSplitVariant(msgspec.Struct, frozen=True):
    """One arm in ClawSplit's results shape, plus our figures. ``completion`` is the rate of
    the primary metric (the primary goal's conversion rate, or the agent success rate);
    agent experiments also carry ``task_completion`` (the same rate, as ClawSplit's
    webhook names it) and ``avg_cost`` (per unit)."""

    id: str
    is_control: bool
    units: int
    completion: float | None
    task_completion: float | None
    avg_cost: float | None
    prob_to_win: float | None
    prob_beat_control: float | None
    expected_loss: float | None
    lift: float | None
    lift_interval: tuple[float, float] | None
    p_value: float | None


class ClawSplitResults(msgspec.Struct, frozen=True):
    """A superset of ClawSplit's ``GET /v1/experiments/:id/results``: status, the winner's
    name, the p-value, and the variants by name."""

    experiment_id: str
    status: Status
    winner: str | None
    guardrail: str | None
    p_value: float | None
    prob_to_win: float | None
    lift: float | None
    confidence: float
    srm_flagged: bool
    samples_needed: int
    variants: dict[str, ClawSplitVariant]
    warnings: tuple[str, ...]


class CrewkitArm(msgspec.Struct, frozen=True):
    """One arm in crewkit's metrics shape: ``success_rate`` in percent; cost and turns per
    unit (None for web experiments)."""

    variant_id: str
    name: str
    total_sessions: int
    success_rate: float | None
    avg_cost: float | None
    avg_turns: float | None
    p95_cost: float | None


class CrewkitSignificance(msgspec.Struct, frozen=True):
    """Whether a winner is declared, and the p-value and confidence behind it."""

    p_value: float | None
    significant: bool
    confidence: float


class CrewkitMetrics(msgspec.Struct, frozen=True, omit_defaults=True):
    """crewkit's ``GET /:org_id/experiments/:id/metrics``: ``control`` and ``variant`` (the
    winner, else the leading challenger), and with more than two arms every arm by name
    in ``variants``."""

    control: CrewkitArm
    variant: CrewkitArm | None
    significance: CrewkitSignificance
    variants: dict[str, CrewkitArm] | None = None


def _names(results: ExperimentResults) -> list[str]:
    """Each arm's key in a by-name map: its name, or ``name (id)`` where names repeat."""
    names = [v.name for v in results.variants]
    return [n if names.count(n) == 1 else f"{n} ({v.id})" for n, v in zip(names, results.variants)]


def _success_rate(variant: VariantResult) -> float | None:
    if variant.agent is not None:
        return variant.agent.success_rate
    return variant.goals[0].rate if variant.goals else None


def clawsplit_view(results: ExperimentResults) -> ClawSplitResults:
    """The results in ClawSplit's shape (``GET /v1/experiments/{id}/results``)."""
    agent = results.kind == "agent"
    variants = {
        name: ClawSplitVariant(
            id=v.id,
            is_control=v.is_control,
            units=v.units,
            completion=_success_rate(v),
            task_completion=_success_rate(v) if agent else None,
            avg_cost=v.agent.cost.mean if v.agent else None,
            prob_to_win=v.prob_to_win,
            prob_beat_control=v.prob_beat_control,
            expected_loss=v.expected_loss,
            lift=v.lift,
            lift_interval=v.lift_interval,
            p_value=v.p_value,
        )
        for name, v in zip(_names(results), results.variants, strict=True)
    }
    return ClawSplitResults(
        experiment_id=results.experiment_id,
        status=results.status,
        winner=results.winner.name if results.winner else None,
        guardrail=results.guardrail.name if results.guardrail else None,
        p_value=results.p_value,
        prob_to_win=results.prob_to_win,
        lift=results.lift,
        confidence=results.rules.confidence,
        srm_flagged=results.srm_flagged,
        samples_needed=results.samples_needed,
        variants=variants,
        warnings=results.warnings,
    )


def _crewkit_arm(v: VariantResult) -> CrewkitArm:
    rate = _success_rate(v)
    return CrewkitArm(
        variant_id=v.id,
        name=v.name,
        total_sessions=v.units,
        success_rate=None if rate is None else 100 * rate,
        avg_cost=v.agent.cost.mean if v.agent else None,
        avg_turns=v.agent.turns.mean if v.agent else None,
        p95_cost=v.agent.cost.p95 if v.agent else None,
    )


def crewkit_metrics_view(results: ExperimentResults) -> CrewkitMetrics:
    """The results in crewkit's metrics shape (``GET /v1/experiments/{id}/metrics``)."""
    arms = [_crewkit_arm(v) for v in results.variants]
    control = next(i for i, v in enumerate(results.variants) if v.is_control)
    lead = results.winner or results.leader
    variant = next((a for a in arms if lead and a.variant_id == lead.id), None)
    if variant is None:  # before there is a leader: the first challenger
        variant = next((a for i, a in enumerate(arms) if i != control), None)
    return CrewkitMetrics(
        control=arms[control],
        variant=variant,
        significance=CrewkitSignificance(
            p_value=results.p_value,
            significant=results.status == "significant",
            confidence=results.rules.confidence,
        ),
        variants=dict(zip(_names(results), arms, strict=True)) if len(arms) > 2 else None,
    )


# --- cumulative conversion over time -----------------------------------------------------

# Per unit: its variant, when it entered (first exposure or task) and when it first
# converted (the primary goal, or a successful task); a conversion is dated no earlier
# than the unit's entry (clocks and batching can deliver a goal before its exposure).
_TIMELINE_UNITS = {
    "web": f"""
        SELECT
            argMinIf(variant_id, received_at, kind = 'exposure') AS variant_id,
            minIf(received_at, kind = 'exposure') AS entered_at,
            minIf(received_at, kind = 'goal' AND goal_id = {{goal:String}}) AS converted_at,
            countIf(kind = 'goal' AND goal_id = {{goal:String}}) > 0 AS converted
        FROM {EVENTS_TABLE}
        WHERE {_SCOPE} AND kind IN ('exposure', 'goal')
        GROUP BY unit_id
        HAVING countIf(kind = 'exposure') > 0""",
    "agent": f"""
        SELECT
            argMin(variant_id, received_at) AS variant_id,
            min(received_at) AS entered_at,
            minIf(received_at, outcome = 'success') AS converted_at,
            countIf(outcome = 'success') > 0 AS converted
        FROM {EVENTS_TABLE}
        WHERE {_SCOPE} AND kind = 'task'
        GROUP BY unit_id""",
}


def timeline_query(kind: Literal["web", "agent"]) -> str:
    """Per UTC day and variant, the units that entered the experiment and the units that
    first converted that day. Parameters ``exp``, ``ws`` and, for web, ``goal``."""
    return f"""
SELECT toDate(point.1) AS day, variant_id, sum(point.2) AS entered, sum(point.3) AS converted
FROM (
    SELECT
        variant_id,
        arrayJoin(arrayConcat(
            [(entered_at, 1, 0)],
            if(converted, [(greatest(entered_at, converted_at), 0, 1)], [])
        )) AS point
    FROM ({_TIMELINE_UNITS[kind]})
)
GROUP BY day, variant_id
ORDER BY day, variant_id
"""


class TimelinePoint(msgspec.Struct, frozen=True):
    """One UTC day of one variant: units that entered (first exposure or task) and units
    that first converted on the primary goal (or first succeeded) that day."""

    day: date
    variant_id: str
    entered: int
    converted: int


def fetch_timeline(run: QueryRunner, spec: ExperimentSpec) -> list[TimelinePoint]:
    """The experiment's daily entries and conversions, by day then variant id."""
    parameters = {"exp": spec.id, "ws": spec.workspace_id}
    if spec.kind == "web":
        parameters["goal"] = spec.goals[0].id if spec.goals else ""
    table = run(timeline_query(spec.kind), parameters)
    return [TimelinePoint(**row) for row in _rows(table)]
