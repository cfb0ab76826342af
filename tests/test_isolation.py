"""Isolation between workspaces: workspace A's key, tried on every route the OpenAPI
document lists with workspace B's ids in the path, and on every route that takes an id in
its body or query, gets a 404 (or an empty list) every time, and nothing of B changes.

The routes come from the running server's /openapi.json, so a route added later is
tried too; a path parameter this test has no id for fails the test until it gets one."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from edge.config import MutationConfig
from edge.control.idea_records import NewIdea
from edge.control.ideas import add_idea
from edge.control.loop_records import LoopConfig, LoopGoal
from edge.control.loops import create_loop
from edge.control.schedule_records import ScheduleSettings
from edge.control.schedules import create_schedule
from edge.control.store import Store
from tests.support import Seed, Server, api_call, running_server, seed_store, wait_flushed


class Env(msgspec.Struct):
    server: Server
    store_path: Path
    seed: Seed
    ids: dict[str, str]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data = tmp_path_factory.mktemp("isolation") / "data"
    store_path = data / "splitedge.sqlite3"
    seed = seed_store(store_path)
    store = Store(store_path)
    try:
        idea = add_idea(
            store,
            seed.other_site.workspace_id,
            seed.other_site.id,
            NewIdea(
                title="B's idea",
                mockup_data={"mutations": [{"selector": "h1", "action": "set_content"}]},
            ),
        )
        b_loop, _ = create_loop(
            store, seed.other_site.workspace_id, None,
            LoopConfig("B's loop", seed.other_site.id, seed.other_site.url, ("headline",),
                       LoopGoal("click", "click", "a")),
            (MutationConfig("h1", "set_content", "B"),), None, datetime.now(UTC),
        )  # fmt: skip
        b_schedule = create_schedule(
            store, seed.other_site.workspace_id, seed.other_key.record.id, seed.other_site.id,
            ScheduleSettings(enabled=True), datetime.now(UTC),
        )  # fmt: skip
    finally:
        store.close()
    with running_server(data, args=["--dev"]) as server:
        hook = httpx.post(
            server.base_url + "/v1/webhooks",
            headers={"authorization": f"Bearer {seed.other_key.key}"},
            json={"url": "http://127.0.0.1:9/b", "events": ["experiment.completed"]},
            timeout=30,
        )
        assert hook.status_code == 201, hook.text
        # An agent of B's with task events in ClickHouse: A must not see its stats or drift.
        tasks = [{"agentId": "b-agent", "task": "t", "outcome": "success", "cost": 0.1}] * 40
        sent = api_call(server, seed.other_key.key, "POST", "/v1/events", tasks)
        assert sent.status_code == 201, sent.text
        wait_flushed(server, len(tasks))
        own = api_call(server, seed.other_key.key, "GET", "/v1/agents/b-agent/stats")
        assert own.status_code == 200 and own.json()["data"]["totalTasks"] == 40, own.text
        ids = {
            "site_id": seed.other_site.id,
            "experiment_id": seed.other_experiment_id,
            "webhook_id": hook.json()["data"]["id"],
            "idea_id": idea.id,
            "agent_id": "b-agent",
            "loop_id": b_loop.id,
            "schedule_id": b_schedule.id,
            "key_id": seed.other_key.record.id,
        }
        yield Env(server, store_path, seed, ids)


# Everything a request could change, B's rows and the served config alike.
_TABLES = (
    "workspaces", "api_keys", "sites", "experiments", "variants", "goals", "webhooks",
    "webhook_deliveries", "ideas", "schedules", "audit_log", "credit_ledger", "config_version",
)  # fmt: skip


def snapshot(store_path: Path) -> dict[str, list[tuple[Any, ...]]]:
    store = Store(store_path)
    try:
        # last_used_at is A's key being used, not a change of B's.
        return {
            table: store.conn.execute(
                "SELECT id, workspace_id, name, prefix, sha256, created_at, revoked_at "
                "FROM api_keys ORDER BY 1"
                if table == "api_keys"
                else f"SELECT * FROM {table} ORDER BY 1"
            ).fetchall()
            for table in _TABLES
        }
    finally:
        store.close()


def call(env: Env, method: str, path: str, body: Any = None) -> httpx.Response:
    return api_call(env.server, env.seed.key.key, method, path, body)


def body_for(method: str, path: str) -> Any:
    """A body the route would accept for an id of A's own, so that only the id is wrong."""
    if method == "PATCH" and path.startswith("/v1/experiments/"):
        return {"action": "pause"}
    if method == "PATCH" and path.startswith("/v1/schedules/"):
        return {"enabled": False}
    if path.endswith(("/deploy", "/promote")):
        return {"variant": "Variant B"}
    if method == "PATCH":
        return {"status": "approved"}
    if method == "POST" and not path.endswith(("/start", "/stop", "/archive")):
        return {}
    return None


def test_every_route_with_an_id_is_404_for_another_workspace(env: Env) -> None:
    paths = httpx.get(env.server.base_url + "/openapi.json", timeout=30).json()["paths"]
    before = snapshot(env.store_path)
    tried = []
    for template, operations in paths.items():
        params = re.findall(r"{(\w+)}", template)
        if not params or not template.startswith("/v1/"):
            continue
        missing = [p for p in params if p not in env.ids]
        assert not missing, f"{template}: give this test an id of B's for {missing}"
        path = template.format(**env.ids)
        for method in operations:
            if method.upper() not in ("GET", "POST", "PATCH", "PUT", "DELETE"):
                continue
            response = call(env, method.upper(), path, body_for(method.upper(), template))
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["error"]["code"] == "not_found", response.text
            tried.append(f"{method.upper()} {template}")
    # The routes with ids that this server has today are among those tried.
    for expected in (
        "GET /v1/sites/{site_id}",
        "GET /v1/experiments/{experiment_id}",
        "PATCH /v1/experiments/{experiment_id}",
        "DELETE /v1/experiments/{experiment_id}",
        "POST /v1/experiments/{experiment_id}/deploy",
        "GET /v1/experiments/{experiment_id}/results",
        "DELETE /v1/webhooks/{webhook_id}",
        "GET /v1/webhooks/{webhook_id}/deliveries",
        "DELETE /v1/keys/{key_id}",
        "GET /v1/agents/{agent_id}/stats",
        "GET /v1/agents/{agent_id}/drift",
    ):
        assert expected in tried, (expected, tried)
    assert snapshot(env.store_path) == before


def test_ids_in_bodies_and_queries_find_nothing_of_another_workspace(env: Env) -> None:
    before = snapshot(env.store_path)
    seed, ids = env.seed, env.ids
    variant = {"name": "B", "changes": [{"selector": "h1", "action": "set_content"}]}
    for body in (
        {"site_id": ids["site_id"], "name": "on B's site", "variants": [variant]},
        {"site_id": seed.site.id, "name": "from B's idea", "idea_id": ids["idea_id"]},
    ):
        response = call(env, "POST", "/v1/experiments", body)
        assert response.status_code == 404, response.text
    prompt = "Change the hero price from $99 to $499"
    for path, body in (
        ("/v1/ideas/generate", {"site_id": ids["site_id"]}),
        ("/v1/variants/generate", {"site_id": ids["site_id"], "prompt": prompt}),
        ("/v1/schedules", {"site_id": ids["site_id"]}),
        ("/v1/experiments", {"site_id": ids["site_id"], "name": "n", "prompt": prompt}),
    ):
        response = call(env, "POST", path, body)
        assert response.status_code == 404, (path, response.text)
    for named in ({"site_id": ids["site_id"]}, {"experiment_id": ids["experiment_id"]}):
        assign = call(env, "POST", "/v1/assign", {**named, "unit_id": "u1"})
        assert assign.status_code == 404, assign.text
    event = {"agentId": "a", "task": "t", "outcome": "success"}
    events = call(env, "POST", "/v1/events", [{**event, "experiment_id": ids["experiment_id"]}])
    assert events.status_code == 404, events.text
    for query in (
        f"/v1/experiments?site_id={ids['site_id']}",
        f"/v1/ideas?site_id={ids['site_id']}",
        f"/v1/schedules?site_id={ids['site_id']}",
        f"/v1/audit?target_id={ids['experiment_id']}",
        f"/v1/audit?target_id={ids['webhook_id']}",
    ):
        response = call(env, "GET", query)
        assert response.status_code == 200 and response.json()["data"] == [], response.text
    for listing in (
        "/v1/sites", "/v1/experiments", "/v1/webhooks", "/v1/audit", "/v1/ideas", "/v1/schedules",
    ):  # fmt: skip
        text = call(env, "GET", listing + "?limit=100").text
        assert not any(own in text for own in ids.values()), (listing, text)
    assert snapshot(env.store_path) == before
