"""Results and timeline from the kept summary and from the per-unit state, against the
raw-events queries they replaced, on synthetic events in chDB; then at 3x the events per
unit, and the keeper's refresh after new events.

A temporary chDB warehouse (migrated by `analytics.warehouse.migrate`, so with the unit
state's materialized views) gets ``--events`` events of four experiments in one workspace
plus a neighbour workspace: three web experiments (exposures, then goal conversions with
values for ~12% / ~4% of units on two goals) and one agent experiment (tasks with outcome,
cost, duration and turns), spread over 30 days, inserted with ``insert_arrow`` in chunks of
1M rows built by NumPy/Arrow. For the largest web experiment and the agent experiment,
each query runs ``--runs`` times:

- **kept summary**: what the results API, the results page and the decider read for a
  running experiment (`analytics.summaries.SummaryReader`, then `unit_summary`), refreshed
  as the keeper does just before; its answer is checked equal to the state's (the p95s
  to 0.1%);
- **state**: `analytics.aggregates.fetch_summary`, one query for results and timeline
  over ``splitedge.unit_state`` (an ended experiment's, and a read with no summary yet);
  its answer is checked equal to the raw queries';
- **raw**: the queries they replaced (kept below as `RAW_RESULTS` and `RAW_TIMELINE`), over
  the experiment's raw events;
- **cached**: results and timeline again through `VersionedCache` with nothing inserted
  in between: a point query on ``splitedge.experiment_marks`` and a sum of the state's
  ``events`` column;
- baselines: ``count()`` and ``uniqExact(unit_id)`` of the experiment's event range.

The state is measured merged (``OPTIMIZE FINAL``: one row per unit and goal converted,
where background merges take it). Then the same units of those two experiments get two
more batches of events (3x the events per unit), and everything runs again, first as
inserted (up to three state rows per unit, not yet merged), then merged; "3x / 1x" is the
growth. Last, 2,000 and then 20,000 units of each get new events, ``--runs`` times,
each batch followed by the keeper's refresh and a read.

"cold" is the first run after ``SYSTEM DROP MARK CACHE`` and ``SYSTEM DROP UNCOMPRESSED
CACHE``; "warm" is the median of the following runs, in wall time and in CPU time (chDB
runs in this process).

    .venv/bin/python bench/results_query.py [--events 10000000] [--runs 5] [--write]

(`make bench` runs the default 10M; the figures of issue 21 are for ``--events 30000000``.)
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

# Python puts bench/ first on sys.path when it runs a script from it, and there "edge"
# names bench/edge.py, not the splitedge package. Keep bench/ on the path, but last.
_BENCH_DIR = os.path.dirname(os.path.realpath(__file__))
_ROOT_DIR = os.path.dirname(_BENCH_DIR)
_AFTER = [_ROOT_DIR, _BENCH_DIR]
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") not in _AFTER] + _AFTER

import chdb  # noqa: E402
import msgspec  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

from analytics import aggregates, summaries, warehouse  # noqa: E402
from edge.ingest.schema import EVENT_SCHEMA  # noqa: E402
from report import environment, publish  # noqa: E402

RESULTS_INTRO = """\
## Results from per-unit state (issue 21): bench/results_query.py

A running experiment's results and timeline are read from its **kept summary**
(`analytics.summaries`): counters the server's summary keeper refreshes from the units
whose state changed, over `splitedge.unit_state`, the per-unit state that materialized
views keep as events are inserted. Measured in the same run on the same data against the
query over every unit's state (what ended experiments and a first read still run), and
against the raw-events queries of before issue 21, then after two more batches of events
for the same units (3x events per unit), and last the keeper's refresh after new events
of 2,000 and 20,000 of an experiment's units. A read of the summary is a new reader's
(fetching and decoding it); an unchanged repeat is answered from `VersionedCache`. Cold =
first run after dropping ClickHouse's mark and uncompressed caches; warm = median of the
next runs (chDB runs in the benchmark's process: CPU is its threads').

    .venv/bin/python bench/results_query.py --events 30000000 --write
"""

# The raw-events queries that results and timeline ran before the per-unit state
# (analytics.aggregates until issue 21), kept to measure the state against.
_SCOPE = "experiment_id = {exp:String} AND workspace_id = {ws:String}"
_EVENTS = warehouse.EVENTS_TABLE
RAW_RESULTS = {
    "web": f"""
SELECT
    variant_id, goal_id, grouping(goal_id) AS is_total, countIf(i <= 1) AS units,
    count() AS converted, sum(value) AS value_sum, sum(value * value) AS value_sumsq,
    quantileExactInclusiveIf(0.95)(value, i > 0) AS value_p95
FROM (
    SELECT unit_id, argMin(variant_id, received_at) AS variant_id
    FROM {_EVENTS} WHERE {_SCOPE} AND kind = 'exposure' GROUP BY unit_id
) AS exposed
LEFT JOIN (
    SELECT unit_id, groupArray(goal_id) AS goal_ids, groupArray(value) AS goal_values
    FROM (
        SELECT unit_id, goal_id, sum(ifNull(value, 0.)) AS value
        FROM {_EVENTS} WHERE {_SCOPE} AND kind = 'goal' GROUP BY unit_id, goal_id
    )
    GROUP BY unit_id
) AS converted USING unit_id
LEFT ARRAY JOIN goal_ids AS goal_id, goal_values AS value, arrayEnumerate(goal_ids) AS i
GROUP BY GROUPING SETS ((variant_id), (variant_id, goal_id))
ORDER BY variant_id, is_total DESC, goal_id
""",
    "agent": f"""
SELECT
    variant_id, count() AS units, countIf(successes > 0) AS converted, sum(tasks) AS tasks,
    sum(successes) AS successful_tasks,
    sum(cost) AS cost_sum, sum(cost * cost) AS cost_sumsq,
    quantileExactInclusive(0.95)(cost) AS cost_p95,
    sum(duration_ms) AS duration_ms_sum, sum(duration_ms * duration_ms) AS duration_ms_sumsq,
    quantileExactInclusive(0.95)(duration_ms) AS duration_ms_p95,
    sum(turns) AS turns_sum, sum(turns * turns) AS turns_sumsq,
    quantileExactInclusive(0.95)(turns) AS turns_p95
FROM (
    SELECT
        unit_id, argMin(variant_id, received_at) AS variant_id, count() AS tasks,
        countIf(outcome = 'success') AS successes, sum(ifNull(cost, 0.)) AS cost,
        sum(ifNull(duration_ms, 0.)) AS duration_ms, toFloat64(sum(ifNull(turns, 0))) AS turns
    FROM {_EVENTS} WHERE {_SCOPE} AND kind = 'task' GROUP BY unit_id
)
GROUP BY variant_id
ORDER BY variant_id
""",
}
_RAW_TIMELINE_UNITS = {
    "web": f"""
        SELECT
            argMinIf(variant_id, received_at, kind = 'exposure') AS variant_id,
            minIf(received_at, kind = 'exposure') AS entered_at,
            minIf(received_at, kind = 'goal' AND goal_id = {{goal:String}}) AS converted_at,
            countIf(kind = 'goal' AND goal_id = {{goal:String}}) > 0 AS converted
        FROM {_EVENTS}
        WHERE {_SCOPE} AND kind IN ('exposure', 'goal')
        GROUP BY unit_id
        HAVING countIf(kind = 'exposure') > 0""",
    "agent": f"""
        SELECT
            argMin(variant_id, received_at) AS variant_id, min(received_at) AS entered_at,
            minIf(received_at, outcome = 'success') AS converted_at,
            countIf(outcome = 'success') > 0 AS converted
        FROM {_EVENTS} WHERE {_SCOPE} AND kind = 'task' GROUP BY unit_id""",
}
RAW_TIMELINE = {
    kind: f"""
SELECT toDate(point.1) AS day, variant_id, sum(point.2) AS entered, sum(point.3) AS converted
FROM (
    SELECT variant_id, arrayJoin(arrayConcat(
        [(entered_at, 1, 0)],
        if(converted, [(greatest(entered_at, converted_at), 0, 1)], [])
    )) AS point
    FROM ({units})
)
GROUP BY day, variant_id
ORDER BY day, variant_id
"""
    for kind, units in _RAW_TIMELINE_UNITS.items()
}


WORKSPACE = "ws_bench"
NEIGHBOUR = "ws_neighbour"
T0_MS = 1_761_955_200_000  # 2025-11-01 00:00 UTC
DAY_MS = 86_400_000
CHUNK = 1_000_000
# Share of the events of each experiment: (experiment id, kind, share).
EXPERIMENTS = (
    ("exp_web_big", "web", 0.40),
    ("exp_web_2", "web", 0.20),
    ("exp_web_3", "web", 0.15),
    ("exp_agent", "agent", 0.15),
)
NEIGHBOUR_SHARE = 0.10  # the big experiment's id, in another workspace
VARIANTS = ("var_control", "var_treatment")
GOALS = ("goal_signup", "goal_purchase")
# Per unit: exposures ~ 1 + Poisson(0.6); goal 1 for 12% (+1.5 pts in treatment), goal 2
# for 4%, each converter firing 1 + Poisson(0.3) goal rows; so ~1.8 events per unit.
EVENTS_PER_WEB_UNIT = 1.8
TASKS_PER_AGENT_UNIT = 4.0


def _strings(prefix: str, numbers: np.ndarray[Any, Any]) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pa.array(numbers.astype(str)), "")


def _table(n: int, columns: dict[str, Any]) -> pa.Table:
    """An `EVENT_SCHEMA` table of n rows: the given columns, '' / null elsewhere."""
    arrays = []
    for field in EVENT_SCHEMA:
        value = columns.get(field.name)
        if value is None:
            if field.nullable:
                value = pa.nulls(n, field.type)
            elif pa.types.is_dictionary(field.type):
                value = pa.DictionaryArray.from_arrays(
                    pa.array(np.zeros(n, dtype=np.int32)), pa.array([""])
                )
            else:
                value = pa.array(np.full(n, "", dtype=object), pa.string())
        elif isinstance(value, str):
            value = pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(n, dtype=np.int32)), pa.array([value])
            )
        elif isinstance(value, np.ndarray) and value.dtype == np.int64:
            value = pa.array(value, field.type)
        arrays.append(value)
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)


def web_events(
    experiment: str, workspace: str, units: int, rng: np.random.Generator, batch: int = 0
) -> list[pa.Table]:
    """Exposures and goal rows of ``units`` visitors, in tables of about `CHUNK` rows;
    ``batch`` makes the event ids of another batch of the same visitors."""
    out = []
    for start in range(0, units, CHUNK // 2):
        ids = np.arange(start, min(units, start + CHUNK // 2))
        arm = rng.integers(0, 2, ids.size)
        entered = T0_MS + rng.integers(0, 30 * DAY_MS, ids.size)
        exposures = 1 + rng.poisson(0.6, ids.size)
        unit_rows = [np.repeat(ids, exposures)]
        arm_rows = [np.repeat(arm, exposures)]
        time_rows = [np.repeat(entered, exposures) + rng.integers(0, DAY_MS, exposures.sum())]
        kind_rows = [np.zeros(exposures.sum(), dtype=np.int8)]
        goal_rows = [np.full(exposures.sum(), -1)]
        for g, rate in enumerate((0.12, 0.04)):
            p = rate + (0.015 * arm if g == 0 else 0)
            hit = rng.random(ids.size) < p
            fires = np.where(hit, 1 + rng.poisson(0.3, ids.size), 0)
            unit_rows.append(np.repeat(ids, fires))
            arm_rows.append(np.repeat(arm, fires))
            time_rows.append(np.repeat(entered, fires) + rng.integers(0, 3 * DAY_MS, fires.sum()))
            kind_rows.append(np.ones(fires.sum(), dtype=np.int8))
            goal_rows.append(np.full(fires.sum(), g))
        unit, arms, times = (np.concatenate(x) for x in (unit_rows, arm_rows, time_rows))
        kind, goal = np.concatenate(kind_rows), np.concatenate(goal_rows)
        n = unit.size
        values = np.where(goal == 1, np.round(rng.lognormal(3.5, 0.8, n), 2), np.nan)
        out.append(
            _table(
                n,
                {
                    "event_id": _strings(f"{experiment}-{batch}-{start}-", np.arange(n)),
                    "kind": pa.array(np.where(kind == 0, "exposure", "goal"), pa.string()),
                    "workspace_id": workspace,
                    "site_id": "site_bench",
                    "experiment_id": pa.array(np.full(n, experiment, dtype=object), pa.string()),
                    "variant_id": pa.array(np.asarray(VARIANTS, dtype=object)[arms], pa.string()),
                    "unit_id": _strings("visitor-", unit),
                    "goal_id": pa.array(
                        np.asarray(("",) + GOALS, dtype=object)[goal + 1], pa.string()
                    ),
                    "value": pa.array(values, pa.float64(), from_pandas=True),
                    "client_ts": pa.array(times, pa.timestamp("ms", tz="UTC")),
                    "received_at": pa.array(times, pa.timestamp("ms", tz="UTC")),
                },
            )
        )
    return out


def agent_events(
    experiment: str, workspace: str, units: int, rng: np.random.Generator, batch: int = 0
) -> list[pa.Table]:
    """Task rows of ``units`` agent sessions (1 + Poisson(3) tasks each); ``batch`` as for
    `web_events`."""
    out = []
    for start in range(0, units, CHUNK // 4):
        ids = np.arange(start, min(units, start + CHUNK // 4))
        arm = rng.integers(0, 2, ids.size)
        tasks = 1 + rng.poisson(TASKS_PER_AGENT_UNIT - 1, ids.size)
        unit, arms = np.repeat(ids, tasks), np.repeat(arm, tasks)
        n = unit.size
        times = np.repeat(T0_MS + rng.integers(0, 30 * DAY_MS, ids.size), tasks)
        times = times + rng.integers(0, 3_600_000, n)
        outcome = np.asarray(("success", "failure", "partial"), dtype=object)[
            rng.choice(3, n, p=(0.7, 0.2, 0.1))
        ]
        out.append(
            _table(
                n,
                {
                    "event_id": _strings(f"{experiment}-{batch}-{start}-", np.arange(n)),
                    "kind": pa.array(np.full(n, "task", dtype=object), pa.string()),
                    "workspace_id": workspace,
                    "experiment_id": pa.array(np.full(n, experiment, dtype=object), pa.string()),
                    "variant_id": pa.array(np.asarray(VARIANTS, dtype=object)[arms], pa.string()),
                    "unit_id": _strings("run-", unit),
                    "session_id": _strings("run-", unit),
                    "agent_id": pa.array(np.full(n, "agent-1", dtype=object), pa.string()),
                    "name": pa.array(np.full(n, "triage", dtype=object), pa.string()),
                    "outcome": pa.array(outcome, pa.string()),
                    "cost": pa.array(np.round(rng.gamma(2.0, 0.01 - 0.001 * arms), 5)),
                    "duration_ms": pa.array(np.round(rng.lognormal(8, 0.5, n))),
                    "turns": pa.array(1 + rng.poisson(6, n), pa.int32()),
                    "client_ts": pa.array(times, pa.timestamp("ms", tz="UTC")),
                    "received_at": pa.array(times, pa.timestamp("ms", tz="UTC")),
                },
            )
        )
    return out


def spec(experiment: str, kind: str) -> aggregates.ExperimentSpec:
    return aggregates.ExperimentSpec(
        id=experiment,
        workspace_id=WORKSPACE,
        kind="web" if kind == "web" else "agent",
        status="running",
        variants=(
            aggregates.VariantSpec(VARIANTS[0], "Control", True, 5000),
            aggregates.VariantSpec(VARIANTS[1], "Treatment", False, 5000),
        ),
        goals=tuple(aggregates.GoalSpec(g, g, "click") for g in GOALS) if kind == "web" else (),
        primary_metric=None if kind == "web" else "avg_cost",
    )


def _plan(total: int) -> list[tuple[Callable[..., list[pa.Table]], str, str, int]]:
    """(generator, experiment, workspace, units) of about ``total`` events."""
    plan: list[tuple[Callable[..., list[pa.Table]], str, str, int]] = []
    for experiment, kind, share in EXPERIMENTS:
        per_unit = EVENTS_PER_WEB_UNIT if kind == "web" else TASKS_PER_AGENT_UNIT
        make = web_events if kind == "web" else agent_events
        plan.append((make, experiment, WORKSPACE, int(total * share / per_unit)))
    neighbour_units = int(total * NEIGHBOUR_SHARE / EVENTS_PER_WEB_UNIT)
    plan.append((web_events, EXPERIMENTS[0][0], NEIGHBOUR, neighbour_units))
    return plan


def fill(client: Any, total: int, batch: int = 0, only: Sequence[str] = ()) -> tuple[int, float]:
    """Insert about ``total`` events (as the flusher does, so the views keep the state);
    with ``only``, just those experiments' units, again (``batch`` > 0: more events of
    the same units). Returns (rows, seconds)."""
    rng = np.random.default_rng(20251101 + batch)
    rows, seconds = 0, 0.0
    for make, experiment, workspace, units in _plan(total):
        if only and (experiment not in only or workspace != WORKSPACE):
            continue
        for table in make(experiment, workspace, units, rng, batch):
            start = time.perf_counter()
            client.insert_arrow(
                warehouse.EVENTS_TABLE, table, settings=warehouse.insert_settings(uuid.uuid4().hex)
            )
            seconds += time.perf_counter() - start
            rows += table.num_rows
            print(f"  {rows:,} rows inserted", end="\r", flush=True)
    print()
    return rows, seconds


class Timing:
    """One query's runs: the cold one, then the warm ones (wall and CPU seconds; chDB runs
    in this process, so its threads' CPU time is the process's)."""

    def __init__(self, cold: float, warm: list[float], cpu: list[float], answer: object) -> None:
        self.cold = cold
        self.warm = statistics.median(warm)
        self.cpu = statistics.median(cpu)
        self.answer = answer


def timed(call: Callable[[], object], runs: int, client: Any, drop: bool = True) -> Timing:
    if drop:
        client.command("SYSTEM DROP MARK CACHE")
        client.command("SYSTEM DROP UNCOMPRESSED CACHE")
    wall, cpu, answer = [], [], None
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        answer = call()
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    return Timing(wall[0], wall[1:], cpu[1:], answer)


def raw_arms(kind: str, table: pa.Table) -> list[aggregates.ArmAggregates]:
    """`RAW_RESULTS`' answer as one `ArmAggregates` per variant id found in the data (its
    rows: per variant a total row, then one per goal), to check the state's against."""
    rows = table.to_pylist()
    if kind == "agent":
        return [
            aggregates.ArmAggregates(
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
    arms: list[aggregates.ArmAggregates] = []
    for row in rows:  # per variant: its total row first, then its goals
        if row["is_total"]:
            arms.append(aggregates.ArmAggregates(variant_id=row["variant_id"], units=row["units"]))
        elif row["goal_id"]:
            goal = aggregates.GoalAggregates(
                goal_id=row["goal_id"],
                converted=row["converted"],
                value_sum=row["value_sum"],
                value_sumsq=row["value_sumsq"],
                value_p95=_finite(row["value_p95"]),
            )
            arms[-1] = msgspec.structs.replace(arms[-1], goals=(*arms[-1].goals, goal))
    return arms


_AGENT_COLUMNS = ("cost", "duration_ms", "turns")


def _finite(value: Any) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _agree(
    state: list[aggregates.ArmAggregates],
    raw: list[aggregates.ArmAggregates],
    p95_rel: float = 1e-9,
) -> None:
    """The state's answer is the raw events' (counts exactly, sums up to rounding: they
    are added in another order; p95s to ``p95_rel``, a summary's histogram)."""

    def close(a: float | None, b: float | None, rel: float = 1e-9) -> bool:
        return a == b or (a is not None and b is not None and abs(a - b) <= rel * abs(b))

    assert len(state) == len(raw), (state, raw)
    state, raw = (
        [
            msgspec.structs.replace(a, goals=tuple(sorted(a.goals, key=lambda g: g.goal_id)))
            for a in arms
        ]
        for arms in (state, raw)
    )
    for a, b in zip(state, raw, strict=True):
        assert (a.variant_id, a.units, a.converted, a.tasks, a.successful_tasks) == (
            b.variant_id,
            b.units,
            b.converted,
            b.tasks,
            b.successful_tasks,
        ), (a, b)
        assert [(g.goal_id, g.converted) for g in a.goals] == [
            (g.goal_id, g.converted) for g in b.goals
        ], (a, b)
        pairs = [(g.value_sum, h.value_sum) for g, h in zip(a.goals, b.goals, strict=True)]
        pairs += [(g.value_sumsq, h.value_sumsq) for g, h in zip(a.goals, b.goals, strict=True)]
        pairs += [(a.sums[c], b.sums[c]) for c in a.sums]
        pairs += [(a.sumsqs[c], b.sumsqs[c]) for c in a.sumsqs]
        assert all(close(x, y) for x, y in pairs), (a, b)
        p95s = [(g.value_p95, h.value_p95) for g, h in zip(a.goals, b.goals, strict=True)]
        p95s += [(a.p95s[c], b.p95s[c]) for c in a.p95s]
        assert all(close(x, y, p95_rel) for x, y in p95s), (a, b)


# What results and timeline cost from the state: one query gives both.
STATE = "results + timeline, state (one query)"
# ... and from the experiment's kept summary, as a worker reads it (a new reader: the
# summary is fetched and decoded each time).
SUMMARY = "results + timeline, kept summary (read)"


def _read_summary(run: aggregates.QueryRunner, s: aggregates.ExperimentSpec) -> object:
    kept = summaries.SummaryReader(run, wait=0).read(s)
    assert kept is not None, "no current summary"
    return summaries.unit_summary(kept, s)


def _refresh(client: Any, kept: dict[str, summaries.Kept], s: aggregates.ExperimentSpec) -> float:
    """Refresh the experiment's summary as the keeper does; its milliseconds."""
    start = time.perf_counter()
    kept[s.id] = summaries.refresh(client, s, kept.get(s.id))
    return (time.perf_counter() - start) * 1e3


def measure(
    client: Any, runs: int, label: str, kept: dict[str, summaries.Kept]
) -> tuple[list[str], dict[str, dict[str, float]]]:
    """The table's lines for the two measured experiments, and their warm milliseconds;
    ``kept`` holds their summaries, refreshed first (from every unit the first time)."""
    figures: dict[str, dict[str, float]] = {}

    def run(sql: str, parameters: dict[str, Any]) -> pa.Table:
        return client.query_arrow(sql, parameters=parameters)

    lines = []
    table = warehouse.EVENTS_TABLE
    for experiment, kind, _ in (EXPERIMENTS[0], EXPERIMENTS[3]):
        s = spec(experiment, kind)
        params: dict[str, Any] = {"exp": experiment, "ws": WORKSPACE}
        if s.kind == "web":
            params["goal"] = GOALS[0]
        scope = f"SELECT {{q}} FROM {table} WHERE {_SCOPE}"
        events = run(scope.replace("{q}", "count()"), params).column(0)[0].as_py()
        state_rows = (
            run(
                f"SELECT count() FROM {warehouse.UNIT_STATE_TABLE} "
                "WHERE experiment_id = {exp:String} AND workspace_id = {ws:String}",
                params,
            )
            .column(0)[0]
            .as_py()
        )
        cache = aggregates.VersionedCache(run)

        def cached(s: aggregates.ExperimentSpec = s, c: Any = cache) -> object:
            return c.get("summary", s, lambda: aggregates.fetch_summary(run, s))

        queries: list[tuple[str, Callable[[], object]]] = [
            (STATE, lambda s=s: aggregates.fetch_summary(run, s)),
            ("results, raw", lambda k=s.kind, p=params: run(RAW_RESULTS[k], p)),
            ("timeline, raw", lambda k=s.kind, p=params: run(RAW_TIMELINE[k], p)),
            ("count() of the events", lambda p=params: run(scope.replace("{q}", "count()"), p)),
            (
                "uniqExact(unit_id) of the events",
                lambda p=params: run(scope.replace("{q}", "uniqExact(unit_id)"), p),
            ),
        ]
        refresh_ms = _refresh(client, kept, s)
        queries.insert(1, (SUMMARY, lambda s=s: _read_summary(run, s)))
        measured = {name: timed(call, runs, client) for name, call in queries}
        cached()  # the first read computes; the repeats below answer from the cache
        measured["results + timeline, unchanged repeat (cache)"] = timed(
            cached, runs, client, drop=False
        )
        assert cache.hits >= runs - 1
        state_ms = measured[STATE].warm * 1e3
        summary_ms = measured[SUMMARY].warm * 1e3
        raw_ms = (measured["results, raw"].warm + measured["timeline, raw"].warm) * 1e3
        figures[experiment] = {
            "rows": events,
            "state_rows": state_rows,
            "summary_refresh_ms": refresh_ms,
            "state_ms": state_ms,
            "results_ms": summary_ms,
            "raw_results_ms": measured["results, raw"].warm * 1e3,
            "results_timeline_ms": summary_ms,
            "raw_results_timeline_ms": raw_ms,
            "cached_ms": measured["results + timeline, unchanged repeat (cache)"].warm * 1e3,
            "count_ms": measured["count() of the events"].warm * 1e3,
            "uniq_ms": measured["uniqExact(unit_id) of the events"].warm * 1e3,
        }
        where = f"{experiment} ({kind}, {label}: {events:,} events, {state_rows:,} state rows)"
        for name, t in measured.items():
            lines.append(
                f"| {where} | {name} | {t.cold * 1e3:,.1f} ms | {t.warm * 1e3:,.1f} ms "
                f"| {t.cpu * 1e3:,.1f} ms |"
            )
            print(lines[-1], flush=True)
        lines.append(
            f"| {where} | summary refreshed by the keeper before these reads | "
            f"{refresh_ms:,.0f} ms | | |"
        )
        lines.append(
            f"| {where} | **results + timeline: kept summary {summary_ms:,.1f} ms, state "
            f"{state_ms:,.0f} ms, raw {raw_ms:,.0f} ms (raw / summary "
            f"{raw_ms / summary_ms:,.0f})** | | | |"
        )
        answer = measured[STATE].answer
        assert isinstance(answer, aggregates.UnitSummary)
        arms = list(answer.arms)
        _agree(arms, raw_arms(s.kind, measured["results, raw"].answer))  # type: ignore[arg-type]
        from_summary = measured[SUMMARY].answer
        assert isinstance(from_summary, aggregates.UnitSummary)
        assert from_summary.timeline == answer.timeline, "the summary's timeline differs"
        _agree(list(from_summary.arms), arms, p95_rel=1e-3)
        raw_points = measured["timeline, raw"].answer.to_pylist()  # type: ignore[attr-defined]
        assert [tuple(p.values()) for p in raw_points] == [
            (p.day, p.variant_id, p.entered, p.converted) for p in answer.timeline
        ], "the state's timeline is not the raw events'"
        summary = ", ".join(f"{a.variant_id} {a.units:,} units" for a in arms)
        lines.append(f"| | answer (summary = state = raw): {summary} | | | |")
    return lines, figures


def refresh_after_changes(client: Any, kept: dict[str, summaries.Kept], runs: int) -> list[str]:
    """New events for 2,000 and then 20,000 of each experiment's units, each batch
    followed by the keeper's refresh and a read: the table's lines (medians of ``runs``
    batches)."""

    def run(sql: str, parameters: dict[str, Any]) -> pa.Table:
        return client.query_arrow(sql, parameters=parameters)

    lines = []
    for experiment, kind, _ in (EXPERIMENTS[0], EXPERIMENTS[3]):
        s = spec(experiment, kind)
        make = web_events if kind == "web" else agent_events
        for units in (2_000, 20_000):
            refreshes, reads, events = [], [], 0
            for batch in range(runs):
                rng = np.random.default_rng(units + batch)
                for table in make(experiment, WORKSPACE, units, rng, 100 + batch):
                    client.insert_arrow(
                        warehouse.EVENTS_TABLE,
                        table,
                        settings=warehouse.insert_settings(uuid.uuid4().hex),
                    )
                    events += table.num_rows
                refreshes.append(_refresh(client, kept, s))
                start = time.perf_counter()
                _read_summary(run, s)
                reads.append((time.perf_counter() - start) * 1e3)
            lines.append(
                f"| {experiment} | {units:,} | {events // runs:,} | "
                f"{statistics.median(refreshes):,.0f} ms | {statistics.median(reads):,.1f} ms |"
            )
            print(lines[-1], flush=True)
    return lines


def merge(client: Any) -> None:
    """Merge the state's parts, as background merges do in time: one row per unit (and
    per goal it converted on)."""
    start = time.perf_counter()
    client.command(f"OPTIMIZE TABLE {warehouse.UNIT_STATE_TABLE} FINAL")
    print(f"state merged in {time.perf_counter() - start:.1f} s", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000, help="events to insert")
    parser.add_argument("--runs", type=int, default=5, help="runs per query (first is cold)")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args(argv)
    header = [
        "| experiment | query | cold | warm | warm CPU |",
        "|---|---|---:|---:|---:|",
    ]
    measured = [e for e, _, _ in (EXPERIMENTS[0], EXPERIMENTS[3])]
    with tempfile.TemporaryDirectory(prefix="splitedge-bench-results-") as tmp:
        client = warehouse.connect(f"chdb://{tmp}/clickhouse")
        try:
            warehouse.migrate(client)
            print(f"inserting ~{args.events:,} events", flush=True)
            rows, seconds = fill(client, args.events)
            merge(client)
            kept: dict[str, summaries.Kept] = {}
            once, figures = measure(client, args.runs, "1x", kept)
            print("inserting two more batches of the same units' events", flush=True)
            more = [fill(client, args.events, batch, measured) for batch in (1, 2)]
            inserted, figures3_inserted = measure(client, args.runs, "3x as inserted", kept)
            merge(client)
            thrice, figures3 = measure(client, args.runs, "3x merged", kept)
            changes = refresh_after_changes(client, kept, args.runs)
        finally:
            client.close()
    growth = []
    for experiment in measured:
        one, three = figures[experiment], figures3[experiment]
        unmerged = figures3_inserted[experiment]
        ratio = three["results_timeline_ms"] / one["results_timeline_ms"]
        figures[experiment]["growth_3x"] = ratio
        growth.append(
            f"- {experiment}: results + timeline from the kept summary "
            f"{one['results_timeline_ms']:,.1f} ms at 1x, {three['results_timeline_ms']:,.1f} ms "
            f"at 3x the events per unit: **{ratio:.2f}x** (before merging the new state rows: "
            f"{unmerged['results_timeline_ms']:,.1f} ms); the query over every unit's state "
            f"{one['state_ms']:,.0f} -> {three['state_ms']:,.0f} ms; raw events "
            f"{one['raw_results_timeline_ms']:,.0f} -> {three['raw_results_timeline_ms']:,.0f} ms; "
            f"the summary built from every unit in {one['summary_refresh_ms']:,.0f} ms, "
            f"refreshed after the two batches (every unit changed) in "
            f"{unmerged['summary_refresh_ms']:,.0f} ms; unchanged repeat "
            f"{one['cached_ms']:,.1f} ms"
        )
    more_rows = sum(r for r, _ in more)
    more_seconds = sum(t for _, t in more)
    report = [
        *environment("results_query.py", argv, f"chDB {chdb.__version__}"),
        "",
        f"{rows:,} events inserted in {seconds:.1f} s ({rows / seconds:,.0f} rows/s with the "
        f"unit-state views, {CHUNK:,}-row insert_arrow chunks); then {more_rows:,} more of "
        f"the same units in {more_seconds:.1f} s; {args.runs} runs per query.",
        "",
        *growth,
        "",
        "What the keeper's refresh costs when some of the experiment's units get new "
        "events (the units already in it; a new reader each time):",
        "",
        "| experiment | units with new events | new events | refresh | read after it |",
        "|---|---:|---:|---:|---:|",
        *changes,
        "",
        *header,
        *once,
        *inserted,
        *thrice,
    ]
    publish("results_query.py", report, RESULTS_INTRO, args.write, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
