"""The console's webhooks, keys, credits, audit, loops and ideas pages, through a real
server, store and chDB: each page answers only its workspace's things (workspace B's ids
are the console's 404, by URL and by form); every form refuses a missing or forged CSRF
token; a webhook's secret and a new key are shown once; the delivery log shows retries;
revoking the session's own key signs it out; names render as text."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import urlencode

import httpx
import msgspec
import pytest

from edge.config import MutationConfig
from edge.control import credits
from edge.control.idea_records import NewIdea
from edge.control.ideas import add_idea
from edge.control.loop_records import LoopConfig, LoopGoal
from edge.control.loops import create_loop
from edge.control.store import Store
from tests.browser import chromium
from tests.console_support import csrf, signed_in
from tests.support import Seed, Server, api_call, running_server, seed_store

pytestmark = pytest.mark.server

HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>\u2028'
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&gt;&lt;img src=x onerror=alert(2)&gt;"
FAST_WEBHOOKS = {
    "SPLITEDGE_WEBHOOK_BACKOFF": "0.3",
    "SPLITEDGE_WEBHOOK_BACKOFF_CAP": "0.6",
    "SPLITEDGE_WEBHOOK_MAX_ATTEMPTS": "3",
}
PAGE_LIMIT = 150 * 1024


class Env(msgspec.Struct):
    server: Server
    seed: Seed
    loop_id: str
    idea_id: str
    payg_key: str
    theirs: dict[str, str]


def _loop(store: Store, workspace_id: str, site_id: str, url: str, name: str) -> str:
    config = LoopConfig(name, site_id, url, ("headline",), LoopGoal("Clicks", "click", "a"))
    challenger = (MutationConfig("h1", "set_content", "Challenger headline"),)
    loop, _ = create_loop(store, workspace_id, None, config, challenger, None, datetime.now(UTC))
    return loop.id


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("console-admin")
    plans = root / "plans.json"
    plans.write_text(json.dumps({"payg": {"metered": True}}))
    data = root / "data"
    store_path = data / "splitedge.sqlite3"
    seed = seed_store(store_path)
    b_workspace = seed.other_site.workspace_id
    store = Store(store_path)
    try:
        store.issue_api_key(seed.workspace_id, name=HOSTILE)
        mutations = {"mutations": [{"selector": "h1", "action": "set_content", "payload": "X"}]}
        idea = add_idea(
            store,
            seed.workspace_id,
            seed.site.id,
            NewIdea(title=HOSTILE, hypothesis=HOSTILE, mockup_data=mutations),
        )
        b_idea = add_idea(store, b_workspace, seed.other_site.id, NewIdea(title="B's idea"))
        loop_id = _loop(store, seed.workspace_id, seed.site.id, seed.site.url, HOSTILE)
        b_loop = _loop(store, b_workspace, seed.other_site.id, seed.other_site.url, "B's loop")
        payg = store.create_workspace("payg", "payg")
        payg_key = store.issue_api_key(payg.id)
        credits.grant(store, payg.id, 500)
    finally:
        store.close()
    with running_server(data, env=FAST_WEBHOOKS, args=["--dev", "--limits", str(plans)]) as server:
        hook = api_call(
            server,
            seed.other_key.key,
            "POST",
            "/v1/webhooks",
            {"url": "http://127.0.0.1:9/b", "events": ["experiment.completed"]},
        )
        assert hook.status_code == 201, hook.text
        theirs = {
            "webhook": hook.json()["data"]["id"],
            "key": seed.other_key.record.id,
            "loop": b_loop,
            "idea": b_idea.id,
        }
        yield Env(server, seed, loop_id, idea.id, payg_key.key, theirs)


def api(env: Env, method: str, path: str, body: object = None) -> httpx.Response:
    return api_call(env.server, env.seed.key.key, method, path, body)


def a_webhook(env: Env, events: list[str]) -> str:
    hook = api(env, "POST", "/v1/webhooks", {"url": "http://127.0.0.1:9/a", "events": events})
    assert hook.status_code == 201, hook.text
    webhook_id: str = hook.json()["data"]["id"]
    return webhook_id


def spare_key(env: Env, name: str = "spare") -> tuple[str, str]:
    created = api(env, "POST", "/v1/keys", {"name": name}).json()["data"]
    return created["id"], created["key"]


def test_every_page_answers_within_its_budget(env: Env) -> None:
    webhook_id = a_webhook(env, ["experiment.launched"])
    key_id, _ = spare_key(env)
    pages = [
        "/console/webhooks", f"/console/webhooks/{webhook_id}",
        f"/console/webhooks/{webhook_id}/delete", "/console/keys",
        f"/console/keys/{key_id}/revoke", "/console/credits", "/console/audit",
        "/console/loops", f"/console/loops/{env.loop_id}", f"/console/loops/{env.loop_id}/pause",
        "/console/ideas", f"/console/ideas/{env.idea_id}", "/console/ideas?status=new",
    ]  # fmt: skip
    with signed_in(env.server, env.seed.key.key) as client:
        for path in pages:
            answer = client.get(path)
            assert answer.status_code == 200, (path, answer.text)
            assert "unsafe-inline" not in answer.headers["content-security-policy"]
            assert len(answer.content) < PAGE_LIMIT, path
            assert ' style="' not in answer.text and "<script>" not in answer.text, path
            # Every control a person fills in has its label.
            for control in re.findall(
                r'<(?:input|select|textarea)[^>]*\bid="([^"]+)"', answer.text
            ):
                assert f'for="{control}"' in answer.text, (path, control)


def test_another_workspaces_ids_are_404_by_url_and_by_form(env: Env) -> None:
    theirs = env.theirs
    gets = [
        f"/console/webhooks/{theirs['webhook']}", f"/console/webhooks/{theirs['webhook']}/delete",
        f"/console/keys/{theirs['key']}/revoke", f"/console/loops/{theirs['loop']}",
        f"/console/loops/{theirs['loop']}/pause", f"/console/ideas/{theirs['idea']}",
    ]  # fmt: skip
    posts = [
        (f"/console/webhooks/{theirs['webhook']}/delete", {}),
        (f"/console/keys/{theirs['key']}/revoke", {}),
        (f"/console/loops/{theirs['loop']}/pause", {}),
        (f"/console/ideas/{theirs['idea']}/status", {"status": "rejected"}),
    ]
    with signed_in(env.server, env.seed.key.key) as client:
        for path in gets:
            answer = client.get(path)
            assert answer.status_code == 404, (path, answer.text)
            assert "B&#39;s" not in answer.text and "127.0.0.1:9/b" not in answer.text
        token = csrf(client)
        for path, fields in posts:
            answer = client.post(path, data={"csrf_token": token, **fields})
            assert answer.status_code == 404, (path, answer.text)
        for path in ("/console/webhooks", "/console/keys", "/console/loops", "/console/ideas",
                     "/console/audit"):  # fmt: skip
            text = client.get(path).text
            assert all(value not in text for value in theirs.values()), path
            assert "B&#39;s" not in text, path
    # Nothing of B's changed: its key works, its endpoint, loop and idea are as they were.
    b_key = env.seed.other_key.key
    hooks = api_call(env.server, b_key, "GET", "/v1/webhooks").json()["data"]
    assert [h["id"] for h in hooks] == [theirs["webhook"]]
    loop = api_call(env.server, b_key, "GET", f"/v1/loops/{theirs['loop']}").json()["data"]
    assert loop["loop"]["status"] == "running"
    idea = api_call(env.server, b_key, "GET", f"/v1/ideas/{theirs['idea']}").json()["data"]
    assert idea["status"] == "new"


def test_every_form_refuses_a_missing_or_forged_csrf_token(env: Env) -> None:
    webhook_id = a_webhook(env, ["experiment.launched"])
    key_id, key = spare_key(env)
    forms = [
        ("/console/webhooks", {"url": "http://127.0.0.1:9/x", "events": "experiment.launched"}),
        (f"/console/webhooks/{webhook_id}/delete", {}),
        ("/console/keys", {"name": "forged", "flavour": "splitedge"}),
        (f"/console/keys/{key_id}/revoke", {}),
        (f"/console/loops/{env.loop_id}/pause", {}),
        (f"/console/loops/{env.loop_id}/resume", {}),
        (f"/console/ideas/{env.idea_id}/status", {"status": "rejected"}),
    ]
    before = api(env, "GET", "/v1/audit?limit=1").json()["meta"]["total"]
    with signed_in(env.server, env.seed.key.key) as client:
        for path, fields in forms:
            for token in ({}, {"csrf_token": "0" * 64}):
                # As a browser sends it: a form body, even an empty one.
                answer = client.post(
                    path, content=urlencode({**fields, **token}),
                    headers={"content-type": "application/x-www-form-urlencoded"},
                )  # fmt: skip
                assert answer.status_code == 403, (path, token, answer.text)
    assert api(env, "GET", "/v1/audit?limit=1").json()["meta"]["total"] == before
    assert api_call(env.server, key, "GET", "/v1/keys").status_code == 200


def test_a_webhooks_secret_is_shown_once_its_log_shows_retries_and_delete_asks(env: Env) -> None:
    with signed_in(env.server, env.seed.key.key) as client:
        token = csrf(client, "/console/webhooks")
        wrong = client.post(
            "/console/webhooks", data={"csrf_token": token, "url": "ftp://x", "events": "x"}
        )
        assert wrong.status_code == 400 and 'role="alert"' in wrong.text
        created = client.post("/console/webhooks", data={
            "csrf_token": token, "url": "http://127.0.0.1:9/retry",
            "events": ["idea.status_changed", "experiment.launched"],
        })  # fmt: skip
        assert created.status_code == 201, created.text
        (secret,) = set(re.findall(r"whsec_[A-Za-z0-9+/]+", created.text))
        assert "shown this once" in created.text
        hook = next(h for h in api(env, "GET", "/v1/webhooks?limit=100").json()["data"]
                    if h["url"] == "http://127.0.0.1:9/retry")  # fmt: skip
        listing = client.get("/console/webhooks")
        assert "http://127.0.0.1:9/retry" in listing.text and secret not in listing.text
        # An event for it: nothing listens on port 9, so each attempt fails and is retried.
        assert api(env, "PATCH", f"/v1/ideas/{env.idea_id}", {"status": "approved"}).is_success
        deadline = time.monotonic() + 60
        while True:
            log = client.get(f"/console/webhooks/{hook['id']}")
            assert log.status_code == 200 and secret not in log.text
            if log.text.count('data-label="Attempt"') >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert log.text.count('data-label="Attempt"') >= 3, log.text
        assert "idea.status_changed" in log.text and "failed" in log.text
        confirm = client.get(f"/console/webhooks/{hook['id']}/delete")
        assert "stops receiving events" in confirm.text and "cannot be undone" in confirm.text
        gone = client.post(f"/console/webhooks/{hook['id']}/delete", data={"csrf_token": token})
        assert gone.status_code == 303 and gone.headers["location"] == "/console/webhooks"
        assert "http://127.0.0.1:9/retry" not in client.get("/console/webhooks").text
        # Its log stays readable, saying it was deleted.
        assert "was deleted" in client.get(f"/console/webhooks/{hook['id']}").text


def test_a_key_is_shown_once_and_revoked_after_asking(env: Env) -> None:
    with signed_in(env.server, env.seed.key.key) as client:
        token = csrf(client, "/console/keys")
        empty = client.post("/console/keys", data={"csrf_token": token, "name": ""})
        assert empty.status_code == 400 and 'role="alert"' in empty.text
        created = client.post(
            "/console/keys", data={"csrf_token": token, "name": "from the console",
                                   "flavour": "clawsplit"},
        )  # fmt: skip
        assert created.status_code == 201, created.text
        (key,) = set(re.findall(r"cs_live_[A-Za-z0-9_-]{43}", created.text))
        assert "shown this once" in created.text
        assert api_call(env.server, key, "GET", "/v1/sites").status_code == 200
        listing = client.get("/console/keys")
        assert key not in listing.text and key[:16] in listing.text
        assert "(this session)" in listing.text
        key_id = next(k["id"] for k in api(env, "GET", "/v1/keys?limit=100").json()["data"]
                      if k["prefix"] == key[:16])  # fmt: skip
        confirm = client.get(f"/console/keys/{key_id}/revoke")
        assert "stops working at once" in confirm.text and "signs you out" not in confirm.text
        revoked = client.post(f"/console/keys/{key_id}/revoke", data={"csrf_token": token})
        assert revoked.status_code == 303 and revoked.headers["location"] == "/console/keys"
        assert api_call(env.server, key, "GET", "/v1/sites").status_code == 401
        assert "revoked" in client.get("/console/keys").text


def test_revoking_the_sessions_own_key_signs_it_out(env: Env) -> None:
    _, key = spare_key(env, "session")
    with signed_in(env.server, key) as client:
        own = next(k for k in api_call(env.server, key, "GET", "/v1/keys?limit=100")
                   .json()["data"] if k["current"])  # fmt: skip
        confirm = client.get(f"/console/keys/{own['id']}/revoke")
        assert "signs you out" in confirm.text
        token = csrf(client)
        revoked = client.post(f"/console/keys/{own['id']}/revoke", data={"csrf_token": token})
        assert revoked.status_code == 303
        assert revoked.headers["location"] == "/console/sign-in"
        after = client.get("/console/keys")
        assert after.status_code == 303 and after.headers["location"] == "/console/sign-in"


def test_names_render_as_text(env: Env) -> None:
    with signed_in(env.server, env.seed.key.key) as client:
        for path in ("/console/keys", "/console/loops", f"/console/loops/{env.loop_id}",
                     f"/console/loops/{env.loop_id}/pause", "/console/ideas",
                     f"/console/ideas/{env.idea_id}"):  # fmt: skip
            text = client.get(path).text
            assert ESCAPED in text, path
            assert "<script>alert" not in text and "<img src=x" not in text, path


def test_credits_when_metering_is_off_and_on(env: Env) -> None:
    with signed_in(env.server, env.seed.key.key) as client:
        off = client.get("/console/credits")
        assert "Metering is off" in off.text and "enterprise" in off.text
        assert "Ledger" not in off.text
    with signed_in(env.server, env.payg_key) as client:
        on = client.get("/console/credits")
        assert on.status_code == 200 and "Metering is off" not in on.text
        balance = api_call(env.server, env.payg_key, "GET", "/v1/credits").json()["data"]
        assert f'<strong class="balance">{balance["balance"]}</strong>' in on.text
        assert "Ledger" in on.text and ">+500<" in on.text and ">grant<" in on.text


def test_the_audit_trail_is_paged_and_filtered(env: Env) -> None:
    for i in range(52):
        status = "approved" if i % 2 else "rejected"
        assert api(env, "PATCH", f"/v1/ideas/{env.idea_id}", {"status": status}).is_success
    with signed_in(env.server, env.seed.key.key) as client:
        first = client.get("/console/audit?action=idea.status")
        assert first.status_code == 200
        assert first.text.count('data-label="Action"') == 50
        # The key that made each change, by its prefix and name.
        assert f"{env.seed.key.record.prefix}… (default)" in first.text
        assert 'rel="next"' in first.text and 'rel="prev"' not in first.text
        older = re.search(r'href="\?([^"]+)" rel="next"', first.text)
        assert older is not None and "action=idea.status" in older.group(1)
        second = client.get("/console/audit?" + older.group(1).replace("&amp;", "&"))
        assert second.status_code == 200 and 'rel="prev"' in second.text
        assert 1 <= second.text.count('data-label="Action"') <= 50
        assert "loop.created" in client.get("/console/audit?action=loop.created").text
        assert client.get("/console/audit?offset=-1").status_code == 400


def test_a_loop_shows_its_rounds_champion_and_challenger_and_pauses_after_asking(
    env: Env,
) -> None:
    page = f"/console/loops/{env.loop_id}"
    with signed_in(env.server, env.seed.key.key) as client:
        shown = client.get(page)
        assert shown.status_code == 200
        assert "Champion" in shown.text and "Challenger headline" in shown.text
        assert "Round 1" in shown.text and 'data-label="Outcome"' in shown.text
        assert f'href="/console/loops/{env.loop_id}/pause"' in shown.text
        confirm = client.get(page + "/pause")
        assert "visitors see the champion only" in confirm.text
        token = csrf(client, page)
        paused = client.post(page + "/pause", data={"csrf_token": token})
        assert paused.status_code == 303 and paused.headers["location"] == page
        shown = client.get(page)
        assert "<strong>paused</strong>" in shown.text and page + "/resume" in shown.text
        resumed = client.post(page + "/resume", data={"csrf_token": token})
        assert resumed.status_code == 303
        assert "<strong>running</strong>" in client.get(page).text
        assert client.get(page + "/explode").status_code == 404


def test_ideas_are_approved_and_rejected(env: Env) -> None:
    page = f"/console/ideas/{env.idea_id}"
    with signed_in(env.server, env.seed.key.key) as client:
        token = csrf(client, page)
        approved = client.post(page + "/status", data={"csrf_token": token, "status": "approved"})
        assert approved.status_code == 303 and approved.headers["location"] == page
        assert "Status <strong>approved</strong>" in client.get(page).text
        listed = client.get("/console/ideas?status=approved")
        assert ESCAPED in listed.text
        assert ESCAPED not in client.get("/console/ideas?status=rejected").text
        rejected = client.post(
            page + "/status", data={"csrf_token": token, "status": "rejected", "back": "list"}
        )
        assert rejected.status_code == 303 and rejected.headers["location"] == "/console/ideas"
        assert api(env, "GET", f"/v1/ideas/{env.idea_id}").json()["data"]["status"] == "rejected"
        odd = client.post(page + "/status", data={"csrf_token": token, "status": "implemented"})
        assert odd.status_code == 400


@pytest.mark.browser
def test_the_pages_fit_390_px_with_no_console_errors_in_chromium(env: Env) -> None:
    webhook_id = a_webhook(env, ["experiment.launched"])
    paths = [
        "/console/webhooks", f"/console/webhooks/{webhook_id}",
        f"/console/webhooks/{webhook_id}/delete", "/console/keys", "/console/credits",
        "/console/audit", "/console/loops", f"/console/loops/{env.loop_id}",
        f"/console/loops/{env.loop_id}/pause", "/console/ideas", f"/console/ideas/{env.idea_id}",
    ]  # fmt: skip
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 390, "height": 844})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(env.server.base_url + "/")
        page.get_by_label("API key").fill(env.seed.key.key)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(env.server.base_url + "/")
        for width in (390, 1280):
            page.set_viewport_size({"width": width, "height": 844})
            for path in paths:
                page.goto(env.server.base_url + path)
                overflow = page.evaluate(
                    "document.documentElement.scrollWidth - document.documentElement.clientWidth"
                )
                assert overflow <= 0, (width, path, overflow)
        # Keyboard: the create-key form is filled and sent without a pointer.
        page.goto(env.server.base_url + "/console/keys")
        page.get_by_label("Name").focus()
        page.keyboard.type("typed by keyboard")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert page.get_by_role("heading", name="Key created").is_visible()
        assert "shown this once" in page.content()
    assert errors == []
