"""Automatic decisions end to end (edge.control.decisions): a real server (decision passes
every half second, dev mode) takes agent task events through POST /v1/events, and a real
local receiver gets the signed webhooks: a much worse arm stops the experiment early
(experiment.stopped with the reason), so does an arm beyond the cost bound, and equal arms
at their sample size end with experiment.sample_reached then experiment.no_winner."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import numpy as np
import pytest

from splitedge_client import ApiError, Client
from tests.support import Seed, Server, api_call, running_server, seed_store
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.server

SERVER_ENV = {
    "SPLITEDGE_DECISION_INTERVAL": "0.5",
    "SPLITEDGE_WEBHOOK_BACKOFF": "0.3",
    "SPLITEDGE_WEBHOOK_BACKOFF_CAP": "0.6",
}
# The fleet's true success rates, by variant.
RATES = {"control": 0.82, "concise": 0.91}
DECISION_EVENTS = [
    "experiment.sample_reached", "experiment.winner_declared", "experiment.no_winner",
    "experiment.stopped", "experiment.completed",
]  # fmt: skip


class Env(msgspec.Struct):
    server: Server
    seed: Seed
    receiver: Receiver


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data = tmp_path_factory.mktemp("decisions") / "data"
    seed = seed_store(data / "splitedge.sqlite3")
    receiver = Receiver()
    receiver.thread.start()
    try:
        with running_server(data, env=SERVER_ENV, args=["--dev"]) as server:
            yield Env(server, seed, receiver)
    finally:
        receiver.http.shutdown()
        receiver.http.server_close()


def call(env: Env, method: str, path: str, body: Any = None) -> httpx.Response:
    return api_call(env.server, env.seed.key.key, method, path, body)


def launch_agent_experiment(env: Env, path: str, **fields: Any) -> dict[str, Any]:
    """A running two-arm agent experiment, and a webhook for its decisions at ``path``."""
    hook = call(env, "POST", "/v1/webhooks", {"url": env.receiver.url(path),
                                               "events": DECISION_EVENTS})  # fmt: skip
    assert hook.status_code == 201, hook.text
    env.receiver.secrets[path] = hook.json()["data"]["secret"]
    body = {
        "site_id": env.seed.site.id,
        "name": f"decisions {path}",
        "variants": [
            {"name": "control", "soul_md": "You are careful."},
            {"name": "sloppy", "soul_md": "Answer fast."},
        ],
        "primary_metric": "task_completion",
        "confidence": 0.95,
        "auto_launch": True,
        **fields,
    }
    created = call(env, "POST", "/v1/experiments", body)
    assert created.status_code == 201, created.text
    experiment: dict[str, Any] = created.json()["data"]["experiment"]
    assert experiment["status"] == "running"
    # Events may name it once the edge serves it (within a second of the launch).
    deadline = time.monotonic() + 5
    while True:
        assigned = call(env, "POST", "/v1/assign", {"site_id": env.seed.site.id, "unit_id": "u"})
        ids = [a["experiment_id"] for a in assigned.json()["data"]["assignments"]]
        if experiment["id"] in ids:
            return experiment
        assert time.monotonic() < deadline, "the edge did not serve the experiment in 5 s"
        time.sleep(0.05)


def send_tasks(
    env: Env,
    experiment: dict[str, Any],
    sessions: int,
    success: tuple[float, float],
    cost: tuple[float, float],
    seed: int,
    sessions_from: int = 0,
    exact: bool = False,
) -> None:
    """Sessions ``sessions_from`` to ``sessions - 1`` of each arm, one task each, with
    these success rates and mean costs (control first): drawn at random, or ``exact``,
    spread evenly so that every arm has exactly its rate."""
    rng = np.random.default_rng(seed)
    events = []
    for arm, variant in enumerate(experiment["variants"]):
        rate = success[arm]
        for n in range(sessions_from, sessions):
            won = int((n + 1) * rate) > int(n * rate) if exact else rng.random() < rate
            events.append({
                "agentId": f"agent-{arm}", "task": "triage",
                "outcome": "success" if won else "failure",
                "cost": float(rng.normal(cost[arm], cost[arm] / 5)), "durationMs": 1000,
                "turns": 3, "experiment_id": experiment["id"], "variant_id": variant["id"],
                "session_id": f"{experiment['id']}-{arm}-{n}",
            })  # fmt: skip
    for start in range(0, len(events), 500):
        sent = call(env, "POST", "/v1/events", events[start : start + 500])
        assert sent.status_code == 201, sent.text


def received(env: Env, path: str, count: int, timeout: float = 30) -> dict[str, dict[str, Any]]:
    """The first ``count`` deliveries at ``path`` by event, each checked against its
    signature (they are sent concurrently: their order is not the events' order)."""
    deliveries = env.receiver.wait_for(path, count, timeout)
    assert all(d.verified for d in deliveries), "a delivery failed the documented check"
    bodies = [json.loads(d.body) for d in deliveries]
    return {body["event"]: body for body in bodies}


def queued_events(env: Env, path: str) -> list[str]:
    """The events queued for the endpoint at ``path``, oldest first (its delivery log)."""
    hooks = call(env, "GET", "/v1/webhooks?limit=100").json()["data"]
    (hook,) = [h for h in hooks if h["url"] == env.receiver.url(path)]
    log = call(env, "GET", f"/v1/webhooks/{hook['id']}/deliveries").json()["data"]
    return [delivery["event"] for delivery in reversed(log)]


def quoted_p_value(reason: str) -> float:
    """The p-value a guardrail's reason quotes (``... (p = 2.91e-12...``)."""
    match = re.search(r"\(p = ([0-9.e+-]+)", reason)
    assert match is not None, reason
    return float(match.group(1))


def status_of(env: Env, experiment_id: str) -> str:
    answer = call(env, "GET", f"/v1/experiments/{experiment_id}").json()["data"]
    status: str = answer["experiment"]["status"]
    return status


def test_a_much_worse_arm_stops_the_experiment_early(env: Env) -> None:
    experiment = launch_agent_experiment(env, "/worse", sample_size=2000)
    # 150 sessions per arm: far below the sample size, above the early minimum.
    send_tasks(env, experiment, 150, success=(0.9, 0.45), cost=(0.01, 0.01), seed=1)
    events = received(env, "/worse", 2)
    assert set(events) == {"experiment.stopped", "experiment.completed"}
    stopped = events["experiment.stopped"]
    assert stopped["experiment_id"] == experiment["id"] and stopped["status"] == "completed"
    assert stopped["guardrail"] == "sloppy"
    assert stopped["guardrail_variant_id"] == experiment["variants"][1]["id"]
    assert stopped["reason"].startswith(
        "sloppy is significantly worse than the control on the primary metric"
    )
    assert stopped["variants"]["sloppy"]["units"] == 150
    # The payload's p-value is the one the stop was decided on, which the reason quotes.
    assert stopped["p_value"] == pytest.approx(quoted_p_value(stopped["reason"]), rel=1e-2)
    assert status_of(env, experiment["id"]) == "completed"
    # The stop is in the audit trail, decided by the server (no key).
    trail = call(env, "GET", f"/v1/audit?target_id={experiment['id']}").json()["data"]
    assert trail[0]["action"] == "experiment.complete" and trail[0]["key_id"] is None
    assert trail[0]["detail"]["outcome"] == "stopped"


def test_an_arm_beyond_the_cost_bound_stops_the_experiment(env: Env) -> None:
    experiment = launch_agent_experiment(env, "/dear", sample_size=2000, max_cost_increase=0.3)
    # Before any task, the cost bound has nothing to test: results, not a 500.
    fresh = call(env, "GET", f"/v1/experiments/{experiment['id']}/results")
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["data"]["status"] == "collecting"
    send_tasks(env, experiment, 150, success=(0.9, 0.9), cost=(0.010, 0.025), seed=2)
    stopped = received(env, "/dear", 2)["experiment.stopped"]
    assert stopped["guardrail"] == "sloppy"
    assert "costs" in stopped["reason"] and "beyond the bound of 30%" in stopped["reason"]
    # The cost test's p-value, not the primary metric's (equal success rates: near 1).
    assert stopped["p_value"] < 1e-6
    assert stopped["p_value"] == pytest.approx(quoted_p_value(stopped["reason"]), rel=1e-2)
    costs = {name: arm["avg_cost"] for name, arm in stopped["variants"].items()}
    assert costs["control"] == pytest.approx(0.010, rel=0.1)
    assert costs["sloppy"] == pytest.approx(0.025, rel=0.1)


def test_equal_arms_at_their_sample_size_end_without_a_winner(env: Env) -> None:
    experiment = launch_agent_experiment(env, "/equal", sample_size=300)
    send_tasks(env, experiment, 299, success=(0.8, 0.8), cost=(0.01, 0.01), seed=3, exact=True)
    time.sleep(2)  # a few passes: one session short of the sample size, nothing happens
    assert env.receiver.at("/equal") == [] and status_of(env, experiment["id"]) == "running"
    send_tasks(
        env, experiment, 300, (0.8, 0.8), (0.01, 0.01), seed=4, sessions_from=299, exact=True
    )
    events = received(env, "/equal", 3)
    assert set(events) == {
        "experiment.sample_reached", "experiment.no_winner", "experiment.completed",
    }  # fmt: skip
    reached, verdict = events["experiment.sample_reached"], events["experiment.no_winner"]
    # Delivered concurrently, but queued in this order: the endpoint's delivery log says so.
    assert queued_events(env, "/equal") == [
        "experiment.sample_reached", "experiment.no_winner", "experiment.completed",
    ]  # fmt: skip
    assert reached["sample_size"] == 300
    assert verdict["winner"] is None and verdict["confidence"] == 0.95
    assert {arm["units"] for arm in verdict["variants"].values()} == {300}
    assert status_of(env, experiment["id"]) == "completed"


def test_an_agent_fleet_through_the_sdk_gets_the_right_winner(env: Env) -> None:
    """Two prompts with true success rates 0.82 and 0.91 and different costs, run by a
    simulated fleet that assigns and reports through the SDK (`splitedge_client`): at the
    sample size the better prompt is declared the winner, in a signed webhook whose
    avg_cost per arm is the simulated one."""
    hook = call(env, "POST", "/v1/webhooks", {"url": env.receiver.url("/fleet"),
                                               "events": DECISION_EVENTS})  # fmt: skip
    env.receiver.secrets["/fleet"] = hook.json()["data"]["secret"]
    # ClawSplit's quickstart body: no site, the prompts as soul_md.
    created = call(env, "POST", "/v1/experiments", {
        "name": "concise-vs-verbose-soulmd",
        "variants": [
            {"name": "control", "soul_md": "You are a helpful assistant..."},
            {"name": "concise", "soul_md": "Be concise and direct..."},
        ],
        "sample_size": 500, "primary_metric": "task_completion", "confidence": 0.95,
        "auto_launch": True,
    })  # fmt: skip
    assert created.status_code == 201, created.text
    experiment_id = created.json()["data"]["experiment"]["id"]
    # Per prompt: the true success rate and mean cost of a run.
    truth = {
        "You are a helpful assistant...": (RATES["control"], 0.0034),
        "Be concise and direct...": (RATES["concise"], 0.0021),
    }
    # One random stream per arm: an arm's k-th run draws the same cost and outcome
    # whichever visitors the (random) experiment id assigns to it, so the data, not the
    # luck of the assignment, decide the verdict (z about 4.4 at 500 runs per arm).
    rngs = {"control": np.random.default_rng(1), "concise": np.random.default_rng(2)}
    costs: dict[str, list[float]] = {"control": [], "concise": []}
    deadline = time.monotonic() + 5
    # A patient assign: this test counts the server's answers, and a loaded machine must not
    # turn one into a fallback (tests/test_sdk_resilience.py tests those).
    with Client(env.server.base_url, env.seed.key.key, assign_timeout=30) as fleet:
        while True:  # the edge serves the launch within a second
            try:
                fleet.assign(experiment_id, "warm-up", strict=True)
                break
            except ApiError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        # Every run is assigned before any reports: the decision, which completes the
        # experiment (assign then answers uncounted), can come before the last report lands.
        assigned = fleet.assign_many(experiment_id, [f"run-{run}" for run in range(1300)])
        for variant in assigned:
            assert variant is not None
            rate, mean_cost = truth[variant.payload["soul_md"]]
            rng = rngs[variant.variant_name]
            cost = max(0.0, float(rng.normal(mean_cost, mean_cost / 5)))
            costs[variant.variant_name].append(cost)
            outcome = "success" if rng.random() < rate else "failure"
            fleet.track_task("support-bot", "refund", outcome, cost=cost, turns=4,
                             duration_ms=900, assignment=variant)  # fmt: skip
        fleet.flush(timeout=30)
    assert min(len(c) for c in costs.values()) >= 500  # both arms reach the sample size
    events = received(env, "/fleet", 3)
    assert set(events) == {
        "experiment.sample_reached", "experiment.winner_declared", "experiment.completed",
    }  # fmt: skip
    verdict = events["experiment.winner_declared"]
    assert verdict["experiment_id"] == experiment_id
    assert verdict["experiment_name"] == "concise-vs-verbose-soulmd"
    assert verdict["winner"] == "concise" and verdict["p_value"] < 0.05
    # The top-level figures are the winner's, as its arm shows them.
    assert verdict["p_value"] == verdict["variants"]["concise"]["p_value"]
    assert verdict["winner_variant_id"] == verdict["variants"]["concise"]["variant_id"]
    assert verdict["confidence"] == 0.95
    for name, arm in verdict["variants"].items():
        # The decision may come before the last batches land: a subset of the runs.
        assert 500 <= arm["units"] <= len(costs[name])
        assert arm["avg_cost"] == pytest.approx(float(np.mean(costs[name])), rel=0.03)
        assert arm["task_completion"] == pytest.approx(RATES[name], abs=0.05)
