"""Verdicts that stay (issue 21, item 5), through a real server and its embedded ClickHouse:
a web experiment completed with a clear winner keeps its status, winner and p-value,
without a sample-ratio warning, through deploy, promote and archive; an agent experiment
the decider stopped on its cost guardrail keeps the guardrail and its reason in the
results; and the store keeps the weights an experiment ran with and its first verdict."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import numpy as np
import pytest

from edge.control.records import ExperimentVerdict
from edge.control.store import Store
from tests.support import (
    Seed,
    Server,
    api_call,
    collect,
    running_server,
    seed_store,
    wait_flushed,
    web_events,
)

pytestmark = pytest.mark.server


class Env(msgspec.Struct):
    server: Server
    seed: Seed


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data = tmp_path_factory.mktemp("verdicts") / "data"
    seed = seed_store(data / "splitedge.sqlite3")
    decider = {"SPLITEDGE_DECISION_INTERVAL": "0.5"}
    with running_server(data, env=decider, args=["--dev"]) as server:
        yield Env(server, seed)


def call(env: Env, method: str, path: str, body: Any = None) -> httpx.Response:
    return api_call(env.server, env.seed.key.key, method, path, body)


def results(env: Env, experiment_id: str) -> dict[str, Any]:
    answer = call(env, "GET", f"/v1/experiments/{experiment_id}/results")
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


def verdict(data: dict[str, Any]) -> tuple[Any, ...]:
    """What must not change once the experiment ended."""
    return data["status"], data["winner"], data["guardrail"], data["p_value"]


def test_a_winner_stays_through_deploy_promote_and_archive(env: Env) -> None:
    seed = env.seed
    sent = collect(
        env.server,
        seed.site.public_key,
        web_events(
            seed.experiment_id, seed.variant_ids, seed.goal_id, [(600, 60), (600, 150)], "w"
        ),
    )  # fmt: skip
    wait_flushed(env.server, sent)
    completed = call(env, "PATCH", f"/v1/experiments/{seed.experiment_id}", {"action": "complete"})
    assert completed.status_code == 200, completed.text
    ended = results(env, seed.experiment_id)
    assert ended["status"] == "significant" and ended["winner"] == "Bold"
    assert ended["p_value"] < 0.001 and not ended["srm_flagged"]
    assert not any("sample ratio" in w for w in ended["warnings"])

    deployed = call(
        env, "POST", f"/v1/experiments/{seed.experiment_id}/deploy", {"variant": "Bold"}
    )
    assert deployed.status_code == 200, deployed.text
    one = f"/v1/experiments/{seed.experiment_id}"
    steps = [
        ("deployed", None),
        ("promoted again", ("POST", f"{one}/promote", {"variant": "Bold"}, 409)),  # final
        ("archived", ("PATCH", one, {"action": "archive"}, 200)),
    ]
    for step, move in steps:
        if move is not None:
            method, path, body, status = move
            assert call(env, method, path, body).status_code == status, step
        after = results(env, seed.experiment_id)
        assert verdict(after) == verdict(ended), step
        assert not after["srm_flagged"], (step, after["warnings"])
        units = {name: arm["units"] for name, arm in after["variants"].items()}
        assert units == {"Control": 600, "Bold": 600}, step


def launch_agent_experiment(env: Env, **fields: Any) -> dict[str, Any]:
    body = {
        "site_id": env.seed.site.id,
        "name": "verdicts: cost guardrail",
        "variants": [
            {"name": "control", "soul_md": "You are careful."},
            {"name": "sloppy", "soul_md": "Answer fast."},
        ],
        "primary_metric": "task_completion",
        "auto_launch": True,
        **fields,
    }
    created = call(env, "POST", "/v1/experiments", body)
    assert created.status_code == 201, created.text
    experiment: dict[str, Any] = created.json()["data"]["experiment"]
    deadline = time.monotonic() + 5
    while True:  # events may name it once the edge serves it
        assigned = call(env, "POST", "/v1/assign", {"site_id": env.seed.site.id, "unit_id": "u"})
        if experiment["id"] in [a["experiment_id"] for a in assigned.json()["data"]["assignments"]]:
            return experiment
        assert time.monotonic() < deadline, "the edge did not serve the experiment in 5 s"
        time.sleep(0.05)


def test_a_guardrail_stop_keeps_its_reason(env: Env) -> None:
    experiment = launch_agent_experiment(env, sample_size=2000, max_cost_increase=0.3)
    rng = np.random.default_rng(2)
    events = [
        {
            "agentId": f"agent-{arm}", "task": "triage", "outcome": "success",
            "cost": float(rng.normal(mean, mean / 5)), "durationMs": 1000, "turns": 3,
            "experiment_id": experiment["id"], "variant_id": variant["id"],
            "session_id": f"{experiment['id']}-{arm}-{n}",
        }
        for arm, (variant, mean) in enumerate(zip(experiment["variants"], (0.010, 0.025)))
        for n in range(150)
    ]  # fmt: skip
    assert call(env, "POST", "/v1/events", events).status_code == 201
    deadline = time.monotonic() + 30
    while call(env, "GET", f"/v1/experiments/{experiment['id']}").json()["data"]["experiment"][
        "status"
    ] != ("completed"):
        assert time.monotonic() < deadline, "the decider did not stop the experiment in 30 s"
        time.sleep(0.2)
    for step in ("stopped", "archived"):
        data = results(env, experiment["id"])
        assert data["status"] == "guardrail", (step, data)
        assert data["guardrail"] == "sloppy" and data["winner"] is None
        assert any("beyond the bound of 30%" in w for w in data["warnings"]), data["warnings"]
        archived = call(env, "PATCH", f"/v1/experiments/{experiment['id']}", {"action": "archive"})
        assert archived.status_code == (200 if step == "stopped" else 409)


def test_the_store_keeps_the_run_weights_and_the_first_verdict(tmp_path: Path) -> None:
    seed = seed_store(tmp_path / "store.sqlite3")
    store = Store(tmp_path / "store.sqlite3")
    try:
        experiment, (control, bold) = seed.experiment_id, seed.variant_ids
        assert store.experiment_verdict(experiment) is None  # still running
        store.set_experiment_status(experiment, "completed")
        ended = store.experiment_record(experiment, seed.workspace_id)
        assert ended is not None
        store.record_verdict(experiment, "significant", bold, None, None)
        store.record_verdict(experiment, "no_winner", None, None, None)  # the first stays
        store.promote_variant(experiment, bold)
        promoted = store.experiment_record(experiment, seed.workspace_id)
        assert promoted is not None and promoted.ended_at == ended.ended_at
        assert store.experiment_verdict(experiment) == ExperimentVerdict(
            {control: 5000, bold: 5000}, "significant", bold
        )
    finally:
        store.close()
