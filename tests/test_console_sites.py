"""The console's sites, through a real server, store and chDB: the form creates a site and
leads to its page (public key, the snippet tag on a copy button, its experiments, the
installation check, which a snippet fetch sets); the API's refusals show beside the form;
the form refuses a missing or forged CSRF token (403); another workspace's site is the 404
page; a hostile name renders as text."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import msgspec
import pytest
from markupsafe import escape

from tests.console_support import csrf, signed_in
from tests.support import Seed, Server, running_server, seed_store

pytestmark = pytest.mark.server

HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>\u2028'


class Env(msgspec.Struct):
    server: Server
    seed: Seed


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data = tmp_path_factory.mktemp("console-sites") / "data"
    seed = seed_store(data / "splitedge.sqlite3")
    with running_server(data) as server:
        yield Env(server, seed)


@pytest.fixture
def client(env: Env) -> Iterator[httpx.Client]:
    with signed_in(env.server, env.seed.key.key) as signed:
        yield signed


def _create(client: httpx.Client, url: str, name: str) -> httpx.Response:
    token = csrf(client, "/console/sites/new")
    return client.post("/console/sites", data={"url": url, "name": name, "csrf_token": token})


def test_the_form_creates_a_site_and_opens_it(env: Env, client: httpx.Client) -> None:
    home = client.get("/")
    assert 'href="/console/sites/new"' in home.text
    assert client.get("/console/sites").headers["location"] == "/"
    form = client.get("/console/sites/new")
    assert form.status_code == 200
    for control in ("site-url", "site-name"):
        assert f'<label for="{control}"' in form.text and f'id="{control}"' in form.text

    created = _create(client, "blog.example.net", "The blog")
    assert created.status_code == 303, created.text
    location = created.headers["location"]
    site_id = location.rsplit("/", 1)[1]
    site = httpx.get(
        f"{env.server.base_url}/v1/sites/{site_id}",
        headers={"authorization": f"Bearer {env.seed.key.key}"},
    ).json()["data"]
    assert site["name"] == "The blog" and site["url"] == "https://blog.example.net/"

    shown = client.get(location)
    assert shown.status_code == 200
    assert "<h1>The blog</h1>" in shown.text
    assert site["public_key"] in shown.text
    tag = f'<script src="{env.server.base_url}/s/{site["public_key"]}.js"></script>'
    assert f'data-copy="{escape(tag)}"' in shown.text
    assert f"<code>{escape(tag)}</code>" in shown.text
    assert f'/console/experiments?site={site_id}"' in shown.text
    assert "No experiments on this site yet." in shown.text
    installation = shown.text.split('id="installation"', 1)[1].split("</dl>", 1)[0]
    assert installation.count("never") == 2

    assert httpx.get(f"{env.server.base_url}/s/{site['public_key']}.js").status_code == 200
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        page = client.get(location).text
        installation = page.split('id="installation"', 1)[1].split("</dl>", 1)[0]
        if installation.count("never") == 1:
            break
        time.sleep(0.3)
    assert re.search(r'<time datetime="[0-9T:.+-]+">[0-9-]+ [0-9:]+ UTC</time>', installation)
    assert "Last event received</dt>\n    <dd>never" in installation


def test_a_site_page_lists_its_experiments(env: Env, client: httpx.Client) -> None:
    page = client.get(f"/console/sites/{env.seed.site.id}")
    assert page.status_code == 200
    assert f'href="/console/experiments/{env.seed.experiment_id}">Pricing headline</a>' in (
        page.text
    )
    assert "running" in page.text
    assert "(1)</a>" in page.text


def test_the_apis_refusal_shows_beside_the_form(env: Env, client: httpx.Client) -> None:
    answer = _create(client, "shop.example.com", "Again")
    assert answer.status_code == 409
    assert 'role="alert"' in answer.text and "already registered" in answer.text
    assert 'value="shop.example.com"' in answer.text and 'value="Again"' in answer.text
    bad = _create(client, "http://127.0.0.1:9/", "Loopback")
    assert bad.status_code == 400 and 'role="alert"' in bad.text


def test_the_form_refuses_a_missing_or_forged_csrf_token(env: Env, client: httpx.Client) -> None:
    for fields in ({}, {"csrf_token": "0" * 64}):
        answer = client.post("/console/sites", data={"url": "forged.example.com", **fields})
        assert answer.status_code == 403
    sites = httpx.get(
        f"{env.server.base_url}/v1/sites",
        headers={"authorization": f"Bearer {env.seed.key.key}"},
    ).json()["data"]
    assert all(site["domain"] != "forged.example.com" for site in sites)


def test_another_workspaces_site_is_not_found(env: Env, client: httpx.Client) -> None:
    for site_id in (env.seed.other_site.id, "nope", "..%2F..%2Fv1%2Fsites"):
        answer = client.get(f"/console/sites/{site_id}")
        assert answer.status_code == 404, site_id
        assert env.seed.other_site.public_key not in answer.text


def test_signed_out_is_sent_to_sign_in(env: Env) -> None:
    for path in ("/console/sites/new", f"/console/sites/{env.seed.site.id}"):
        answer = httpx.get(env.server.base_url + path)
        assert answer.status_code == 303 and answer.headers["location"] == "/console/sign-in"


def test_a_hostile_name_renders_as_text(env: Env, client: httpx.Client) -> None:
    created = _create(client, "hostile.example.org", HOSTILE)
    assert created.status_code == 303
    for path in (created.headers["location"], "/"):
        page = client.get(path).text
        assert "<script>alert(1)" not in page and "<img src=x" not in page
        assert str(escape(HOSTILE)) in page


def test_a_site_page_is_small_and_strict(env: Env, client: httpx.Client) -> None:
    page = client.get(f"/console/sites/{env.seed.site.id}")
    assert len(page.content) < 150_000
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert " style=" not in page.text and "<script>" not in page.text
