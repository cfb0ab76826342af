"""Experiment summaries kept up to date from the units that changed, so that reading a
running experiment's results and timeline costs what changed since the last refresh,
not the experiment's size (issue 21; docs/architecture.md, "Results").

A summary is a few counters per arm (`Counters`): units per (hour entered, hour first
converted, goal bits), per-arm sums and sums of squares, and a histogram of each goal's
value or agent metric for its p95. Every counter is a sum over units, so a refresh
subtracts what the changed units counted for before and adds what they count for now:

1. the units whose state (`warehouse.UNIT_STATE_TABLE`) has rows inserted since the
   previous refresh, less a margin for inserts in flight, are written to
   `warehouse.SUMMARY_UNITS_TABLE` under the refresh's version (a millisecond time of
   the ClickHouse server);
2. their previous contributions, read from `warehouse.UNIT_RESULTS_TABLE` (the latest
   row of each at or before the previous version), are counted;
3. their new contributions are computed from their state by the results query's own
   per-unit SELECT (`analytics.aggregates.units_query`) and written there under the new
   version, then counted;
4. the new summary (previous - old + new) is written to `warehouse.SUMMARIES_TABLE`.

Recounting a unit that did not change is harmless (it subtracts and adds the same), so
the margin only costs work. A refresh first writes a ``pending`` row; a crash before the
summary leaves it the latest, and the next refresh rebuilds from every unit. One writer
per warehouse: the server's parent process (`edge.control.summary_keeper`); readers
(`SummaryReader`) take the latest complete summary that covers the experiment's events.

The p95s come from the histograms: values share a bucket when they agree in sign,
exponent and the first 10 bits of the mantissa, so a p95 is exact when its neighbouring
values are alone in their buckets or equal, and within 0.1% otherwise.
"""

from __future__ import annotations

import base64
import math
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from analytics.aggregates import (
    BUCKETS,
    ArmAggregates,
    Bucket,
    ExperimentSpec,
    GoalAggregates,
    QueryRunner,
    UnitSummary,
    timeline_points,
    units_query,
)
from analytics.warehouse import (
    EXPERIMENT_MARKS_TABLE,
    SUMMARIES_TABLE,
    SUMMARY_UNITS_TABLE,
    UNIT_RESULT_COLUMNS,
    UNIT_RESULTS_TABLE,
    UNIT_STATE_COLUMNS,
    UNIT_STATE_TABLE,
)

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = [
    "MARGIN_MS",
    "Counters",
    "Kept",
    "SummaryReader",
    "kept_summary",
    "layout_of",
    "refresh",
    "unit_summary",
]

MARGIN_MS = 60_000
"""How far before the previous refresh a refresh looks for changed units: an insert that
began before it and was not yet visible to it is counted by the next."""

_HOUR_MS = BUCKETS["hour"]
_AGENT_METRICS = ("cost", "duration_ms", "turns")
_SCOPE = "workspace_id = {ws:String} AND experiment_id = {exp:String}"
_STATE_NAMES = ", ".join(name for name, _, _ in UNIT_STATE_COLUMNS)
_RESULT_NAMES = [name for name, _ in UNIT_RESULT_COLUMNS]
_CONTRIBUTION = _RESULT_NAMES[4:]  # arm .. turns
_STAGED = f"SELECT unit_key FROM {SUMMARY_UNITS_TABLE} WHERE {_SCOPE} AND version = {{version:UInt64}}"
_WRITE = "SETTINGS insert_deduplicate = 0, distributed_foreground_insert = 1"


def layout_of(spec: ExperimentSpec) -> str:
    """What a summary's counters are laid out by: the experiment's kind and its goals in
    position order. A summary of another layout is rebuilt."""
    return spec.kind if spec.kind == "agent" else "web:" + ",".join(g.id for g in spec.goals)


# --- the counters ----------------------------------------------------------------------


class ArmCounter(msgspec.Struct, array_like=True):
    """One arm's sums over its units: units; per goal (web) the summed value and its
    square; tasks and successes, and per agent metric the sum and sum of squares."""

    variant_id: str
    units: int
    value_sums: list[float]
    value_sumsqs: list[float]
    tasks: int
    successes: int
    metric_sums: list[float]
    metric_sumsqs: list[float]


class Counters(msgspec.Struct):
    """An experiment's counters. ``cells``: (variant id, hour entered, hour first
    converted or 0, goal bits) -> units; ``hists``: (variant id, series, bucket) ->
    [units, summed value], a series being a goal's position (web) or an agent metric's
    (1 cost, 2 duration, 3 turns)."""

    cells: dict[tuple[str, int, int, int], int] = {}
    arms: dict[str, ArmCounter] = {}
    hists: dict[tuple[str, int, int], tuple[int, float]] = {}

    def add(self, other: Counters, sign: int) -> None:
        """Add ``other`` (``sign`` 1) or take it away (-1); counters that reach 0 go."""
        for key, n in other.cells.items():
            total = self.cells.get(key, 0) + sign * n
            if total:
                self.cells[key] = total
            else:
                self.cells.pop(key, None)
        for variant, arm in other.arms.items():
            mine = self.arms.get(variant)
            if mine is None:
                mine = self.arms[variant] = ArmCounter(
                    variant, 0, [0.0] * len(arm.value_sums), [0.0] * len(arm.value_sums),
                    0, 0, [0.0] * 3, [0.0] * 3,
                )  # fmt: skip
            mine.units += sign * arm.units
            mine.tasks += sign * arm.tasks
            mine.successes += sign * arm.successes
            for mine_list, theirs in (
                (mine.value_sums, arm.value_sums),
                (mine.value_sumsqs, arm.value_sumsqs),
                (mine.metric_sums, arm.metric_sums),
                (mine.metric_sumsqs, arm.metric_sumsqs),
            ):
                for i, value in enumerate(theirs):
                    mine_list[i] += sign * value
            if mine.units == 0:
                del self.arms[variant]
        for key, (n, total) in other.hists.items():
            kept_n, kept_total = self.hists.get(key, (0, 0.0))
            n_now = kept_n + sign * n
            if n_now:
                self.hists[key] = (n_now, kept_total + sign * total)
            else:
                self.hists.pop(key, None)


class Kept(msgspec.Struct):
    """A summary as written: its version (the refresh's server time, ms), the marks'
    event count and last insert it covers, its layout and its counters."""

    version: int
    events: int
    last_inserted_ms: int
    layout: str
    counters: Counters


# --- the SQL ---------------------------------------------------------------------------

# Hours since the epoch; a unit that never converted has 0 for its conversion hour.
_CELL_COLUMNS = (
    "intDiv(entered_ms, 3600000) AS entered_hour, "
    "if(bitTest(goal_bits, 1), intDiv(converted_ms, 3600000), 0) AS converted_hour"
)
_VARIANT_IDS = (
    f"WITH (SELECT groupUniqArray(toString(variant_id)) FROM {EXPERIMENT_MARKS_TABLE} "
    f"WHERE {_SCOPE}) AS variant_ids"
)
_VARIANT = "arrayFirst(v -> cityHash64(v) = arm, variant_ids) AS variant_id"

_CELLS_SQL = f"""
{_VARIANT_IDS}
SELECT
    {_VARIANT}, entered_hour, converted_hour, goal_bits,
    grouping(entered_hour, converted_hour, goal_bits) != 0 AS is_total,
    count() AS units,
    sumForEach(goal_values) AS value_sums,
    sumForEach(arrayMap(x -> x * x, goal_values)) AS value_sumsqs,
    sum(tasks) AS tasks,
    sum(successes) AS successes,
    [sum(cost), sum(duration_ms), sum(turns)] AS metric_sums,
    [sum(cost * cost), sum(duration_ms * duration_ms), sum(turns * turns)] AS metric_sumsqs
FROM (SELECT *, {_CELL_COLUMNS} FROM ({{rows}}))
GROUP BY GROUPING SETS ((arm, entered_hour, converted_hour, goal_bits), (arm))
"""

# A value's histogram bucket: its sign, exponent and first 10 mantissa bits, as an
# integer in the values' order (0 holds 0).
_BUCKET = (
    "multiIf(v > 0, bitShiftRight(reinterpretAsInt64(v), 42), "
    "v < 0, -bitShiftRight(reinterpretAsInt64(-v), 42) - 1, 0)"
)
_SERIES = {
    # A goal's value over the units that converted on it.
    "web": "ARRAY JOIN arrayEnumerate(goal_values) AS series, goal_values AS v "
    "WHERE bitTest(goal_bits, series)",
    "agent": "ARRAY JOIN [1, 2, 3] AS series, [cost, duration_ms, turns] AS v",
}
_HISTS_SQL = f"""
{_VARIANT_IDS}
SELECT {_VARIANT}, series, bucket, count() AS units, sum(v) AS total
FROM (SELECT arm, series, v, {_BUCKET} AS bucket FROM ({{rows}}) {{series}})
GROUP BY arm, series, bucket
"""

# Each unit's latest contribution at or before the previous version, for the staged units.
_PREVIOUS_ROWS = (
    "SELECT "
    + ", ".join(f"c.{i} AS {name}" for i, name in enumerate(_CONTRIBUTION, start=1))
    + " FROM (SELECT unit_key, argMax(("
    + ", ".join(_CONTRIBUTION)
    + f"), version) AS c FROM {UNIT_RESULTS_TABLE} WHERE {_SCOPE} "
    "AND version <= {previous:UInt64} AND unit_key GLOBAL IN (" + _STAGED + ") GROUP BY unit_key)"
)
_NEW_ROWS = f"SELECT * FROM {UNIT_RESULTS_TABLE} WHERE {_SCOPE} AND version = {{version:UInt64}}"

_STATE_ROWS = f"SELECT {_STATE_NAMES} FROM {UNIT_STATE_TABLE} WHERE {_SCOPE}"
_STAGE_SQL = (
    f"INSERT INTO {SUMMARY_UNITS_TABLE} (workspace_id, experiment_id, version, unit_key)\n"
    f"{_WRITE}\nSELECT {{ws:String}}, {{exp:String}}, {{version:UInt64}}, unit_key "
    f"FROM {UNIT_STATE_TABLE} WHERE {_SCOPE} "
    "AND inserted_to > fromUnixTimestamp64Milli({since:Int64}, 'UTC') GROUP BY unit_key"
)
_ENTERED = "toUInt64(bitShiftRight(entry, 64))"


def _contributions_sql(kind: str, goals: int, staged: bool) -> str:
    """INSERT the contributions of the experiment's units (only the staged ones when
    ``staged``) under ``version``."""
    rows = _STATE_ROWS + (f" AND unit_key GLOBAL IN ({_STAGED})" if staged else "")
    if kind == "web":
        converted = (
            f"if(bitTest(goal_bits, 1), greatest({_ENTERED}, "
            "toUInt64(toUnixTimestamp64Milli(converted_at))), 0)"
            if goals
            else "toUInt64(0)"
        )
        values = ", ".join(f"value_{i}" for i in range(1, goals + 1))
        select = (
            f"unit, toUInt64(entry), {_ENTERED}, {converted}, goal_bits, "
            f"CAST([{values}] AS Array(Float64)), 0, 0, 0, 0, 0"
        )
    else:
        select = (
            f"unit, toUInt64(entry), {_ENTERED}, if(unit_successes > 0, greatest({_ENTERED}, "
            "toUInt64(toUnixTimestamp64Milli(succeeded_at))), 0), "
            "if(unit_successes > 0, 3, 1), CAST([] AS Array(Float64)), unit_tasks, "
            "unit_successes, unit_cost, unit_duration_ms, unit_turns"
        )
    names = ", ".join(_RESULT_NAMES)
    select = select.replace("unit, ", "{ws:String}, {exp:String}, unit, {version:UInt64}, ", 1)
    return (
        f"INSERT INTO {UNIT_RESULTS_TABLE} ({names})\n{_WRITE}\n"
        f"SELECT {select} FROM ({units_query(kind, goals, rows)})"  # type: ignore[arg-type]
    )


# --- writing ---------------------------------------------------------------------------


def _count(client: Client, kind: str, rows: str, parameters: dict[str, Any]) -> Counters:
    """The counters of the contribution rows ``rows`` selects."""
    counters = Counters({}, {}, {})
    cells = client.query(_CELLS_SQL.replace("{rows}", rows), parameters=parameters)
    for variant, entered, converted, bits, is_total, units, *sums in cells.result_rows:
        if not is_total:
            counters.cells[(variant, entered, converted, bits)] = units
            continue
        value_sums, value_sumsqs, tasks, successes, metric_sums, metric_sumsqs = sums
        counters.arms[variant] = ArmCounter(
            variant, units, list(value_sums), list(value_sumsqs), tasks, successes,
            list(metric_sums), list(metric_sumsqs),
        )  # fmt: skip
    hists_sql = _HISTS_SQL.replace("{rows}", rows).replace("{series}", _SERIES[kind])
    for variant, series, bucket, units, total in client.query(
        hists_sql, parameters=parameters
    ).result_rows:
        counters.hists[(variant, series, bucket)] = (units, total)
    return counters


_KEPT = msgspec.msgpack.Encoder()
_KEPT_DECODER = msgspec.msgpack.Decoder(Counters)


def _write_summary(client: Client, ids: tuple[str, str], kept: Kept, pending: bool) -> None:
    # Text, so that every client and the workers' Arrow read it as it was written.
    state = "" if pending else base64.b64encode(_KEPT.encode(kept.counters)).decode()
    inserted = datetime.fromtimestamp(kept.last_inserted_ms / 1000, UTC)
    client.insert(
        SUMMARIES_TABLE,
        [[*ids, kept.version, int(pending), kept.events, inserted, kept.layout, state]],
        column_names=[
            "workspace_id", "experiment_id", "version", "pending", "events",
            "last_inserted_at", "layout", "state",
        ],  # fmt: skip
        settings={"insert_deduplicate": 0, "distributed_foreground_insert": 1},
    )


def refresh(client: Client, spec: ExperimentSpec, previous: Kept | None) -> Kept:
    """Bring the experiment's summary up to date (module docstring) and return it: from
    ``previous`` (what the last refresh wrote) by the units changed since, or from every
    unit when there is none or its layout differs. ``client`` may write."""
    ids = (spec.workspace_id, spec.id)
    parameters: dict[str, Any] = {"ws": spec.workspace_id, "exp": spec.id}
    if spec.kind == "web":
        parameters["goals"] = [goal.id for goal in spec.goals]
    now, events, last_inserted = client.query(
        "SELECT toUnixTimestamp64Milli(now64(3)), sum(events), "
        f"toUnixTimestamp64Milli(max(last_inserted_at)) FROM {EXPERIMENT_MARKS_TABLE} "
        f"WHERE {_SCOPE}",
        parameters=parameters,
    ).result_rows[0]
    layout = layout_of(spec)
    if previous is not None and previous.layout != layout:
        previous = None
    version = max(int(now), previous.version + 1 if previous else 0)
    parameters["version"] = version
    kept = Kept(version, int(events), int(last_inserted or 0), layout, Counters({}, {}, {}))
    _write_summary(client, ids, kept, pending=True)
    goals = len(spec.goals) if spec.kind == "web" else 0
    if previous is None:
        client.command(_contributions_sql(spec.kind, goals, staged=False), parameters=parameters)
        kept.counters = _count(client, spec.kind, _NEW_ROWS, parameters)
    else:
        parameters |= {"since": previous.version - MARGIN_MS, "previous": previous.version}
        client.command(_STAGE_SQL, parameters=parameters)
        old = _count(client, spec.kind, _PREVIOUS_ROWS, parameters)
        client.command(_contributions_sql(spec.kind, goals, staged=True), parameters=parameters)
        new = _count(client, spec.kind, _NEW_ROWS, parameters)
        counters = msgspec.msgpack.decode(_KEPT.encode(previous.counters), type=Counters)
        counters.add(old, -1)
        counters.add(new, 1)
        kept.counters = counters
    _write_summary(client, ids, kept, pending=False)
    return kept


def kept_summary(client: Client, spec: ExperimentSpec) -> Kept | None:
    """The experiment's latest summary as written, for the writer starting again; None
    when there is none or the latest refresh did not finish (then it is rebuilt)."""
    rows = client.query(
        f"SELECT version, pending, events, toUnixTimestamp64Milli(last_inserted_at), layout, "
        f"state FROM {SUMMARIES_TABLE} WHERE {_SCOPE} ORDER BY version DESC, pending ASC LIMIT 1",
        parameters={"ws": spec.workspace_id, "exp": spec.id},
    ).result_rows
    if not rows or rows[0][1]:
        return None
    version, _, events, last_inserted, layout, state = rows[0]
    return Kept(version, events, last_inserted, layout, _decode(state))


# --- reading ---------------------------------------------------------------------------


def _quantile(entries: list[tuple[int, int, float]], level: float = 0.95) -> float | None:
    """``quantileExactInclusive(level)`` of the values a histogram holds (bucket, units,
    summed value; each value stands for its bucket's mean)."""
    n = sum(units for _, units, _ in entries)
    if n == 0:
        return None
    rank = (n - 1) * level
    low = math.floor(rank)
    wanted = {low, min(low + 1, n - 1)}
    found: dict[int, float] = {}
    seen = 0
    for _, units, total in sorted(entries):
        for index in [i for i in wanted if seen <= i < seen + units]:
            found[index] = total / units
        seen += units
    x_low, x_high = found[low], found[min(low + 1, n - 1)]
    return x_low + (rank - low) * (x_high - x_low)


def unit_summary(kept: Kept, spec: ExperimentSpec, bucket: Bucket = "day") -> UnitSummary:
    """The summary as the results and timeline read it (`analytics.aggregates.UnitSummary`,
    the same figures as `analytics.aggregates.fetch_summary` but the p95s, module
    docstring), its timeline in ``bucket``s."""
    counters = kept.counters
    per_bucket = BUCKETS[bucket] // _HOUR_MS
    buckets: dict[tuple[int, str], list[int]] = {}
    converted: dict[str, int] = {}
    goal_counts: dict[tuple[str, int], int] = {}
    for (variant, entered, converted_hour, bits), units in counters.cells.items():
        buckets.setdefault((entered // per_bucket, variant), [0, 0])[0] += units
        if bits & 0b10:
            buckets.setdefault((converted_hour // per_bucket, variant), [0, 0])[1] += units
            converted[variant] = converted.get(variant, 0) + units
        for i in range(1, len(spec.goals) + 1):
            if bits & (1 << i):
                goal_counts[(variant, i)] = goal_counts.get((variant, i), 0) + units
    hists: dict[tuple[str, int], list[tuple[int, int, float]]] = {}
    for (variant, series, at), (units, total) in counters.hists.items():
        hists.setdefault((variant, series), []).append((at, units, total))
    arms = []
    for variant in sorted(counters.arms):
        arm = counters.arms[variant]
        if spec.kind == "agent":
            arms.append(
                ArmAggregates(
                    variant_id=variant,
                    units=arm.units,
                    converted=converted.get(variant, 0),
                    tasks=arm.tasks,
                    successful_tasks=arm.successes,
                    sums=dict(zip(_AGENT_METRICS, arm.metric_sums, strict=True)),
                    sumsqs=dict(zip(_AGENT_METRICS, arm.metric_sumsqs, strict=True)),
                    p95s={
                        name: _quantile(hists.get((variant, i), []))
                        for i, name in enumerate(_AGENT_METRICS, start=1)
                    },
                )
            )
            continue
        goals = tuple(
            GoalAggregates(
                goal_id=goal.id,
                converted=goal_counts[(variant, i)],
                value_sum=arm.value_sums[i - 1],
                value_sumsq=arm.value_sumsqs[i - 1],
                value_p95=_quantile(hists.get((variant, i), [])),
            )
            for i, goal in enumerate(spec.goals, start=1)
            if goal_counts.get((variant, i))
        )
        arms.append(ArmAggregates(variant_id=variant, units=arm.units, goals=goals))
    return UnitSummary(tuple(arms), timeline_points(buckets, bucket), bucket)


class SummaryReader:
    """Reads experiments' summaries for the results (any process; read-only queries).
    `read` answers the latest complete summary once it covers every event of the
    experiment the marks count, waiting up to ``wait`` seconds for the writer to get
    there; None when there is none (the caller computes from every unit instead).
    Decoded summaries are kept by version. Thread-safe."""

    def __init__(self, run: QueryRunner, wait: float = 5.0, poll: float = 0.05) -> None:
        self.run = run
        self.wait = wait
        self.poll = poll
        self._decoded: dict[tuple[str, str], Kept] = {}
        self._lock = threading.Lock()

    def read(self, spec: ExperimentSpec) -> Kept | None:
        """The experiment's summary, current with its events; None when there is none to
        wait for or the wait ran out."""
        parameters = {"ws": spec.workspace_id, "exp": spec.id}
        marks = self.run(
            f"SELECT sum(events) AS events FROM {EXPERIMENT_MARKS_TABLE} WHERE {_SCOPE}",
            parameters,
        ).to_pylist()
        events = int(marks[0]["events"] or 0) if marks else 0
        layout = layout_of(spec)
        deadline = time.monotonic() + self.wait
        while True:
            head = self.run(
                f"SELECT version, events, layout FROM {SUMMARIES_TABLE} WHERE {_SCOPE} "
                "AND pending = 0 ORDER BY version DESC LIMIT 1",
                parameters,
            ).to_pylist()
            if not head:
                return None
            version = head[0]["version"]
            if head[0]["events"] >= events and _text(head[0]["layout"]) == layout:
                return self._load(spec, version)
            if time.monotonic() >= deadline:
                return None
            time.sleep(self.poll)

    def _load(self, spec: ExperimentSpec, version: int) -> Kept | None:
        key = (spec.workspace_id, spec.id)
        with self._lock:
            kept = self._decoded.get(key)
        if kept is not None and kept.version == version:
            return kept
        rows = self.run(
            "SELECT version, events, toUnixTimestamp64Milli(last_inserted_at) AS last_inserted, "
            f"layout, state FROM {SUMMARIES_TABLE} WHERE {_SCOPE} AND version = {{v:UInt64}} "
            "AND pending = 0 LIMIT 1",
            {"ws": spec.workspace_id, "exp": spec.id, "v": version},
        ).to_pylist()
        if not rows:
            return None  # merged away by a newer refresh: the caller reads again
        row = rows[0]
        kept = Kept(
            row["version"], row["events"], row["last_inserted"], _text(row["layout"]),
            _decode(row["state"]),
        )  # fmt: skip
        with self._lock:
            self._decoded[key] = kept
        return kept


def _decode(state: str | bytes) -> Counters:
    return _KEPT_DECODER.decode(base64.b64decode(state))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
