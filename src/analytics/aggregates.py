"""What an experiment's results are computed from: one query per experiment, whose answer
is both its per-variant aggregates and the timeline of the results page (per UTC day, or
per hour for a young experiment: the query's ``bucket``), and the breakdown of its units
and primary conversions by device (`fetch_devices`, a second query, of the raw events).

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

import functools
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, TypeVar

import msgspec
import pyarrow as pa

from analytics.warehouse import (
    ENTRY_KEY,
    EVENTS_TABLE,
    EXPERIMENT_MARKS_TABLE,
    UNIT_STATE_COLUMNS,
    UNIT_STATE_TABLE,
    unit_state_select,
)

__all__ = [
    "ARM_VARIANT",
    "BUCKETS",
    "ArmAggregates",
    "Bucket",
    "DeviceRow",
    "ExperimentSpec",
    "ExperimentStatus",
    "GoalAggregates",
    "GoalSpec",
    "MetricSummary",
    "QueryRunner",
    "SCOPE",
    "STATE_ROWS",
    "SETTLE_MS",
    "TimelinePoint",
    "UnitSummary",
    "VARIANT_IDS",
    "VariantSpec",
    "Verdict",
    "VersionedCache",
    "data_version",
    "devices_query",
    "fetch_aggregates",
    "fetch_devices",
    "fetch_summary",
    "fetch_timeline",
    "summarize",
    "summary_query",
    "timeline_points",
    "units_query",
]

QueryRunner = Callable[[str, dict[str, Any]], pa.Table]
"""Runs one SQL query with clickhouse-connect ``{name:Type}`` parameters; returns Arrow."""

ExperimentStatus = Literal["draft", "running", "paused", "completed", "archived"]

Bucket = Literal["day", "hour"]
"""The timeline's granularity: UTC days (the default) or UTC hours."""

BUCKETS: dict[Bucket, int] = {"day": 86_400_000, "hour": 3_600_000}
"""Each bucket's length in milliseconds."""

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

# The query reads the experiment's per-unit state (`warehouse.UNIT_STATE_TABLE`, kept by a
# materialized view as events arrive): a row per unit and one per goal it converted on,
# once ClickHouse has merged them (a few before), so the GROUP BY unit below finishes each
# unit's state. Then per arm, all inside ClickHouse: one round trip returns a few hundred
# rows, results and timeline together, and its cost follows the experiment's units, not
# its events.
SCOPE = "workspace_id = {ws:String} AND experiment_id = {exp:String}"
_STATE_NAMES = ", ".join(name for name, _, _ in UNIT_STATE_COLUMNS)
STATE_ROWS = f"SELECT {_STATE_NAMES} FROM {UNIT_STATE_TABLE} WHERE {SCOPE}"

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
    f"SELECT unit_id FROM {UNIT_STATE_TABLE} WHERE {SCOPE} GROUP BY unit_id "
    "HAVING min(first_at) < fromUnixTimestamp64Milli({since:Int64}, 'UTC')"
    " OR max(last_at) > fromUnixTimestamp64Milli({until:Int64}, 'UTC')"
)
# GLOBAL: in a cluster the unit list is made once and sent to every shard.
_WINDOWED_ROWS = (
    f"{STATE_ROWS} AND unit_id GLOBAL NOT IN ({_OUTSIDE})\nUNION ALL\n"
    + unit_state_select(EVENTS_TABLE, f"{SCOPE} AND {_WINDOW} AND unit_id GLOBAL IN ({_OUTSIDE})")
)

# A unit's first entry (`warehouse.ENTRY_KEY`): its variant's hash in the low 64 bits (the
# arm), its time in epoch milliseconds in the high ones.
_ARM = "toUInt64(entry)"
_ENTERED_MS = "toUInt64(bitShiftRight(entry, 64))"
# The variant ids of the hashes: every id the experiment's events named.
VARIANT_IDS = (
    f"WITH (SELECT groupUniqArray(toString(variant_id)) FROM {EXPERIMENT_MARKS_TABLE} "
    f"WHERE {SCOPE}) AS variant_ids"
)
ARM_VARIANT = "arrayFirst(v -> cityHash64(v) = arm, variant_ids) AS variant_id"
# The experiment's goals in position order (parameter ``goals``); the first is primary.
_GOAL = "{goals:Array(String)}[%d]"


def _web_units(goals: int) -> str:
    """Web, for an experiment with ``goals`` goals, per unit (grouped by the hash of its id
    the state keeps, `warehouse.UNIT_KEY`, over its row and its goals' rows, which sums
    any not yet merged): its first entry, ``goal_bits`` (bit i set when it converted on
    goal i, 1-based; bit 0 marks its own row or a goal the experiment no longer has),
    its summed value per goal (0 when it did not convert), and when it first converted
    on the primary goal. ``{rows}`` stands for the state rows read."""
    values = "".join(
        f", sumIf(value, goal_id = {_GOAL % i}) AS value_{i}" for i in range(1, goals + 1)
    )
    converted_at = f", minIf(first_at, goal_id = {_GOAL % 1}) AS converted_at" if goals else ""
    # A unit's bit of each row: one comparison per goal costs 13% less CPU at 6.7M units
    # than shifting by the goal's indexOf in the goal array (bench/RESULTS.md).
    bits = (
        "multiIf("
        + "".join(f"goal_id = {_GOAL % i}, toUInt64({1 << i}), " for i in range(1, goals + 1))
        + "toUInt64(1))"
        if goals
        else "toUInt64(1)"
    )
    return f"""
        SELECT
            unit_key AS unit,
            min(first_entry) AS entry,
            groupBitOr({bits}) AS goal_bits{values}{converted_at}
        FROM ({{rows}})
        GROUP BY unit
        HAVING sum(entries) > 0"""


def _web_sql(goals: int, bucket_ms: int) -> str:
    """Web: per unit (`_web_units`), then per (arm, bucket entered, bucket converted on
    the primary goal, goals converted), a few hundred groups whose unit counts make the
    timeline and the conversions, and per arm its units, value sums and p95s (over
    converted units). A bucket is ``bucket_ms`` long, counted from the epoch."""
    converted_bucket = (
        f"if(bitTest(goal_bits, 1), intDiv(greatest({_ENTERED_MS}, "
        f"toUInt64(toUnixTimestamp64Milli(converted_at))), {bucket_ms}), 0)"
        if goals
        else "0"
    )
    sums = "".join(
        f", sum(value_{i}) AS value_sum_{i}, sum(value_{i} * value_{i}) AS value_sumsq_{i}"
        f", quantileExactInclusiveIf(0.95)(value_{i}, bitTest(goal_bits, {i})) AS value_p95_{i}"
        for i in range(1, goals + 1)
    )
    return f"""
{VARIANT_IDS}
SELECT
    {ARM_VARIANT}, entered_bucket, converted_bucket, goal_bits,
    grouping(entered_bucket, converted_bucket, goal_bits) != 0 AS is_total,
    count() AS units{sums}
FROM (
    SELECT
        {_ARM} AS arm,
        intDiv({_ENTERED_MS}, {bucket_ms}) AS entered_bucket,
        {converted_bucket} AS converted_bucket,
        *
    FROM ({_web_units(goals)}
    )
)
GROUP BY GROUPING SETS ((arm, entered_bucket, converted_bucket, goal_bits), (arm))
"""


# Agent: the units' rows only (goal_id '', one range of the state's key). Per unit its
# first task, tasks, successes and first success, and summed cost, duration and turns.
_AGENT_UNITS = """
        SELECT
            unit_key AS unit,
            min(first_entry) AS entry,
            sum(entries) AS unit_tasks,
            sum(successes) AS unit_successes,
            min(succeeded_at) AS succeeded_at,
            sum(cost) AS unit_cost,
            sum(duration_ms) AS unit_duration_ms,
            toFloat64(sum(turns)) AS unit_turns
        FROM ({rows})
        WHERE goal_id = ''
        GROUP BY unit
        HAVING sum(entries) > 0"""

# Then per (arm, bucket entered, bucket of first success) and per arm. ``{bucket_ms}`` is
# filled in by `summary_query`.
_AGENT_SQL = f"""
{VARIANT_IDS}
SELECT
    {ARM_VARIANT}, entered_bucket, converted, converted_bucket,
    grouping(entered_bucket, converted, converted_bucket) != 0 AS is_total,
    count() AS units,
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
    SELECT
        {_ARM} AS arm,
        intDiv({_ENTERED_MS}, {{bucket_ms}}) AS entered_bucket,
        unit_successes > 0 AS converted,
        if(converted, intDiv(greatest({_ENTERED_MS},
            toUInt64(toUnixTimestamp64Milli(succeeded_at))), {{bucket_ms}}), 0) AS converted_bucket,
        *
    FROM ({{units}}
    )
)
GROUP BY GROUPING SETS ((arm, entered_bucket, converted, converted_bucket), (arm))
""".replace("{units}", _AGENT_UNITS)


def units_query(kind: Literal["web", "agent"], goals: int, rows: str) -> str:
    """The per-unit SELECT of an experiment of this kind (`_web_units`, `_AGENT_UNITS`)
    over the state rows ``rows`` selects: what `analytics.summaries` counts each changed
    unit by, as the results query counts every unit."""
    units = _web_units(goals) if kind == "web" else _AGENT_UNITS
    return units.replace("{rows}", rows)


@functools.cache
def summary_query(
    kind: Literal["web", "agent"], goals: int = 0, windowed: bool = False, bucket: Bucket = "day"
) -> str:
    """The query of an experiment of this kind (a web one with ``goals`` goals), its
    timeline in ``bucket``s; parameters ``exp``, ``ws``, for web ``goals`` (their ids,
    primary first), and when ``windowed`` ``since`` and ``until`` (epoch milliseconds).
    The bucket changes the timeline's rows only: the arms' aggregates are the same."""
    bucket_ms = BUCKETS[bucket]
    sql = _web_sql(goals, bucket_ms) if kind == "web" else _AGENT_SQL
    sql = sql.replace("{bucket_ms}", str(bucket_ms))
    return sql.replace("{rows}", _WINDOWED_ROWS if windowed else STATE_ROWS)


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
    """One variant's aggregates. Web: ``goals`` (those it converted on). Agent:
    ``converted`` (units with a successful task), task counts and ``sums`` / ``sumsqs`` /
    ``p95s`` of the per-unit ``cost``, ``duration_ms`` and ``turns``."""

    variant_id: str
    units: int
    goals: tuple[GoalAggregates, ...] = ()
    converted: int = 0
    tasks: int = 0
    successful_tasks: int = 0
    sums: dict[str, float] = {}
    sumsqs: dict[str, float] = {}
    p95s: dict[str, float | None] = {}


class TimelinePoint(msgspec.Struct, frozen=True):
    """One UTC day (or, with ``hour``, one hour of that day, 0 to 23) of one variant:
    units that entered (first exposure or task) and units that first converted on the
    primary goal (or first succeeded) in it."""

    day: date
    variant_id: str
    entered: int
    converted: int
    hour: int | None = None

    @property
    def start(self) -> datetime:
        """When the bucket starts (UTC)."""
        return datetime(self.day.year, self.day.month, self.day.day, self.hour or 0, tzinfo=UTC)


class UnitSummary(msgspec.Struct, frozen=True):
    """What one query returns of an experiment: its arms' aggregates (by variant id) and
    its timeline (by bucket, then variant id) in ``bucket``s; ``summary_version`` is the
    version of the kept summary they were read from (`analytics.summaries`), None when
    they were counted from every unit."""

    arms: tuple[ArmAggregates, ...]
    timeline: tuple[TimelinePoint, ...]
    bucket: Bucket = "day"
    summary_version: int | None = None


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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timeline_points(
    buckets: dict[tuple[int, str], list[int]], bucket: Bucket
) -> tuple[TimelinePoint, ...]:
    points = []
    for (index, variant_id), (entered, converted) in sorted(buckets.items()):
        start = _EPOCH + timedelta(milliseconds=index * BUCKETS[bucket])
        hour = start.hour if bucket == "hour" else None
        points.append(TimelinePoint(start.date(), variant_id, entered, converted, hour))
    return tuple(points)


def summarize(spec: ExperimentSpec, table: pa.Table, bucket: Bucket = "day") -> UnitSummary:
    """The query's answer (`summary_query` in ``bucket``s) as the experiment's
    `UnitSummary`."""
    rows = _rows(table)
    totals = sorted((r for r in rows if r["is_total"]), key=lambda r: r["variant_id"])
    details = [r for r in rows if not r["is_total"]]
    buckets: dict[tuple[int, str], list[int]] = {}
    converted: dict[str, int] = {}
    for row in details:
        variant = row["variant_id"]
        buckets.setdefault((row["entered_bucket"], variant), [0, 0])[0] += row["units"]
        if spec.kind == "agent":
            is_converted = row["converted"]
        else:
            is_converted = spec.goals and row["goal_bits"] & 0b10
        if is_converted:
            buckets.setdefault((row["converted_bucket"], variant), [0, 0])[1] += row["units"]
            converted[variant] = converted.get(variant, 0) + row["units"]
    if spec.kind == "agent":
        arms = tuple(
            ArmAggregates(
                variant_id=row["variant_id"],
                units=row["units"],
                converted=converted.get(row["variant_id"], 0),
                tasks=row["tasks"],
                successful_tasks=row["successful_tasks"],
                sums={c: row[f"{c}_sum"] for c in _AGENT_COLUMNS},
                sumsqs={c: row[f"{c}_sumsq"] for c in _AGENT_COLUMNS},
                p95s={c: _finite(row[f"{c}_p95"]) for c in _AGENT_COLUMNS},
            )
            for row in totals
        )
        return UnitSummary(arms, timeline_points(buckets, bucket), bucket)
    arms_list = []
    for total in totals:
        variant = total["variant_id"]
        goals = []
        for i, goal in enumerate(spec.goals, start=1):
            bit = 1 << i
            count = sum(
                r["units"] for r in details if r["variant_id"] == variant and r["goal_bits"] & bit
            )
            if count:
                goals.append(
                    GoalAggregates(
                        goal_id=goal.id,
                        converted=count,
                        value_sum=total[f"value_sum_{i}"],
                        value_sumsq=total[f"value_sumsq_{i}"],
                        value_p95=_finite(total[f"value_p95_{i}"]),
                    )
                )
        arms_list.append(
            ArmAggregates(variant_id=variant, units=total["units"], goals=tuple(goals))
        )
    return UnitSummary(tuple(arms_list), timeline_points(buckets, bucket), bucket)


def _parameters(spec: ExperimentSpec) -> dict[str, Any]:
    """The experiment's query parameters: its ids, its goals and, if it has one, its
    window."""
    parameters: dict[str, Any] = {"exp": spec.id, "ws": spec.workspace_id}
    if spec.kind == "web":
        parameters["goals"] = [goal.id for goal in spec.goals]
    if spec.window is not None:
        since, until = spec.window
        parameters |= {
            "since": math.floor(since.timestamp() * 1000),
            "until": math.floor(until.timestamp() * 1000),
        }
    return parameters


def fetch_summary(run: QueryRunner, spec: ExperimentSpec, bucket: Bucket = "day") -> UnitSummary:
    """Run the experiment's query (one round trip): its arms and its timeline in
    ``bucket``s."""
    windowed = spec.window is not None
    sql = summary_query(spec.kind, len(spec.goals), windowed=windowed, bucket=bucket)
    return summarize(spec, run(sql, _parameters(spec)), bucket)


# --- by device ----------------------------------------------------------------------------

# The unit state keeps no device, so this reads the experiment's events (its exposure,
# goal and task rows: ranges of the events' sorting key). A unit counts, as in the results,
# in the variant of its first entry, and on the device of that entry; it converted when it
# has a row of the primary goal (web) or a successful task (agent). An ended experiment's
# units are those of its window, counted from their events in it, as the results count.
_ENTRY_ROW = "kind IN ('exposure', 'task')"
_CONVERTED = {
    "web": "countIf(kind = 'goal' AND goal_id = {primary:String}) > 0",
    "agent": "countIf(kind = 'task' AND outcome = 'success') > 0",
}


@functools.cache
def devices_query(kind: Literal["web", "agent"], windowed: bool = False) -> str:
    """The by-device query of an experiment of this kind; parameters ``exp``, ``ws``, for
    web ``primary`` (the primary goal's id, '' for none), and when ``windowed`` ``since``
    and ``until`` (epoch milliseconds)."""
    window = f" AND {_WINDOW}" if windowed else ""
    return f"""
{VARIANT_IDS}
SELECT {ARM_VARIANT}, unit_device AS device, count() AS units, countIf(converted) AS conversions
FROM (
    SELECT
        toUInt64(minIf({ENTRY_KEY}, {_ENTRY_ROW})) AS arm,
        argMinIf(device, {ENTRY_KEY}, {_ENTRY_ROW}) AS unit_device,
        {_CONVERTED[kind]} AS converted
    FROM {EVENTS_TABLE}
    WHERE {SCOPE} AND kind IN ('exposure', 'goal', 'task'){window}
    GROUP BY unit_id
    HAVING countIf({_ENTRY_ROW}) > 0
)
GROUP BY variant_id, device
ORDER BY variant_id, device
"""


class DeviceRow(msgspec.Struct, frozen=True):
    """One device of one variant: the units that entered on it (the device of their first
    exposure or task; '' when the client sent none) and how many of them converted on the
    primary goal (or had a successful task)."""

    variant_id: str
    device: str
    units: int
    conversions: int


def fetch_devices(run: QueryRunner, spec: ExperimentSpec) -> tuple[DeviceRow, ...]:
    """The experiment's units and primary conversions per variant and device (one round
    trip), by variant id then device."""
    parameters = _parameters(spec)
    if spec.kind == "web":
        del parameters["goals"]
        parameters["primary"] = spec.goals[0].id if spec.goals else ""
    sql = devices_query(spec.kind, windowed=spec.window is not None)
    return tuple(
        DeviceRow(r["variant_id"], r["device"], r["units"], r["conversions"])
        for r in _rows(run(sql, parameters))
    )


def fetch_aggregates(run: QueryRunner, spec: ExperimentSpec) -> list[ArmAggregates]:
    """The experiment's arms (`fetch_summary`), by variant id."""
    return list(fetch_summary(run, spec).arms)


def fetch_timeline(
    run: QueryRunner, spec: ExperimentSpec, bucket: Bucket = "day"
) -> list[TimelinePoint]:
    """The experiment's entries and conversions per ``bucket`` (`fetch_summary`), by
    bucket then variant id."""
    return list(fetch_summary(run, spec, bucket).timeline)


# --- answering again without a scan --------------------------------------------------

_VERSION_SQL = (
    "SELECT sum(events) AS events, max(last_inserted_at) AS last_insert, "
    "now64(3) >= max(last_inserted_at) + toIntervalMillisecond({settle:UInt32}) AS settled "
    f"FROM {EXPERIMENT_MARKS_TABLE} WHERE {SCOPE}"
)

SETTLE_MS = 1_500
"""How long after an insert began its rows are surely visible in every table its views
write (a view's table can lag the marks by the moments between two writes of one
insert): an answer computed sooner may miss some and is not kept."""


def data_version(
    run: QueryRunner, spec: ExperimentSpec, settle_ms: int = SETTLE_MS
) -> tuple[tuple[Any, ...], bool]:
    """What the experiment's events are now, as a value that changes whenever any is
    inserted (their count and last insert time, from `warehouse.EXPERIMENT_MARKS_TABLE`,
    which the same inserts feed): a point query on a few rows, not a scan; and whether
    the last insert has settled (``settle_ms`` ago, `SETTLE_MS`)."""
    row = _rows(run(_VERSION_SQL, {"exp": spec.id, "ws": spec.workspace_id, "settle": settle_ms}))
    if not row:
        return (), True
    return (row[0]["events"], row[0]["last_insert"]), bool(row[0]["settled"])


T = TypeVar("T")


class VersionedCache:
    """Answers computed from an experiment's data (results, timeline), kept in memory and
    given again while `data_version` says the data has not changed: a repeated read costs
    one point query. The version is read before computing, so an answer may have seen
    events newer than its version (the next read then computes again), never fewer; one
    computed before the last insert settled is given once and computed again.
    Thread-safe; keeps the ``size`` most recently used answers.

    In a cluster the marks and the state are read through Distributed tables; with
    replicas that lag, a version and the state read after it may come from different
    replicas; ``load_balancing = 'in_order'`` reads one while it is up."""

    def __init__(self, run: QueryRunner, size: int = 256, settle_ms: int = SETTLE_MS) -> None:
        self.run = run
        self.size = size
        self.settle_ms = settle_ms
        self.hits = 0
        self._entries: OrderedDict[tuple[str, ExperimentSpec], tuple[tuple[Any, ...], Any]]
        self._entries = OrderedDict()
        self._lock = threading.Lock()

    def get(self, what: str, spec: ExperimentSpec, compute: Callable[[], T]) -> T:
        """``compute()``'s answer for (``what``, ``spec``): the kept one when the
        experiment's data version is the one it was computed at, else a new one."""
        version, settled = data_version(self.run, spec, self.settle_ms)
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
            if not settled:
                return answer
            self._entries[key] = (version, answer)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return answer
