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
(`SummaryReader`) take the latest complete summary that covers the experiment's events,
as counted in its state (`covered_events`).

The p95s come from the histograms: values share a bucket when they agree in sign,
exponent and the first 10 bits of the mantissa, so a p95 is exact when its neighbouring
values are alone in their buckets or equal, and within 0.1% otherwise.
"""

from __future__ import annotations

import base64
import math
import threading
import time
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from analytics.aggregates import (
    ARM_VARIANT,
    BUCKETS,
    SCOPE,
    STATE_ROWS,
    VARIANT_IDS,
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
    SUMMARIES_TABLE,
    SUMMARY_UNITS_TABLE,
    UNIT_RESULT_COLUMNS,
    UNIT_RESULTS_TABLE,
    UNIT_STATE_TABLE,
)

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = [
    "MARGIN_MS",
    "Counters",
    "Kept",
    "SummaryReader",
    "covered_events",
    "kept_summary",
    "layout_of",
    "refresh",
    "unit_summary",
]

MARGIN_MS = 15_000
"""How far before the previous refresh a refresh looks for changed units: an insert that
began before it and was not yet visible to it is counted by the next."""

_HOUR_MS = BUCKETS["hour"]
_FORMAT = 1  # of the counters: a summary of another format is rebuilt
_AGENT_METRICS = ("cost", "duration_ms", "turns")
_RESULT_NAMES = [name for name, _ in UNIT_RESULT_COLUMNS]
_STAGED = (
    f"SELECT unit_key FROM {SUMMARY_UNITS_TABLE} WHERE {SCOPE} AND version = {{version:UInt64}}"
)
_STAGED_COUNT = _STAGED.replace("SELECT unit_key", "SELECT count()", 1)
_WRITE = "SETTINGS insert_deduplicate = 0, distributed_foreground_insert = 1"


def layout_of(spec: ExperimentSpec) -> str:
    """What a summary's counters are laid out by: the experiment's kind and its goals in
    position order. A summary of another layout is rebuilt."""
    goals = "" if spec.kind == "agent" else ":" + ",".join(g.id for g in spec.goals)
    return f"{_FORMAT}/{spec.kind}{goals}"


# --- the counters ----------------------------------------------------------------------

# What a counter counts (its ``part``), each keyed by variant id and two numbers:
_ENTERED = 1  # units per hour entered (hours since the epoch)
_CONVERTED = 2  # per hour of their first conversion on the primary goal, or first success
_BITS = 3  # per goal bits: bit i for goal i, bit 1 also for a success
_SUMS = 4  # per series: the sum and sum of squares of a goal's value or an agent metric
_TASKS = 5  # agent: tasks
_SUCCESSES = 6  # agent: successful tasks
_HIST = 7  # per (series, bucket): units and summed value, for the p95s

Key = tuple[str, int, int, int]
"""(variant id, part, first number, second number)."""


class Counters(msgspec.Struct):
    """An experiment's counters: ``cells`` maps a `Key` to (units, sum, sum of squares)
    over the units it counts. A series is a goal's position (web) or an agent metric's
    (1 cost, 2 duration, 3 turns)."""

    cells: dict[Key, tuple[int, float, float]] = {}

    def add(self, other: Counters, sign: int) -> None:
        """Add ``other`` (``sign`` 1) or take it away (-1); a counter of no units goes."""
        for key, (units, total, squares) in other.cells.items():
            kept_units, kept_total, kept_squares = self.cells.get(key, (0, 0.0, 0.0))
            units_now = kept_units + sign * units
            if units_now:
                self.cells[key] = (units_now, kept_total + sign * total,
                                   kept_squares + sign * squares)  # fmt: skip
            else:
                self.cells.pop(key, None)


class Kept(msgspec.Struct):
    """A summary as written: its version (the refresh's server time, ms), how many of
    the experiment's state events it covers (`covered_events`), its layout and its
    counters, and how long its refresh took (ms)."""

    version: int
    events: int
    layout: str
    counters: Counters
    refresh_ms: int = 0


# --- the SQL ---------------------------------------------------------------------------


def _item(part: int, first: str, second: str = "0", value: str = "0") -> str:
    return f"tuple(toUInt8({part}), toInt64({first}), toInt64({second}), toFloat64({value}))"


# A value's histogram bucket: its sign, exponent and first 10 mantissa bits, as an
# integer in the values' order (0 holds 0).
def _bucket(value: str) -> str:
    return (
        f"multiIf({value} > 0, bitShiftRight(reinterpretAsInt64({value}), 42), "
        f"{value} < 0, -bitShiftRight(reinterpretAsInt64(-{value}), 42) - 1, 0)"
    )


_METRIC = "[cost, duration_ms, turns][i]"
_NO_ITEMS = "CAST([], 'Array(Tuple(UInt8, Int64, Int64, Float64))')"
_COMMON_ITEMS = (
    f"[{_item(_ENTERED, 'intDiv(entered_ms, 3600000)')}, {_item(_BITS, 'goal_bits')}], "
    f"if(bitTest(goal_bits, 1), [{_item(_CONVERTED, 'intDiv(converted_ms, 3600000)')}], "
    f"{_NO_ITEMS})"
)
_ITEMS = {
    # Every unit's value of each goal (0 when it did not convert) for the sums; the
    # values of the units that converted for the histogram.
    "web": f"arrayConcat({_COMMON_ITEMS}, "
    f"arrayMap(i -> {_item(_SUMS, 'i', value='goal_values[i]')}, arrayEnumerate(goal_values)), "
    f"arrayMap(i -> {_item(_HIST, 'i', _bucket('goal_values[i]'), 'goal_values[i]')}, "
    "arrayFilter(i -> bitTest(goal_bits, i), arrayEnumerate(goal_values))))",
    "agent": f"arrayConcat({_COMMON_ITEMS}, "
    f"[{_item(_TASKS, '0', value='tasks')}, {_item(_SUCCESSES, '0', value='successes')}], "
    f"arrayMap(i -> {_item(_SUMS, 'i', value=_METRIC)}, [1, 2, 3]), "
    f"arrayMap(i -> {_item(_HIST, 'i', _bucket(_METRIC), _METRIC)}, [1, 2, 3]))",
}
# One pass over the contribution rows ``{rows}`` selects: every counter at once.
_COUNT_SQL = f"""
{VARIANT_IDS}
SELECT
    {ARM_VARIANT}, part, first, second,
    count() AS units, sum(value) AS total, sum(value * value) AS squares
FROM (
    SELECT arm, item.1 AS part, item.2 AS first, item.3 AS second, item.4 AS value
    FROM ({{rows}})
    ARRAY JOIN {{items}} AS item
)
GROUP BY arm, part, first, second
"""

# Each staged unit's latest contribution: the refresh reads them before writing its own,
# and an unfinished refresh's rows are never read (its summary is rebuilt).
_PREVIOUS_ROWS = (
    f"SELECT * FROM {UNIT_RESULTS_TABLE} WHERE {SCOPE} AND unit_key GLOBAL IN ({_STAGED}) "
    "ORDER BY unit_key, version DESC LIMIT 1 BY unit_key"
)
_NEW_ROWS = f"SELECT * FROM {UNIT_RESULTS_TABLE} WHERE {SCOPE} AND version = {{version:UInt64}}"

_STAGE_SQL = (
    f"INSERT INTO {SUMMARY_UNITS_TABLE} (workspace_id, experiment_id, version, unit_key)\n"
    f"{_WRITE}\nSELECT {{ws:String}}, {{exp:String}}, {{version:UInt64}}, unit_key "
    f"FROM {UNIT_STATE_TABLE} WHERE {SCOPE} "
    "AND inserted_to > fromUnixTimestamp64Milli({since:Int64}, 'UTC') GROUP BY unit_key"
)
_ENTRY_MS = "toUInt64(bitShiftRight(entry, 64))"


def _contributions_sql(kind: Literal["web", "agent"], goals: int, staged: bool) -> str:
    """INSERT the contributions of the experiment's units (only the staged ones when
    ``staged``) under ``version``."""
    rows = STATE_ROWS + (f" AND unit_key GLOBAL IN ({_STAGED})" if staged else "")
    if kind == "web":
        converted = (
            f"if(bitTest(goal_bits, 1), greatest({_ENTRY_MS}, "
            "toUInt64(toUnixTimestamp64Milli(converted_at))), 0)"
            if goals
            else "toUInt64(0)"
        )
        values = ", ".join(f"value_{i}" for i in range(1, goals + 1))
        select = (
            f"toUInt64(entry), {_ENTRY_MS}, {converted}, goal_bits, "
            f"CAST([{values}] AS Array(Float64)), 0, 0, 0, 0, 0"
        )
    else:
        select = (
            f"toUInt64(entry), {_ENTRY_MS}, if(unit_successes > 0, greatest({_ENTRY_MS}, "
            "toUInt64(toUnixTimestamp64Milli(succeeded_at))), 0), "
            "if(unit_successes > 0, 3, 1), CAST([] AS Array(Float64)), unit_tasks, "
            "unit_successes, unit_cost, unit_duration_ms, unit_turns"
        )
    names = ", ".join(_RESULT_NAMES)
    return (
        f"INSERT INTO {UNIT_RESULTS_TABLE} ({names})\n{_WRITE}\n"
        "SELECT {ws:String}, {exp:String}, unit, {version:UInt64}, "
        f"{select} FROM ({units_query(kind, goals, rows)})"
    )


# --- writing ---------------------------------------------------------------------------


def _count(client: Client, kind: str, rows: str, parameters: dict[str, Any]) -> Counters:
    """The counters of the contribution rows ``rows`` selects (one pass)."""
    sql = _COUNT_SQL.replace("{rows}", rows).replace("{items}", _ITEMS[kind])
    return Counters(
        {
            (variant, part, first, second): (units, total, squares)
            for variant, part, first, second, units, total, squares in client.query(
                sql, parameters=parameters
            ).result_rows
        }
    )


_KEPT = msgspec.msgpack.Encoder()
_KEPT_DECODER = msgspec.msgpack.Decoder(Counters)


def _write_summary(client: Client, ids: tuple[str, str], kept: Kept, pending: bool) -> None:
    # Text, so that every client and the workers' Arrow read it as it was written.
    state = "" if pending else base64.b64encode(_KEPT.encode(kept.counters)).decode()
    row = [*ids, kept.version, int(pending), kept.events, kept.refresh_ms, kept.layout, state]
    names = ["workspace_id", "experiment_id", "version", "pending", "events", "refresh_ms"]
    client.insert(
        SUMMARIES_TABLE,
        [row],
        column_names=[*names, "layout", "state"],
        settings={"insert_deduplicate": 0, "distributed_foreground_insert": 1},
    )


_COVERED = f"SELECT sum(events) FROM {UNIT_STATE_TABLE} WHERE {SCOPE}"


def covered_events(run: QueryRunner, spec: ExperimentSpec) -> int:
    """How many events of the experiment its state holds now (a scan of one small
    column): a summary covering as many is current. Counted from the state itself, so a
    summary never claims an insert whose state it could not see yet."""
    table = run(_COVERED, {"ws": spec.workspace_id, "exp": spec.id})
    return int(table.column(0)[0].as_py() or 0) if table.num_rows else 0


def refresh(client: Client, spec: ExperimentSpec, previous: Kept | None) -> Kept:
    """Bring the experiment's summary up to date (module docstring) and return it: from
    ``previous`` (what the last refresh wrote) by the units changed since, or from every
    unit when there is none or its layout differs. ``client`` may write."""
    started = time.perf_counter()
    ids = (spec.workspace_id, spec.id)
    parameters: dict[str, Any] = {"ws": spec.workspace_id, "exp": spec.id}
    if spec.kind == "web":
        parameters["goals"] = [goal.id for goal in spec.goals]
    # Counted before the units are staged: every event it counts is in a state row the
    # staging sees.
    now, events = client.query(
        f"SELECT toUnixTimestamp64Milli(now64(3)), ({_COVERED})", parameters=parameters
    ).result_rows[0]
    layout = layout_of(spec)
    if previous is not None and previous.layout != layout:
        previous = None
    version = max(int(now), previous.version + 1 if previous else 0)
    parameters["version"] = version
    kept = Kept(version, int(events or 0), layout, Counters({}))
    _write_summary(client, ids, kept, pending=True)
    goals = len(spec.goals) if spec.kind == "web" else 0
    if previous is None:
        client.command(_contributions_sql(spec.kind, goals, staged=False), parameters=parameters)
        kept.counters = _count(client, spec.kind, _NEW_ROWS, parameters)
    else:
        parameters["since"] = previous.version - MARGIN_MS
        client.command(_STAGE_SQL, parameters=parameters)
        counters = msgspec.msgpack.decode(_KEPT.encode(previous.counters), type=Counters)
        if client.query(_STAGED_COUNT, parameters=parameters).result_rows[0][0]:
            old = _count(client, spec.kind, _PREVIOUS_ROWS, parameters)
            client.command(_contributions_sql(spec.kind, goals, staged=True), parameters=parameters)
            counters.add(old, -1)
            counters.add(_count(client, spec.kind, _NEW_ROWS, parameters), 1)
        kept.counters = counters
    kept.refresh_ms = round((time.perf_counter() - started) * 1000)
    _write_summary(client, ids, kept, pending=False)
    return kept


def kept_summary(client: Client, spec: ExperimentSpec) -> Kept | None:
    """The experiment's latest summary as written, for the writer starting again; None
    when there is none or the latest refresh did not finish (then it is rebuilt)."""
    rows = client.query(
        f"SELECT version, pending, events, layout, state, refresh_ms FROM {SUMMARIES_TABLE} "
        f"WHERE {SCOPE} "
        "ORDER BY version DESC, pending ASC LIMIT 1",
        parameters={"ws": spec.workspace_id, "exp": spec.id},
    ).result_rows
    if not rows or rows[0][1] or rows[0][3] != layout_of(spec):
        return None
    version, _, events, layout, state, refresh_ms = rows[0]
    return Kept(version, events, layout, _decode(state), refresh_ms)


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
    per_bucket = BUCKETS[bucket] // _HOUR_MS
    timeline: dict[tuple[int, str], list[int]] = {}
    units: dict[str, int] = {}
    converted: dict[str, int] = {}
    goal_counts: dict[tuple[str, int], int] = {}
    sums: dict[tuple[str, int], tuple[float, float]] = {}
    totals: dict[tuple[str, int], float] = {}
    hists: dict[tuple[str, int], list[tuple[int, int, float]]] = {}
    for (variant, part, first, second), (n, total, squares) in kept.counters.cells.items():
        if part == _ENTERED:
            timeline.setdefault((first // per_bucket, variant), [0, 0])[0] += n
        elif part == _CONVERTED:
            timeline.setdefault((first // per_bucket, variant), [0, 0])[1] += n
        elif part == _BITS:
            units[variant] = units.get(variant, 0) + n
            if first & 0b10:
                converted[variant] = converted.get(variant, 0) + n
            for i in range(1, len(spec.goals) + 1):
                if first & (1 << i):
                    goal_counts[(variant, i)] = goal_counts.get((variant, i), 0) + n
        elif part == _SUMS:
            sums[(variant, first)] = (total, squares)
        elif part == _HIST:
            hists.setdefault((variant, first), []).append((second, n, total))
        else:
            totals[(variant, part)] = total
    arms = []
    for variant in sorted(units):
        if spec.kind == "agent":
            series = list(enumerate(_AGENT_METRICS, start=1))
            metric = {name: sums.get((variant, i), (0.0, 0.0)) for i, name in series}
            arms.append(
                ArmAggregates(
                    variant_id=variant,
                    units=units[variant],
                    converted=converted.get(variant, 0),
                    tasks=round(totals.get((variant, _TASKS), 0)),
                    successful_tasks=round(totals.get((variant, _SUCCESSES), 0)),
                    sums={name: total for name, (total, _) in metric.items()},
                    sumsqs={name: squares for name, (_, squares) in metric.items()},
                    p95s={name: _quantile(hists.get((variant, i), [])) for i, name in series},
                )
            )
            continue
        goals = tuple(
            GoalAggregates(
                goal_id=goal.id,
                converted=goal_counts[(variant, i)],
                value_sum=sums.get((variant, i), (0.0, 0.0))[0],
                value_sumsq=sums.get((variant, i), (0.0, 0.0))[1],
                value_p95=_quantile(hists.get((variant, i), [])),
            )
            for i, goal in enumerate(spec.goals, start=1)
            if goal_counts.get((variant, i))
        )
        arms.append(ArmAggregates(variant_id=variant, units=units[variant], goals=goals))
    return UnitSummary(tuple(arms), timeline_points(timeline, bucket), bucket, kept.version)


LAG = 0.01
"""The share of an experiment's events a summary may miss and still be read at once:
under steady traffic a large experiment's summary always misses the last seconds."""


class SummaryReader:
    """Reads experiments' summaries for the results (any process; read-only queries).

    `read` answers the latest complete summary at once when it misses at most `LAG` of
    the experiment's events (counted in its state, `covered_events`: an experiment of
    millions of units under steady traffic); otherwise it waits for the writer to cover
    them all, 1 s plus twice the last refresh's time, at most ``wait`` seconds. None
    when there is no summary or the wait ran out: the caller computes from every unit
    instead, so a writer busy elsewhere delays a read by that bound at most. Decoded
    summaries are kept by version. Experiments of fewer than ``smallest`` events are not
    read from a summary (None): counting every unit costs them less than a wait.
    Thread-safe."""

    def __init__(
        self, run: QueryRunner, smallest: int = 0, wait: float = 5.0, poll: float = 0.05
    ) -> None:
        self.run = run
        self.smallest = smallest
        self.wait = wait
        self.poll = poll
        self._decoded: dict[tuple[str, str], Kept] = {}
        self._lock = threading.Lock()

    def read(self, spec: ExperimentSpec) -> Kept | None:
        """The experiment's summary, current with its events (or within `LAG` of them);
        None when there is none to wait for or the wait ran out."""
        parameters = {"ws": spec.workspace_id, "exp": spec.id}
        events = covered_events(self.run, spec)
        if events < self.smallest:
            return None
        layout = layout_of(spec)
        started = time.monotonic()
        while True:
            head = self.run(
                f"SELECT version, events, layout, refresh_ms FROM {SUMMARIES_TABLE} "
                f"WHERE {SCOPE} AND pending = 0 ORDER BY version DESC LIMIT 1",
                parameters,
            ).to_pylist()
            if not head or _text(head[0]["layout"]) != layout:
                return None
            if events - head[0]["events"] <= LAG * events:
                return self._load(spec, head[0]["version"])
            wait = min(self.wait, 1.0 + 2 * head[0]["refresh_ms"] / 1000)
            if time.monotonic() - started >= wait:
                return None
            time.sleep(self.poll)

    def _load(self, spec: ExperimentSpec, version: int) -> Kept | None:
        key = (spec.workspace_id, spec.id)
        with self._lock:
            kept = self._decoded.get(key)
        if kept is not None and kept.version == version:
            return kept
        rows = self.run(
            f"SELECT version, events, layout, state, refresh_ms FROM {SUMMARIES_TABLE} "
            f"WHERE {SCOPE} "
            "AND version = {v:UInt64} AND pending = 0 LIMIT 1",
            {"ws": spec.workspace_id, "exp": spec.id, "v": version},
        ).to_pylist()
        if not rows:
            return None  # merged away by a newer refresh: the caller reads again
        row = rows[0]
        kept = Kept(
            row["version"], row["events"], _text(row["layout"]),
            _decode(row["state"]), row["refresh_ms"],
        )  # fmt: skip
        with self._lock:
            self._decoded[key] = kept
        return kept


def _decode(state: str | bytes) -> Counters:
    return _KEPT_DECODER.decode(base64.b64decode(state))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
