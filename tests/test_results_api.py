"""``GET /v1/experiments/{id}/results`` and ``/metrics`` end to end: a real server over a
seeded store, events sent through /v1/collect and /v1/events, flushed into embedded
ClickHouse, read back by the worker through the parent's warehouse gateway."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import msgspec
import numpy as np
import pyarrow as pa
import pytest

from analytics.gateway import SOCKET_NAME
from edge.control.records import NewGoal
from edge.control.results_api import YOUNG, ResultsSource, auto_bucket
from edge.control.store import Store
from tests.support import (
    Seed,
    Server,
    add_experiment,
    api_get,
    collect,
    goals,
    running_server,
    seed_store,
    wait_flushed,
    web_events,
)

SIGNUP = NewGoal("Signup", "click", ".signup")


class Scenario(msgspec.Struct):
    """The seeded store, the experiments added to it, and what was sent."""

    seed: Seed
    store_path: Path
    server: Server
    agent_id: str
    agent_variants: list[str]
    srm_id: str
    srm_variants: list[str]
    draft_id: str
    costs: dict[str, list[float]]
    turns: dict[str, list[int]]
    successes: dict[str, int]


def two_proportion_p(c1: int, n1: int, c2: int, n2: int) -> float:
    """The always-valid p-value of two rates (the experiments here have no sample size):
    the mixture SPRT with the pooled variance and a mixing spread of 0.1 per-unit
    standard deviations (docs/statistics.md, section 5)."""
    pooled = (c1 + c2) / (n1 + n2)
    variance = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    tau2 = 0.01 * pooled * (1 - pooled)
    d = c2 / n2 - c1 / n1
    ratio = math.sqrt(variance / (variance + tau2)) * math.exp(
        tau2 * d * d / (2 * variance * (variance + tau2))
    )
    return min(1.0, 1 / ratio)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    data = tmp_path_factory.mktemp("results") / "data"
    store_path = data / "splitedge.sqlite3"
    seed = seed_store(store_path)
    store = Store(store_path)
    try:
        agent_id, agent_variants, _ = add_experiment(
            store, seed, "Concise prompt", ("control", "concise"), kind="agent"
        )
        srm_id, srm_variants, (srm_goal,) = add_experiment(
            store, seed, "Broken split", ("A", "B"), (SIGNUP,), url_pattern="/pricing"
        )
        draft_id, _, _ = add_experiment(
            store, seed, "Not started", ("A", "B"), (SIGNUP,), start=False
        )
    finally:
        store.close()

    rng = np.random.default_rng(7)
    costs: dict[str, list[float]] = {}
    turns: dict[str, list[int]] = {}
    successes: dict[str, int] = {}
    with running_server(data) as server:
        sent = collect(
            server,
            seed.site.public_key,
            web_events(
                seed.experiment_id, seed.variant_ids, seed.goal_id, [(200, 20), (200, 40)], "w"
            ),  # fmt: skip
        )
        # a goal of a visitor never exposed to the experiment does not count
        sent += collect(
            server, seed.site.public_key, goals(seed.experiment_id, seed.goal_id, ["stranger"])
        )
        # The broken split's visitors alternate between desktop and mobile.
        srm_events = web_events(srm_id, srm_variants, srm_goal, [(300, 30), (200, 20)], "s")
        for event in srm_events:
            if event["type"] == "exposure":
                odd = int(event["visitor_id"].rsplit("-", 1)[1]) % 2
                event["device"] = "mobile" if odd else "desktop"
        sent += collect(server, seed.site.public_key, srm_events)
        tasks = []
        for variant_id, rate in zip(agent_variants, (0.6, 0.8), strict=True):
            costs[variant_id], turns[variant_id], successes[variant_id] = [], [], 0
            for unit in range(40):
                session = f"run-{variant_id[:8]}-{unit}"
                unit_cost, unit_turns, succeeded = 0.0, 0, False
                for _ in range(2):  # two tasks per session; cost and turns add up per unit
                    cost = round(float(rng.uniform(0.001, 0.05)), 6)
                    n_turns = int(rng.integers(1, 20))
                    outcome = "success" if rng.random() < rate else "failure"
                    unit_cost, unit_turns = unit_cost + cost, unit_turns + n_turns
                    succeeded = succeeded or outcome == "success"
                    tasks.append({
                        "agentId": "agent-1", "task": "triage", "outcome": outcome,
                        "cost": cost, "durationMs": 1000.0, "turns": n_turns,
                        "experiment_id": agent_id, "variant_id": variant_id,
                        "session_id": session,
                    })  # fmt: skip
                costs[variant_id].append(unit_cost)
                turns[variant_id].append(unit_turns)
                successes[variant_id] += succeeded
        for i in range(0, len(tasks), 100):
            answer = httpx.post(
                server.base_url + "/v1/events",
                json=tasks[i : i + 100],
                headers={"authorization": f"Bearer {seed.key.key}"},
                timeout=10,
            )
            assert answer.status_code == 201, answer.text
        wait_flushed(server, sent + len(tasks))
        yield Scenario(
            seed, store_path, server, agent_id, agent_variants, srm_id, srm_variants, draft_id,
            costs, turns, successes,
        )  # fmt: skip


def test_web_results_match_what_was_sent(scenario: Scenario) -> None:
    seed = scenario.seed
    answer = api_get(scenario.server, f"/v1/experiments/{seed.experiment_id}/results", seed.key.key)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    data, meta = body["data"], body["meta"]
    assert data["experiment_id"] == seed.experiment_id
    assert data["status"] == "collecting"  # 200 units per arm is under the minimum of 500
    assert data["winner"] is None
    control, bold = data["variants"]["Control"], data["variants"]["Bold"]
    assert (control["id"], control["is_control"]) == (seed.variant_ids[0], True)
    assert (control["units"], bold["units"]) == (200, 200)
    assert control["completion"] == pytest.approx(0.10)
    assert bold["completion"] == pytest.approx(0.20)
    assert bold["lift"] == pytest.approx(1.0)
    expected_p = two_proportion_p(20, 200, 40, 200)
    assert bold["p_value"] == pytest.approx(expected_p, rel=1e-6)
    assert data["p_value"] == pytest.approx(expected_p, rel=1e-6)
    assert 0.99 < bold["prob_to_win"] <= 1.0
    assert control["prob_to_win"] == pytest.approx(1 - bold["prob_to_win"], abs=1e-3)
    assert 0 < bold["prob_beat_control"] <= 1 and control["prob_beat_control"] is None
    low, high = bold["lift_interval"]
    assert 0 < low < 1.0 < high
    assert data["lift_interval"] == bold["lift_interval"]
    assert data["expected_loss"] == pytest.approx(bold["expected_loss"])
    assert data["srm_flagged"] is False and data["srm"]["flagged"] is False
    assert data["samples_needed"] >= 300
    assert data["report_url"].startswith(
        f"{scenario.server.base_url}/reports/{seed.experiment_id}?expires="
    )
    assert "&sig=" in data["report_url"]
    assert meta["draws"] > 0 and meta["query_ms"] >= 0 and meta["compute_ms"] >= 0
    assert meta["seed"] == meta["rules"]["seed"]
    assert meta["rules"]["confidence"] == 0.95 and meta["rules"]["method"] == "sequential"
    assert meta["mc_error"] is not None and meta["mc_error"] < 0.01
    assert meta["computed_at"].endswith(("Z", "+00:00"))


def test_results_are_reproducible(scenario: Scenario) -> None:
    seed = scenario.seed
    path = f"/v1/experiments/{seed.experiment_id}/results"
    first = api_get(scenario.server, path, seed.key.key).json()["data"]
    second = api_get(scenario.server, path, seed.key.key).json()["data"]
    first.pop("report_url"), second.pop("report_url")
    assert first == second


def test_web_metrics_in_crewkits_shape(scenario: Scenario) -> None:
    seed = scenario.seed
    answer = api_get(scenario.server, f"/v1/experiments/{seed.experiment_id}/metrics", seed.key.key)
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert data["control"]["total_sessions"] == 200
    assert data["control"]["success_rate"] == pytest.approx(10.0)
    assert data["variant"]["total_sessions"] == 200
    assert data["variant"]["success_rate"] == pytest.approx(20.0)
    assert data["control"]["avg_cost"] is None  # web experiments have no cost
    significance = data["significance"]
    assert significance["p_value"] == pytest.approx(two_proportion_p(20, 200, 40, 200), rel=1e-6)
    assert significance["significant"] is False
    assert significance["confidence"] == 0.95


def test_agent_metrics_match_what_was_sent(scenario: Scenario) -> None:
    seed = scenario.seed
    answer = api_get(scenario.server, f"/v1/experiments/{scenario.agent_id}/metrics", seed.key.key)
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    for arm, variant_id in zip(("control", "variant"), scenario.agent_variants, strict=True):
        costs, turns = scenario.costs[variant_id], scenario.turns[variant_id]
        got = data[arm]
        assert got["variant_id"] == variant_id
        assert got["total_sessions"] == 40
        assert got["success_rate"] == pytest.approx(100 * scenario.successes[variant_id] / 40)
        assert got["avg_cost"] == pytest.approx(sum(costs) / 40, rel=1e-9)
        assert got["avg_turns"] == pytest.approx(sum(turns) / 40, rel=1e-9)
        assert got["p95_cost"] == pytest.approx(float(np.percentile(costs, 95)), rel=1e-9)
    c, v = (scenario.successes[x] for x in scenario.agent_variants)
    assert data["significance"]["p_value"] == pytest.approx(two_proportion_p(c, 40, v, 40))


def test_agent_results_carry_task_completion_and_cost(scenario: Scenario) -> None:
    seed = scenario.seed
    answer = api_get(scenario.server, f"/v1/experiments/{scenario.agent_id}/results", seed.key.key)
    data = answer.json()["data"]
    control = data["variants"]["control"]
    assert control["task_completion"] == pytest.approx(
        scenario.successes[scenario.agent_variants[0]] / 40
    )
    assert control["avg_cost"] == pytest.approx(
        sum(scenario.costs[scenario.agent_variants[0]]) / 40, rel=1e-9
    )
    assert data["status"] == "collecting"


def test_a_broken_split_is_flagged(scenario: Scenario) -> None:
    seed = scenario.seed
    answer = api_get(scenario.server, f"/v1/experiments/{scenario.srm_id}/results", seed.key.key)
    data = answer.json()["data"]
    assert (data["variants"]["A"]["units"], data["variants"]["B"]["units"]) == (300, 200)
    assert data["srm_flagged"] is True
    assert data["srm"]["flagged"] is True
    assert data["srm"]["chi2"] == pytest.approx(20.0)
    assert data["srm"]["p_value"] < 0.001
    assert any("sample ratio mismatch" in w for w in data["warnings"])
    assert data["winner"] is None


def test_the_meta_names_the_config_version_served(scenario: Scenario) -> None:
    seed = scenario.seed
    store = Store(scenario.store_path)
    try:
        latest = store.config_version()
    finally:
        store.close()
    for view in ("results", "metrics"):
        path = f"/v1/experiments/{seed.experiment_id}/{view}"
        meta = api_get(scenario.server, path, seed.key.key).json()["meta"]
        assert meta["config_version"] == latest
        # Nothing changed since the server started: its edge serves the latest version.
        assert meta["served_config_version"] == latest


def test_the_timeline_is_daily_by_default_and_hourly_on_request(scenario: Scenario) -> None:
    seed = scenario.seed
    path = f"/v1/experiments/{seed.experiment_id}/timeline"
    daily = api_get(scenario.server, path, seed.key.key)
    assert daily.status_code == 200, daily.text
    data = daily.json()["data"]
    assert data["bucket"] == "day"
    assert {p["hour"] for p in data["points"]} == {None}
    by_variant: dict[str, list[int]] = {}
    for point in data["points"]:
        totals = by_variant.setdefault(point["variant_id"], [0, 0])
        totals[0] += point["entered"]
        totals[1] += point["converted"]
    assert by_variant == {seed.variant_ids[0]: [200, 20], seed.variant_ids[1]: [200, 40]}
    hourly = api_get(scenario.server, path + "?bucket=hour", seed.key.key).json()["data"]
    assert hourly["bucket"] == "hour"
    assert all(0 <= p["hour"] <= 23 for p in hourly["points"])
    assert sum(p["entered"] for p in hourly["points"]) == 400
    assert sum(p["converted"] for p in hourly["points"]) == 60
    # Started minutes ago: young, so auto is hourly.
    auto = api_get(scenario.server, path + "?bucket=auto", seed.key.key).json()["data"]
    assert auto == hourly
    bad = api_get(scenario.server, path + "?bucket=week", seed.key.key)
    assert bad.status_code == 400
    assert "bucket must be day, hour or auto" in bad.json()["error"]["message"]


def test_auto_buckets_follow_the_runs_age(scenario: Scenario) -> None:
    source = ResultsSource(scenario.store_path, lambda sql, params: pa.table({}))
    experiment = source.experiment(scenario.seed.experiment_id, None)
    assert experiment.started_at is not None
    start = datetime.fromisoformat(experiment.started_at)
    assert auto_bucket(experiment, start + YOUNG - timedelta(seconds=1)) == "hour"
    assert auto_bucket(experiment, start + YOUNG) == "day"
    ended = msgspec.structs.replace(
        experiment, status="completed", ended_at=(start + timedelta(hours=5)).isoformat()
    )
    assert auto_bucket(ended, start + 10 * YOUNG) == "hour"
    assert auto_bucket(msgspec.structs.replace(experiment, started_at=None), start) == "hour"


def test_devices_split_each_arms_units_and_conversions(scenario: Scenario) -> None:
    seed = scenario.seed
    answer = api_get(scenario.server, f"/v1/experiments/{scenario.srm_id}/devices", seed.key.key)
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    a, b = scenario.srm_variants
    rows = [(d["variant_id"], d["name"], d["device"], d["units"], d["conversions"])
            for d in data["devices"]]  # fmt: skip
    assert rows == [
        (a, "A", "desktop", 150, 15),
        (a, "A", "mobile", 150, 15),
        (b, "B", "desktop", 100, 10),
        (b, "B", "mobile", 100, 10),
    ]
    assert data["devices"][0]["rate"] == pytest.approx(0.1)
    store = Store(scenario.store_path)
    try:
        record = store.experiment_record(scenario.srm_id, None)
    finally:
        store.close()
    assert record is not None and data["primary_metric"] == record.goals[0].id
    agent = api_get(scenario.server, f"/v1/experiments/{scenario.agent_id}/devices", seed.key.key)
    agent_data = agent.json()["data"]
    assert agent_data["primary_metric"] == "task_completion"
    assert [(d["device"], d["units"]) for d in agent_data["devices"]] == [("", 40), ("", 40)]


def test_a_draft_without_data_is_collecting(scenario: Scenario) -> None:
    seed = scenario.seed
    answer = api_get(scenario.server, f"/v1/experiments/{scenario.draft_id}/results", seed.key.key)
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert data["status"] == "collecting"
    assert [v["units"] for v in data["variants"].values()] == [0, 0]
    assert data["p_value"] is None and data["srm"] is None
    metrics = api_get(scenario.server, f"/v1/experiments/{scenario.draft_id}/metrics", seed.key.key)
    assert metrics.status_code == 200
    assert metrics.json()["data"]["control"]["total_sessions"] == 0


VIEWS = ["results", "metrics", "timeline", "devices"]


@pytest.mark.parametrize("view", VIEWS)
def test_no_key_or_a_bad_key_is_401(scenario: Scenario, view: str) -> None:
    path = f"/v1/experiments/{scenario.seed.experiment_id}/{view}"
    for key in (None, "sk_live_" + "0" * 40):
        answer = api_get(scenario.server, path, key)
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("view", VIEWS)
def test_another_workspaces_experiment_is_404(scenario: Scenario, view: str) -> None:
    seed = scenario.seed
    theirs = api_get(
        scenario.server, f"/v1/experiments/{seed.other_experiment_id}/{view}", seed.key.key
    )
    unknown = api_get(scenario.server, f"/v1/experiments/{uuid.uuid4()}/{view}", seed.key.key)
    ours_with_their_key = api_get(
        scenario.server, f"/v1/experiments/{seed.experiment_id}/{view}", seed.other_key.key
    )
    for answer in (theirs, unknown, ours_with_their_key):
        assert answer.status_code == 404
        error = answer.json()["error"]
        assert error["code"] == "not_found"
        assert "no experiment" in error["message"]
    # the same answer whether the experiment exists in another workspace or not at all

    def without_id(answer: httpx.Response) -> str:
        message: str = answer.json()["error"]["message"]
        return message.replace(answer.url.path.split("/")[3], "ID")

    assert without_id(theirs) == without_id(unknown)


@pytest.mark.parametrize("bad_id", ["x" * 129, "bad$id", "-leading-dash", "a.b"])
def test_a_malformed_id_is_a_clear_400(scenario: Scenario, bad_id: str) -> None:
    answer = api_get(scenario.server, f"/v1/experiments/{bad_id}/results", scenario.seed.key.key)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "invalid_request"
    assert "not an experiment id" in error["message"]


def test_other_methods_are_405(scenario: Scenario) -> None:
    answer = httpx.post(
        f"{scenario.server.base_url}/v1/experiments/{scenario.seed.experiment_id}/results",
        headers={"authorization": f"Bearer {scenario.seed.key.key}"},
    )
    assert answer.status_code == 405


def test_the_store_loads_an_experiment_only_for_its_workspace(scenario: Scenario) -> None:
    seed = scenario.seed
    store = Store(scenario.store_path)
    try:
        mine = store.experiment_record(seed.experiment_id, seed.workspace_id)
        assert mine is not None
        assert [v.id for v in mine.variants] == seed.variant_ids
        assert [v.is_control for v in mine.variants] == [True, False]
        assert [v.weight_bps for v in mine.variants] == [5000, 5000]
        assert [g.id for g in mine.goals] == [seed.goal_id]
        assert mine.status == "running" and mine.started_at is not None
        assert store.experiment_record(seed.experiment_id, seed.other_site.workspace_id) is None
        assert store.experiment_record("nope", seed.workspace_id) is None
        anywhere = store.experiment_record(seed.other_experiment_id, None)
        assert anywhere is not None and anywhere.workspace_id == seed.other_site.workspace_id
    finally:
        store.close()


def test_the_gateway_down_is_503_with_retry_after(scenario: Scenario) -> None:
    """Take the worker's way to ClickHouse away (the socket file moved aside), then back."""
    run_dir = scenario.store_path.parent / "run"
    socket, aside = run_dir / SOCKET_NAME, run_dir / "moved-aside.sock"
    path = f"/v1/experiments/{scenario.seed.experiment_id}/results"
    socket.rename(aside)
    try:
        answer = api_get(scenario.server, path, scenario.seed.key.key)
    finally:
        aside.rename(socket)
    assert answer.status_code == 503
    assert int(answer.headers["retry-after"]) > 0
    error = answer.json()["error"]
    assert error["code"] == "warehouse_unavailable"
    assert "retry" in error["message"]
    assert api_get(scenario.server, path, scenario.seed.key.key).status_code == 200
