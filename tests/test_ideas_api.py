"""``/v1/ideas`` against a real server (``--dev``, metered plans) with the HTML fixture
pages served on loopback and a real webhook receiver: the list's filters, order and pages
with the nested site; one idea in full; PATCH status with its signed idea.status_changed;
generate's 202 then the ideas stored and the signed ideas.generated carrying them; the
synchronous ``wait`` form; a failed run announced and refunded; and the credits."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from edge.control import credits
from edge.control.idea_records import NewIdea
from edge.control.ideas import add_idea
from edge.control.store import Store
from tests.page_server import serve_pages
from tests.support import Server, api_call, running_server
from tests.webhook_receiver import Receiver

PLANS = {"metered": {"metered": True}}
FAST_WEBHOOKS = {
    "SPLITEDGE_WEBHOOK_BACKOFF": "0.3",
    "SPLITEDGE_WEBHOOK_BACKOFF_CAP": "0.6",
    "SPLITEDGE_WEBHOOK_MAX_ATTEMPTS": "3",
}
DOWN = "http://localhost:9/"  # nothing listens there: its page cannot be fetched


class Env(msgspec.Struct):
    server: Server
    store_path: Path
    pages: str
    receiver: Receiver


class Workspace(msgspec.Struct):
    id: str
    key: str
    site_id: str
    down_site_id: str


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("ideas")
    plans = root / "plans.json"
    plans.write_text(json.dumps(PLANS))
    data = root / "data"
    Store(data / "splitedge.sqlite3").close()
    receiver = Receiver()
    receiver.thread.start()
    try:
        with (
            serve_pages() as pages,
            running_server(
                data, env=FAST_WEBHOOKS, args=["--dev", "--limits", str(plans)]
            ) as server,
        ):
            yield Env(server, data / "splitedge.sqlite3", pages, receiver)
    finally:
        receiver.http.shutdown()
        receiver.http.server_close()


def workspace(env: Env, plan: str = "enterprise", credit: int = 0) -> Workspace:
    """A workspace of its own with a site on the fixture pages and one whose pages are
    down."""
    store = Store(env.store_path)
    try:
        ws = store.create_workspace(f"ws-{time.monotonic_ns()}", plan=plan)
        if credit:
            credits.grant(store, ws.id, credit)
        site = store.create_site(ws.id, env.pages + "/", name="Acme")
        down = store.create_site(ws.id, DOWN, name="Down")
        return Workspace(ws.id, store.issue_api_key(ws.id).key, site.id, down.id)
    finally:
        store.close()


def call(env: Env, ws: Workspace, method: str, path: str, body: Any = None) -> httpx.Response:
    return api_call(env.server, ws.key, method, path, body)


def data_of(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()["data"]


def subscribe(env: Env, ws: Workspace, path: str, events: list[str]) -> None:
    hook = data_of(
        call(env, ws, "POST", "/v1/webhooks", {"url": env.receiver.url(path), "events": events}),
        201,
    )
    env.receiver.secrets[path] = hook["secret"]


def balance(env: Env, ws: Workspace) -> int:
    value: int = data_of(call(env, ws, "GET", "/v1/credits"))["balance"]
    return value


def stored_ideas(env: Env, ws: Workspace, specs: list[tuple[str, str, str]]) -> list[str]:
    """Ideas (site_id, status, category) added in this order; their ids."""
    store = Store(env.store_path)
    try:
        ids = []
        for site_id, status, category in specs:
            idea = add_idea(
                store, ws.id, site_id,
                NewIdea(title=f"{category} idea", category=category, hypothesis="h",
                        mockup_data={"mutations": [{"selector": "h1", "action": "set_content",
                                                    "payload": "x"}]}),
            )  # fmt: skip
            store.conn.execute("UPDATE ideas SET status = ? WHERE id = ?", (status, idea.id))
            ids.append(idea.id)
        return ids
    finally:
        store.close()


def test_the_list_filters_pages_and_names_the_site(env: Env) -> None:
    ws = workspace(env)
    ids = stored_ideas(
        env, ws,
        [(ws.site_id, "new", "cta"), (ws.down_site_id, "approved", "cta"),
         (ws.site_id, "approved", "headline"), (ws.site_id, "new", "headline")],
    )  # fmt: skip
    everything = call(env, ws, "GET", "/v1/ideas").json()
    assert [i["id"] for i in everything["data"]] == ids[::-1]  # newest first
    assert everything["meta"] == {"workspace_id": ws.id, "limit": 20, "offset": 0, "total": 4}
    first = everything["data"][0]
    assert first["sites"] == {"name": "Acme", "url": env.pages + "/"}
    assert first["mockup_data"]["mutations"][0]["selector"] == "h1"
    assert first["status"] == "new" and first["output_type"] == "html"

    def listed(query: str) -> list[str]:
        return [i["id"] for i in data_of(call(env, ws, "GET", f"/v1/ideas?{query}"))]

    assert listed(f"site_id={ws.site_id}") == [ids[3], ids[2], ids[0]]
    assert listed("status=approved") == [ids[2], ids[1]]
    assert listed("category=cta") == [ids[1], ids[0]]
    assert listed(f"site_id={ws.site_id}&status=new&category=headline") == [ids[3]]
    assert listed("limit=2&offset=1") == [ids[2], ids[1]]
    assert listed("status=archived") == []
    wrong = call(env, ws, "GET", "/v1/ideas?status=done")
    assert wrong.status_code == 400 and "new, approved, implemented" in wrong.text
    assert call(env, ws, "GET", "/v1/ideas?limit=101").status_code == 400
    # another workspace sees none of them
    assert data_of(call(env, workspace(env), "GET", "/v1/ideas")) == []


def test_get_one_in_full(env: Env) -> None:
    ws = workspace(env)
    (idea_id,) = stored_ideas(env, ws, [(ws.site_id, "new", "cta")])
    idea = data_of(call(env, ws, "GET", f"/v1/ideas/{idea_id}"))
    assert idea["id"] == idea_id and idea["site_id"] == ws.site_id
    assert idea["sites"]["name"] == "Acme" and idea["mockup_data"]["mutations"]
    missing = call(env, ws, "GET", "/v1/ideas/nope")
    assert missing.status_code == 404 and "GET /v1/ideas lists" in missing.text
    assert call(env, workspace(env), "GET", f"/v1/ideas/{idea_id}").status_code == 404


def test_patch_status_announces_the_change(env: Env) -> None:
    ws = workspace(env)
    subscribe(env, ws, "/status", ["idea.status_changed"])
    (idea_id,) = stored_ideas(env, ws, [(ws.site_id, "new", "cta")])
    changed = data_of(call(env, ws, "PATCH", f"/v1/ideas/{idea_id}", {"status": "approved"}))
    assert changed["status"] == "approved" and changed["updated_at"] >= changed["created_at"]
    assert data_of(call(env, ws, "GET", f"/v1/ideas/{idea_id}"))["status"] == "approved"
    # the same status again changes nothing and announces nothing
    again = data_of(call(env, ws, "PATCH", f"/v1/ideas/{idea_id}", {"status": "approved"}))
    assert again["updated_at"] == changed["updated_at"]
    data_of(call(env, ws, "PATCH", f"/v1/ideas/{idea_id}", {"status": "implemented"}))

    first, second = env.receiver.wait_for("/status", 2)
    time.sleep(0.3)
    assert len(env.receiver.at("/status")) == 2
    assert first.verified and second.verified
    bodies = sorted((json.loads(r.body) for r in (first, second)), key=lambda b: b["status"])
    assert [(b["previous_status"], b["status"]) for b in bodies] == [
        ("new", "approved"), ("approved", "implemented"),
    ]  # fmt: skip
    assert bodies[0]["event"] == "idea.status_changed" and bodies[0]["idea_id"] == idea_id
    assert bodies[0]["site_id"] == ws.site_id and bodies[0]["title"] == "cta idea"

    for body, says in (
        ({"status": "done"}, "not an idea status; use one of new, approved"),
        ({}, "missing required field `status`"),
        ({"status": "new", "title": "x"}, "unknown field `title`"),
    ):
        refused = call(env, ws, "PATCH", f"/v1/ideas/{idea_id}", body)
        assert refused.status_code == 400 and says in refused.text, refused.text
    trail = data_of(call(env, ws, "GET", f"/v1/audit?target_id={idea_id}"))
    assert [(e["action"], e["detail"]) for e in reversed(trail)] == [
        ("idea.status", {"from": "new", "status": "approved"}),
        ("idea.status", {"from": "approved", "status": "implemented"}),
    ]


def test_generate_answers_202_then_the_ideas_arrive_signed(env: Env) -> None:
    ws = workspace(env)
    subscribe(env, ws, "/generated", ["ideas.generated"])
    started = time.monotonic()
    response = call(env, ws, "POST", "/v1/ideas/generate", {"site_id": ws.site_id, "num_ideas": 3})
    accepted = data_of(response, 202)
    # The reference's {success, ideas}: the run is under way, its ideas are still to come.
    assert accepted["success"] is True and accepted["ideas"] == []
    assert accepted["status"] == "generating"
    assert "wait" in accepted["message"]
    assert (accepted["site_id"], accepted["num_ideas"], accepted["output_type"]) == (
        ws.site_id, 3, "html",
    )  # fmt: skip
    assert "ideas.generated" in accepted["message"]

    (delivery,) = env.receiver.wait_for("/generated", 1)
    assert delivery.verified and time.monotonic() - started < 15
    body = json.loads(delivery.body)
    assert body["event"] == "ideas.generated" and body["success"] is True
    assert body["site_id"] == ws.site_id and body["schedule_id"] is None
    assert body["errors"] == [] and 1 <= len(body["ideas"]) <= 3
    listed = data_of(call(env, ws, "GET", f"/v1/ideas?site_id={ws.site_id}"))
    assert {i["id"] for i in listed} == {i["id"] for i in body["ideas"]}
    for idea in listed:
        assert idea["status"] == "new" and idea["title"] and idea["hypothesis"]
        assert idea["mockup_data"]["mutations"], idea
        assert idea["sites"] == {"name": "Acme", "url": env.pages + "/"}
    trail = data_of(call(env, ws, "GET", f"/v1/audit?target_id={ws.site_id}"))
    assert trail[0]["action"] == "ideas.generate"
    assert sorted(trail[0]["detail"]["ideas"]) == sorted(i["id"] for i in listed)


def test_wait_answers_the_stored_ideas(env: Env) -> None:
    ws = workspace(env)
    generated = data_of(
        call(env, ws, "POST", "/v1/ideas/generate",
             {"site_id": ws.site_id, "num_ideas": 2, "output_type": "screenshot", "wait": True}),
    )  # fmt: skip
    assert generated["success"] is True and 1 <= len(generated["ideas"]) <= 2
    assert all(i["output_type"] == "screenshot" for i in generated["ideas"])
    stored = data_of(call(env, ws, "GET", "/v1/ideas"))
    assert [i["id"] for i in stored] == [i["id"] for i in reversed(generated["ideas"])]


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({}, 400, "site_id is required"),
        ({"site_id": "nope"}, 404, "No site 'nope' in this workspace"),
        ({"num_ideas": 11}, 400, "num_ideas"),
        ({"num_ideas": 0}, 400, "num_ideas"),
        ({"output_type": "pdf"}, 400, "output_type"),
    ],
)
def test_generate_refuses_a_wrong_request(
    env: Env, body: dict[str, Any], status: int, says: str
) -> None:
    ws = workspace(env, plan="metered", credit=10)
    if body and "site_id" not in body:
        body = {"site_id": ws.site_id, **body}
    refused = call(env, ws, "POST", "/v1/ideas/generate", body)
    assert refused.status_code == status and says in refused.text, refused.text
    assert balance(env, ws) == 10  # nothing charged


def test_credits_a_failed_run_is_refunded_and_announced(env: Env) -> None:
    ws = workspace(env, plan="metered", credit=21)
    subscribe(env, ws, "/failed", ["ideas.generated"])
    data_of(call(env, ws, "POST", "/v1/ideas/generate", {"site_id": ws.down_site_id}), 202)
    (delivery,) = env.receiver.wait_for("/failed", 1)
    body = json.loads(delivery.body)
    assert delivery.verified and body["success"] is False and body["ideas"] == []
    (error,) = body["errors"]
    assert error["url"] == DOWN and error["code"] == "page_unavailable"
    assert balance(env, ws) == 21  # charged 10, refunded 10
    ledger = data_of(call(env, ws, "GET", "/v1/credits/ledger"))
    assert [(e["reason"], e["delta"]) for e in reversed(ledger)] == [
        ("grant", 21), ("generate_ideas", -10), ("refund:generate_ideas", 10),
    ]  # fmt: skip
    # waiting, the failure is the caller's 422, refunded as well
    waited = call(env, ws, "POST", "/v1/ideas/generate", {"site_id": ws.down_site_id, "wait": True})
    assert waited.status_code == 422, waited.text
    assert waited.json()["error"]["code"] == "page_unavailable"
    assert balance(env, ws) == 21

    # a run that succeeds costs 10; list_ideas costs 1
    data_of(call(env, ws, "POST", "/v1/ideas/generate", {"site_id": ws.site_id, "wait": True}))
    assert balance(env, ws) == 11
    data_of(call(env, ws, "GET", "/v1/ideas"))
    assert balance(env, ws) == 10
    data_of(
        call(env, ws, "GET", f"/v1/ideas/{data_of(call(env, ws, 'GET', '/v1/ideas'))[0]['id']}")
    )
    assert balance(env, ws) == 9  # one more list; getting one idea is free
    # 9 cannot pay for a run: 402 at once, nothing started
    short = call(env, ws, "POST", "/v1/ideas/generate", {"site_id": ws.site_id})
    assert short.status_code == 402 and "generate_ideas costs 10 credits" in short.text
    # the two failed runs and the good one were announced; the refused one never ran
    env.receiver.wait_for("/failed", 3)
    time.sleep(0.3)
    announced = [json.loads(r.body)["success"] for r in env.receiver.at("/failed")]
    assert sorted(announced) == [False, False, True]
    assert balance(env, ws) == 9
