"""``GET /v1/agents/{id}/stats`` and ``/drift`` end to end: a real server, task events sent
through ``POST /v1/events`` with API keys of two workspaces, flushed into embedded
ClickHouse and read back by the worker through the parent's warehouse gateway."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import msgspec
import numpy as np
import pytest

from tests.support import Seed, Server, api_call, api_get, running_server, seed_store, wait_flushed

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
# The server's default value of a successful task (SPLITEDGE_AGENT_VALUE_PER_SUCCESS).
DEFAULT_VALUE = 0.25
DRIFTING, STABLE, SHARED, OTHERS = "support-bot", "stable-bot", "shared agent ü", "b-only-bot"


class Sent(msgspec.Struct):
    """What was sent for one agent of one workspace."""

    events: list[dict[str, Any]]

    def within(self, hours_ago: float) -> list[dict[str, Any]]:
        edge = NOW_MS - hours_ago * HOUR_MS
        return [e for e in self.events if e["ts"] >= edge]

    def between(self, start_hours_ago: float, end_hours_ago: float) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if NOW_MS - start_hours_ago * HOUR_MS <= e["ts"] < NOW_MS - end_hours_ago * HOUR_MS
        ]


class Scenario(msgspec.Struct):
    seed: Seed
    server: Server
    sent: dict[str, Sent]


NOW_MS = int(time.time() * 1000)


def tasks(
    rng: np.random.Generator,
    agent: str,
    n: int,
    days: tuple[float, float],
    success: float,
    cost_factor: float = 1.0,
) -> list[dict[str, Any]]:
    """``n`` tasks between ``days`` ago (from, to), with this success rate: cost around
    0.04 USD times ``cost_factor``, a duration, turns on two tasks in three."""
    events = []
    for i in range(n):
        u = rng.random()
        outcome = "success" if u < success else ("partial" if u < success + 0.03 else "failure")
        event: dict[str, Any] = {
            "agentId": agent,
            "task": str(rng.choice(["resolve-ticket", "refund", "triage"], p=[0.5, 0.3, 0.2])),
            "outcome": outcome,
            "cost": round(0.04 * cost_factor * float(rng.lognormal(-0.18, 0.6)), 6),
            "durationMs": round(float(rng.lognormal(8.0, 0.5)), 1),
            "ts": int(NOW_MS - DAY_MS * float(rng.uniform(days[1], days[0]))),
            "metadata": {"model": "gpt-4o"},
        }
        if i % 3:
            event["turns"] = int(rng.integers(1, 12))
        events.append(event)
    return events


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    data = tmp_path_factory.mktemp("agents") / "data"
    seed = seed_store(data / "splitedge.sqlite3")
    rng = np.random.default_rng(2026)
    # Baselines 10 to 28 days ago (inside the 30-day period, and inside the drift baseline
    # of the 30 days before the last 7), recent tasks in the last 6 days, a few in the
    # last 24 hours. The drifting agent's success drops from 90% to 75% and its cost
    # rises by half; the stable one stays as it was.
    drifting = tasks(rng, DRIFTING, 600, (28, 10), 0.9)
    drifting += tasks(rng, DRIFTING, 280, (6, 1.5), 0.75, cost_factor=1.5)
    drifting += tasks(rng, DRIFTING, 20, (0.9, 0.1), 0.75, cost_factor=1.5)
    stable = tasks(rng, STABLE, 600, (28, 10), 0.9) + tasks(rng, STABLE, 300, (6, 0.1), 0.9)
    shared_a = tasks(rng, SHARED, 40, (5, 1), 1.0)
    shared_b = tasks(rng, SHARED, 60, (5, 1), 0.0)
    others = tasks(rng, OTHERS, 50, (5, 1), 0.5)
    sent = {
        DRIFTING: Sent(drifting),
        STABLE: Sent(stable),
        SHARED: Sent(shared_a),
        "b:" + SHARED: Sent(shared_b),
        "b:" + OTHERS: Sent(others),
    }
    with running_server(
        data, env={"SPLITEDGE_AGENT_VALUE_PER_SUCCESS": str(DEFAULT_VALUE)}
    ) as server:
        total = 0
        for name, what in sent.items():
            key = seed.other_key.key if name.startswith("b:") else seed.key.key
            for i in range(0, len(what.events), 500):
                batch = what.events[i : i + 500]
                answer = api_call(server, key, "POST", "/v1/events", batch)
                assert answer.status_code == 201, answer.text
                total += len(batch)
        wait_flushed(server, total)
        yield Scenario(seed, server, sent)


def get(scenario: Scenario, agent: str, what: str, query: str = "", other: bool = False) -> Any:
    key = scenario.seed.other_key.key if other else scenario.seed.key.key
    path = f"/v1/agents/{quote(agent, safe='')}/{what}" + (f"?{query}" if query else "")
    return api_get(scenario.server, path, key)


def figures(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The stats of these events as the API should compute them."""
    cost = math.fsum(e["cost"] for e in events)
    successes = sum(e["outcome"] == "success" for e in events)
    turns = [e["turns"] for e in events if "turns" in e]
    return {
        "totalTasks": len(events),
        "successfulTasks": successes,
        "failedTasks": sum(e["outcome"] == "failure" for e in events),
        "partialTasks": sum(e["outcome"] == "partial" for e in events),
        "successRate": successes / len(events),
        "totalCost": cost,
        "costPerTask": cost / len(events),
        "avgDurationMs": math.fsum(e["durationMs"] for e in events) / len(events),
        "avgTurns": sum(turns) / len(turns),
    }


def assert_figures(data: dict[str, Any], events: list[dict[str, Any]]) -> None:
    for name, value in figures(events).items():
        assert data[name] == pytest.approx(value, rel=1e-9), name


# --- stats ---------------------------------------------------------------------------------


def test_stats_equal_what_was_sent(scenario: Scenario) -> None:
    answer = get(scenario, DRIFTING, "stats")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    data, meta = body["data"], body["meta"]
    assert meta == {"workspace_id": scenario.seed.workspace_id}
    events = scenario.sent[DRIFTING].events
    assert (data["agentId"], data["period"]) == (DRIFTING, "30d")
    assert_figures(data, events)
    # The server's default value per success: (successes * 0.25 - cost) / cost.
    expected = figures(events)
    net = expected["successfulTasks"] * DEFAULT_VALUE - expected["totalCost"]
    assert data["valuePerSuccess"] == DEFAULT_VALUE
    assert data["netValue"] == pytest.approx(net)
    assert data["netROI"] == pytest.approx(net / expected["totalCost"])
    since = datetime.fromisoformat(data["since"])
    until = datetime.fromisoformat(data["until"])
    assert (until - since).days == 30
    assert abs(until.timestamp() - time.time()) < 60


def test_stats_over_shorter_periods_and_a_value_of_the_request(scenario: Scenario) -> None:
    sent = scenario.sent[DRIFTING]
    week = get(scenario, DRIFTING, "stats", "period=7d&value_per_success=2").json()["data"]
    assert week["period"] == "7d"
    assert_figures(week, sent.within(7 * 24))
    assert week["totalTasks"] == 300
    expected = figures(sent.within(7 * 24))
    assert week["netROI"] == pytest.approx(
        (expected["successfulTasks"] * 2 - expected["totalCost"]) / expected["totalCost"]
    )
    day = get(scenario, DRIFTING, "stats", "period=24h").json()["data"]
    assert day["totalTasks"] == 20
    assert_figures(day, sent.within(24))
    # Each period ends in a gap between the tasks (none 0.9 to 1.5, 6 to 10, 28+ days ago),
    # so the seconds between sending and asking cannot move a task across its start.
    for period, hours in (("90d", 90 * 24), ("1w", 7 * 24), ("200h", 200), ("30d", 720)):
        answer = get(scenario, DRIFTING, "stats", f"period={period}")
        assert answer.status_code == 200, answer.text
        assert answer.json()["data"]["totalTasks"] == len(sent.within(hours))


def test_an_agent_with_no_task_in_the_period_has_empty_figures(scenario: Scenario) -> None:
    data = get(scenario, SHARED, "stats", "period=12h").json()["data"]
    assert data["totalTasks"] == 0 and data["totalCost"] == 0.0
    assert data["successRate"] is None and data["costPerTask"] is None
    assert data["netROI"] is None


def test_stats_count_only_the_workspace_of_the_key(scenario: Scenario) -> None:
    mine = get(scenario, SHARED, "stats").json()["data"]
    assert_figures(mine, scenario.sent[SHARED].events)
    assert mine["successRate"] == 1.0
    theirs = get(scenario, SHARED, "stats", other=True).json()["data"]
    assert_figures(theirs, scenario.sent["b:" + SHARED].events)
    assert theirs["successRate"] == 0.0


def test_another_workspaces_agent_and_an_unknown_one_are_404(scenario: Scenario) -> None:
    for agent in (OTHERS, "never-seen"):
        for what in ("stats", "drift"):
            answer = get(scenario, agent, what)
            assert answer.status_code == 404, answer.text
            error = answer.json()["error"]
            assert error["code"] == "not_found"
            assert "POST /v1/events" in error["message"]
    assert get(scenario, OTHERS, "stats", other=True).status_code == 200
    assert get(scenario, OTHERS, "drift", other=True).status_code == 200


@pytest.mark.parametrize(
    ("what", "query", "says"),
    [
        ("stats", "period=30", "24h, 7d, 30d, 90d"),
        ("stats", "period=0d", "24h, 7d, 30d, 90d"),
        ("stats", "period=1y", "hours, days or weeks"),
        ("stats", "period=4000d", "at most 3660d"),
        ("stats", "value_per_success=-1", "value_per_success must be a number from 0"),
        ("stats", "value_per_success=nan", "value_per_success"),
        ("drift", "window=week", "window must be a number of hours, days or weeks"),
        ("drift", "baseline=-3d", "baseline must be"),
        ("drift", "alpha=0", "alpha must be above 0"),
        ("drift", "alpha=2", "alpha must be a number from 0 to 0.5"),
        ("drift", "baseline_start=yesterday", "ISO 8601"),
        ("drift", "baseline_start=2999-01-01", "before the recent window"),
    ],
)
def test_bad_parameters_are_400_saying_what_to_send(
    scenario: Scenario, what: str, query: str, says: str
) -> None:
    answer = get(scenario, DRIFTING, what, query)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_request" and says in error["message"], error


def test_an_agent_id_longer_than_any_agentid_is_400(scenario: Scenario) -> None:
    answer = get(scenario, "x" * 129, "stats")
    assert answer.status_code == 400 and "1 to 128" in answer.json()["error"]["message"]


def test_without_a_key_is_401(scenario: Scenario) -> None:
    answer = api_get(scenario.server, f"/v1/agents/{DRIFTING}/stats", None)
    assert answer.status_code == 401


# --- drift ---------------------------------------------------------------------------------


def dimensions(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["dimension"]: d for d in data["dimensions"]}


def test_a_drifting_agent_is_drifting(scenario: Scenario) -> None:
    answer = get(scenario, DRIFTING, "drift")
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert data["agentId"] == DRIFTING
    assert data["status"] == "drifting" and 0.5 <= data["driftScore"] <= 1.0
    assert (data["baselineTasks"], data["recentTasks"]) == (600, 300)
    assert data["sufficientData"] is True
    assert data["alpha"] == 0.01 and data["perTestAlpha"] == pytest.approx(0.01 / 6)
    assert data["thresholds"] == {"warningAt": 0.25, "driftingAt": 0.5}
    # The windows: the last 7 days, and the 30 days before them.
    edges = ("baselineDate", "baselineEnd", "recentStart", "recentEnd")
    at = {name: datetime.fromisoformat(data[name]) for name in edges}
    assert at["recentEnd"] - at["recentStart"] == timedelta(days=7)
    assert at["baselineEnd"] - at["baselineDate"] == timedelta(days=30)
    assert at["baselineEnd"] == at["recentStart"]
    found = dimensions(data)
    sent = scenario.sent[DRIFTING]
    baseline, recent = sent.between(37 * 24, 7 * 24), sent.within(7 * 24)
    success = found["success_rate"]
    assert success["baseline"] == pytest.approx(figures(baseline)["successRate"])
    assert success["recent"] == pytest.approx(figures(recent)["successRate"])
    assert success["delta"] == pytest.approx(success["recent"] - success["baseline"])
    assert success["significant"] and success["material"] and success["score"] > 0
    cost = found["cost"]
    geometric = [math.exp(np.mean(np.log([e["cost"] for e in w]))) for w in (baseline, recent)]
    assert cost["baseline"] == pytest.approx(geometric[0], rel=1e-9)
    assert cost["delta"] == pytest.approx(geometric[1] / geometric[0] - 1, rel=1e-9)
    assert cost["significant"] and cost["test"] == "welch_t_log"
    assert found["turns"]["baselineTasks"] == sum("turns" in e for e in baseline)
    top = [change["dimension"] for change in data["topChanges"]]
    assert {"success_rate", "cost"} <= set(top)
    assert [c["score"] for c in data["topChanges"]] == sorted(
        (c["score"] for c in data["topChanges"]), reverse=True
    )
    assert set(found["task_mix"]["baselineShares"]) == {"resolve-ticket", "refund", "triage"}


def test_a_stable_agent_is_healthy(scenario: Scenario) -> None:
    data = get(scenario, STABLE, "drift").json()["data"]
    assert data["status"] == "healthy" and data["driftScore"] < 0.25, data
    assert (data["baselineTasks"], data["recentTasks"]) == (600, 300)


def test_drift_windows_and_the_first_task_as_baseline(scenario: Scenario) -> None:
    sent = scenario.sent[DRIFTING]
    data = get(scenario, DRIFTING, "drift", "baseline_start=first&baseline=7d").json()["data"]
    first = min(e["ts"] for e in sent.events)
    assert datetime.fromisoformat(data["baselineDate"]).timestamp() * 1000 == first
    assert data["baselineTasks"] == len(
        [e for e in sent.events if first <= e["ts"] < first + 7 * DAY_MS]
    )
    # Explicit windows: the last 24 hours hold too few tasks to test anything.
    day = get(scenario, DRIFTING, "drift", "window=24h&baseline=4w").json()["data"]
    assert day["recentTasks"] == 20 and day["sufficientData"] is False
    assert day["driftScore"] == 0.0 and day["status"] == "healthy" and day["topChanges"] == []
    assert day["perTestAlpha"] is None
    start = datetime.fromtimestamp((NOW_MS - 20 * DAY_MS) / 1000, UTC).date().isoformat()
    dated = get(scenario, DRIFTING, "drift", f"baseline_start={start}&alpha=0.05").json()["data"]
    assert dated["baselineDate"].startswith(start) and dated["alpha"] == 0.05
