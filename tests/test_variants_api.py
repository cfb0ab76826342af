"""Authoring routes against a real server (metered plans) with the HTML fixture pages on
loopback: ``POST /v1/variants/generate`` (a draft whose selectors exist on the page, the
cross-domain warning, needs_clarification, what is charged and what is free), the prompt
path of ``POST /v1/experiments`` (15 credits with auto_launch, the draft's goals and
hypothesis, needs_clarification creating nothing for 10, the mutually exclusive fields),
and ``GET /v1/sites/{site_id}/intelligence`` (2 credits)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from bs4 import BeautifulSoup

from edge.control import credits
from edge.control.previews import PreviewTokens
from edge.control.store import Store
from tests.page_server import FIXTURES, serve_pages
from tests.support import Server, api_call, running_server

PLANS = {"metered": {"metered": True}}
PRICE_PROMPT = (
    "Change the hero price from $99 to $499 and link the CTA to https://buy.stripe.com/pro_abc123"
)


class Env(msgspec.Struct):
    server: Server
    store_path: Path
    pages: str


class Workspace(msgspec.Struct):
    id: str
    key: str
    site_id: str
    down_site_id: str


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("variants")
    plans = root / "plans.json"
    plans.write_text(json.dumps(PLANS))
    data = root / "data"
    Store(data / "splitedge.sqlite3").close()
    with (
        serve_pages() as pages,
        running_server(data, args=["--limits", str(plans), "--allow-private-targets"]) as server,
    ):
        yield Env(server, data / "splitedge.sqlite3", pages)


def workspace(env: Env, plan: str = "enterprise", credit: int = 0) -> Workspace:
    store = Store(env.store_path)
    try:
        ws = store.create_workspace(f"ws-{time.monotonic_ns()}", plan=plan)
        if credit:
            credits.grant(store, ws.id, credit)
        site = store.create_site(ws.id, env.pages + "/", name="Acme")
        down = store.create_site(ws.id, "http://localhost:9/", name="Down")
        return Workspace(ws.id, store.issue_api_key(ws.id).key, site.id, down.id)
    finally:
        store.close()


def call(env: Env, ws: Workspace, method: str, path: str, body: Any = None) -> httpx.Response:
    return api_call(env.server, ws.key, method, path, body)


def data_of(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()["data"]


def balance(env: Env, ws: Workspace) -> int:
    value: int = data_of(call(env, ws, "GET", "/v1/credits"))["balance"]
    return value


def experiments_of(env: Env, ws: Workspace) -> list[tuple[Any, ...]]:
    store = Store(env.store_path)
    try:
        return store.conn.execute(
            "SELECT id FROM experiments WHERE workspace_id = ?", (ws.id,)
        ).fetchall()
    finally:
        store.close()


def on_pricing_page(selector: str) -> int:
    page = BeautifulSoup((FIXTURES / "pricing.html").read_text(), "html.parser")
    return len(page.select(selector))


# -- POST /v1/variants/generate ----------------------------------------------------------


def test_a_prompt_gives_mutations_whose_selectors_are_on_the_page(env: Env) -> None:
    ws = workspace(env)
    pricing = env.pages + "/pricing"
    draft = data_of(
        call(env, ws, "POST", "/v1/variants/generate",
             {"site_id": ws.site_id, "prompt": PRICE_PROMPT, "target_url": pricing}),
    )  # fmt: skip
    mutations = draft["variant"]["mutations"]
    assert {(m["action"], m["payload"]) for m in mutations} == {
        ("set_content", "$499"), ("set_attribute", "https://buy.stripe.com/pro_abc123"),
    }  # fmt: skip
    assert all(on_pricing_page(m["selector"]) == 1 for m in mutations)
    (goal,) = draft["suggested_goals"]
    assert goal["type"] == "click" and on_pricing_page(goal["selector"]) == 1
    assert draft["hypothesis"] and draft["variant"]["redirect_url"] is None
    context = draft["context"]
    assert context["page_analyzed"] == pricing and context["warnings"] == []
    assert "Stripe" in context["tech_stack"]


def test_a_target_on_another_domain_is_authored_with_a_warning(env: Env) -> None:
    ws = workspace(env)
    elsewhere = env.pages.replace("127.0.0.1", "localhost") + "/pricing"
    draft = data_of(
        call(env, ws, "POST", "/v1/variants/generate",
             {"site_id": ws.site_id, "prompt": PRICE_PROMPT, "target_url": elsewhere}),
    )  # fmt: skip
    assert draft["variant"]["mutations"]
    assert any("localhost" in w for w in draft["context"]["warnings"]), draft["context"]


def test_no_page_in_the_prompt_asks_which_page(env: Env) -> None:
    ws = workspace(env)
    answer = data_of(
        call(env, ws, "POST", "/v1/variants/generate",
             {"site_id": ws.site_id, "prompt": "Change the price from $99 to $499"}),
    )  # fmt: skip
    (question,) = answer["needs_clarification"]["questions"]
    assert (question["field"], question["input_type"], question["required"]) == (
        "target_url", "url", True,
    )  # fmt: skip
    assert env.pages + "/pricing" in question["suggestions"]
    assert "target_url" in answer["needs_clarification"]["retry_hint"]


def test_generate_charges_a_variant_and_a_clarification_alike_and_nothing_else(
    env: Env,
) -> None:
    ws = workspace(env, plan="metered", credit=29)
    body = {"site_id": ws.site_id, "prompt": PRICE_PROMPT, "target_url": env.pages + "/pricing"}
    data_of(call(env, ws, "POST", "/v1/variants/generate", body))
    assert balance(env, ws) == 19
    free = [
        ({"prompt": PRICE_PROMPT}, 400, "site_id is required"),
        ({"site_id": ws.site_id, "prompt": "Bigger"}, 400, "prompt is 6 characters"),
        ({"site_id": ws.site_id}, 400, "prompt is required"),
        ({**body, "target_url": "/pricing"}, 400, "target_url '/pricing' is not an absolute"),
        ({**body, "site_id": "nope"}, 404, "No site 'nope'"),
        ({**body, "target_url": "http://localhost:9/pricing"}, 422, "could not be fetched"),
    ]
    for sent, status, says in free:
        refused = call(env, ws, "POST", "/v1/variants/generate", sent)
        assert refused.status_code == status and says in refused.text, (sent, refused.text)
    assert balance(env, ws) == 19
    asked = {"site_id": ws.site_id, "prompt": "Change the price from $99 to $499"}
    assert "needs_clarification" in data_of(call(env, ws, "POST", "/v1/variants/generate", asked))
    assert balance(env, ws) == 9
    short = call(env, ws, "POST", "/v1/variants/generate", body)
    assert short.status_code == 402, short.text
    assert "generate_variant costs 10 credits and this workspace has 9" in short.text
    assert balance(env, ws) == 9
    ledger = data_of(call(env, ws, "GET", "/v1/credits/ledger"))
    assert [(e["reason"], e["delta"]) for e in reversed(ledger)] == [
        ("grant", 29), ("generate_variant", -10), ("generate_variant", -10),
    ]  # fmt: skip


# -- the prompt path of POST /v1/experiments ---------------------------------------------


def test_one_shot_create_costs_15_and_launches(env: Env) -> None:
    ws = workspace(env, plan="metered", credit=40)
    pricing = env.pages + "/pricing"
    created = data_of(
        call(env, ws, "POST", "/v1/experiments",
             {"site_id": ws.site_id, "name": "Pro pricing $499", "prompt": PRICE_PROMPT,
              "target_url": pricing, "auto_launch": True}),
        201,
    )  # fmt: skip
    experiment = created["experiment"]
    assert created["launch"] == {"status": "running"} and experiment["status"] == "running"
    control, variant = experiment["variants"]
    assert control["is_control"] and control["changes"] == []
    assert {m["payload"] for m in variant["changes"]} == {
        "$499", "https://buy.stripe.com/pro_abc123",
    }  # fmt: skip
    assert all(on_pricing_page(m["selector"]) == 1 for m in variant["changes"])
    (goal,) = experiment["goals"]  # the author's suggested goal
    assert goal["type"] == "click" and on_pricing_page(goal["selector"]) == 1
    assert "$499" in experiment["hypothesis"]
    assert experiment["target_url"] == pricing and experiment["url_pattern"] is None
    preview = PreviewTokens(env.store_path).token(experiment["id"], variant["id"])
    assert created["preview_urls"][0]["url"] == f"{pricing}?sk_preview={preview}"
    assert balance(env, ws) == 25  # 5 create + 10 generate; the launch is free
    ledger = data_of(call(env, ws, "GET", "/v1/credits/ledger"))
    assert [(e["reason"], e["delta"]) for e in reversed(ledger)] == [
        ("grant", 40), ("create_experiment", -15),
    ]  # fmt: skip
    trail = data_of(call(env, ws, "GET", f"/v1/audit?target_id={experiment['id']}"))
    assert [e["action"] for e in reversed(trail)] == ["experiment.create", "experiment.launch"]


def test_the_body_wins_over_the_draft(env: Env) -> None:
    ws = workspace(env)
    goals = [{"name": "Signup", "type": "pageview", "url_pattern": "/welcome"}]
    experiment = data_of(
        call(env, ws, "POST", "/v1/experiments",
             {"site_id": ws.site_id, "name": "Mine", "prompt": PRICE_PROMPT,
              "target_url": env.pages + "/pricing", "goals": goals,
              "hypothesis": "Mine", "url_pattern": "/pricing", "traffic_split": 20}),
        201,
    )["experiment"]  # fmt: skip
    assert [(g["name"], g["type"]) for g in experiment["goals"]] == [("Signup", "pageview")]
    assert experiment["hypothesis"] == "Mine" and experiment["url_pattern"] == "/pricing"
    assert experiment["traffic_split"] == 20 and experiment["status"] == "draft"


def test_a_prompt_that_needs_clarification_creates_nothing_and_costs_10(env: Env) -> None:
    ws = workspace(env, plan="metered", credit=20)
    answer = call(
        env, ws, "POST", "/v1/experiments",
        {"site_id": ws.site_id, "name": "Where?", "prompt": "Change the price from $99 to $499",
         "auto_launch": True},
    )  # fmt: skip
    questions = data_of(answer)["needs_clarification"]["questions"]
    assert questions[0]["field"] == "target_url"
    assert experiments_of(env, ws) == []
    assert balance(env, ws) == 10
    ledger = data_of(call(env, ws, "GET", "/v1/credits/ledger"))
    assert [(e["reason"], e["delta"]) for e in ledger] == [("generate_variant", -10), ("grant", 20)]


def test_a_prompt_create_refuses_before_it_authors_and_charges_nothing(env: Env) -> None:
    ws = workspace(env, plan="metered", credit=15)
    base = {"site_id": ws.site_id, "name": "One-shot", "prompt": PRICE_PROMPT,
            "target_url": env.pages + "/pricing"}  # fmt: skip
    changes = [{"selector": "h1", "action": "set_content", "payload": "x"}]
    refused = [
        ({**base, "idea_id": "idea-1"}, 400, "prompt and idea_id are mutually exclusive"),
        ({**base, "variants": [{"name": "B", "changes": changes}]}, 400,
         "prompt and variants are mutually exclusive"),
        ({**base, "name": " "}, 400, "name is required"),
        ({**base, "prompt": "Short"}, 400, "prompt is 5 characters"),
        ({**base, "site_id": None}, 400, "site_id is required"),
        ({**base, "goals": [{"name": "Buy", "type": "click"}]}, 400, "without a selector"),
        ({**base, "url_pattern": "https://x.example/p"}, 400, "url_pattern"),
        ({**base, "max_cost_increase": 0.3}, 400, "max_cost_increase"),
        ({**base, "target_url": "http://localhost:9/pricing"}, 422, "could not be fetched"),
    ]  # fmt: skip
    for body, status, says in refused:
        answer = call(env, ws, "POST", "/v1/experiments", body)
        assert answer.status_code == status and says in answer.text, (body, answer.text)
    assert balance(env, ws) == 15 and experiments_of(env, ws) == []
    poor = workspace(env, plan="metered", credit=14)
    short = call(env, poor, "POST", "/v1/experiments", {**base, "site_id": poor.site_id})
    assert short.status_code == 402, short.text
    assert "create_experiment costs 15 credits and this workspace has 14" in short.text
    assert balance(env, poor) == 14 and experiments_of(env, poor) == []


# -- GET /v1/sites/{site_id}/intelligence -----------------------------------------------


def test_site_intelligence_reads_the_homepage_for_2_credits(env: Env) -> None:
    ws = workspace(env, plan="metered", credit=5)
    found = data_of(call(env, ws, "GET", f"/v1/sites/{ws.site_id}/intelligence"))
    page = BeautifulSoup((FIXTURES / "index.html").read_text(), "html.parser")
    intelligence = found["intelligence"]
    assert intelligence["url"] == env.pages + "/"
    assert intelligence["title"] == page.title.get_text(strip=True)  # type: ignore[union-attr]
    assert intelligence["description"] and intelligence["headings"]
    assert intelligence["headings"][0] == page.h1.get_text(" ", strip=True)  # type: ignore[union-attr]
    assert "Next.js" in intelligence["tech_stack"] and intelligence["updated_at"]
    assert found["keywords"] and found["competitors"] == []
    keyword = found["keywords"][0]
    assert keyword["tier"] == "primary" and 0 < keyword["relevance_score"] <= 1
    assert balance(env, ws) == 3
    # free when it fails or is refused
    down = call(env, ws, "GET", f"/v1/sites/{ws.down_site_id}/intelligence")
    assert down.status_code == 422 and down.json()["error"]["code"] == "page_unavailable"
    assert call(env, ws, "GET", "/v1/sites/nope/intelligence").status_code == 404
    assert balance(env, ws) == 3
    data_of(call(env, ws, "GET", f"/v1/sites/{ws.site_id}/intelligence"))
    short = call(env, ws, "GET", f"/v1/sites/{ws.site_id}/intelligence")
    assert short.status_code == 402 and "get_site_intelligence costs 2" in short.text
    assert balance(env, ws) == 1
    other = workspace(env)
    assert call(env, other, "GET", f"/v1/sites/{ws.site_id}/intelligence").status_code == 404
