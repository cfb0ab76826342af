"""What an experiment's results are computed from: one aggregate query per experiment kind,
its answer as per-variant aggregates, and the daily timeline of the results page.

The queries run through a `QueryRunner` (``sql, parameters -> pyarrow.Table``), so this
module never opens a connection: a worker passes the warehouse gateway's runner, a test a
chDB client's ``query_arrow``. The statistics on top are `analytics.results`. They read
the per-unit state that materialized views keep as events arrive
(`analytics.warehouse.UNIT_STATE_COLUMNS`), not the raw events, so their cost follows the
experiment's units; `VersionedCache` answers a repeated read while nothing changed.

What counts (the SQL below; docs/statistics.md says it for users):

- **web**: a unit (visitor) is in the experiment once it has an exposure row, and in the
  variant of its first exposure (earliest ``received_at``; two variants in the same
  millisecond: the one whose id has the lower cityHash64, see docs/statistics.md). A unit
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
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, Literal, TypeVar

import msgspec
import pyarrow as pa

from analytics.warehouse import (
    EVENTS_TABLE,
    EXPERIMENT_MARKS_TABLE,
    UNIT_STATE_COLUMNS,
    UNIT_STATE_TABLE,
    unit_state_select,
)

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
    "VersionedCache",
    "aggregate",
    "data_version",
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

# Both queries read the experiment's per-unit state (`warehouse.UNIT_STATE_TABLE`, kept by
# a materialized view as events arrive): a row per unit and one per goal it converted on,
# once ClickHouse has merged them (a few before), so the GROUP BY unit below finishes each
# unit's state. Then per arm, all inside ClickHouse: one round trip returns a few rows per
# variant, and its cost follows the experiment's units, not its events.
_SCOPE = "workspace_id = {ws:String} AND experiment_id = {exp:String}"
_STATE_NAMES = ", ".join(name for name, _, _ in UNIT_STATE_COLUMNS)
_ROWS = f"SELECT {_STATE_NAMES} FROM {UNIT_STATE_TABLE} WHERE {_SCOPE}"

# An ended experiment's window: only the events received in it count (what arrives after
# the end, a deployed winner's traffic, is not the experiment's). A unit whose state lies
# inside the window (its first and last counted event) is read from the state; the units
# with an event outside it, only those, are computed again from their events in the
# window, by the view's own SELECT. received_at is in milliseconds.
_WINDOW = (
    "received_at >= fromUnixTimestamp64Milli({since:Int64}, 'UTC')"
    " AND received_at <= fromUnixTimestamp64Milli({until:Int64}, 'UTC')"
)
_OUTSIDE = (
    f"SELECT unit_id FROM {UNIT_STATE_TABLE} WHERE {_SCOPE} GROUP BY unit_id "
    "HAVING min(first_at) < fromUnixTimestamp64Milli({since:Int64}, 'UTC')"
    " OR max(last_at) > fromUnixTimestamp64Milli({until:Int64}, 'UTC')"
)
# GLOBAL: in a cluster the unit list is made once and sent to every shard.
_WINDOWED_ROWS = f"{_ROWS} AND unit_id GLOBAL NOT IN ({_OUTSIDE})\nUNION ALL\n" + unit_state_select(
    EVENTS_TABLE, f"{_SCOPE} AND {_WINDOW} AND unit_id GLOBAL IN ({_OUTSIDE})"
)

# A unit, grouped by the hash of its id the state keeps (`warehouse.UNIT_KEY`).
_UNIT = "unit_key"
# A unit's first entry (`warehouse.ENTRY_KEY`): its variant's hash, and its time.
_ARM = "toUInt64(bitAnd(entry, toUInt128('18446744073709551615')))"
_ENTERED_AT = "fromUnixTimestamp64Milli(toInt64(bitShiftRight(entry, 64)), 'UTC')"
# The variant ids of the hashes: every id the experiment's events named.
_VARIANT_IDS = (
    f"WITH (SELECT groupUniqArray(toString(variant_id)) FROM {EXPERIMENT_MARKS_TABLE} "
    f"WHERE {_SCOPE}) AS variant_ids"
)
_VARIANT = "arrayFirst(v -> cityHash64(v) = arm, variant_ids) AS variant_id"


def _per_unit(columns: str, where: str = "") -> str:
    """Every unit in the experiment (an exposure or a task) with its first entry and
    ``columns`` aggregated over its state rows (those that ``where`` selects)."""
    return f"""
        SELECT {_UNIT} AS unit, min(first_entry) AS entry, {columns}
        FROM ({{rows}}){where}
        GROUP BY unit
        HAVING sum(entries) > 0"""


# Web: one GROUP BY unit over its row and its goals' rows gives its variant and the goals
# it converted on (a goal's rows not yet merged appear twice: arrayDistinct and the sums
# finish them). LEFT ARRAY JOIN makes one row per (unit, goal converted), or one row with
# goal_id '' and i = 0 for a unit without goals; the grouping sets give each variant's
# units (each unit counted at its first goal, i <= 1) and, per goal, its converted units
# and their values (p95 over converted units only, i > 0). is_total is 1 on the
# per-variant rows. (A join of the units with the converters, as the raw-events query
# did, measured slower.)
_WEB_UNITS = _per_unit(
    "groupArrayIf(goal_id, goal_id != '') AS goal_rows, "
    "groupArrayIf(value, goal_id != '') AS goal_row_values"
)
_WEB_SQL = f"""
{_VARIANT_IDS}
SELECT
    {_VARIANT},
    goal_id,
    grouping(goal_id) AS is_total,
    countIf(i <= 1) AS units,
    count() AS converted,
    sum(value) AS value_sum,
    sum(value * value) AS value_sumsq,
    quantileExactInclusiveIf(0.95)(value, i > 0) AS value_p95
FROM (
    SELECT
        {_ARM} AS arm,
        arrayDistinct(goal_rows) AS goal_ids,
        arrayMap(
            g -> arraySum(arrayFilter((v, r) -> r = g, goal_row_values, goal_rows)), goal_ids
        ) AS goal_values
    FROM ({_WEB_UNITS})
)
LEFT ARRAY JOIN goal_ids AS goal_id, goal_values AS value, arrayEnumerate(goal_ids) AS i
GROUP BY GROUPING SETS ((arm), (arm, goal_id))
ORDER BY variant_id, is_total DESC, goal_id
"""

# Agent: the units' rows only (goal_id '', one range of the state's key).
_UNIT_ROWS = "\n        WHERE goal_id = ''"
_AGENT_UNITS = _per_unit(
    "sum(entries) AS unit_tasks, sum(successes) AS unit_successes, "
    "sum(cost) AS unit_cost, sum(duration_ms) AS unit_duration_ms, "
    "toFloat64(sum(turns)) AS unit_turns",
    _UNIT_ROWS,
)

_AGENT_SQL = f"""
{_VARIANT_IDS}
SELECT
    {_VARIANT},
    count() AS units,
    countIf(unit_successes > 0) AS converted,
    sum(unit_tasks) AS tasks,
    sum(unit_successes) AS successful_tasks,
    sum(unit_cost) AS cost_sum,
    sum(unit_cost * unit_cost) AS cost_sumsq,
    quantileExactInclusive(0.95)(unit_cost) AS cost_p95,
    sum(unit_duration_ms) AS duration_ms_sum,
    sum(unit_duration_ms * unit_duration_ms) AS duration_ms_sumsq,
    quantileExactInclusive(0.95)(unit_duration_ms) AS duration_ms_p95,
    sum(unit_turns) AS turns_sum,
    sum(unit_turns * unit_turns) AS turns_sumsq,
    quantileExactInclusive(0.95)(unit_turns) AS turns_p95
FROM (
    SELECT {_ARM} AS arm, *
    FROM ({_AGENT_UNITS})
)
GROUP BY arm
ORDER BY variant_id
"""


def _with_rows(sql: str, windowed: bool) -> str:
    return sql.replace("{rows}", _WINDOWED_ROWS if windowed else _ROWS)


def results_query(kind: Literal["web", "agent"], windowed: bool = False) -> str:
    """The aggregate query of an experiment of this kind; parameters ``exp`` and ``ws``,
    and when ``windowed`` ``since`` and ``until`` (epoch milliseconds)."""
    return _with_rows(_WEB_SQL if kind == "web" else _AGENT_SQL, windowed)


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


def _parameters(spec: ExperimentSpec) -> dict[str, Any]:
    """The experiment's query parameters: its ids and, if it has one, its window."""
    parameters: dict[str, Any] = {"exp": spec.id, "ws": spec.workspace_id}
    if spec.window is not None:
        since, until = spec.window
        parameters |= {
            "since": math.floor(since.timestamp() * 1000),
            "until": math.floor(until.timestamp() * 1000),
        }
    return parameters


def fetch_aggregates(run: QueryRunner, spec: ExperimentSpec) -> list[ArmAggregates]:
    """Run the experiment's aggregate query (one round trip)."""
    sql = results_query(spec.kind, windowed=spec.window is not None)
    return aggregate(spec.kind, run(sql, _parameters(spec)))


# --- cumulative conversion over time -----------------------------------------------------

# Per unit: its variant, when it entered (first exposure or task) and when it first
# converted (the primary goal, or a successful task); a conversion is dated no earlier
# than the unit's entry (clocks and batching can deliver a goal before its exposure).
_PRIMARY = "goal_id = {goal:String} AND goal_id != ''"
_WEB_ENTRIES = _per_unit(
    f"countIf({_PRIMARY}) > 0 AS converted, minIf(first_at, {_PRIMARY}) AS converted_at"
)
_AGENT_ENTRIES = _per_unit(
    "sum(successes) > 0 AS converted, min(succeeded_at) AS converted_at", _UNIT_ROWS
)
_TIMELINE_UNITS = {
    kind: f"""
        SELECT {_ARM} AS arm, {_ENTERED_AT} AS entered_at, converted, converted_at
        FROM ({units})"""
    for kind, units in (("web", _WEB_ENTRIES), ("agent", _AGENT_ENTRIES))
}


def timeline_query(kind: Literal["web", "agent"], windowed: bool = False) -> str:
    """Per UTC day and variant, the units that entered the experiment and the units that
    first converted that day. Parameters ``exp``, ``ws``, for web ``goal``, and when
    ``windowed`` ``since`` and ``until``."""
    # The units are counted per (variant, day entered, day converted) first, a few
    # thousand rows, and only those become the points of the two days: 20% less work
    # than a point per unit.
    return _with_rows(
        f"""
{_VARIANT_IDS}
SELECT point.1 AS day, {_VARIANT}, sum(point.2) AS entered, sum(point.3) AS converted
FROM (
    SELECT
        arm,
        arrayJoin(arrayConcat(
            [(entered_day, units, 0)], if(converted, [(converted_day, 0, units)], [])
        )) AS point
    FROM (
        SELECT
            arm,
            toDate(entered_at) AS entered_day,
            converted,
            toDate(greatest(entered_at, converted_at)) AS converted_day,
            count() AS units
        FROM ({_TIMELINE_UNITS[kind]})
        GROUP BY arm, entered_day, converted, converted_day
    )
)
GROUP BY day, arm
ORDER BY day, variant_id
""",
        windowed,
    )


class TimelinePoint(msgspec.Struct, frozen=True):
    """One UTC day of one variant: units that entered (first exposure or task) and units
    that first converted on the primary goal (or first succeeded) that day."""

    day: date
    variant_id: str
    entered: int
    converted: int


def fetch_timeline(run: QueryRunner, spec: ExperimentSpec) -> list[TimelinePoint]:
    """The experiment's daily entries and conversions, by day then variant id."""
    parameters = _parameters(spec)
    if spec.kind == "web":
        parameters["goal"] = spec.goals[0].id if spec.goals else ""
    table = run(timeline_query(spec.kind, windowed=spec.window is not None), parameters)
    return [TimelinePoint(**row) for row in _rows(table)]


# --- answering again without a scan --------------------------------------------------

_VERSION_SQL = (
    "SELECT sum(events) AS events, max(last_inserted_at) AS last_inserted_at "
    f"FROM {EXPERIMENT_MARKS_TABLE} WHERE {_SCOPE}"
)


def data_version(run: QueryRunner, spec: ExperimentSpec) -> tuple[Any, ...]:
    """What the experiment's events are now, as a value that changes whenever any is
    inserted (their count and last insert time, from `warehouse.EXPERIMENT_MARKS_TABLE`,
    which the same inserts feed): a point query on a few rows, not a scan."""
    row = _rows(run(_VERSION_SQL, {"exp": spec.id, "ws": spec.workspace_id}))
    return tuple(row[0].values()) if row else ()


T = TypeVar("T")


class VersionedCache:
    """Answers computed from an experiment's data (results, timeline), kept in memory and
    given again while `data_version` says the data has not changed: a repeated read costs
    one point query. The version is read before computing, so an answer may have seen
    events newer than its version (the next read then computes again), never fewer.
    Thread-safe; keeps the ``size`` most recently used answers.

    In a cluster the marks and the state are read through Distributed tables; with
    replicas that lag, a version and the state read after it may come from different
    replicas; ``load_balancing = 'in_order'`` reads one while it is up."""

    def __init__(self, run: QueryRunner, size: int = 256) -> None:
        self.run = run
        self.size = size
        self.hits = 0
        self._entries: OrderedDict[tuple[str, ExperimentSpec], tuple[tuple[Any, ...], Any]]
        self._entries = OrderedDict()
        self._lock = threading.Lock()

    def get(self, what: str, spec: ExperimentSpec, compute: Callable[[], T]) -> T:
        """``compute()``'s answer for (``what``, ``spec``): the kept one when the
        experiment's data version is the one it was computed at, else a new one."""
        version = data_version(self.run, spec)
        key = (what, spec)
        with self._lock:
            kept = self._entries.get(key)
            if kept is not None and kept[0] == version:
                self._entries.move_to_end(key)
                self.hits += 1
                answer: T = kept[1]
                return answer
        answer = compute()
        with self._lock:
            self._entries[key] = (version, answer)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return answer
