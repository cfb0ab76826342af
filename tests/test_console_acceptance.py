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
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import pytest
from markupsafe import escape
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
from tests.console_support import csrf, signed_in
from tests.support import Seed, Server, api_call, collect, exposures, running_server, seed_store

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
            # The page with A's own ids, and every list filtered by B's site: none of B's.
            paths = [fill(template, env.mine.params)]
            if not has_id(template):
                paths.append(f"{paths[0]}?site={env.theirs.params['site_id']}")
                paths.append(f"{paths[0]}?site_id={env.theirs.params['site_id']}")
            for path in paths:
                text = client.get(path, follow_redirects=True).text
                shown = [marker for marker in env.theirs.markers if marker in text]
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
            if answer.status_code != 200:
                failures.append(f"GET {path}: {answer.status_code}")
                continue
            raw = [markup for markup in RAW if markup in answer.text]
            if raw:
                failures.append(f"GET {path} holds the raw markup {raw}")
            if template in SHOWN and ESCAPED not in answer.text:
                failures.append(f"GET {path} does not show the {SHOWN[template]} name as text")
    assert not failures, "\n".join(failures)
