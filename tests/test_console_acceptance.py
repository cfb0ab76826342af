"""The console's acceptance tests across its pages (issue 24), through a real server, its
store and chDB. The pages are not listed by hand: `console_routes` asks the console for
its routes, so a page added later is checked as soon as it exists.

- Isolation: workspace A's session sees none of workspace B's sites, experiments,
  results, webhooks, keys, loops or ideas: every page with an id in its path answers B's
  id with the 404 page, and no page shows B's names or ids.
- Forgery: every state-changing form (every POST route) refuses a missing or forged CSRF
  token (403); A's session posting with B's ids gets the 404 page and changes nothing.
- Names: site, experiment, variant and goal names holding ``<script>``, ``"><img src=x
  onerror=alert(1)>`` and U+2028 render as text on every page.
- The walk-through in Chromium: sign in with the admin key, create a site and copy its
  snippet tag, create an experiment from explicit changes and open its preview link on a
  page of a second loopback origin, launch it, send traffic through real browser contexts,
  read the results page (both arms, every goal, the health panel), deploy the winner;
  screenshots at 1280 and 390 px, no horizontal overflow and no console error anywhere.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from markupsafe import escape
from playwright.sync_api import Browser, Page
from starlette.routing import Route

from edge.config import MutationConfig
from edge.control.console import Console, routes
from edge.control.idea_records import NewIdea
from edge.control.ideas import add_idea
from edge.control.loop_records import LoopConfig, LoopGoal
from edge.control.loops import create_loop
from edge.control.services import Services
from edge.control.store import Store
from edge.settings import Settings
from tests.browser import ROOT, SiteServer
from tests.console_support import admin_key, csrf, signed_in
from tests.support import Seed, Server, api_call, collect, exposures, running_server, seed_store
from tests.test_browser_runtime import FLUSH_MS, leave

pytestmark = pytest.mark.server

HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(1)>\u2028'
ESCAPED = str(escape(HOSTILE))
RAW = ("<script>alert(1)", "<img src=x onerror", '"><img')

# Routes every signed-in page does not own: the static files, the sign-in form (public,
# guarded by its origin: tests/test_console_sign_in.py) and the 404 page of every other path.
NOT_PAGES = {"/console/static/{name}", "/console/sign-in", "/console/{rest:path}"}

_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


def console_routes() -> list[tuple[str, str]]:
    """Every (method, path template) the console answers for a signed-in session, as the
    console itself lists them (a worker's `edge.control.console.routes`)."""
    with tempfile.TemporaryDirectory() as scratch:
        services = Services.from_settings(Settings(data_dir=scratch))
        try:
            found = routes(Console(services))
        finally:
            services.close()
    table: list[tuple[str, str]] = []
    for route in found:
        assert isinstance(route, Route)
        if route.path in NOT_PAGES:
            continue
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                table.append((method, route.path))
    return table


ROUTES = console_routes()
PAGES = [path for method, path in ROUTES if method == "GET"]
FORMS = [path for method, path in ROUTES if method == "POST"]


class Things(msgspec.Struct):
    """One workspace's things, by the path parameter that names them; ``markers`` are
    strings only B's things hold (ids, names), which A's pages must never show."""

    params: dict[str, str]
    markers: list[str]


class Env(msgspec.Struct):
    server: Server
    seed: Seed
    mine: Things
    theirs: Things


def fill(template: str, params: dict[str, str]) -> str:
    """``template`` with each ``{name}`` replaced from ``params``; an unknown parameter is
    a failure that says to add it to the tables below."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in params, (
            f"{template}: no value for {{{name}}}; add A's and B's to the `env` fixture of "
            "tests/test_console_acceptance.py"
        )
        return params[name]

    return _PARAM.sub(value, template)


def has_id(template: str) -> bool:
    """Whether the path names a thing of a workspace (a parameter ``*_id``)."""
    return any(name.endswith("_id") for name in _PARAM.findall(template))


def _loop(store: Store, workspace_id: str, site_id: str, url: str, name: str) -> str:
    config = LoopConfig(name, site_id, url, ("headline",), LoopGoal(name, "click", "a"))
    challenger = (MutationConfig("h1", "set_content", "Challenger headline"),)
    loop, _ = create_loop(store, workspace_id, None, config, challenger, None, datetime.now(UTC))
    return loop.id


def _ok(answer: httpx.Response, status: int = 201) -> Any:
    assert answer.status_code == status, answer.text
    return answer.json()["data"]


def _experiment(server: Server, key: str, site_id: str, name: str) -> dict[str, Any]:
    """A running web experiment whose name, variant and goal are all ``name``."""
    body = {
        "site_id": site_id,
        "name": name,
        "url_pattern": "/pricing",
        "variants": [
            {
                "name": name,
                "changes": [{"selector": "h1", "action": "set_content", "payload": name}],
            }
        ],
        "goals": [{"name": name, "type": "click", "selector": ".buy"}],
    }
    created = _ok(api_call(server, key, "POST", "/v1/experiments", body))
    experiment: dict[str, Any] = created["experiment"]
    path = f"/v1/experiments/{experiment['id']}"
    _ok(api_call(server, key, "PATCH", path, {"action": "launch"}), 200)
    return experiment


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """Workspace A (``seed.key``) whose site, experiment, variant and goal are named
    `HOSTILE`, with a webhook, a spare key, a loop and an idea; workspace B
    (``seed.other_key``) with the same kinds of things under names of its own."""
    data = tmp_path_factory.mktemp("console-acceptance") / "data"
    store_path = data / "splitedge.sqlite3"
    seed = seed_store(store_path)
    a_workspace, b_workspace = seed.workspace_id, seed.other_site.workspace_id
    store = Store(store_path)
    try:
        a_key = store.issue_api_key(a_workspace, name=HOSTILE).record.id
        b_key = store.issue_api_key(b_workspace, name="b-secret-key").record.id
        a_idea = add_idea(store, a_workspace, seed.site.id, NewIdea(title=HOSTILE)).id
        b_idea = add_idea(store, b_workspace, seed.other_site.id, NewIdea(title="b-secret-idea"))
        a_loop = _loop(store, a_workspace, seed.site.id, seed.site.url, HOSTILE)
        b_loop = _loop(store, b_workspace, seed.other_site.id, seed.other_site.url, "b-loop")
    finally:
        store.close()
    with running_server(data, args=["--dev"]) as server:
        a, b = seed.key.key, seed.other_key.key
        site = _ok(api_call(server, a, "POST", "/v1/sites", {"url": "x.example", "name": HOSTILE}))
        experiment = _experiment(server, a, site["id"], HOSTILE)
        b_site = _ok(api_call(server, b, "POST", "/v1/sites", {"url": "b-secret.example"}))
        b_experiment = _experiment(server, b, b_site["id"], "b-secret-experiment")
        hook = {"url": "http://127.0.0.1:9/a", "events": ["experiment.completed"]}
        a_hook = _ok(api_call(server, a, "POST", "/v1/webhooks", hook))
        hook = {"url": "http://127.0.0.1:9/b-secret-hook", "events": ["experiment.completed"]}
        b_hook = _ok(api_call(server, b, "POST", "/v1/webhooks", hook))
        # Some traffic, so that the results pages have arms and goals to show.
        variants = [v["id"] for v in experiment["variants"]]
        for i, variant_id in enumerate(variants):
            events = exposures(experiment["id"], variant_id, [f"visitor-{i}-{n}" for n in range(3)])
            assert collect(server, site["public_key"], events) == 3
        mine = Things(
            {
                "site_id": site["id"],
                "experiment_id": experiment["id"],
                "webhook_id": a_hook["id"],
                "key_id": a_key,
                "loop_id": a_loop,
                "idea_id": a_idea,
                "how": "changes",
                "action": "pause",
            },
            [],
        )
        theirs = Things(
            {
                **mine.params,
                "site_id": b_site["id"],
                "experiment_id": b_experiment["id"],
                "webhook_id": b_hook["id"],
                "key_id": b_key,
                "loop_id": b_loop,
                "idea_id": b_idea.id,
            },
            [
                b_site["id"], b_site["public_key"], "b-secret", b_experiment["id"],
                seed.other_experiment_id, seed.other_site.id, seed.other_site.public_key,
                "other.example.org", b_hook["id"], b_key, seed.other_key.record.id, b_loop,
                b_idea.id, "b-loop",
            ],
        )  # fmt: skip
        yield Env(server, seed, mine, theirs)


def test_the_console_lists_its_pages_and_forms() -> None:
    """The tables below are the console's own routes: the sites' pages are among them."""
    assert "/" in PAGES and "/console/sites/{site_id}" in PAGES
    assert "/console/sites" in FORMS and "/console/sign-out" in FORMS


def test_isolation_no_page_shows_another_workspaces_things(env: Env) -> None:
    failures: list[str] = []
    with signed_in(env.server, env.seed.key.key) as client:
        for template in PAGES:
            if has_id(template):
                path = fill(template, env.theirs.params)
                answer = client.get(path)
                if answer.status_code != 404 or "Not found" not in answer.text:
                    failures.append(f"GET {path} (B's ids): {answer.status_code}, not the 404 page")
            # The page with A's own ids, and every list filtered by B's site: none of B's
            # things (the filter may repeat the id it was given, nothing more).
            own = fill(template, env.mine.params)
            b_site = env.theirs.params["site_id"]
            paths = [(own, "")]
            if not has_id(template):
                paths += [(f"{own}?site={b_site}", b_site), (f"{own}?site_id={b_site}", b_site)]
            for path, asked in paths:
                text = client.get(path, follow_redirects=True).text
                shown = [m for m in env.theirs.markers if m in text and m != asked]
                if shown:
                    failures.append(f"GET {path} shows B's {shown}")
    assert not failures, "\n".join(failures)


def test_forgery_every_form_refuses_a_missing_or_forged_csrf_token(env: Env) -> None:
    failures: list[str] = []
    with (
        signed_in(env.server, env.seed.key.key) as client,
        signed_in(env.server, env.seed.other_key.key) as other,
    ):
        # Another session's token is as forged as a made-up one.
        theirs = csrf(other)
        for template in FORMS:
            path = fill(template, env.mine.params)
            for fields in ({}, {"csrf_token": "0" * 64}, {"csrf_token": theirs}):
                answer = client.post(path, data={"name": "forged", "url": "f.example", **fields})
                if answer.status_code != 403:
                    failures.append(
                        f"POST {path} with {fields or 'no token'}: {answer.status_code}"
                    )
        # The session is still signed in: the refused sign-out did nothing.
        assert client.get("/").status_code == 200
    assert not failures, "\n".join(failures)


# Fields a form may need to reach its API call (a form that would refuse its fields first
# would hide what the id does).
A_VALID_FORM = {"status": "approved", "confirm": "yes", "name": "forged", "url": "f.example"}


def test_forgery_a_session_with_another_workspaces_ids_is_useless(env: Env) -> None:
    failures: list[str] = []
    b = env.seed.other_key.key
    before = {
        path: api_call(env.server, b, "GET", path).json()["data"]
        for path in ("/v1/sites", "/v1/experiments", "/v1/webhooks", "/v1/loops", "/v1/ideas")
    }
    with signed_in(env.server, env.seed.key.key) as client:
        token = csrf(client)
        for template in FORMS:
            if not has_id(template):
                continue
            path = fill(template, env.theirs.params)
            answer = client.post(path, data={"csrf_token": token, **A_VALID_FORM})
            if answer.status_code != 404:
                failures.append(f"POST {path} (B's ids): {answer.status_code}")
    assert not failures, "\n".join(failures)
    for path, data in before.items():
        assert api_call(env.server, b, "GET", path).json()["data"] == data, path
    # B's key still works: revoking it from A's session did nothing.
    assert api_call(env.server, b, "GET", "/v1/sites").status_code == 200


# Where each hostile name must show (escaped), by page; every other page must at least
# never hold the raw markup.
SHOWN = {
    "/": "site",
    "/console/sites/{site_id}": "site and experiment",
    "/console/experiments": "experiment",
    "/console/experiments/{experiment_id}": "experiment, variant and goal",
    "/console/experiments/{experiment_id}/results": "variant and goal",
}


def test_names_render_as_text_on_every_page(env: Env) -> None:
    failures: list[str] = []
    with signed_in(env.server, env.seed.key.key) as client:
        for template in PAGES:
            path = fill(template, env.mine.params)
            answer = client.get(path, follow_redirects=True)
            # 409: a lifecycle step the experiment's status does not allow (its page says
            # so); the name must still be text there.
            if answer.status_code not in (200, 409) or (
                template in SHOWN and answer.status_code != 200
            ):
                failures.append(f"GET {path}: {answer.status_code}")
                continue
            raw = [markup for markup in RAW if markup in answer.text]
            if raw:
                failures.append(f"GET {path} holds the raw markup {raw}")
            if template in SHOWN and ESCAPED not in answer.text:
                failures.append(f"GET {path} does not show the {SHOWN[template]} name as text")
    assert not failures, "\n".join(failures)


# --- the walk-through in Chromium ----------------------------------------------------------

ARTIFACTS = ROOT / "test-artifacts" / "console-walkthrough"
"""Where the walk-through's screenshots go (ignored by git)."""

VISITORS = 16
WIDTHS = (1280, 390)


def console_errors(page: Page) -> list[str]:
    """The console errors and uncaught exceptions of ``page`` from now on (a list that
    grows)."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


class Walk:
    """The console tab of the walk-through: every page it shows is checked at each width
    (a screenshot, no horizontal overflow) and every console error is kept."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors = console_errors(page)
        self.shots = 0

    def check(self, name: str) -> None:
        """Screenshots of the current page at 1280 and 390 px; no horizontal scroll."""
        self.shots += 1
        for width in WIDTHS:
            self.page.set_viewport_size({"width": width, "height": 900})
            path = ARTIFACTS / f"{self.shots:02d}-{name}-{width}.png"
            self.page.screenshot(path=str(path), full_page=True)
            overflow = self.page.evaluate(
                "document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 0, f"{name}: {overflow} px of horizontal scroll at {width} px"
        self.page.set_viewport_size({"width": WIDTHS[0], "height": 900})
        assert self.errors == [], f"{name}: {self.errors}"


def _visit(browser: Browser, site: SiteServer, url: str, experiment_id: str) -> str:
    """One new visitor (a browser context of its own) on ``url``: the variant it got; the
    variant's visitors click both goals, one control visitor in four buys."""
    context = browser.new_context()
    try:
        page = context.new_page()
        errors = console_errors(page)
        page.goto(url)
        page.wait_for_function(f"window.__sk && window.__sk.getVariant({experiment_id!r})")
        control = page.evaluate(f"window.__sk.getVariant({experiment_id!r}).isControl")
        variant = "Control" if control else "Bold"
        if variant != "Control" or page.evaluate("Math.random() < 0.25"):
            page.click(".buy")
        if variant != "Control":
            page.click(".signup")
        page.wait_for_timeout(FLUSH_MS + 200)
        assert errors == [], errors
        leave(page, site)
        return variant
    finally:
        context.close()


@pytest.mark.browser
def test_walkthrough_in_chromium(tmp_path: Path, browser: Browser, site: SiteServer) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "data"
    with running_server(data) as server:
        key = admin_key(server)
        context = browser.new_context(viewport={"width": WIDTHS[0], "height": 900})
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base_url)
        try:
            walk = Walk(context.new_page())
            page = walk.page
            # Sign in with the admin key.
            page.goto(server.base_url + "/")
            walk.check("sign-in")
            page.get_by_label("API key").fill(key)
            page.keyboard.press("Enter")
            page.get_by_role("button", name="Sign out").wait_for()
            walk.check("home")

            # Create a site, and copy its snippet tag.
            page.get_by_role("link", name="Add a site").click()
            walk.check("site-new")
            page.get_by_label("URL").fill("walk.example.com")
            page.get_by_label("Name").fill("Walk-through shop")
            page.get_by_role("button", name="Create site").click()
            page.wait_for_url(re.compile(r".*/console/sites/[^/]+$"))
            site_url = page.url
            walk.check("site")
            copy = page.get_by_role("button", name="Copy the snippet tag")
            shown = copy.get_attribute("data-copy")
            copy.click()
            page.get_by_role("button", name="Copied").wait_for()
            tag = page.evaluate("navigator.clipboard.readText()")
            assert tag == shown
            assert re.fullmatch(
                rf'<script src="{server.base_url}/s/[0-9a-f]{{32}}\.js"></script>', tag
            )

            # The customer's page, on a second loopback origin, with the copied tag.
            body = (
                '<h1 id="headline">Hello</h1><a class="buy">Buy</a> <a class="signup">Sign up</a>'
            )
            head = f'{tag}<link rel="icon" href="data:,">'
            page_html = f"<!doctype html><html><head>{head}</head><body>{body}</body></html>"
            target = site.add("/walk", page_html)

            # An experiment from explicit changes.
            page.get_by_role("link", name="Experiments", exact=True).click()
            walk.check("experiments")
            page.goto(server.base_url + "/console/experiments/new?how=changes")
            walk.check("experiment-new")
            page.locator("#f-name").fill("Walk headline")
            page.locator("#f-target_url").fill(target)
            page.locator("#f-url_pattern").fill("/walk")
            page.locator("#f-variant_name").fill("Bold")
            page.locator("#f-change-0-selector").fill("#headline")
            page.locator("#f-change-0-action").select_option("set_content")
            page.locator("#f-change-0-value").fill("Hello, boldly")
            page.locator("#f-goal-0-name").fill("Buy")
            page.locator("#f-goal-0-type").select_option("click")
            page.locator("#f-goal-0-selector").fill(".buy")
            page.locator("#f-goal-1-name").fill("Signup")
            page.locator("#f-goal-1-type").select_option("click")
            page.locator("#f-goal-1-selector").fill(".signup")
            page.locator("main form[method=post] button[type=submit]").last.click()
            page.wait_for_url(re.compile(r".*/console/experiments/[^/]+$"))
            experiment_url = page.url
            experiment_id = experiment_url.rsplit("/", 1)[1]
            walk.check("experiment-draft")

            # Its preview link, opened on the customer's page.
            preview = page.get_by_role("link", name="Preview Bold").get_attribute("href")
            assert preview is not None and preview.startswith(target)
            viewer = context.new_page()
            viewer_errors = console_errors(viewer)
            viewer.goto(preview)
            viewer.wait_for_function(
                "document.getElementById('headline').textContent === 'Hello, boldly'"
            )
            assert viewer_errors == [], viewer_errors
            viewer.close()

            # Launch, with its confirmation.
            page.get_by_role("link", name="Launch…").click()
            walk.check("launch-confirm")
            page.locator("main form[method=post] button[type=submit]").click()
            page.wait_for_url(experiment_url)
            walk.check("experiment-running")

            # Traffic through real browser contexts, one per visitor.
            served = [_visit(browser, site, target, experiment_id) for _ in range(VISITORS)]
            assert set(served) == {"Control", "Bold"}, served

            # The site's installation check saw the snippet fetched and the events.
            page.goto(site_url)
            deadline = time.monotonic() + 60
            while "never" in (page.locator("#installation").text_content() or "") and (
                time.monotonic() < deadline
            ):
                page.wait_for_timeout(1000)
                page.reload()
            assert "never" not in (page.locator("#installation").text_content() or "")
            walk.check("site-installed")

            # The results page: both arms, every goal, the health panel.
            results = f"{experiment_url}/results"
            deadline = time.monotonic() + 60
            while True:
                page.goto(results)
                if f"{VISITORS} units" in page.text_content("main") or time.monotonic() > deadline:
                    break
                page.wait_for_timeout(1000)
            text = page.text_content("main") or ""
            assert f"{VISITORS} units" in text, text
            for name in ("Control", "Bold", "Buy", "Signup", "Sample ratio", "Config served"):
                assert name in text, name
            assert page.locator("#verdict").count() == 1
            assert page.locator("#units-per-day").count() == 1
            walk.check("results")

            # Deploy the winner: the variant, which every one of its visitors bought.
            page.goto(experiment_url)
            page.get_by_role("link", name="Deploy a variant…").click()
            walk.check("deploy-confirm")
            page.get_by_label("Bold").check()
            page.locator("main form[method=post] button[type=submit]").click()
            page.wait_for_url(experiment_url)
            assert "deployed" in (page.text_content("main") or "")
            walk.check("experiment-deployed")
            # A new visitor gets the winner's change.
            visitor = browser.new_context()
            try:
                shown = visitor.new_page()
                shown.goto(target)
                shown.wait_for_function(
                    "document.getElementById('headline').textContent === 'Hello, boldly'"
                )
            finally:
                visitor.close()
        finally:
            context.close()
