"""``/v1/keys`` against a real server (edge.control.keys_api): a key is shown once and
works at once; listings show prefixes, never secrets; a revoked key gets 401 from the next
request, the revoking key's own included; the workspace's last active key stays (409);
another workspace's key is a 404 and keeps working; every change is in the audit trail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from edge.control.store import Store
from tests.support import Server, api_call, running_server


class Env(msgspec.Struct):
    server: Server
    data_dir: Path
    key: str
    key_id: str
    other_key: str
    other_key_id: str


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data = tmp_path_factory.mktemp("keys") / "data"
    store = Store(data / "splitedge.sqlite3")
    try:
        mine = store.issue_api_key(store.create_workspace("mine").id, name="admin")
        other = store.issue_api_key(store.create_workspace("other").id)
    finally:
        store.close()
    with running_server(data) as server:
        yield Env(server, data, mine.key, mine.record.id, other.key, other.record.id)


def call(env: Env, method: str, path: str, body: Any = None, key: str = "") -> httpx.Response:
    return api_call(env.server, key or env.key, method, path, body)


def create(env: Env, body: dict[str, Any], key: str = "") -> dict[str, Any]:
    answer = call(env, "POST", "/v1/keys", body, key)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()["data"]
    return created


def listed(env: Env, key: str = "", query: str = "?limit=100") -> list[dict[str, Any]]:
    answer = call(env, "GET", "/v1/keys" + query, key=key)
    assert answer.status_code == 200, answer.text
    keys: list[dict[str, Any]] = answer.json()["data"]
    return keys


def test_a_created_key_is_shown_once_and_works_at_once(env: Env) -> None:
    created = create(env, {"name": "ci <script>"})
    secret = created["key"]
    assert secret.startswith("sk_live_") and secret.startswith(created["prefix"])
    assert created["name"] == "ci <script>" and created["flavour"] == "splitedge"
    assert (created["revoked_at"], created["last_used_at"], created["current"]) == (
        None, None, False,
    )  # fmt: skip
    assert call(env, "GET", "/v1/sites", key=secret).status_code == 200
    keys = listed(env)
    assert secret not in str(keys)
    row = next(k for k in keys if k["id"] == created["id"])
    assert "key" not in row and row["prefix"] == created["prefix"]
    assert row["last_used_at"] is not None  # it was used just now
    # The caller's own key is marked, and the other workspace's keys are not listed.
    assert [k["current"] for k in keys if k["id"] == env.key_id] == [True]
    assert env.other_key_id not in {k["id"] for k in keys}


def test_a_key_of_another_flavour_gets_its_scheme(env: Env) -> None:
    created = create(env, {"name": "claw", "flavour": "clawsplit"})
    assert created["key"].startswith("cs_live_") and created["prefix"].startswith("cs_live_")
    assert [k["flavour"] for k in listed(env) if k["id"] == created["id"]] == ["clawsplit"]


def test_wrong_bodies_are_400(env: Env) -> None:
    for body in ({"name": ""}, {"flavour": "nope"}, {"name": "a", "scope": "all"}, []):
        answer = call(env, "POST", "/v1/keys", body)
        assert answer.status_code == 400, (body, answer.text)
    assert call(env, "POST", "/v1/keys", {}).json()["data"]["name"] == "default"


def test_revoking_a_key_stops_it_from_the_next_request_and_is_audited(env: Env) -> None:
    victim = create(env, {"name": "leaked"})
    assert call(env, "GET", "/v1/sites", key=victim["key"]).status_code == 200
    answer = call(env, "DELETE", f"/v1/keys/{victim['id']}")
    assert answer.status_code == 200, answer.text
    revoked = answer.json()["data"]
    assert revoked["id"] == victim["id"] and revoked["revoked_at"] is not None
    refused = call(env, "GET", "/v1/sites", key=victim["key"])
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]
    # Again: nothing changes, the answer is the same.
    again = call(env, "DELETE", f"/v1/keys/{victim['id']}")
    assert again.status_code == 200 and again.json()["data"] == revoked
    trail = call(env, "GET", f"/v1/audit?target_id={victim['id']}").json()["data"]
    assert [(e["action"], e["key_id"], e["target_type"]) for e in trail] == [
        ("key.revoke", env.key_id, "api_key"),
        ("key.create", env.key_id, "api_key"),
    ]
    assert trail[1]["detail"] == {"flavour": "splitedge", "name": "leaked"}
    assert [k["revoked_at"] for k in listed(env) if k["id"] == victim["id"]] == [
        revoked["revoked_at"]
    ]


def test_a_key_may_revoke_itself(env: Env) -> None:
    spare = create(env, {"name": "self"})
    answer = call(env, "DELETE", f"/v1/keys/{spare['id']}", key=spare["key"])
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["current"] is True
    assert call(env, "GET", "/v1/keys", key=spare["key"]).status_code == 401


def test_the_last_active_key_cannot_be_revoked(env: Env) -> None:
    # The other workspace has one key: revoking it would lock the workspace out.
    answer = call(env, "DELETE", f"/v1/keys/{env.other_key_id}", key=env.other_key)
    assert answer.status_code == 409, answer.text
    assert "create another first" in answer.json()["error"]["message"]
    assert call(env, "GET", "/v1/keys", key=env.other_key).status_code == 200
    # With a second key it can go; the second is then the last.
    second = create(env, {"name": "second"}, key=env.other_key)
    assert call(env, "DELETE", f"/v1/keys/{env.other_key_id}", key=second["key"]).status_code == 200
    assert call(env, "DELETE", f"/v1/keys/{second['id']}", key=second["key"]).status_code == 409
    env.other_key, env.other_key_id = second["key"], second["id"]


def test_another_workspaces_key_is_404_and_keeps_working(env: Env) -> None:
    for key_id in (env.other_key_id, "k_unknown", env.other_key[:16]):
        answer = call(env, "DELETE", f"/v1/keys/{key_id}")
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"]["code"] == "not_found"
    assert call(env, "GET", "/v1/keys", key=env.other_key).status_code == 200
    # Nor may a key revoke its own workspace's keys by prefix: ids only.
    mine = listed(env)[0]
    assert call(env, "DELETE", f"/v1/keys/{mine['prefix']}").status_code == 404


def test_the_list_is_paged(env: Env) -> None:
    every = listed(env)
    answer = call(env, "GET", "/v1/keys?limit=2&offset=1").json()
    assert answer["meta"]["total"] == len(every) >= 3
    assert answer["data"] == every[1:3]
    assert call(env, "GET", "/v1/keys?limit=0").status_code == 400
