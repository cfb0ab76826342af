"""Credits (edge.control.credits): a metered plan pays the reference's tool costs, the
debit commits with the action or not at all (402 leaves no partial state, a failed action
is not charged), concurrent calls never overdraw, reads of the ledger are free, and the
operator grants credits from the command line."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from edge.control import credits
from edge.control.store import Store
from tests.support import Server, api_call, running_server

# "metered" pays in credits; "free" is a plan with no metering (like the reference's
# Enterprise). Rate limits stay out of the way.
PLANS = {"metered": {"metered": True}, "free": {}}

GOALS = [{"name": "Buy clicks", "type": "click", "selector": "#buy"}]
CHANGES = [{"selector": "h1", "action": "set_content", "payload": "Ship faster"}]


class Env(msgspec.Struct):
    server: Server
    store_path: Path
    data_dir: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("credits")
    plans_file = root / "plans.json"
    plans_file.write_text(json.dumps(PLANS))
    data = root / "data"
    Store(data / "splitedge.sqlite3").close()
    with running_server(data, args=["--limits", str(plans_file)]) as server:
        yield Env(server, data / "splitedge.sqlite3", data)


class Workspace(msgspec.Struct):
    id: str
    name: str
    key: str


def new_workspace(env: Env, plan: str = "metered", credit: int = 0) -> Workspace:
    store = Store(env.store_path)
    try:
        name = f"ws-{time.monotonic_ns()}"
        workspace = store.create_workspace(name, plan=plan)
        if credit:
            credits.grant(store, workspace.id, credit)
        return Workspace(workspace.id, name, store.issue_api_key(workspace.id).key)
    finally:
        store.close()


def call(env: Env, ws: Workspace, method: str, path: str, body: Any = None) -> httpx.Response:
    return api_call(env.server, ws.key, method, path, body)


def balance(env: Env, ws: Workspace) -> int:
    response = call(env, ws, "GET", "/v1/credits")
    assert response.status_code == 200, response.text
    value: int = response.json()["data"]["balance"]
    return value


def state(env: Env, workspace_id: str) -> dict[str, list[tuple[Any, ...]]]:
    """Everything of the workspace that an action could change."""
    store = Store(env.store_path)
    try:
        return {
            table: store.conn.execute(
                f"SELECT * FROM {table} WHERE workspace_id = ? ORDER BY 1", (workspace_id,)
            ).fetchall()
            for table in ("sites", "experiments", "credit_ledger", "audit_log", "webhooks")
        } | {
            "balance": store.conn.execute(
                "SELECT credits FROM workspaces WHERE id = ?", (workspace_id,)
            ).fetchall()
        }
    finally:
        store.close()


def test_the_reference_flow_costs_what_the_reference_says(env: Env) -> None:
    ws = new_workspace(env, credit=100)
    assert call(env, ws, "GET", "/v1/sites").status_code == 200  # list_sites: 1
    site = call(env, ws, "POST", "/v1/sites", {"url": "costs.example", "reuse_if_exists": True})
    assert site.status_code == 201  # create_site: 5
    site_id = site.json()["data"]["id"]
    draft = call(
        env, ws, "POST", "/v1/experiments",
        {"site_id": site_id, "name": "Headline", "variants": [{"name": "B", "changes": CHANGES}],
         "goals": GOALS},
    )  # fmt: skip
    assert draft.status_code == 201  # create_experiment: 5
    experiment_id = draft.json()["data"]["experiment"]["id"]
    assert call(env, ws, "GET", f"/v1/experiments/{experiment_id}").status_code == 200  # 2
    assert call(env, ws, "GET", "/v1/experiments").status_code == 200  # list_experiments: 1
    launched = call(env, ws, "PATCH", f"/v1/experiments/{experiment_id}", {"action": "launch"})
    assert launched.status_code == 200  # launch_experiment: 2
    # Free: pause, resume, the ledger and the credits themselves.
    for action in ("pause", "resume"):
        moved = call(env, ws, "PATCH", f"/v1/experiments/{experiment_id}", {"action": action})
        assert moved.status_code == 200, moved.text
    assert balance(env, ws) == 100 - 1 - 5 - 5 - 2 - 1 - 2
    ledger = call(env, ws, "GET", "/v1/credits/ledger").json()
    assert [(e["reason"], e["delta"]) for e in reversed(ledger["data"])] == [
        ("grant", 100), ("list_sites", -1), ("create_site", -5), ("create_experiment", -5),
        ("get_experiment", -2), ("list_experiments", -1), ("launch_experiment", -2),
    ]  # fmt: skip
    assert ledger["data"][0]["balance"] == 84 and ledger["meta"]["total"] == 7


def test_auto_launch_costs_only_the_create(env: Env) -> None:
    ws = new_workspace(env, credit=10)
    site_id = call(env, ws, "POST", "/v1/sites", {"url": "auto.example"}).json()["data"]["id"]
    created = call(
        env, ws, "POST", "/v1/experiments",
        {"site_id": site_id, "name": "Auto", "variants": [{"name": "B", "changes": CHANGES}],
         "goals": GOALS, "auto_launch": True},
    )  # fmt: skip
    assert created.status_code == 201
    assert created.json()["data"]["launch"] == {"status": "running"}
    assert balance(env, ws) == 0


def test_a_402_leaves_no_partial_state(env: Env) -> None:
    ws = new_workspace(env, credit=4)
    before = state(env, ws.id)
    refused = call(env, ws, "POST", "/v1/sites", {"url": "poor.example"})
    assert refused.status_code == 402, refused.text
    error = refused.json()["error"]
    assert error["code"] == "insufficient_credits"
    assert error["message"].startswith(
        "Insufficient credits: create_site costs 5 credits and this workspace has 4; "
        "nothing was done."
    )
    assert state(env, ws.id) == before


def test_a_402_on_auto_launch_creates_no_draft(env: Env) -> None:
    ws = new_workspace(env, credit=5)
    site_id = call(env, ws, "POST", "/v1/sites", {"url": "draftless.example"}).json()["data"]["id"]
    before = state(env, ws.id)
    refused = call(
        env, ws, "POST", "/v1/experiments",
        {"site_id": site_id, "name": "Auto", "variants": [{"name": "B", "changes": CHANGES}],
         "goals": GOALS, "auto_launch": True},
    )  # fmt: skip
    assert refused.status_code == 402
    assert state(env, ws.id) == before


def test_a_failed_action_is_not_charged(env: Env) -> None:
    ws = new_workspace(env, credit=20)
    site_id = call(env, ws, "POST", "/v1/sites", {"url": "fail.example"}).json()["data"]["id"]
    before = state(env, ws.id)
    # A 409 (duplicate domain) and a 404 (unknown experiment) run past the debit and fail.
    assert call(env, ws, "POST", "/v1/sites", {"url": "fail.example"}).status_code == 409
    assert call(env, ws, "GET", "/v1/experiments/nope").status_code == 404
    draft = call(
        env,
        ws,
        "POST",
        "/v1/experiments",
        {"site_id": site_id, "name": "No goals", "variants": [{"name": "B", "changes": CHANGES}]},
    )
    assert draft.status_code == 201, draft.text
    experiment_id = draft.json()["data"]["experiment"]["id"]
    paid = state(env, ws.id)
    assert paid["balance"] == [(before["balance"][0][0] - 5,)]
    launch = call(env, ws, "PATCH", f"/v1/experiments/{experiment_id}", {"action": "launch"})
    assert launch.status_code == 400  # launch preconditions: no goal
    assert state(env, ws.id) == paid


def test_concurrent_calls_never_overdraw(env: Env) -> None:
    ws = new_workspace(env, credit=7)
    with ThreadPoolExecutor(10) as pool:
        statuses = sorted(
            r.status_code for r in pool.map(lambda _: call(env, ws, "GET", "/v1/sites"), range(10))
        )
    assert statuses == [200] * 7 + [402] * 3
    assert balance(env, ws) == 0
    store = Store(env.store_path)
    try:
        (total,) = store.conn.execute(
            "SELECT sum(delta) FROM credit_ledger WHERE workspace_id = ?", (ws.id,)
        ).fetchone()
    finally:
        store.close()
    assert total == 0  # the ledger sums to the balance


def test_an_unmetered_plan_is_never_charged(env: Env) -> None:
    ws = new_workspace(env, plan="free")
    assert call(env, ws, "POST", "/v1/sites", {"url": "free.example"}).status_code == 201
    for _ in range(3):
        assert call(env, ws, "GET", "/v1/sites").status_code == 200
    data = call(env, ws, "GET", "/v1/credits").json()["data"]
    assert data["metered"] is False and data["balance"] == 0 and data["plan"] == "free"
    assert data["costs"]["create_experiment"] == 5
    assert call(env, ws, "GET", "/v1/credits/ledger").json()["data"] == []


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.server
def test_the_operator_grants_credits_from_the_command_line(env: Env) -> None:
    ws = new_workspace(env)
    assert call(env, ws, "GET", "/v1/sites").status_code == 402
    done = cli(env.data_dir, "credits", "grant", "--workspace", ws.name, "3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3"
    assert call(env, ws, "GET", "/v1/sites").status_code == 200
    shown = cli(env.data_dir, "credits", "show", "--workspace", ws.name)
    assert f"{ws.name}: plan metered, 2 credits" in shown.stdout
    assert "list_sites" in shown.stdout and "grant" in shown.stdout
    trail = call(env, ws, "GET", "/v1/audit?action=credits.grant").json()["data"]
    assert [(e["key_id"], e["detail"]) for e in trail] == [(None, {"amount": 3, "balance": 3})]
    missing = cli(env.data_dir, "credits", "grant", "--workspace", "nobody", "3")
    assert missing.returncode == 1 and "no workspace named 'nobody'" in missing.stderr
