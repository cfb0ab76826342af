"""The console's experiments through a real server and store, signed in with an API key:
the list by site and status; creating from explicit changes (and a redirect), from a
prompt through the rule-based author (its draft's changes and preview links, or its
needs_clarification questions, nothing created), an agent experiment with its variants'
configs, a blank draft filled in later; an experiment's page with its variants, changes
and preview links; each lifecycle button's confirmation and action through the API's own
routes; a refused form showing the API's 400 beside it; CSRF on every form; another
workspace's experiment a 404 on every page; hostile names rendered as text."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from edge.control.store import Store
from tests.browser import chromium
from tests.console_support import csrf, signed_in
from tests.page_server import serve_pages
from tests.support import Seed, Server, api_call, running_server, seed_store

pytestmark = pytest.mark.server

HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>\u2028'
PRICE_PROMPT = (
    "Change the hero price from $99 to $499 and link the CTA to https://buy.stripe.com/pro_abc123"
)
ACTIONS = ("launch", "pause", "resume", "complete", "deploy", "archive")


class Env(msgspec.Struct):
    server: Server
    seed: Seed
    pages: str
    site_id: str
    hostile_site_id: str


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data = tmp_path_factory.mktemp("console-experiments") / "data"
    store_path = data / "splitedge.sqlite3"
    seed = seed_store(store_path)
    with serve_pages() as pages:
        store = Store(store_path)
        try:
            site = store.create_site(seed.workspace_id, pages + "/", name="Acme")
            hostile = store.create_site(seed.workspace_id, "https://hostile.example.com", HOSTILE)
        finally:
            store.close()
        with running_server(data, args=["--allow-private-targets"]) as server:
            yield Env(server, seed, pages, site.id, hostile.id)


@pytest.fixture
def client(env: Env) -> Iterator[httpx.Client]:
    with signed_in(env.server, env.seed.key.key) as signed:
        yield signed


def api(env: Env, method: str, path: str, body: Any = None, key: str | None = None) -> Any:
    answer = api_call(env.server, key or env.seed.key.key, method, path, body)
    assert answer.status_code < 300, answer.text
    return answer.json()["data"]


def post(client: httpx.Client, path: str, fields: dict[str, str], page: str) -> httpx.Response:
    """POST a console form with the CSRF token of the page it is on."""
    return client.post(path, data={"csrf_token": csrf(client, page), **fields})


def created_id(answer: httpx.Response) -> str:
    assert answer.status_code == 303, answer.text
    found = re.fullmatch(r"/console/experiments/([0-9a-f-]+)", answer.headers["location"])
    assert found is not None, answer.headers["location"]
    return found.group(1)


def changes_form(env: Env, name: str = "Bold headline", **extra: str) -> dict[str, str]:
    return {
        "site_id": env.site_id,
        "name": name,
        "target_url": env.pages + "/pricing",
        "url_pattern": "/pricing",
        "variant_name": "Bold",
        "change-0-selector": "h1",
        "change-0-action": "set_content",
        "change-0-value": "Go Pro today",
        "change-0-attribute": "",
        "change-1-selector": "",
        "change-1-action": "set_content",
        "change-1-value": "",
        "change-1-attribute": "",
        "goal-0-name": "Buy",
        "goal-0-type": "click",
        "goal-0-selector": ".buy",
        "goal-0-url_pattern": "",
        "goal-1-name": "",
        "goal-1-type": "click",
        "goal-1-selector": "",
        "goal-1-url_pattern": "",
        "traffic_split": "50",
        **extra,
    }


def create(client: httpx.Client, how: str, fields: dict[str, str]) -> httpx.Response:
    return post(
        client, f"/console/experiments/new/{how}", fields, f"/console/experiments/new?how={how}"
    )


def experiment(env: Env, experiment_id: str) -> dict[str, Any]:
    detail: dict[str, Any] = api(env, "GET", f"/v1/experiments/{experiment_id}")
    return detail


def as_text(page: str) -> str:
    """The page's text with its entities decoded (a name as the reader sees it)."""
    return html.unescape(page)


# -- the list -----------------------------------------------------------------------------


def test_the_list_filters_by_site_and_status(env: Env, client: httpx.Client) -> None:
    draft = created_id(create(client, "changes", changes_form(env, name="Listed draft")))
    everything = client.get("/console/experiments")
    assert everything.status_code == 200
    assert "Listed draft" in everything.text and "Pricing headline" in everything.text
    drafts = client.get("/console/experiments", params={"status": "draft"})
    assert f"/console/experiments/{draft}" in drafts.text
    assert f"/console/experiments/{env.seed.experiment_id}" not in drafts.text
    running = client.get("/console/experiments", params={"status": "running"})
    assert f"/console/experiments/{env.seed.experiment_id}" in running.text
    assert f"/console/experiments/{draft}" not in running.text
    on_seed_site = client.get("/console/experiments", params={"site_id": env.seed.site.id})
    assert f"/console/experiments/{env.seed.experiment_id}" in on_seed_site.text
    assert f"/console/experiments/{draft}" not in on_seed_site.text
    # Each filter control has its label; the statuses include running (active) and archived.
    for control in ("filter-site", "filter-status"):
        assert f'<label for="{control}">' in everything.text
    assert 'value="archived"' in everything.text and "Running (active)" in everything.text


def test_a_bad_filter_is_the_apis_400_not_a_500(env: Env, client: httpx.Client) -> None:
    refused = client.get("/console/experiments", params={"status": "bogus"})
    assert refused.status_code == 400
    assert "is not an experiment status" in as_text(refused.text)


# -- creating -----------------------------------------------------------------------------


def test_explicit_changes_make_a_draft_with_its_changes_and_preview_links(
    env: Env, client: httpx.Client
) -> None:
    experiment_id = created_id(create(client, "changes", changes_form(env)))
    detail = experiment(env, experiment_id)
    made = detail["experiment"]
    assert made["status"] == "draft" and made["traffic_split"] == 50
    bold = made["variants"][1]
    assert (bold["name"], bold["changes"]) == (
        "Bold", [{"selector": "h1", "action": "set_content", "payload": "Go Pro today"}]
    )  # fmt: skip
    assert [(g["name"], g["type"], g["selector"]) for g in made["goals"]] == [
        ("Buy", "click", ".buy")
    ]
    shown = client.get(f"/console/experiments/{experiment_id}")
    assert shown.status_code == 200
    text = as_text(shown.text)
    assert "Go Pro today" in text and "set_content" in text and "Buy" in text
    (preview,) = detail["preview_urls"]
    assert f'href="{html.escape(preview["url"])}"' in shown.text
    assert f"/console/experiments/{experiment_id}/results" in shown.text
    assert client.get(f"/console/experiments/{experiment_id}/results").status_code == 200
    assert f"/console/experiments/{experiment_id}/launch" in shown.text


def test_a_redirect_variant(env: Env, client: httpx.Client) -> None:
    fields = changes_form(env, name="Split URL", **{"change-0-selector": "", "change-0-value": ""})
    fields["redirect_url"] = env.pages + "/plans"
    made = experiment(env, created_id(create(client, "changes", fields)))["experiment"]
    assert made["variants"][1]["redirect_url"] == env.pages + "/plans"


def test_a_bad_form_shows_the_apis_400_beside_it_as_typed(env: Env, client: httpx.Client) -> None:
    before = api(env, "GET", "/v1/experiments", None)
    fields = changes_form(env, name="Kept name", **{"change-0-action": "set_attribute"})
    refused = create(client, "changes", fields)
    assert refused.status_code == 400
    text = as_text(refused.text)
    assert "attribute_name '' is not an attribute name the browser accepts" in text
    assert 'role="alert"' in refused.text and 'value="Kept name"' in refused.text
    for sent, says in (
        ({"traffic_split": "120"}, "traffic_split must be a whole number from 1 to 99"),
        ({"traffic_split": "half"}, "traffic_split"),
        ({"goal-0-type": "scroll"}, "is not a goal type the snippet tracks"),
        ({"change-0-action": "delete_everything"}, "delete_everything"),
        ({"name": ""}, "name is required"),
    ):
        answer = create(client, "changes", changes_form(env, **sent))
        assert answer.status_code == 400 and says in as_text(answer.text), (sent, answer.text)
    assert api(env, "GET", "/v1/experiments", None) == before


def test_a_prompt_authors_a_draft_whose_page_shows_its_changes_and_previews(
    env: Env, client: httpx.Client
) -> None:
    fields = {
        "site_id": env.site_id, "name": "Authored", "prompt": PRICE_PROMPT,
        "target_url": env.pages + "/pricing", "url_pattern": "",
    }  # fmt: skip
    experiment_id = created_id(create(client, "prompt", fields))
    detail = experiment(env, experiment_id)
    shown = as_text(client.get(f"/console/experiments/{experiment_id}").text)
    changes = detail["experiment"]["variants"][1]["changes"]
    assert {c["payload"] for c in changes} == {"$499", "https://buy.stripe.com/pro_abc123"}
    assert "$499" in shown and "https://buy.stripe.com/pro_abc123" in shown
    (preview,) = detail["preview_urls"]
    assert preview["url"] in shown and detail["experiment"]["status"] == "draft"


def test_a_prompt_the_author_cannot_place_shows_its_questions(
    env: Env, client: httpx.Client
) -> None:
    before = api(env, "GET", "/v1/experiments", None)
    fields = {
        "site_id": env.site_id,
        "name": "Unsure",
        "prompt": "Change the price from $99 to $499",
    }
    asked = create(client, "prompt", fields)
    assert asked.status_code == 200
    text = as_text(asked.text)
    assert "The author needs to know more" in text and "Nothing was created" in text
    assert env.pages + "/pricing" in text  # a suggested page
    assert 'list="target-suggestions"' in asked.text and 'value="Unsure"' in asked.text
    assert api(env, "GET", "/v1/experiments", None) == before


def test_an_agent_experiment_takes_its_variants_configs(env: Env, client: httpx.Client) -> None:
    fields = {
        "name": "Concise agent", "site_id": "",
        "agent-0-name": "control", "agent-0-soul_md": "You are helpful.", "agent-0-config": "",
        "agent-1-name": "concise", "agent-1-soul_md": "",
        "agent-1-config": '{"soul_md": "Be concise.", "temperature": 0.2}',
        "agent-2-name": "", "agent-2-soul_md": "", "agent-2-config": "",
        "traffic_split": "", "sample_size": "500", "max_cost_increase": "0.3",
        "guardrail-cost": "on",
    }  # fmt: skip
    made = experiment(env, created_id(create(client, "agent", fields)))["experiment"]
    assert made["kind"] == "agent" and made["sample_size"] == 500
    assert [v["config"] for v in made["variants"]] == [
        {"soul_md": "You are helpful."}, {"soul_md": "Be concise.", "temperature": 0.2},
    ]  # fmt: skip
    assert made["max_cost_increase"] == 0.3 and made["guardrail_metrics"] == ["cost"]
    shown = as_text(client.get(f"/console/experiments/{made['id']}").text)
    assert "Be concise." in shown and "You are helpful." in shown
    # Its draft is filled in again with the same rows: soul_md, or the config as JSON.
    edit = f"/console/experiments/{made['id']}/edit"
    form = as_text(client.get(edit).text)
    assert ">You are helpful.</textarea>" in form and '"temperature":0.2' in form
    changed = {**fields, "agent-0-soul_md": "You are thorough."}
    assert post(client, edit, changed, edit).status_code == 303
    edited = experiment(env, made["id"])["experiment"]
    assert edited["variants"][0]["config"] == {"soul_md": "You are thorough."}
    not_json = create(client, "agent", {**fields, "agent-1-config": "{soul_md: nope"})
    assert not_json.status_code == 400
    assert "the config of variant 2 (concise) is not JSON" in as_text(not_json.text)
    one = {**fields, "agent-1-name": "", "agent-1-config": ""}
    refused = create(client, "agent", one)
    assert refused.status_code == 400 and "pass at least 2" in as_text(refused.text)


def test_a_blank_draft_is_filled_in(env: Env, client: httpx.Client) -> None:
    experiment_id = created_id(
        create(client, "blank", {"site_id": env.site_id, "name": "To fill in"})
    )
    blank = experiment(env, experiment_id)["experiment"]
    assert [v["is_control"] for v in blank["variants"]] == [True] and blank["goals"] == []
    edit = f"/console/experiments/{experiment_id}/edit"
    form = client.get(edit)
    assert form.status_code == 200 and 'value="To fill in"' in form.text
    fields = changes_form(env, name="Filled in")
    del fields["site_id"]
    refused = post(client, edit, {**fields, "goal-0-selector": ""}, edit)
    assert refused.status_code == 400
    assert "click goal without a selector" in as_text(refused.text)
    assert post(client, edit, fields, edit).status_code == 303
    filled = experiment(env, experiment_id)
    assert filled["experiment"]["name"] == "Filled in"
    assert filled["experiment"]["variants"][1]["changes"][0]["payload"] == "Go Pro today"
    assert len(filled["preview_urls"]) == 1
    # The form shows the draft as it is now, its change rows included.
    again = client.get(edit).text
    assert 'value="Go Pro today"' in again or ">Go Pro today</textarea>" in again


# -- the lifecycle ------------------------------------------------------------------------


def test_each_lifecycle_button_says_what_happens_then_does_it(
    env: Env, client: httpx.Client
) -> None:
    experiment_id = created_id(create(client, "changes", changes_form(env, name="Lifecycle")))
    base = f"/console/experiments/{experiment_id}"

    def step(action: str, says: str, fields: dict[str, str] | None = None) -> str:
        confirm = client.get(f"{base}/{action}")
        assert confirm.status_code == 200, confirm.text
        assert says in as_text(confirm.text), confirm.text
        answer = post(client, f"{base}/{action}", fields or {}, f"{base}/{action}")
        assert answer.status_code == 303 and answer.headers["location"] == base
        status: str = experiment(env, experiment_id)["experiment"]["status"]
        return status

    assert step("launch", f"Launching starts serving Bold to 50% of visitors of {env.pages}/ "
                "on pages matching /pricing and counting them") == "running"  # fmt: skip
    assert step("pause", "Pausing serves the control") == "paused"
    assert step("resume", "Resuming serves Bold to 50%") == "running"
    bold = experiment(env, experiment_id)["experiment"]["variants"][1]
    assert step("deploy", "Deploying", {"variant_id": bold["id"]}) == "completed"
    assert experiment(env, experiment_id)["experiment"]["winner_variant_id"] == bold["id"]
    page = client.get(base).text
    assert f"{base}/deploy" not in page and f"{base}/archive" in page
    assert step("archive", "Archiving puts the completed experiment away") == "archived"
    # An action the status does not allow has no page; the API's 409 when forced.
    assert client.get(f"{base}/launch").status_code == 409
    forced = post(client, f"{base}/launch", {}, base)
    assert forced.status_code == 409 and "cannot launch" in as_text(forced.text)


def test_complete_and_a_deploy_without_a_variant(env: Env, client: httpx.Client) -> None:
    experiment_id = created_id(create(client, "changes", changes_form(env, name="Completes")))
    base = f"/console/experiments/{experiment_id}"
    post(client, f"{base}/launch", {}, base)
    refused = post(client, f"{base}/deploy", {}, f"{base}/deploy")
    assert refused.status_code == 400 and "name the variant to promote" in as_text(refused.text)
    assert "complete" in as_text(client.get(f"{base}/complete").text).lower()
    assert post(client, f"{base}/complete", {}, base).status_code == 303
    assert experiment(env, experiment_id)["experiment"]["status"] == "completed"


def test_a_launch_the_api_refuses_shows_its_reason(env: Env, client: httpx.Client) -> None:
    experiment_id = created_id(create(client, "blank", {"site_id": env.site_id, "name": "Empty"}))
    base = f"/console/experiments/{experiment_id}"
    refused = post(client, f"{base}/launch", {}, f"{base}/launch")
    assert refused.status_code == 400
    assert "launch requires ≥2 variants and ≥1 goal" in as_text(refused.text)


# -- forgery, isolation, names --------------------------------------------------------------


def forms(env: Env, experiment_id: str) -> list[str]:
    base = f"/console/experiments/{experiment_id}"
    return [
        *(f"/console/experiments/new/{how}" for how in ("prompt", "changes", "agent", "blank")),
        f"{base}/edit",
        *(f"{base}/{action}" for action in ACTIONS),
    ]


def test_every_form_refuses_a_missing_or_forged_csrf_token(env: Env, client: httpx.Client) -> None:
    experiment_id = created_id(create(client, "changes", changes_form(env, name="Forged")))
    before = experiment(env, experiment_id)
    listed = api(env, "GET", "/v1/experiments", None)
    forged = "0" * 64
    for path in forms(env, experiment_id):
        fields = {**changes_form(env), "variant_id": before["experiment"]["variants"][1]["id"]}
        for token in ({}, {"csrf_token": forged}):
            answer = client.post(path, data={**fields, **token})
            assert answer.status_code == 403, (path, token, answer.text)
    assert experiment(env, experiment_id) == before
    assert api(env, "GET", "/v1/experiments", None) == listed


def test_another_workspaces_experiment_is_a_404_on_every_page(
    env: Env, client: httpx.Client
) -> None:
    theirs = env.seed.other_experiment_id
    base = f"/console/experiments/{theirs}"
    token = csrf(client, "/console/experiments")
    for path in (base, f"{base}/edit", *(f"{base}/{action}" for action in ACTIONS)):
        assert client.get(path).status_code == 404, path
    for path in (f"{base}/edit", *(f"{base}/{action}" for action in ACTIONS)):
        answer = client.post(path, data={"csrf_token": token, "variant_id": "x", "name": "Mine"})
        assert answer.status_code == 404, (path, answer.text)
    other = env.seed.other_key.key
    assert api(env, "GET", f"/v1/experiments/{theirs}", key=other)["experiment"]["status"] == (
        "running"
    )
    listed = client.get("/console/experiments", params={"site_id": env.seed.other_site.id})
    assert theirs not in listed.text and "other.example.org" not in listed.text
    refused = create(client, "changes", changes_form(env, site_id=env.seed.other_site.id))
    assert refused.status_code == 404


def test_hostile_names_render_as_text_on_every_page(env: Env, client: httpx.Client) -> None:
    fields = changes_form(env, name=HOSTILE, site_id=env.hostile_site_id, variant_name=HOSTILE)
    fields["goal-0-name"] = HOSTILE
    experiment_id = created_id(create(client, "changes", fields))
    base = f"/console/experiments/{experiment_id}"
    blank = created_id(create(client, "blank", {"site_id": env.site_id, "name": HOSTILE}))

    def as_text_only(path: str) -> None:
        page = client.get(path)
        assert page.status_code == 200, (path, page.text)
        assert "<script>alert" not in page.text and "<img src=x" not in page.text, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text, path

    for path in (
        "/console/experiments",
        f"/console/experiments?site_id={env.hostile_site_id}",
        "/console/experiments/new?how=changes",
        base,
        f"{base}/edit",
        f"{base}/launch",
        f"{base}/archive",
        f"/console/experiments/{blank}",
        f"/console/experiments/{blank}/edit",
    ):
        as_text_only(path)
    post(client, f"{base}/launch", {}, base)
    for path in (base, f"{base}/pause", f"{base}/complete", f"{base}/deploy"):
        as_text_only(path)
    refused = create(client, "changes", {**fields, "traffic_split": "0"})
    assert refused.status_code == 400 and "<script>alert" not in refused.text


def test_pages_are_small_and_every_control_is_labelled(env: Env, client: httpx.Client) -> None:
    experiment_id = created_id(create(client, "changes", changes_form(env, name="Labelled")))
    for path in (
        "/console/experiments",
        *(f"/console/experiments/new?how={how}" for how in ("prompt", "changes", "agent", "blank")),
        f"/console/experiments/{experiment_id}",
        f"/console/experiments/{experiment_id}/edit",
        f"/console/experiments/{experiment_id}/launch",
    ):
        started = time.monotonic()
        page = client.get(path)
        assert page.status_code == 200 and len(page.content) < 150_000, path
        assert time.monotonic() - started < 5
        ids = re.findall(
            r'<(?:input|select|textarea) id="([^"]+)"(?![^>]*type="hidden")', page.text
        )
        for control in ids:
            assert f'<label for="{control}">' in page.text, (path, control)
        assert 'style="' not in page.text and "<script>" not in page.text.replace(
            "&lt;script&gt;", ""
        ), path


# -- the prompt flow in Chromium ---------------------------------------------------------------


@pytest.mark.browser
def test_the_prompt_flow_in_chromium_at_390_px(env: Env, tmp_path: Path) -> None:
    """Sign in, ask the author without a page, answer its question with a suggested page,
    and land on the draft's changes and preview link: by label, without horizontal
    scrolling or console errors."""
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 390, "height": 844})
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(env.server.base_url + "/")
        page.get_by_label("API key").fill(env.seed.key.key)
        page.keyboard.press("Enter")
        page.get_by_role("button", name="Sign out").wait_for()
        page.goto(env.server.base_url + "/console/experiments/new?how=prompt")
        page.get_by_label("Site", exact=True).select_option(env.site_id)
        page.get_by_label("Name", exact=True).fill("Authored in Chromium")
        page.get_by_label("What should change?").fill("Change the price from $99 to $499")
        page.get_by_role("button", name="Author the draft").click()
        page.get_by_text("The author needs to know more").wait_for()
        assert page.get_by_label("Name", exact=True).input_value() == "Authored in Chromium"
        page.get_by_label("Page URL", exact=True).fill(env.pages + "/pricing")
        page.get_by_role("button", name="Author the draft").click()
        page.wait_for_url(re.compile(r".*/console/experiments/[0-9a-f-]+$"))
        assert page.get_by_role("heading", name="Authored in Chromium").is_visible()
        assert page.get_by_text("$499").first.is_visible()
        preview = page.get_by_role("link", name=re.compile("^Preview "))
        assert "sk_preview=" in (preview.get_attribute("href") or "")
        draft = page.url
        wide = page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
        page.screenshot(path=str(tmp_path / "prompt-draft-390.png"), full_page=True)
        assert not wide, draft
        for path in (
            "/console/experiments",
            "/console/experiments/new?how=changes",
            "/console/experiments/new?how=agent",
            draft.removeprefix(env.server.base_url) + "/launch",
            draft.removeprefix(env.server.base_url) + "/edit",
        ):
            page.goto(env.server.base_url + path)
            name = re.sub(r"[^a-z]+", "-", path.rpartition("/")[2]).strip("-")
            page.screenshot(path=str(tmp_path / f"{name}-390.png"), full_page=True)
            wide = page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
            assert not wide, path
        assert errors == [], errors
        context.close()
