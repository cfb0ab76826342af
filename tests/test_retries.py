"""A client's retried batch counts once (issue 21, "Retries"): the same 500 agent task
events and 500 browser events, sent again after a server restart, leave results,
crewkit's metrics, the timeline (the results page's chart, and `fetch_timeline` on the
stopped server's data), agent stats and drift as they were, through the real server and
its embedded ClickHouse (`analytics.warehouse`, "Exactly once per event id")."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from analytics import warehouse
from analytics.aggregates import TimelinePoint, fetch_timeline
from edge.control.results_api import experiment_spec
from edge.control.store import Store
from tests.support import (
    Seed,
    Server,
    add_experiment,
    api_call,
    api_get,
    clickhouse_rows,
    collect,
    metric,
    running_server,
    seed_store,
    wait_flushed,
    web_events,
)

pytestmark = pytest.mark.server

AGENT = "retry-bot"
NOW_MS = int(time.time() * 1000)
DAY_MS = 86_400_000


def agent_tasks(experiment_id: str, variants: list[str]) -> list[dict[str, Any]]:
    """500 tasks with their own event ids: 250 sessions of two tasks, half of them in the
    drift baseline (10 to 20 days ago), half in the last week; one in ten of these has no
    ``ts`` (the server gives it the receive time, which the retry does not repeat)."""
    rng = np.random.default_rng(21)
    tasks = []
    for i in range(500):
        recent = i % 2 == 0
        tasks.append({
            "event_id": f"task-{i}",
            "agentId": AGENT, "task": "triage",
            "outcome": "success" if rng.random() < (0.6 if recent else 0.8) else "failure",
            "cost": round(float(rng.uniform(0.001, 0.05)), 6),
            "durationMs": 1000.0, "turns": int(rng.integers(1, 20)),
            "experiment_id": experiment_id, "variant_id": variants[(i // 2) % 2],
            "session_id": f"run-{i // 2}",
            "ts": NOW_MS - int(DAY_MS * (rng.uniform(0.1, 6) if recent else rng.uniform(10, 20))),
        })  # fmt: skip
        if i % 10 == 0:
            del tasks[-1]["ts"]
    return tasks


_TIMELINE = re.compile(r'<svg id="timeline".*?</svg>|<p class="empty">No conversions', re.S)


def answers(server: Server, seed: Seed, web_id: str, agent_id: str) -> dict[str, Any]:
    """Every figure computed from the events that the API serves, without the times it
    was computed at and the windows that end now; and the results page's timeline."""
    got: dict[str, Any] = {}
    for experiment_id in (web_id, agent_id):
        for view in ("results", "metrics"):
            path = f"/v1/experiments/{experiment_id}/{view}"
            answer = api_get(server, path, seed.key.key)
            assert answer.status_code == 200, answer.text
            got[path] = answer.json()["data"]
            got[path].pop("computed_at", None)
            report_url = got[path].pop("report_url", None)
            if report_url is not None:
                page = httpx.get(report_url)
                assert page.status_code == 200, page.text
                chart = _TIMELINE.search(page.text)
                assert chart is not None, page.text
                got[f"/reports/{experiment_id}#timeline"] = chart.group(0)
    for view, windows in (
        ("stats", ("since", "until")),
        ("drift", ("baselineDate", "baselineEnd", "recentStart", "recentEnd")),
    ):
        path = f"/v1/agents/{AGENT}/{view}"
        answer = api_get(server, path, seed.key.key)
        assert answer.status_code == 200, answer.text
        got[path] = answer.json()["data"]
        for window in windows:  # they end at the time of the request
            got[path].pop(window)
    return got


def timelines(data: Path, experiment_ids: tuple[str, str]) -> list[list[TimelinePoint]]:
    """The results page's timelines, read from a stopped server's ClickHouse."""
    client = warehouse.connect(f"chdb://{data.resolve() / 'clickhouse'}")
    store = Store(data / "splitedge.sqlite3")
    try:

        def run(sql: str, parameters: dict[str, Any]) -> Any:
            return client.query_arrow(sql, parameters=parameters)

        records = [store.experiment_record(id_, None) for id_ in experiment_ids]
        return [fetch_timeline(run, experiment_spec(r)) for r in records if r is not None]
    finally:
        store.close()
        client.close()


def send(server: Server, seed: Seed, browser: list[dict[str, Any]], tasks: list[dict[str, Any]]
         ) -> None:  # fmt: skip
    assert collect(server, seed.site.public_key, browser) == len(browser)
    answer = api_call(server, seed.key.key, "POST", "/v1/events", tasks)
    assert answer.status_code == 201, answer.text
    assert answer.json()["data"]["ids"] == [t["event_id"] for t in tasks]


def wait_taken(server: Server, rows: int, timeout: float = 60) -> None:
    """Wait until the flusher took ``rows`` events from the spool, stored or dropped as
    duplicates."""
    deadline = time.monotonic() + timeout
    taken = ("splitedge_events_flushed_total", "splitedge_events_duplicate_total")
    while sum(metric(server, name) for name in taken) < rows:
        assert time.monotonic() < deadline, httpx.get(server.base_url + "/metrics").text
        time.sleep(0.2)


def test_a_batch_sent_twice_across_a_restart_counts_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seed = seed_store(data / "splitedge.sqlite3")
    store = Store(data / "splitedge.sqlite3")
    try:
        agent_id, agent_variants, _ = add_experiment(
            store, seed, "Retried prompt", ("control", "retried"), kind="agent"
        )
    finally:
        store.close()
    # 500 browser events with their ids: exposures and goals (with values) of 2 arms.
    browser = web_events(
        seed.experiment_id, seed.variant_ids, seed.goal_id, [(150, 40), (150, 60)], "r"
    )
    assert len(browser) == 500 and len({e["event_id"] for e in browser}) == 500
    tasks = agent_tasks(agent_id, agent_variants)
    experiments = (seed.experiment_id, agent_id)

    with running_server(data) as server:
        send(server, seed, browser, tasks)
        wait_flushed(server, 1000)
        first = answers(server, seed, *experiments)
    assert server.proc.returncode == 0
    first_timelines = timelines(data, experiments)
    assert first[f"/v1/agents/{AGENT}/stats"]["totalTasks"] == 500
    assert all(first_timelines)
    assert first[f"/reports/{seed.experiment_id}#timeline"].startswith('<svg id="timeline"')

    # The client lost both answers and retries after the server restarted, on its data.
    with running_server(data) as server:
        send(server, seed, browser, tasks)
        wait_taken(server, 1000)
        again = answers(server, seed, *experiments)
        counted = [
            metric(server, f"splitedge_events_{name}_total") for name in ("flushed", "duplicate")
        ]
    assert again[f"/v1/agents/{AGENT}/stats"]["totalTasks"] == 500
    assert again == first
    assert timelines(data, experiments) == first_timelines
    assert counted == [0, 1000]
    # The web figures count units, which duplicates would not change: the rows show it.
    sql = "SELECT kind, count(), uniqExact(event_id) FROM splitedge.events GROUP BY kind"
    assert sorted(clickhouse_rows(data, sql)) == [
        ("exposure", 300, 300),
        ("goal", 200, 200),
        ("task", 500, 500),
    ]
