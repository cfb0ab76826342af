"""`edge.control.api` through a real server's ``/v1/sites``: API key checks (missing,
malformed, unknown, revoked), ``last_used_at``, body errors (400 with msgspec's path, 413)
and the pagination bounds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from edge.control.api import BODY_LIMIT, Meta, ok
from edge.control.store import Store
from edge.errors import DetailedConflict
from tests.support import Server, running_server


class Env(msgspec.Struct):
    server: Server
    store_path: Path
    key: str
    key_id: str


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data = tmp_path_factory.mktemp("control-api") / "data"
    store_path = data / "splitedge.sqlite3"
    store = Store(store_path)
    ws = store.create_workspace("acme")
    issued = store.issue_api_key(ws.id)
    for n in range(3):
        store.create_site(ws.id, f"https://s{n}.example.com")
    store.close()
    with running_server(data) as server:
        yield Env(server, store_path, issued.key, issued.record.id)


def call(env: Env, method: str, path: str, key: str | None = None, **kw: Any) -> httpx.Response:
    headers = kw.pop("headers", {})
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    return httpx.request(method, env.server.base_url + path, headers=headers, timeout=30, **kw)


def error_of(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return str(body["error"]["message"])


# -- authentication --


@pytest.mark.parametrize(
    ("headers", "says"),
    [
        ({}, "send the header Authorization: Bearer sk_live_"),
        ({"authorization": "Basic c2s6bGl2ZQ=="}, "send the header Authorization: Bearer"),
        ({"authorization": "Bearer"}, "send the header Authorization: Bearer"),
        ({"authorization": "Bearer sk_test_abc"}, "look like sk_live_"),
        ({"authorization": "Bearer sk_live_short"}, "look like sk_live_"),
        ({"authorization": "Bearer sk_live_" + "x" * 43}, "unknown"),
    ],
)
def test_a_missing_or_bad_key_is_401_with_the_reference_text(
    env: Env, headers: dict[str, str], says: str
) -> None:
    for method, path in (("GET", "/v1/sites"), ("POST", "/v1/sites"), ("GET", "/v1/sites/x")):
        message = error_of(call(env, method, path, headers=dict(headers)), 401, "unauthorized")
        assert message.startswith("Invalid or missing API key: ") and says in message


def test_a_sites_public_key_is_403_on_the_api(env: Env) -> None:
    store = Store(env.store_path)
    try:
        (public_key,) = store.conn.execute("SELECT public_key FROM sites LIMIT 1").fetchone()
    finally:
        store.close()
    for method, path in (("GET", "/v1/sites"), ("POST", "/v1/experiments"), ("GET", "/v1/audit")):
        message = error_of(call(env, method, path, key=public_key), 403, "forbidden")
        assert message.startswith("this is a site's public key: it only loads the site's snippet")
    # A key that is no site's stays a 401.
    error_of(call(env, "GET", "/v1/sites", key="0" * 32), 401, "unauthorized")


def test_a_key_that_differs_in_its_secret_part_is_unknown(env: Env) -> None:
    # Same prefix (the lookup), different digest (the constant-time comparison).
    forged = env.key[:-4] + ("AAAA" if not env.key.endswith("AAAA") else "BBBB")
    assert "unknown" in error_of(call(env, "GET", "/v1/sites", forged), 401, "unauthorized")


def test_a_revoked_key_is_401_at_once_and_others_still_work(env: Env) -> None:
    store = Store(env.store_path)
    ws = store.workspace_by_name("acme")
    assert ws is not None
    doomed = store.issue_api_key(ws.id, name="doomed")
    store.close()
    assert call(env, "GET", "/v1/sites", doomed.key).status_code == 200
    store = Store(env.store_path)
    store.revoke_api_key(doomed.record.id)
    store.close()
    message = error_of(call(env, "GET", "/v1/sites", doomed.key), 401, "unauthorized")
    assert "revoked" in message and "splitedge keys create" in message
    assert call(env, "GET", "/v1/sites", env.key).status_code == 200


def test_the_edge_routes_refuse_a_revoked_key_at_once_and_take_a_new_one_at_once(
    env: Env,
) -> None:
    """/v1/events and /v1/assign check keys against the worker's config, which follows
    the store by polling; they ask the store while the config is behind it."""
    event = {"agentId": "bot", "task": "t", "outcome": "success", "cost": 0.01}
    store = Store(env.store_path)
    ws = store.workspace_by_name("acme")
    assert ws is not None
    store.close()
    for round_ in range(10):
        store = Store(env.store_path)
        issued = store.issue_api_key(ws.id, name=f"short-lived-{round_}")
        store.close()
        created = call(env, "POST", "/v1/events", issued.key, json=event)
        assert created.status_code == 201, created.text  # new: accepted at once
        store = Store(env.store_path)
        store.revoke_api_key(issued.record.id)
        store.close()
        refused = call(env, "POST", "/v1/events", issued.key, json=event)
        assert refused.status_code == 401, (round_, refused.text)
        body = {"site_id": "any", "unit_id": "u"}
        assert call(env, "POST", "/v1/assign", issued.key, json=body).status_code == 401


def last_used(env: Env, key_id: str) -> str | None:
    store = Store(env.store_path)
    try:
        (when,) = store.conn.execute(
            "SELECT last_used_at FROM api_keys WHERE id = ?", (key_id,)
        ).fetchone()
        return None if when is None else str(when)
    finally:
        store.close()


def test_last_used_at_is_recorded_at_most_once_a_minute(env: Env) -> None:
    store = Store(env.store_path)
    ws = store.workspace_by_name("acme")
    assert ws is not None
    fresh = store.issue_api_key(ws.id, name="fresh")
    version = store.config_version()
    store.close()
    assert last_used(env, fresh.record.id) is None
    assert call(env, "GET", "/v1/sites", fresh.key).status_code == 200
    first = last_used(env, fresh.record.id)
    assert first is not None
    assert call(env, "GET", "/v1/sites", fresh.key).status_code == 200
    assert last_used(env, fresh.record.id) == first
    store = Store(env.store_path)
    # Touching a key must not make every edge worker reload its config.
    assert store.config_version() == version
    store.close()


# -- bodies --


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{", "not valid JSON"),
        (b"[]", "invalid site: Expected `object`, got `array`"),
        (b'{"url": 5}', "$.url"),
        (b'{"name": "x"}', "missing required field `url`"),
        (b'{"url": "a.com", "colour": "red"}', "unknown field `colour`"),
        (b'{"url": "a.com", "reuse_if_exists": "yes"}', "$.reuse_if_exists"),
        (b"", "the body is empty"),
        (b"\xff\xfe", "not valid"),
    ],
)
def test_a_bad_body_is_400_saying_where(env: Env, body: bytes, says: str) -> None:
    response = call(env, "POST", "/v1/sites", env.key, content=body)
    assert says in error_of(response, 400, "invalid_request")


def test_a_body_over_the_limit_is_413(env: Env) -> None:
    body = b'{"url": "' + b"a" * BODY_LIMIT + b'.com"}'
    response = call(env, "POST", "/v1/sites", env.key, content=body)
    assert f"{BODY_LIMIT}-byte limit" in error_of(response, 413, "payload_too_large")


# -- pagination --


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("limit=0", "limit must be from 1 to 100, not 0"),
        ("limit=101", "limit must be at most 100, not 101"),
        ("limit=ten", "limit must be a whole number from 1 to 100, not 'ten'"),
        ("limit=-1", "limit must be a whole number from 1 to 100"),
        ("offset=-1", "offset must be a whole number 0 or more"),
        ("offset=1.5", "offset must be a whole number 0 or more"),
        ("offset=9223372036854775808", "offset must be at most 9223372036854775807, not"),
        ("offset=" + "9" * 5000, "offset must be a whole number 0 or more"),
        ("limit=%C3%A9", "limit must be a whole number from 1 to 100"),
        ("limit=%B2", "limit must be a whole number from 1 to 100"),
    ],
)
def test_page_bounds_are_400_stating_them(env: Env, query: str, says: str) -> None:
    response = call(env, "GET", f"/v1/sites?{query}", env.key)
    assert says in error_of(response, 400, "invalid_request")


def test_pages_default_to_20_and_report_the_total(env: Env) -> None:
    body = call(env, "GET", "/v1/sites", env.key).json()
    assert body["meta"]["limit"] == 20 and body["meta"]["offset"] == 0
    total = body["meta"]["total"]
    assert total == len(body["data"]) >= 3
    page = call(env, "GET", "/v1/sites?limit=100&offset=1", env.key).json()
    assert page["data"] == body["data"][1:] and page["meta"]["total"] == total
    beyond = call(env, "GET", f"/v1/sites?offset={total}", env.key).json()
    assert beyond["data"] == [] and beyond["meta"]["total"] == total


# -- routing and envelopes --


def test_other_methods_are_405_in_the_envelope(env: Env) -> None:
    assert "DELETE" in error_of(
        call(env, "DELETE", "/v1/sites", env.key), 405, "method_not_allowed"
    )


def test_head_answers_like_get_without_a_body(env: Env) -> None:
    response = call(env, "HEAD", "/v1/sites", env.key)
    assert response.status_code == 200 and response.content == b""


def test_envelopes() -> None:
    reply = ok([1], Meta("w", limit=20, offset=0, total=1), status=201)
    assert reply.status == 201
    assert msgspec.json.decode(reply.body) == {
        "data": [1],
        "meta": {"workspace_id": "w", "limit": 20, "offset": 0, "total": 1},
    }
    assert msgspec.json.decode(ok({"a": None}).body) == {"data": {"a": None}, "meta": {}}
    conflict = DetailedConflict("taken", existing_site={"id": "s"})
    assert conflict.status == 409 and conflict.details == {"existing_site": {"id": "s"}}
