"""Contract tests of ``/v1/sites`` against a real server, with the reference's example
bodies: create (201; protocol added; name defaults to the domain; snippet and install
instructions), duplicate domain (409 with ``existing_site``), ``reuse_if_exists`` (200,
``reused: true``), list (newest first, paged), get, 404s, isolation between workspaces,
and the plan's site limit."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from starlette.applications import Starlette

from edge.control import plans, sites_api
from edge.control.services import Services
from edge.control.store import Store
from edge.http import EXCEPTION_HANDLERS
from edge.settings import Settings
from tests.support import Server, running_server


class Env(msgspec.Struct):
    server: Server
    store_path: Path
    key: str
    other_key: str
    empty_key: str
    other_site_id: str


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data = tmp_path_factory.mktemp("sites-api") / "data"
    store_path = data / "splitedge.sqlite3"
    store = Store(store_path)
    acme, other, empty = (store.create_workspace(n) for n in ("acme", "other", "empty"))
    key, other_key, empty_key = (store.issue_api_key(w.id).key for w in (acme, other, empty))
    other_site = store.create_site(other.id, "https://other.example.org", name="Other")
    store.close()
    with running_server(data) as server:
        yield Env(server, store_path, key, other_key, empty_key, other_site.id)


def call(env: Env, method: str, path: str, key: str, body: Any = None) -> httpx.Response:
    return httpx.request(
        method,
        env.server.base_url + path,
        headers={"authorization": f"Bearer {key}"},
        json=body,
        timeout=30,
    )


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    return error


def snapshot(store_path: Path) -> list[tuple[Any, ...]]:
    store = Store(store_path)
    try:
        return store.conn.execute("SELECT * FROM sites ORDER BY id").fetchall()
    finally:
        store.close()


SITE_FIELDS = {
    "id", "name", "url", "domain", "platform", "public_key", "crawl_status",
    "anti_flicker_ms", "created_at", "updated_at",
}  # fmt: skip


def test_create_with_the_reference_example(env: Env) -> None:
    response = call(
        env, "POST", "/v1/sites", env.key, {"url": "https://mystore.com", "name": "My Store"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    site = body["data"]
    assert set(site) == SITE_FIELDS | {"snippet", "instructions", "reused"}
    assert site["name"] == "My Store" and site["url"] == "https://mystore.com/"
    assert site["domain"] == "mystore.com" and site["reused"] is False
    assert re.fullmatch(r"[0-9a-f]{32}", site["public_key"])
    tag = f'<script src="{env.server.base_url}/s/{site["public_key"]}.js"></script>'
    assert site["snippet"] == tag
    assert site["instructions"].startswith(
        f'Site "My Store" created successfully (ID: {site["id"]}).'
    )
    assert (
        "Add this snippet to the <head> of https://mystore.com/, before any other scripts:"
        f"\n\n{tag}" in site["instructions"]
    )
    assert body["meta"]["workspace_id"]
    # The new site is live on the edge within a second: its snippet is served.
    deadline = time.monotonic() + 2
    while (
        httpx.get(f"{env.server.base_url}/s/{site['public_key']}.js").status_code != 200
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert httpx.get(f"{env.server.base_url}/s/{site['public_key']}.js").status_code == 200
    # GET adds the snippet tag and the installation check (tests/test_site_installation.py).
    got = call(env, "GET", f"/v1/sites/{site['id']}", env.key).json()["data"]
    assert set(got) == SITE_FIELDS | {"snippet", "installation"}
    assert {k: got[k] for k in SITE_FIELDS} == {k: site[k] for k in SITE_FIELDS}
    assert got["snippet"] == tag


def test_the_protocol_is_added_and_the_name_defaults_to_the_domain(env: Env) -> None:
    site = call(env, "POST", "/v1/sites", env.key, {"url": "Example.COM/shop"}).json()["data"]
    assert site["url"] == "https://example.com/shop" and site["name"] == "example.com"


def test_a_duplicate_domain_is_409_with_existing_site(env: Env) -> None:
    first = call(env, "POST", "/v1/sites", env.key, {"url": "https://dup.example", "name": "Dup"})
    existing = first.json()["data"]
    before = snapshot(env.store_path)
    for url in ("https://dup.example", "dup.example/other", "HTTP://DUP.EXAMPLE:8080/"):
        error = error_of(call(env, "POST", "/v1/sites", env.key, {"url": url}), 409, "conflict")
        assert error["message"] == (
            f"A site for dup.example is already registered (ID: {existing['id']}). Reuse it "
            "via GET /v1/sites / its id, or POST /v1/sites again with reuse_if_exists: true "
            "for idempotent behavior."
        )
        assert error["existing_site"] == {
            "id": existing["id"], "name": "Dup", "url": "https://dup.example/",
            "public_key": existing["public_key"],
        }  # fmt: skip
    assert snapshot(env.store_path) == before


def test_reuse_if_exists_gives_200_with_reused_true(env: Env) -> None:
    first = call(
        env, "POST", "/v1/sites", env.key, {"url": "reuse.example", "reuse_if_exists": True}
    )
    assert first.status_code == 201 and first.json()["data"]["reused"] is False
    before = snapshot(env.store_path)
    again = call(
        env,
        "POST",
        "/v1/sites",
        env.key,
        {"url": "https://reuse.example", "name": "X", "reuse_if_exists": True},
    )
    assert again.status_code == 200, again.text
    site = again.json()["data"]
    assert site["reused"] is True and site["id"] == first.json()["data"]["id"]
    assert site["name"] == "reuse.example"  # the existing site, unchanged
    assert site["snippet"] == first.json()["data"]["snippet"]
    assert site["instructions"] == (
        f'Site "reuse.example" (https://reuse.example/) is already registered (ID: {site["id"]}). '
        "Reusing it."
    )
    assert snapshot(env.store_path) == before


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"url": "ftp://files.example"}, "is not a website address"),
        ({"url": "https://"}, "is not a website address"),
        ({"url": ""}, "$.url"),
        ({"url": "a.example", "name": ""}, "$.name"),
        ({"url": "a.example", "anti_flicker_ms": 5001}, "$.anti_flicker_ms"),
    ],
)
def test_bad_sites_are_400(env: Env, body: dict[str, Any], says: str) -> None:
    before = snapshot(env.store_path)
    error = error_of(call(env, "POST", "/v1/sites", env.key, body), 400, "invalid_request")
    assert says in error["message"]
    assert snapshot(env.store_path) == before


def test_list_is_newest_first_and_paged(env: Env) -> None:
    names = [f"page{n}.example" for n in range(3)]
    for name in names:
        assert call(env, "POST", "/v1/sites", env.key, {"url": name}).status_code == 201
    listed = call(env, "GET", "/v1/sites?limit=3", env.key).json()
    assert [s["name"] for s in listed["data"]] == names[::-1]
    assert all(set(s) == SITE_FIELDS for s in listed["data"])
    second = call(env, "GET", "/v1/sites?limit=1&offset=1", env.key).json()
    assert [s["name"] for s in second["data"]] == [names[1]]
    assert second["meta"]["total"] == listed["meta"]["total"] >= 3


def test_unknown_sites_are_404_saying_what_to_do(env: Env) -> None:
    error = error_of(call(env, "GET", "/v1/sites/nope", env.key), 404, "not_found")
    assert "Call GET /v1/sites" in error["message"] and "POST /v1/sites" in error["message"]
    error = error_of(call(env, "GET", "/v1/sites/nope", env.empty_key), 404, "not_found")
    assert error["message"] == (
        "No sites registered in this workspace. Register one with POST /v1/sites first."
    )


def test_another_workspaces_site_is_404_and_nothing_changes(env: Env) -> None:
    before = snapshot(env.store_path)
    theirs = call(env, "GET", f"/v1/sites/{env.other_site_id}", env.key)
    unknown = call(env, "GET", "/v1/sites/00000000-0000-0000-0000-000000000000", env.key)
    assert error_of(theirs, 404, "not_found")["message"].replace(env.other_site_id, "X") == (
        error_of(unknown, 404, "not_found")["message"].replace(
            "00000000-0000-0000-0000-000000000000", "X"
        )
    )
    assert all(
        s["id"] != env.other_site_id
        for s in call(env, "GET", "/v1/sites?limit=100", env.key).json()["data"]
    )
    assert snapshot(env.store_path) == before
    # Domains are per workspace: registering theirs makes one of ours, theirs unchanged.
    mine = call(env, "POST", "/v1/sites", env.key, {"url": "https://other.example.org"})
    assert mine.status_code == 201 and mine.json()["data"]["id"] != env.other_site_id
    theirs_now = call(env, "GET", f"/v1/sites/{env.other_site_id}", env.other_key).json()["data"]
    assert theirs_now["name"] == "Other"
    assert [row for row in snapshot(env.store_path) if row[0] == env.other_site_id] == [
        row for row in before if row[0] == env.other_site_id
    ]


# -- the plan's site limit (switched on by the app; off in a default install) --


def post_in_process(app: Starlette, key: str, body: dict[str, Any]) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.post(
                "/v1/sites", json=body, headers={"authorization": f"Bearer {key}"}
            )

    return asyncio.run(send())


def test_the_plan_site_limit_is_402_and_reuse_still_works(store_path: Path) -> None:
    store = Store(store_path)
    starter = store.create_workspace("small", plan="starter")
    big = store.create_workspace("big", plan="enterprise")
    starter_key, big_key = (store.issue_api_key(w.id).key for w in (starter, big))
    store.close()
    unmetered = Services.from_settings(Settings(data_dir=str(store_path.parent)))
    limits = plans.PlanLimits({}, sites={"starter": 1, "enterprise": 2})
    app = Starlette(
        routes=sites_api.routes(dataclasses.replace(unmetered, limits=limits)),
        exception_handlers=dict(EXCEPTION_HANDLERS),
    )
    assert post_in_process(app, starter_key, {"url": "one.example"}).status_code == 201
    error = error_of(
        post_in_process(app, starter_key, {"url": "two.example"}), 402, "plan_limit_reached"
    )
    assert error["message"] == (
        "the starter plan allows 1 site(s) and this workspace has 1; reuse one of them "
        "(GET /v1/sites) or move the workspace to a plan with more"
    )
    again = post_in_process(app, starter_key, {"url": "one.example", "reuse_if_exists": True})
    assert again.status_code == 200 and again.json()["data"]["reused"] is True
    for n in range(2):
        assert post_in_process(app, big_key, {"url": f"b{n}.example"}).status_code == 201
    assert post_in_process(app, big_key, {"url": "b3.example"}).status_code == 402
    unlimited = Starlette(
        routes=sites_api.routes(unmetered),
        exception_handlers=dict(EXCEPTION_HANDLERS),
    )
    assert post_in_process(unlimited, starter_key, {"url": "two.example"}).status_code == 201
