"""The console's sign-in, sessions, CSRF and headers, through a real server and store: an
API key (the first-start admin key, or any active key) is exchanged for an HttpOnly,
SameSite=Strict session cookie (Secure behind https); the home lists only the key's
workspace's sites; sign-out and revoking the key end the session; a wrong key is the
sign-in page again with 401; a form without the session's CSRF token is refused (403)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from playwright.sync_api import Browser

from edge.control.store import Store
from tests.console_support import admin_key, csrf, sign_in, signed_in
from tests.support import Seed, Server, running_server, seed_store

pytestmark = pytest.mark.server

HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>\u2028'


class Env(msgspec.Struct):
    server: Server
    seed: Seed
    store_path: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A server that trusts forwarded headers from loopback, as behind a TLS proxy."""
    data = tmp_path_factory.mktemp("console") / "data"
    store_path = data / "splitedge.sqlite3"
    seed = seed_store(store_path)
    store = Store(store_path)
    try:
        store.create_site(seed.workspace_id, "https://hostile.example.com", name=HOSTILE)
    finally:
        store.close()
    with running_server(data, args=["--forwarded-allow-ips", "127.0.0.1"]) as server:
        yield Env(server, seed, store_path)


def cookie_attributes(response: httpx.Response) -> set[str]:
    header = response.headers["set-cookie"]
    name_value, *attributes = (part.strip() for part in header.split(";"))
    assert name_value.startswith("splitedge_session=")
    return {a.lower() for a in attributes}


def test_admin_key_signs_in_to_its_workspace(env: Env) -> None:
    with httpx.Client(base_url=env.server.base_url, timeout=30) as client:
        form = client.get("/")
        assert form.status_code == 200 and 'name="api_key"' in form.text
        answer = sign_in(client, admin_key(env.server))
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        attributes = cookie_attributes(answer)
        assert {"httponly", "samesite=strict", "path=/", "max-age=43200"} <= attributes
        assert "secure" not in attributes
        home = client.get("/")
        assert home.status_code == 200
        assert "in default" in home.text and "splitedge demo" in home.text, home.text
        assert "shop.example.com" not in home.text and "other.example.org" not in home.text


def test_home_lists_only_the_workspaces_sites_as_text(env: Env) -> None:
    with signed_in(env.server, env.seed.key.key) as client:
        home = client.get("/")
        assert home.status_code == 200
        assert "shop.example.com" in home.text and "other.example.org" not in home.text
        assert "<script>alert" not in home.text and "<img src=x" not in home.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&gt;&lt;img" in home.text
        assert 'href="/docs"' in home.text and 'action="/console/sign-out"' in home.text


def test_pages_carry_a_strict_csp_and_the_security_headers(env: Env) -> None:
    with signed_in(env.server, env.seed.key.key) as client:
        for path in ("/", "/console/no-such-page"):
            response = client.get(path)
            csp = response.headers["content-security-policy"]
            assert "unsafe-inline" not in csp and "default-src 'none'" in csp
            assert "frame-ancestors 'none'" in csp and "form-action 'self'" in csp
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "same-origin"
            assert response.headers["cache-control"] == "no-store"
            assert "<script>" not in response.text and " style=" not in response.text
        missing = client.get("/console/no-such-page")
        assert missing.status_code == 404 and "Not found" in missing.text
    signed_out = httpx.get(env.server.base_url + "/", timeout=30)
    assert "unsafe-inline" not in signed_out.headers["content-security-policy"]


def test_static_files_are_versioned_and_cached(env: Env) -> None:
    home = httpx.get(env.server.base_url + "/", timeout=30)
    for name, kind in (("console.css", "text/css"), ("console.js", "text/javascript")):
        start = home.text.index(f"/console/static/{name}?v=")
        url = home.text[start : home.text.index('"', start)]
        response = httpx.get(env.server.base_url + url, timeout=30)
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind)
        assert "immutable" in response.headers["cache-control"]
    assert httpx.get(env.server.base_url + "/console/static/x.css").status_code == 404


def test_signed_out_console_pages_redirect_to_sign_in(env: Env) -> None:
    for path in ("/console/experiments", "/console/no-such-page"):
        response = httpx.get(env.server.base_url + path, timeout=30)
        assert response.status_code == 303 and response.headers["location"] == "/console/sign-in"
    form = httpx.get(env.server.base_url + "/console/sign-in", timeout=30)
    assert form.status_code == 200 and 'name="api_key"' in form.text


def test_a_wrong_key_is_the_sign_in_page_with_401(env: Env) -> None:
    with httpx.Client(base_url=env.server.base_url, timeout=30) as client:
        for key, words in (
            ("sk_live_" + "x" * 43, "this key is unknown"),
            ("nonsense", "look like sk_live_"),
            ("", "enter an API key"),
            ("sk_live_" + "\u20ac" * 43, "not an API key"),
        ):
            answer = sign_in(client, key)
            assert answer.status_code == 401, answer.text
            assert words in answer.text and 'name="api_key"' in answer.text
            assert "set-cookie" not in answer.headers
        public = sign_in(client, env.seed.site.public_key)
        assert public.status_code == 401 and "public key" in public.text


def test_sign_in_from_another_origin_is_refused(env: Env) -> None:
    with httpx.Client(base_url=env.server.base_url, timeout=30) as client:
        key = env.seed.key.key
        hostile = client.post("/console/sign-in", data={"api_key": key},
                              headers={"origin": "https://evil.example.com"})  # fmt: skip
        assert hostile.status_code == 403 and "set-cookie" not in hostile.headers
        cross = client.post("/console/sign-in", data={"api_key": key},
                            headers={"sec-fetch-site": "cross-site"})  # fmt: skip
        assert cross.status_code == 403
        own = client.post("/console/sign-in", data={"api_key": key},
                          headers={"origin": env.server.base_url})  # fmt: skip
        assert own.status_code == 303


def test_sign_out_ends_the_session(env: Env) -> None:
    with signed_in(env.server, env.seed.key.key) as client:
        token = csrf(client)
        stolen = client.cookies["splitedge_session"]
        out = client.post("/console/sign-out", data={"csrf_token": token})
        assert out.status_code == 303 and out.headers["location"] == "/console/sign-in"
        assert 'splitedge_session=""' in out.headers["set-cookie"]
    with httpx.Client(base_url=env.server.base_url, timeout=30) as old:
        old.cookies.set("splitedge_session", stolen)
        assert old.get("/console/experiments").status_code == 303
        home = old.get("/")
        assert 'name="api_key"' in home.text and "shop.example.com" not in home.text


def test_a_missing_or_forged_csrf_token_is_refused(env: Env) -> None:
    with signed_in(env.server, env.seed.key.key) as client:
        token = csrf(client)
        with signed_in(env.server, env.seed.other_key.key) as other:
            others_token = csrf(other)
        for data in ({"note": "x"}, {"csrf_token": "0" * 64}, {"csrf_token": others_token},
                     {"csrf_token": [token, token]}):  # fmt: skip
            refused = client.post("/console/sign-out", data=data)
            assert refused.status_code == 403, refused.text
            assert "security token" in refused.text
            assert "unsafe-inline" not in refused.headers["content-security-policy"]
        not_a_form = client.post("/console/sign-out", content=b"{}",
                                 headers={"content-type": "application/json"})  # fmt: skip
        assert not_a_form.status_code == 400
        assert client.get("/").status_code == 200 and "shop.example.com" in client.get("/").text


def test_a_revoked_keys_session_stops_working(env: Env) -> None:
    store = Store(env.store_path)
    try:
        issued = store.issue_api_key(env.seed.workspace_id, name="console")
    finally:
        store.close()
    with signed_in(env.server, issued.key) as client:
        assert "shop.example.com" in client.get("/").text
        store = Store(env.store_path)
        try:
            store.revoke_api_key(issued.record.id)
        finally:
            store.close()
        home = client.get("/")
        assert 'name="api_key"' in home.text and "shop.example.com" not in home.text
        assert client.get("/console/experiments").status_code == 303
        again = sign_in(client, issued.key)
        assert again.status_code == 401 and "revoked" in again.text


def test_cookie_is_secure_behind_a_trusted_tls_proxy(env: Env) -> None:
    with httpx.Client(base_url=env.server.base_url, timeout=30) as client:
        answer = client.post("/console/sign-in", data={"api_key": env.seed.key.key},
                             headers={"x-forwarded-proto": "https"})  # fmt: skip
        assert answer.status_code == 303
        assert "secure" in cookie_attributes(answer)


def test_cookie_is_secure_with_an_https_public_url(tmp_path: Path) -> None:
    seed = seed_store(tmp_path / "data" / "splitedge.sqlite3")
    env = {"SPLITEDGE_PUBLIC_URL": "https://ab.example.com/edge/"}
    with running_server(tmp_path / "data", env=env) as server:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            answer = client.post("/console/sign-in", data={"api_key": seed.key.key},
                                 headers={"origin": "https://ab.example.com"})  # fmt: skip
            assert answer.status_code == 303 and answer.headers["location"] == "/edge/"
            assert "secure" in cookie_attributes(answer)
            # The server sees http on loopback; the browser is on https: both are the
            # console's own origin, and the cookie (Secure) is sent back by the client.
            client.cookies.set("splitedge_session", answer.cookies["splitedge_session"])
            home = client.get("/")
            assert "shop.example.com" in home.text
            assert (
                'href="/edge/docs"' in home.text and "/edge/console/static/console.css" in home.text
            )


@pytest.mark.browser
@pytest.mark.parametrize("width", [1280, 390])
def test_chromium_signs_in_and_out_by_keyboard_without_overflow(
    env: Env, browser: Browser, width: int
) -> None:
    context = browser.new_context(viewport={"width": width, "height": 800})
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(env.server.base_url + "/")
        page.get_by_label("API key").fill(env.seed.key.key)
        page.keyboard.press("Enter")
        page.get_by_role("button", name="Sign out").wait_for()
        assert page.get_by_role("cell", name="https://shop.example.com").count() == 1
        assert page.get_by_role("link", name="API docs").first.is_visible()
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{overflow} px of horizontal scroll at {width} px"
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(env.server.base_url + "/console/sign-in")
        assert page.get_by_label("API key").is_visible()
        assert errors == []
    finally:
        context.close()
