"""What an experiment's results are computed from: one aggregate query per experiment kind,
its answer as per-variant aggregates, and the daily timeline of the results page.

The queries run through a `QueryRunner` (``sql, parameters -> pyarrow.Table``), so this
module never opens a connection: a worker passes the warehouse gateway's runner, a test a
chDB client's ``query_arrow``. The statistics on top are `analytics.results`.

What counts (the SQL below; docs/statistics.md says it for users):

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
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, Literal

import msgspec
import pyarrow as pa

from analytics.warehouse import EVENTS_TABLE

__all__ = [
    "ArmAggregates",
    "ExperimentSpec",
    "ExperimentStatus",
    "GoalAggregates",
    "GoalSpec",
    "MetricSummary",
    "QueryRunner",
    "TimelinePoint",
    "VariantSpec",
    "Verdict",
    "aggregate",
    "fetch_aggregates",
    "fetch_timeline",
    "results_query",
    "timeline_query",
]

QueryRunner = Callable[[str, dict[str, Any]], pa.Table]
"""Runs one SQL query with clickhouse-connect ``{name:Type}`` parameters; returns Arrow."""

ExperimentStatus = Literal["draft", "running", "paused", "completed", "archived"]

# The per-unit columns an agent arm sums (the agent metrics' means are of these).
_AGENT_COLUMNS = ("cost", "duration_ms", "turns")


# --- what the results need from the control plane ------------------------------------


class VariantSpec(msgspec.Struct, frozen=True):
    """One variant as configured: its weight in basis points and whether it is control."""

    id: str
    name: str
    is_control: bool
    weight_bps: int


class GoalSpec(msgspec.Struct, frozen=True):
    """One goal of a web experiment; a ``guardrail`` goal stops the experiment when a
    challenger converts significantly less on it (`analytics.metric_results`)."""

    id: str
    name: str
    type: str
    guardrail: bool = False


class Verdict(msgspec.Struct, frozen=True):
    """An ended experiment's decision as it was taken (the control plane keeps it): the
    status, the winner or the guardrail arm (variant ids), and the guardrail's reason."""

    status: Literal["significant", "no_winner", "guardrail"]
    winner_id: str | None = None
    guardrail_id: str | None = None
    reason: str | None = None


class ExperimentSpec(msgspec.Struct, frozen=True):
    """What the results need to know of an experiment (built by the control plane from its
    store). Variants and goals are in position order; the first goal is the primary one.
    ``sample_size`` is per arm; ``primary_metric`` names an agent metric
    (`analytics.results.AGENT_METRICS`) and is ignored for web experiments. An ended
    experiment has the ``window`` it ran in (only its events count) and, once taken, its
    ``verdict``; its variants then carry the weights it ran with. ``guardrail_metrics``
    are the agent metrics (`analytics.metric_results.AGENT_METRIC_KEYS`) that stop it
    when a challenger is significantly worse on them."""

    id: str
    workspace_id: str
    kind: Literal["web", "agent"]
    status: ExperimentStatus
    variants: tuple[VariantSpec, ...]
    goals: tuple[GoalSpec, ...] = ()
    sample_size: int | None = None
    confidence: float | None = None
    primary_metric: str | None = None
    max_cost_increase: float | None = None
    window: tuple[datetime, datetime] | None = None
    verdict: Verdict | None = None
    guardrail_metrics: tuple[str, ...] = ()


# --- the query -------------------------------------------------------------------------

# Both queries read only the experiment's ranges of the sorting key (experiment_id, kind),
# aggregate per unit first (first exposure, goals converted, per-unit sums), then per arm,
# all inside ClickHouse: one round trip returns a few rows per variant.
_SCOPE = "experiment_id = {exp:String} AND workspace_id = {ws:String}"
# An ended experiment's window, added to the scope: what arrives after the end (a
# deployed winner's traffic) is not the experiment's. received_at is in milliseconds.
_WINDOW = (
    " AND received_at >= fromUnixTimestamp64Milli({since:Int64}, 'UTC')"
    " AND received_at <= fromUnixTimestamp64Milli({until:Int64}, 'UTC')"
)

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
        return [
            ArmAggregates(
                variant_id=row["variant_id"],
                units=row["units"],
                converted=row["converted"],
                tasks=row["tasks"],
                successful_tasks=row["successful_tasks"],
                sums={c: row[f"{c}_sum"] for c in _AGENT_COLUMNS},
                sumsqs={c: row[f"{c}_sumsq"] for c in _AGENT_COLUMNS},
                p95s={c: _finite(row[f"{c}_p95"]) for c in _AGENT_COLUMNS},
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


def _scoped(sql: str, spec: ExperimentSpec) -> tuple[str, dict[str, Any]]:
    """The query and its parameters for this experiment: within its window, if it has one."""
    parameters: dict[str, Any] = {"exp": spec.id, "ws": spec.workspace_id}
    if spec.window is None:
        return sql, parameters
    since, until = spec.window
    parameters |= {
        "since": math.floor(since.timestamp() * 1000),
        "until": math.floor(until.timestamp() * 1000),
    }
    return sql.replace(_SCOPE, _SCOPE + _WINDOW), parameters


def fetch_aggregates(run: QueryRunner, spec: ExperimentSpec) -> list[ArmAggregates]:
    """Run the experiment's aggregate query (one round trip)."""
    table = run(*_scoped(results_query(spec.kind), spec))
    return aggregate(spec.kind, table)


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
    sql, parameters = _scoped(timeline_query(spec.kind), spec)
    if spec.kind == "web":
        parameters["goal"] = spec.goals[0].id if spec.goals else ""
    table = run(sql, parameters)
    return [TimelinePoint(**row) for row in _rows(table)]
