"""The audit trail (edge.control.audit): each change through the API records the key, the
action, its target and when, in the change's own transaction (a refused change records
nothing); the command line's key changes are recorded without a key; a workspace reads
only its own trail."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from edge.control.store import Store
from tests.support import Server, api_call, running_server

GOALS = [{"name": "Buy clicks", "type": "click", "selector": "#buy"}]
CHANGES = [{"selector": "h1", "action": "set_content", "payload": "Ship faster"}]


class Env(msgspec.Struct):
    server: Server
    data_dir: Path
    key: str
    key_id: str
    other_key: str


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data = tmp_path_factory.mktemp("audit") / "data"
    store = Store(data / "splitedge.sqlite3")
    try:
        mine = store.issue_api_key(store.create_workspace("mine").id)
        other = store.issue_api_key(store.create_workspace("other").id)
    finally:
        store.close()
    with running_server(data, args=["--dev"]) as server:
        yield Env(server, data, mine.key, mine.record.id, other.key)


def call(env: Env, method: str, path: str, body: Any = None, key: str = "") -> httpx.Response:
    return api_call(env.server, key or env.key, method, path, body)


def trail(env: Env, query: str = "", key: str = "") -> list[dict[str, Any]]:
    response = call(env, "GET", "/v1/audit" + query, key=key)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["data"]
    return entries


def test_every_change_is_recorded_with_its_key(env: Env) -> None:
    start = datetime.now(UTC)
    site_id = call(env, "POST", "/v1/sites", {"url": "trail.example"}).json()["data"]["id"]
    experiment = call(
        env, "POST", "/v1/experiments",
        {"site_id": site_id, "name": "Trail", "variants": [{"name": "B", "changes": CHANGES}],
         "goals": GOALS},
    ).json()["data"]["experiment"]  # fmt: skip
    one = f"/v1/experiments/{experiment['id']}"
    assert call(env, "PATCH", one, {"traffic_split": 30}).status_code == 200
    for action in ("launch", "pause", "complete", "archive"):
        assert call(env, "PATCH", one, {"action": action}).status_code == 200
    assert call(env, "DELETE", one).status_code == 200
    hook = call(
        env, "POST", "/v1/webhooks",
        {"url": "http://127.0.0.1:9/hook", "events": ["experiment.launched"]},
    ).json()["data"]  # fmt: skip
    assert call(env, "DELETE", f"/v1/webhooks/{hook['id']}").status_code == 200
    assert call(env, "DELETE", f"/v1/webhooks/{hook['id']}").status_code == 200  # no change
    # Reads are not changes.
    call(env, "GET", "/v1/sites")
    call(env, "GET", one)

    entries = trail(env)
    assert [(e["action"], e["target_id"]) for e in reversed(entries)] == [
        ("site.create", site_id),
        ("experiment.create", experiment["id"]),
        ("experiment.traffic_split", experiment["id"]),
        ("experiment.launch", experiment["id"]),
        ("experiment.pause", experiment["id"]),
        ("experiment.complete", experiment["id"]),
        ("experiment.archive", experiment["id"]),
        ("experiment.delete", experiment["id"]),
        ("webhook.create", hook["id"]),
        ("webhook.delete", hook["id"]),
    ]
    assert {e["key_id"] for e in entries} == {env.key_id}
    assert entries[-3]["detail"] == {"status": "draft", "traffic_split": 30}
    assert entries[-4]["detail"] == {"status": "running"}
    for entry in entries:
        at = datetime.fromisoformat(entry["created_at"])
        assert start - timedelta(seconds=1) <= at <= datetime.now(UTC)


def test_filters_and_pages(env: Env) -> None:
    site_id = call(env, "POST", "/v1/sites", {"url": "filters.example"}).json()["data"]["id"]
    experiment_id = call(
        env,
        "POST",
        "/v1/experiments",
        {"site_id": site_id, "name": "Filtered", "variants": [{"name": "B", "changes": CHANGES}]},
    ).json()["data"]["experiment"]["id"]
    assert [e["action"] for e in trail(env, f"?target_id={experiment_id}")] == ["experiment.create"]
    creates = trail(env, "?action=site.create")
    assert creates and {e["action"] for e in creates} == {"site.create"}
    page = call(env, "GET", "/v1/audit?limit=1&offset=1").json()
    assert len(page["data"]) == 1 and page["meta"]["limit"] == 1 and page["meta"]["total"] > 2


def test_a_refused_change_records_nothing(env: Env) -> None:
    site_id = call(env, "POST", "/v1/sites", {"url": "refused.example"}).json()["data"]["id"]
    experiment_id = call(
        env,
        "POST",
        "/v1/experiments",
        {"site_id": site_id, "name": "No goal", "variants": [{"name": "B", "changes": CHANGES}]},
    ).json()["data"]["experiment"]["id"]
    before = trail(env)
    one = f"/v1/experiments/{experiment_id}"
    assert call(env, "PATCH", one, {"action": "launch"}).status_code == 400
    assert call(env, "PATCH", one, {"action": "pause"}).status_code == 409
    assert call(env, "POST", "/v1/sites", {"url": "refused.example"}).status_code == 409
    assert trail(env) == before


def test_a_workspace_reads_only_its_own_trail(env: Env) -> None:
    call(env, "POST", "/v1/sites", {"url": "private.example"})
    theirs = trail(env, key=env.other_key)
    assert all(e["key_id"] != env.key_id for e in theirs)
    assert "private.example" not in str(theirs)


def test_the_command_lines_key_changes_are_recorded_without_a_key(env: Env) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "edge.cli", "keys", *args, "--data-dir", str(env.data_dir)]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    created = cli("create", "--workspace", "mine", "--name", "ci")
    assert created.returncode == 0, created.stderr
    store = Store(env.data_dir / "splitedge.sqlite3")
    try:
        (key_id,) = store.conn.execute("SELECT id FROM api_keys WHERE name = 'ci'").fetchone()
    finally:
        store.close()
    assert cli("revoke", key_id).returncode == 0
    entries = trail(env, f"?target_id={key_id}")
    assert [(e["action"], e["key_id"], e["target_type"]) for e in entries] == [
        ("key.revoke", None, "api_key"),
        ("key.create", None, "api_key"),
    ]
