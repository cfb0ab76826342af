"""``/v1/loops`` against a real server (metered plans and a plan without loops) with the
HTML fixture pages served on loopback: the two phases of create, what they validate and
charge, the plan gate, status, idempotent pause and resume with the round's experiment,
the list, and another workspace's loop."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from edge.control import credits
from edge.control.store import Store
from tests.page_server import serve_pages
from tests.support import Server, api_call, running_server

PLANS = {"metered": {"metered": True}, "free": {"metered": True, "loops": False}}
GOAL = {"name": "Choose a plan", "type": "click", "selector": ".cta"}


class Env(msgspec.Struct):
    server: Server
    store_path: Path
    pages: str


class Workspace(msgspec.Struct):
    id: str
    key: str
    site_id: str


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("loops-api")
    plans = root / "plans.json"
    plans.write_text(json.dumps(PLANS))
    data = root / "data"
    Store(data / "splitedge.sqlite3").close()
    with (
        serve_pages() as pages,
        running_server(data, env={"SPLITEDGE_TICK_INTERVAL": "0"},
                       args=["--limits", str(plans), "--allow-private-targets"]) as server,
    ):  # fmt: skip
        yield Env(server, data / "splitedge.sqlite3", pages)


def workspace(env: Env, plan: str = "enterprise", credit: int = 0) -> Workspace:
    store = Store(env.store_path)
    try:
        ws = store.create_workspace(f"ws-{time.monotonic_ns()}", plan=plan)
        if credit:
            credits.grant(store, ws.id, credit)
        site = store.create_site(ws.id, env.pages + "/", name="Acme")
        return Workspace(ws.id, store.issue_api_key(ws.id).key, site.id)
    finally:
        store.close()


def call(env: Env, ws: Workspace, method: str, path: str, body: Any = None) -> httpx.Response:
    return api_call(env.server, ws.key, method, path, body)


def data_of(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()["data"]


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


def balance(env: Env, ws: Workspace) -> int:
    value: int = data_of(call(env, ws, "GET", "/v1/credits"))["balance"]
    return value


def phase_one(env: Env, ws: Workspace) -> dict[str, Any]:
    body = {"site_id": ws.site_id, "target_url": env.pages + "/pricing",
            "element_types": ["headline", "copy"]}  # fmt: skip
    seeds: dict[str, Any] = data_of(call(env, ws, "POST", "/v1/loops", body))
    return seeds


def launch(env: Env, ws: Workspace, **fields: Any) -> dict[str, Any]:
    idea = phase_one(env, ws)["ideas"][0]
    body = {"site_id": ws.site_id, "target_url": env.pages + "/pricing",
            "element_types": ["headline", "copy"], "selected_idea_id": idea["id"],
            "name": "Pricing loop", "primary_goal": GOAL, **fields}  # fmt: skip
    launched: dict[str, Any] = data_of(call(env, ws, "POST", "/v1/loops", body), 201)
    return launched


def test_phase_one_proposes_stored_seed_ideas_and_creates_no_loop(env: Env) -> None:
    ws = workspace(env)
    seeds = phase_one(env, ws)
    assert seeds["phase"] == "seed_ideas" and 3 <= len(seeds["ideas"]) <= 5
    assert "selected_idea_id" in seeds["next_step"]
    for idea in seeds["ideas"]:
        assert idea["mockup_data"]["mutations"], idea
        stored = data_of(call(env, ws, "GET", f"/v1/ideas/{idea['id']}"))
        assert stored["title"] == idea["title"]
    assert data_of(call(env, ws, "GET", "/v1/loops")) == []


def test_phase_two_launches_round_one_as_a_running_experiment(env: Env) -> None:
    ws = workspace(env)
    launched = launch(env, ws, min_round_days=3, max_round_days=14)
    loop, first = launched["loop"], launched["round"]
    assert launched["phase"] == "launched"
    assert (loop["status"], loop["min_round_days"], loop["max_round_days"]) == ("running", 3, 14)
    assert loop["current_round_id"] == first["id"] and first["round_number"] == 1
    assert loop["url_pattern"] == "/pricing"  # the round runs on its page, not site-wide
    assert launched["preview_url"].endswith(f"sk_preview={first['challenger_variant_id']}")
    experiment = data_of(call(env, ws, "GET", f"/v1/experiments/{first['experiment_id']}"))[
        "experiment"
    ]
    assert experiment["status"] == "running"
    assert [v["name"] for v in experiment["variants"]] == ["Champion", "Challenger"]
    assert experiment["variants"][0]["changes"] == []
    assert experiment["variants"][1]["changes"] == first["challenger_changes"] != []
    assert [g["name"] for g in experiment["goals"]] == ["Choose a plan"]

    status = data_of(call(env, ws, "GET", f"/v1/loops/{loop['id']}"))
    assert status["loop"]["id"] == loop["id"] and status["current_round"]["id"] == first["id"]
    assert [r["id"] for r in status["history"]] == [first["id"]]
    eta = status["next_decision_eta"]
    assert eta["decision"] == "wait" and eta["days_needed"] == 3
    assert eta["samples_needed"] == 500 and "500 more samples" in eta["reason"]


@pytest.mark.parametrize(
    ("fields", "status", "code", "text"),
    [
        ({"site_id": None}, 400, "invalid_request", "site_id is required"),
        ({"element_types": ["image"]}, 400, "coming_soon", "image"),
        ({"element_types": ["layout", "headline"]}, 400, "coming_soon", "layout"),
        ({"element_types": ["font"]}, 400, "invalid_request", "font"),
        ({"min_round_days": 10, "max_round_days": 5}, 400, "invalid_request", "exceeds"),
        ({"decision_threshold": 0.5}, 400, "invalid_request", "decision_threshold"),
        ({"name": None}, 400, "invalid_request", "name is required"),
        ({"primary_goal": None}, 400, "invalid_request", "primary_goal is required"),
        ({"selected_idea_id": "nope"}, 404, "not_found", "nope"),
        ({"site_id": "nope"}, 404, "not_found", "nope"),
        ({"target_url": "ftp://x"}, 400, "invalid_request", "target_url"),
        ({"surprise": 1}, 400, "invalid_request", "surprise"),
    ],
)
def test_bad_requests_say_what_to_fix_and_cost_nothing(
    env: Env, fields: dict[str, Any], status: int, code: str, text: str
) -> None:
    ws = workspace(env, plan="metered", credit=100)
    idea = phase_one(env, ws)["ideas"][0]
    before = balance(env, ws)
    body = {"site_id": ws.site_id, "element_types": ["headline"], "selected_idea_id": idea["id"],
            "name": "Loop", "primary_goal": GOAL}  # fmt: skip
    body.update(fields)
    body = {k: v for k, v in body.items() if v is not None}
    error = error_of(call(env, ws, "POST", "/v1/loops", body), status)
    assert error["code"] == code and text in error["message"], error
    assert balance(env, ws) == before
    assert data_of(call(env, ws, "GET", "/v1/loops")) == []


def test_the_calls_cost_what_the_reference_says(env: Env) -> None:
    ws = workspace(env, plan="metered", credit=100)
    seeds = phase_one(env, ws)
    assert balance(env, ws) == 85  # create_loop, phase 1: 15
    body = {"site_id": ws.site_id, "element_types": ["headline"], "name": "Loop",
            "selected_idea_id": seeds["ideas"][1]["id"], "primary_goal": GOAL}  # fmt: skip
    loop = data_of(call(env, ws, "POST", "/v1/loops", body), 201)["loop"]
    assert balance(env, ws) == 70  # phase 2: 15 more
    data_of(call(env, ws, "GET", f"/v1/loops/{loop['id']}"))
    assert balance(env, ws) == 68  # get_loop_status: 2
    data_of(call(env, ws, "POST", f"/v1/loops/{loop['id']}/pause"))
    data_of(call(env, ws, "POST", f"/v1/loops/{loop['id']}/resume"))
    assert balance(env, ws) == 64  # pause_loop, resume_loop: 2 each
    data_of(call(env, ws, "GET", "/v1/loops"))
    assert balance(env, ws) == 64  # the list is free
    # Short of credits: 402, and nothing is created.
    poor = workspace(env, plan="metered", credit=10)
    seeds = {"site_id": poor.site_id, "element_types": ["copy"]}
    error = error_of(call(env, poor, "POST", "/v1/loops", seeds), 402)
    assert error["code"] == "insufficient_credits" and balance(env, poor) == 10


def test_a_plan_without_loops_is_402_plan_required_and_charged_nothing(env: Env) -> None:
    ws = workspace(env, plan="free", credit=100)
    for body in (
        {"site_id": ws.site_id, "element_types": ["headline"]},
        {"site_id": ws.site_id, "element_types": ["headline"], "selected_idea_id": "x",
         "name": "Loop", "primary_goal": GOAL},
    ):  # fmt: skip
        error = error_of(call(env, ws, "POST", "/v1/loops", body), 402)
        assert error["code"] == "plan_required" and "free plan" in error["message"]
    assert balance(env, ws) == 100
    assert data_of(call(env, ws, "GET", "/v1/ideas")) == []  # no seed ideas were authored


def test_pause_and_resume_are_idempotent_and_move_the_round_with_the_loop(env: Env) -> None:
    ws = workspace(env)
    launched = launch(env, ws)
    loop_id, experiment_id = launched["loop"]["id"], launched["round"]["experiment_id"]

    def experiment_status() -> str:
        status: str = data_of(call(env, ws, "GET", f"/v1/experiments/{experiment_id}"))[
            "experiment"
        ]["status"]
        return status

    # Two inconclusive rounds in a row, as the ticker would have counted them.
    store = Store(env.store_path)
    try:
        store.conn.execute("UPDATE loops SET consecutive_inconclusive = 2 WHERE id = ?", (loop_id,))
    finally:
        store.close()
    paused = data_of(call(env, ws, "POST", f"/v1/loops/{loop_id}/pause"))
    assert paused["loop"]["consecutive_inconclusive"] == 2  # pausing keeps the streak
    assert paused["no_op"] is False and paused["loop"]["status"] == "paused"
    assert paused["paused_experiment_id"] == experiment_id and experiment_status() == "paused"
    again = data_of(call(env, ws, "POST", f"/v1/loops/{loop_id}/pause"))
    assert again["no_op"] is True and again["paused_experiment_id"] is None

    before = datetime.now(UTC)
    resumed = data_of(call(env, ws, "POST", f"/v1/loops/{loop_id}/resume"))
    assert resumed["no_op"] is False and resumed["loop"]["status"] == "running"
    assert resumed["resumed_experiment_id"] == experiment_id
    assert resumed["loop"]["consecutive_inconclusive"] == 0
    assert resumed["loop"]["paused_at"] is None and resumed["loop"]["pause_reason"] is None
    due = datetime.fromisoformat(resumed["loop"]["next_tick_at"])
    assert before <= due <= datetime.now(UTC)  # due at once
    assert experiment_status() == "running"
    assert data_of(call(env, ws, "POST", f"/v1/loops/{loop_id}/resume"))["no_op"] is True
    error = error_of(call(env, ws, "POST", f"/v1/loops/{loop_id}/stop"), 404)
    assert error["code"] == "not_found"


def test_the_list_pages_newest_first(env: Env) -> None:
    ws = workspace(env)
    ids = [launch(env, ws)["loop"]["id"] for _ in range(3)]
    page = call(env, ws, "GET", "/v1/loops?limit=2")
    assert [loop["id"] for loop in data_of(page)] == ids[::-1][:2]
    assert page.json()["meta"]["total"] == 3
    rest = data_of(call(env, ws, "GET", "/v1/loops?limit=2&offset=2"))
    assert [loop["id"] for loop in rest] == ids[:1]
    error = error_of(call(env, ws, "GET", "/v1/loops?limit=0"), 400)
    assert "limit" in error["message"]


def test_another_workspaces_loop_is_404_everywhere(env: Env) -> None:
    owner, other = workspace(env), workspace(env)
    loop_id = launch(env, owner)["loop"]["id"]
    for method, path in (
        ("GET", f"/v1/loops/{loop_id}"),
        ("POST", f"/v1/loops/{loop_id}/pause"),
        ("POST", f"/v1/loops/{loop_id}/resume"),
    ):
        error = error_of(call(env, other, method, path), 404)
        assert loop_id in error["message"] and "GET /v1/loops" in error["message"]
    assert data_of(call(env, other, "GET", "/v1/loops")) == []
    # Nor may it launch a loop from the owner's seed idea on its own site.
    idea = phase_one(env, owner)["ideas"][0]
    body = {"site_id": other.site_id, "element_types": ["headline"], "name": "Loop",
            "selected_idea_id": idea["id"], "primary_goal": GOAL}  # fmt: skip
    assert call(env, other, "POST", "/v1/loops", body).status_code == 404
