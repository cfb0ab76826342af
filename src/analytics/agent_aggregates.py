"""What an agent's statistics and drift are computed from: per time window, the aggregates
of its task events (`AgentWindow`), the SQL that fetches them, and the same aggregates made
from arrays (`window_from_arrays`, for simulations and tests).

The queries run through a `analytics.aggregates.QueryRunner`, like the experiment results:
a worker passes the warehouse gateway's runner, so embedded chDB is reached through the
parent process. The statistics on top are `analytics.agents`.

What counts (docs/agents.md says it for users):

- the agent's ``task`` rows of the events table (``POST /v1/events``) with the caller's
  workspace **and** the agent id: another workspace's agent of the same name is never read;
- a task belongs to a window by when it happened: ``client_ts``, the event's ``ts``, or the
  time the server received it when the event had none. Windows are half-open,
  ``start <= ts < end``;
- each task is one observation (not the session: ``session_id`` is optional and most agents
  have none); cost, duration and turns are per task, over the tasks that reported them.
  Their moments are kept twice: of the values (for the means the stats report) and of the
  logarithms of the positive values (what the drift compares; a task event without cost or
  duration carries 0, so 0 is "not reported" there).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np
from numpy.typing import ArrayLike

from analytics.aggregates import QueryRunner
from analytics.warehouse import EVENTS_TABLE

__all__ = [
    "MEASURES",
    "OUTCOMES",
    "TASK_LISTING",
    "AgentSpan",
    "AgentWindow",
    "Moments",
    "TimeWindow",
    "fetch_span",
    "fetch_windows",
    "log_moments_of",
    "measures_query",
    "moments_of",
    "tasks_query",
    "window_from_arrays",
]

OUTCOMES = ("success", "failure", "partial")
"""The outcomes a task event can have, in the order the answers list them."""

MEASURES = ("cost", "duration_ms", "turns")
"""The per-task measures, as the events table names them."""

TASK_LISTING = 100
"""How many task names a window lists at most, the most frequent first. An agent that sends
a distinct name per task (``resolve TK-1234``) must not make a query answer millions of
rows; the rest of its tasks are counted together (`AgentWindow.task_counts_complete`)."""


class Moments(msgspec.Struct, frozen=True):
    """One per-task measure in one window: how many tasks reported it, their mean and
    sample variance (0 below 1 and 2 tasks)."""

    n: int = 0
    mean: float = 0.0
    variance: float = 0.0


class AgentWindow(msgspec.Struct, frozen=True):
    """An agent's tasks in one window: their number, per outcome, per task name (the
    `TASK_LISTING` most frequent; ``task_counts_complete`` says whether that is every name
    of the window), the total cost, the `Moments` of each measure (over the tasks that
    reported it) and of its natural logarithm (``log_*``, over the tasks with a value
    above 0)."""

    tasks: int = 0
    outcomes: dict[str, int] = {}
    task_counts: dict[str, int] = {}
    task_counts_complete: bool = True
    cost_total: float = 0.0
    cost: Moments = msgspec.field(default_factory=Moments)
    duration_ms: Moments = msgspec.field(default_factory=Moments)
    turns: Moments = msgspec.field(default_factory=Moments)
    log_cost: Moments = msgspec.field(default_factory=Moments)
    log_duration_ms: Moments = msgspec.field(default_factory=Moments)
    log_turns: Moments = msgspec.field(default_factory=Moments)

    @property
    def successes(self) -> int:
        """Tasks with outcome ``success``."""
        return self.outcomes.get("success", 0)


class TimeWindow(msgspec.Struct, frozen=True):
    """A half-open span of time, ``start <= t < end``, both aware datetimes."""

    start: datetime
    end: datetime


class AgentSpan(msgspec.Struct, frozen=True):
    """Every task of an agent in a workspace: how many, the first and the last (None when
    there are none)."""

    tasks: int
    first_at: datetime | None
    last_at: datetime | None


def moments_of(values: ArrayLike) -> Moments:
    """The `Moments` of the finite values of an array (NaN: a task that did not report the
    measure)."""
    data = np.asarray(values, dtype=np.float64)
    data = data[np.isfinite(data)]
    n = int(data.size)
    if n == 0:
        return Moments()
    mean = float(data.mean())
    return Moments(n, mean, float(data.var(ddof=1)) if n > 1 else 0.0)


def log_moments_of(values: ArrayLike) -> Moments:
    """The `Moments` of the natural logarithm of the values above 0 (NaN, 0 and below:
    not reported)."""
    data = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        positive = data[np.isfinite(data) & (data > 0)]
    return moments_of(np.log(positive))


def window_from_arrays(
    outcomes: Sequence[str] | ArrayLike,
    tasks: Sequence[str] | ArrayLike,
    cost: ArrayLike,
    duration_ms: ArrayLike,
    turns: ArrayLike | None = None,
) -> AgentWindow:
    """The `AgentWindow` of tasks given as parallel arrays, as `fetch_windows` would make
    it from the same events: one element per task; ``turns`` NaN (or None for all) where a
    task did not report them. Every task name is listed."""
    outcome_array = np.asarray(outcomes)
    n = int(outcome_array.size)
    names, counts = np.unique(np.asarray(tasks), return_counts=True)
    cost_array = np.asarray(cost, dtype=np.float64)
    turns_array = np.full(n, np.nan) if turns is None else np.asarray(turns, dtype=np.float64)
    return AgentWindow(
        tasks=n,
        outcomes={o: int(np.count_nonzero(outcome_array == o)) for o in OUTCOMES},
        task_counts={str(name): int(c) for name, c in zip(names, counts, strict=True)},
        cost_total=float(cost_array.sum()),
        cost=moments_of(cost_array),
        duration_ms=moments_of(duration_ms),
        turns=moments_of(turns_array),
        log_cost=log_moments_of(cost_array),
        log_duration_ms=log_moments_of(duration_ms),
        log_turns=log_moments_of(turns_array),
    )


# --- the queries ---------------------------------------------------------------------------

# The agent's task rows in the workspace. The sorting key leads with experiment_id, so this
# reads the task ranges of every experiment (and of the tasks without one) and filters the
# agent there: fine for the tens of millions of rows a single node holds.
_SCOPE = "workspace_id = {ws:String} AND kind = 'task' AND agent_id = {agent:String}"

_SPAN_SQL = f"""
SELECT count() AS tasks, min(client_ts) AS first_at, max(client_ts) AS last_at
FROM {EVENTS_TABLE}
WHERE {_SCOPE}
"""


def _in_window(i: int) -> str:
    return (
        f"(client_ts >= fromUnixTimestamp64Milli({{start{i}:Int64}}, 'UTC') "
        f"AND client_ts < fromUnixTimestamp64Milli({{end{i}:Int64}}, 'UTC'))"
    )


def _window_label(count: int) -> str:
    """Which window a row is in (the first that holds it), as an index; -1 for none."""
    arms = ", ".join(f"{_in_window(i)}, {i}" for i in range(count))
    return f"multiIf({arms}, -1)"


def _measures(column: str) -> str:
    # A NULL (turns not reported) is skipped by count, avg and varSamp, and fails "> 0".
    positive = f"{column} > 0"
    return (
        f"count({column}) AS {column}_n, avg({column}) AS {column}_mean, "
        f"varSampStable({column}) AS {column}_variance, "
        f"countIf({positive}) AS log_{column}_n, "
        f"avgIf(log({column}), {positive}) AS log_{column}_mean, "
        f"varSampStableIf(log({column}), {positive}) AS log_{column}_variance"
    )


def measures_query(count: int) -> str:
    """Per window (of ``count``): tasks, per outcome, total cost and the measures' moments.
    Parameters ``ws``, ``agent`` and ``start{i}`` / ``end{i}`` in epoch milliseconds."""
    outcomes = ", ".join(f"countIf(outcome = '{o}') AS {o}" for o in OUTCOMES)
    return f"""
SELECT
    {_window_label(count)} AS slot,
    count() AS tasks,
    {outcomes},
    sum(ifNull(cost, 0.)) AS cost_total,
    {", ".join(_measures(c) for c in MEASURES)}
FROM {EVENTS_TABLE}
WHERE {_SCOPE} AND slot >= 0
GROUP BY slot
ORDER BY slot
"""


def tasks_query(count: int) -> str:
    """Per window, its task names by frequency, `TASK_LISTING` + 1 at most (one more than
    listed, to tell a complete listing from a cut one). Parameters as `measures_query`."""
    return f"""
SELECT {_window_label(count)} AS slot, name AS task, count() AS tasks
FROM {EVENTS_TABLE}
WHERE {_SCOPE} AND slot >= 0
GROUP BY slot, task
ORDER BY slot, tasks DESC, task
LIMIT {TASK_LISTING + 1} BY slot
"""


def _millis(moment: datetime) -> int:
    return math.floor(moment.timestamp() * 1000)


def _parameters(workspace_id: str, agent_id: str, windows: Sequence[TimeWindow]) -> dict[str, Any]:
    parameters: dict[str, Any] = {"ws": workspace_id, "agent": agent_id}
    for i, window in enumerate(windows):
        parameters[f"start{i}"] = _millis(window.start)
        parameters[f"end{i}"] = _millis(window.end)
    return parameters


def _rows(run: QueryRunner, sql: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
    table = run(sql, parameters)
    # A ClickHouse server may send String columns as Arrow binary.
    for i, field in enumerate(table.schema):
        if str(field.type) == "binary":
            table = table.set_column(i, field.name, table.column(i).cast("string"))
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def _utc(value: Any) -> datetime | None:
    return value.astimezone(UTC) if isinstance(value, datetime) else None


def fetch_span(run: QueryRunner, workspace_id: str, agent_id: str) -> AgentSpan:
    """How many tasks the agent has in the workspace, ever, and when the first and last
    happened (one round trip)."""
    (row,) = _rows(run, _SPAN_SQL, {"ws": workspace_id, "agent": agent_id})
    tasks = int(row["tasks"])
    if tasks == 0:
        return AgentSpan(0, None, None)
    return AgentSpan(tasks, _utc(row["first_at"]), _utc(row["last_at"]))


def _moments(row: dict[str, Any], column: str) -> Moments:
    n = int(row[f"{column}_n"])
    mean, variance = row[f"{column}_mean"], row[f"{column}_variance"]
    if n == 0 or mean is None or not math.isfinite(mean):
        return Moments()
    if n < 2 or variance is None or not math.isfinite(variance):
        return Moments(n, float(mean))
    return Moments(n, float(mean), max(0.0, float(variance)))


def fetch_windows(
    run: QueryRunner,
    workspace_id: str,
    agent_id: str,
    windows: Sequence[TimeWindow],
    with_tasks: bool = True,
) -> list[AgentWindow]:
    """The agent's `AgentWindow` in each window, in order (an empty one where it has no
    task). A task in two overlapping windows counts in the first. ``with_tasks`` also
    fetches the task names (a second round trip)."""
    parameters = _parameters(workspace_id, agent_id, windows)
    found: dict[int, AgentWindow] = {}
    for row in _rows(run, measures_query(len(windows)), parameters):
        found[int(row["slot"])] = AgentWindow(
            tasks=int(row["tasks"]),
            outcomes={o: int(row[o]) for o in OUTCOMES},
            cost_total=float(row["cost_total"]),
            cost=_moments(row, "cost"),
            duration_ms=_moments(row, "duration_ms"),
            turns=_moments(row, "turns"),
            log_cost=_moments(row, "log_cost"),
            log_duration_ms=_moments(row, "log_duration_ms"),
            log_turns=_moments(row, "log_turns"),
        )
    if with_tasks:
        listed: dict[int, dict[str, int]] = {}
        for row in _rows(run, tasks_query(len(windows)), parameters):
            listed.setdefault(int(row["slot"]), {})[row["task"]] = int(row["tasks"])
        for i, names in listed.items():
            complete = len(names) <= TASK_LISTING
            kept = dict(list(names.items())[:TASK_LISTING])
            found[i] = msgspec.structs.replace(
                found[i], task_counts=kept, task_counts_complete=complete
            )
    return [found.get(i, AgentWindow()) for i in range(len(windows))]
