"""The outbound guard (edge.outbound): no page fetch or webhook reaches the server's own
network in production mode, whether the address is given directly, spelled in another
form, reached through DNS or through a redirect; the same targets work with --dev.

A hostile server on loopback counts every request it gets: refusals must leave it at 0.
Only loopback is ever connected to."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import msgspec
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from edge.authoring.fetch import PageUnavailable, fetch_page
from edge.control.records import Site
from edge.control.store import Store
from edge.control.webhook_dispatch import (
    REFUSED_ERROR,
    UNREACHABLE_ERROR,
    RetryPolicy,
    WebhookDispatcher,
)
from edge.control.webhooks import EVENTS, enqueue_event
from edge.outbound import IPAddress, OutboundGuard, TargetRefused, is_public_address
from tests.support import LOOPBACK_ALLOWED, Server, api_call, free_port, running_server

SECRET = "INTERNAL-ONLY-7f3a"
SECRET_PAGE = (
    f"<html><head><title>{SECRET} admin</title><meta name='description' content='{SECRET}'>"
    f"</head><body><h1>{SECRET} console</h1><button>Delete {SECRET}</button></body></html>"
).encode()


class Target:
    """A loopback HTTP server that answers every GET with an internal page (or a redirect
    from ``/go?to=URL``) and every POST with 200, counting what it got."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.hits = 0
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                target.hits += 1
                if self.path.startswith("/go?to="):
                    self.send_response(302)
                    self.send_header("Location", self.path.removeprefix("/go?to="))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(SECRET_PAGE)))
                self.end_headers()
                self.wfile.write(SECRET_PAGE)

            def do_POST(self) -> None:
                target.hits += 1
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.url = f"http://{host}:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@contextmanager
def target_on(host: str = "127.0.0.1") -> Iterator[Target]:
    server = Target(host)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def hostile() -> Iterator[Target]:
    with target_on() as server:
        yield server


def stub_resolver(names: dict[str, list[str]]) -> Any:
    """DNS for the test: ``names`` only, like a resolver that answers a rebinding name
    (e.g. ``127.0.0.1.nip.io``) with a loopback address."""

    def resolve(host: str, port: int) -> list[str]:
        if host not in names:
            raise OSError(f"no such name {host}")
        return names[host]

    return resolve


class _SecondLoopbackIsPublic(OutboundGuard):
    """A strict guard that takes 127.0.0.2 for a public address: a stand-in for a public
    site on a machine whose only network is loopback."""

    def allows(self, address: IPAddress) -> bool:
        return address == ipaddress.ip_address("127.0.0.2") or super().allows(address)


# --- which addresses are public --------------------------------------------------------

REFUSED_ADDRESSES = [
    "127.0.0.1", "127.1.2.3", "0.0.0.0", "0.1.2.3", "10.0.0.1", "172.16.5.4", "192.168.1.1",
    "169.254.169.254", "100.64.0.1", "224.0.0.1", "239.255.255.250", "255.255.255.255",
    "240.0.0.1", "192.0.2.10", "198.18.0.1", "::1", "::", "fd00::1", "fc00::5", "fe80::1",
    "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::127.0.0.1", "64:ff9b::7f00:1",
    "2002:7f00:1::1", "2001:db8::1",
]  # fmt: skip
PUBLIC_ADDRESSES = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", REFUSED_ADDRESSES)
def test_internal_addresses_in_every_form_are_refused(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC_ADDRESSES)
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("host", ["2130706433", "0177.0.0.1", "0x7f.1", "127.1", "localhost"])
def test_other_spellings_of_loopback_resolve_to_it_and_are_refused(host: str) -> None:
    with pytest.raises(TargetRefused):
        OutboundGuard().addresses(host, 80)
    with pytest.raises(TargetRefused):
        OutboundGuard().check_url(f"http://{host}/", "url")


def test_a_name_with_any_internal_answer_is_refused_and_private_targets_lift_it() -> None:
    names = {"rebind.test": ["93.184.216.34", "127.0.0.1"], "ok.test": ["93.184.216.34"]}
    guard = OutboundGuard(resolver=stub_resolver(names))
    with pytest.raises(TargetRefused):
        guard.addresses("rebind.test", 443)
    assert guard.addresses("ok.test", 443) == [ipaddress.ip_address("93.184.216.34")]
    # a name that does not resolve yet is checked again when it is fetched
    guard.check_url("https://not-yet.test/", "url")
    lifted = OutboundGuard(allow_private=True, resolver=stub_resolver(names))
    assert len(lifted.addresses("rebind.test", 443)) == 2


# --- page fetches in process -----------------------------------------------------------


def test_fetches_of_internal_targets_are_refused_before_connecting(hostile: Target) -> None:
    before = hostile.hits
    names = {"127.0.0.1.nip.io": ["127.0.0.1"], "mapped.test": ["::ffff:127.0.0.1"]}
    guard = OutboundGuard(resolver=stub_resolver(names))
    urls = [
        f"{hostile.url}/",
        f"http://127.0.0.1.nip.io:{hostile.port}/",
        f"http://mapped.test:{hostile.port}/",
    ]
    for url in urls:
        with pytest.raises(PageUnavailable, match="non-public address"):
            fetch_page(url, guard=guard)
    with pytest.raises(PageUnavailable, match="non-public address"):
        fetch_page(f"http://2130706433:{hostile.port}/", guard=OutboundGuard())
    with pytest.raises(PageUnavailable, match="not a valid URL"):  # httpx refuses octal
        fetch_page(f"http://0177.0.0.1:{hostile.port}/", guard=OutboundGuard())
    assert hostile.hits == before
    # the very same targets are fetched when private targets are allowed (--dev)
    assert SECRET in fetch_page(f"{hostile.url}/", guard=LOOPBACK_ALLOWED).html
    assert hostile.hits == before + 1


def test_redirects_are_checked_hop_by_hop_and_the_checked_address_is_the_one_used(
    hostile: Target,
) -> None:
    names = {"site.test": ["127.0.0.2"], "internal.test": ["127.0.0.1"]}
    guard = _SecondLoopbackIsPublic(resolver=stub_resolver(names))
    with target_on("127.0.0.2") as front:
        # the name is connected to at the address that was checked (no second lookup)
        page = fetch_page(f"http://site.test:{front.port}/pricing", guard=guard)
        assert page.final_url == f"http://site.test:{front.port}/pricing"
        before = hostile.hits
        for inside in (f"{hostile.url}/", f"http://internal.test:{hostile.port}/"):
            with pytest.raises(PageUnavailable, match="non-public address"):
                fetch_page(f"{front.url}/go?to={inside}", guard=guard)
        assert hostile.hits == before


# --- webhooks in process ---------------------------------------------------------------


def _deliver_once(tmp_path: Path, url: str, guard: OutboundGuard) -> str | None:
    """Queue one event for a webhook at ``url`` and return its first attempt's error."""
    store_path = tmp_path / f"hooks-{free_port()}.sqlite3"
    store = Store(store_path)
    try:
        workspace = store.create_workspace("hooks")
        with store.transaction() as conn:
            conn.execute(
                "INSERT INTO webhooks (id, workspace_id, url, events, secret, created_at) "
                "VALUES ('w', ?, ?, ?, 'whsec_x', 'now')",
                (workspace.id, url, json.dumps(list(EVENTS))),
            )
            enqueue_event(store, workspace.id, "ideas.generated", {"n": 1})
    finally:
        store.close()
    dispatcher = WebhookDispatcher(
        store_path, RetryPolicy(timeout=3, backoff=60), guard=guard, poll_interval=0.01
    )
    dispatcher.start()
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            store = Store(store_path)
            try:
                row = store.conn.execute("SELECT error FROM webhook_attempts").fetchone()
            finally:
                store.close()
            if row is not None:
                return str(row[0]) if row[0] is not None else None
            time.sleep(0.02)
        raise AssertionError("no delivery attempt was recorded")
    finally:
        dispatcher.stop()


def test_webhooks_to_internal_addresses_are_refused_at_connect_time(
    tmp_path: Path, hostile: Target
) -> None:
    before = hostile.hits
    guard = OutboundGuard(resolver=stub_resolver({"hooks.test": ["127.0.0.1"]}))
    for url in (f"{hostile.url}/hook", f"https://hooks.test:{hostile.port}/hook"):
        assert _deliver_once(tmp_path, url, guard) == REFUSED_ERROR
    assert hostile.hits == before
    assert _deliver_once(tmp_path, f"{hostile.url}/hook", LOOPBACK_ALLOWED) is None
    assert hostile.hits == before + 1


def test_the_delivery_log_does_not_tell_an_open_port_from_a_closed_one(
    tmp_path: Path, hostile: Target
) -> None:
    # https to a plain-HTTP port fails the TLS handshake; a closed port refuses the
    # connection: both are recorded in the same words.
    open_port = _deliver_once(tmp_path, f"https://127.0.0.1:{hostile.port}/", LOOPBACK_ALLOWED)
    closed_port = _deliver_once(tmp_path, f"https://127.0.0.1:{free_port()}/", LOOPBACK_ALLOWED)
    assert open_port == closed_port == UNREACHABLE_ERROR


# --- through a real server -------------------------------------------------------------

DIRECT_SITE_URLS = [
    "http://127.0.0.1:{port}/",
    "http://localhost:{port}/",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/",
    "http://0.0.0.0:22/",
    "http://[::ffff:127.0.0.1]:{port}/",
    "http://[::1]:{port}/",
    "http://2130706433:{port}/",
    "http://0177.0.0.1:{port}/",
]
WEBHOOK_URLS = [
    "https://169.254.169.254/latest/meta-data/",
    "https://10.0.0.1:8443/",
    "https://127.0.0.1:{port}/",
    "https://[::ffff:127.0.0.1]/",
    "https://localhost/",
]


class Env(msgspec.Struct):
    server: Server
    store_path: Path
    key: str
    workspace_id: str
    site_id: str
    """A site stored with the hostile URL, as if its public name came to resolve inside."""


@contextmanager
def server_env(tmp: Path, hostile: Target, args: list[str]) -> Iterator[Env]:
    data = tmp / "data"
    store = Store(data / "splitedge.sqlite3")
    try:
        workspace = store.create_workspace("attacker")
        key = store.issue_api_key(workspace.id).key
        site: Site = store.create_site(workspace.id, hostile.url + "/")
    finally:
        store.close()
    env = {"SPLITEDGE_WEBHOOK_BACKOFF": "60", "SPLITEDGE_TICK_INTERVAL": "0"}
    with running_server(data, env=env, args=args) as server:
        yield Env(server, data / "splitedge.sqlite3", key, workspace.id, site.id)


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory, hostile: Target) -> Iterator[Env]:
    with server_env(tmp_path_factory.mktemp("production"), hostile, []) as env:
        yield env


def _fetching_calls(env: Env, target: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every REST route that fetches a page, aimed at ``target``."""
    site = env.site_id
    prompt = "Change the headline to Hello world"
    return [
        ("GET", f"/v1/sites/{site}/intelligence", None),
        ("POST", "/v1/variants/generate", {"site_id": site, "prompt": prompt,
                                           "target_url": target}),
        ("POST", "/v1/experiments", {"site_id": site, "prompt": prompt, "target_url": target}),
        ("POST", "/v1/ideas/generate", {"site_id": site, "num_ideas": 2, "wait": True}),
        ("POST", "/v1/loops", {"site_id": site, "target_url": target,
                               "element_types": ["headline"]}),
    ]  # fmt: skip


def test_site_urls_on_the_servers_network_are_refused_at_registration(
    production: Env, hostile: Target
) -> None:
    before = hostile.hits
    for template in DIRECT_SITE_URLS:
        url = template.format(port=hostile.port)
        answer = api_call(production.server, production.key, "POST", "/v1/sites", {"url": url})
        assert answer.status_code == 400, (url, answer.text)
        error = answer.json()["error"]
        assert error["code"] == "target_not_allowed", (url, error)
        assert "--allow-private-targets" in error["message"]
    assert hostile.hits == before


def test_every_rest_fetch_path_refuses_internal_targets(production: Env, hostile: Target) -> None:
    before = hostile.hits
    for target in (f"{hostile.url}/", f"http://[::ffff:127.0.0.1]:{hostile.port}/"):
        for method, path, body in _fetching_calls(production, target):
            answer = api_call(production.server, production.key, method, path, body)
            assert 400 <= answer.status_code < 500, (path, body, answer.text)
            assert SECRET not in answer.text, (path, answer.text)
    # without a target_url, the author asks which page rather than reading the site's
    site_only = {"site_id": production.site_id, "prompt": "Change the headline to Hello world"}
    answer = api_call(production.server, production.key, "POST", "/v1/variants/generate", site_only)
    assert "needs_clarification" in answer.json()["data"], answer.text
    assert SECRET not in answer.text
    assert hostile.hits == before


async def _mcp_tools(env: Env, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    headers = {"Authorization": f"Bearer {env.key}"}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        transport = streamable_http_client(env.server.base_url + "/mcp", http_client=http)
        async with Client(transport) as client:
            return [await client.call_tool(tool, args) for tool, args in calls]


def test_every_mcp_fetch_path_refuses_internal_targets(production: Env, hostile: Target) -> None:
    before = hostile.hits
    site, target = production.site_id, f"{hostile.url}/"
    prompt = "Change the headline to Hello world"
    calls: list[tuple[str, dict[str, Any]]] = [
        ("create_site", {"url": f"http://localhost:{hostile.port}/"}),
        ("get_site_intelligence", {"site_id": site}),
        ("generate_ideas", {"site_id": site, "num_ideas": 2}),
        ("generate_variant", {"site_id": site, "prompt": prompt, "target_url": target}),
        ("create_experiment", {"site_id": site, "prompt": prompt, "target_url": target}),
        ("create_loop", {"site_id": site, "target_url": target, "element_types": ["headline"]}),
    ]
    results = asyncio.run(_mcp_tools(production, calls))
    for (tool, _), result in zip(calls, results, strict=True):
        assert result.is_error, (tool, result.structured_content)
        assert SECRET not in json.dumps([c.model_dump() for c in result.content]), tool
    assert hostile.hits == before


def test_webhooks_aimed_inside_are_refused_at_registration_and_delivery(
    production: Env, hostile: Target
) -> None:
    before = hostile.hits
    for template in WEBHOOK_URLS:
        url = template.format(port=hostile.port)
        body = {"url": url, "events": ["ideas.generated"]}
        answer = api_call(production.server, production.key, "POST", "/v1/webhooks", body)
        assert answer.status_code == 400, (url, answer.text)
        assert answer.json()["error"]["code"] == "target_not_allowed", (url, answer.text)
    # an endpoint stored before its name came to resolve inside is refused at connect time
    webhook_id = _stored_webhook(production, f"https://127.0.0.1:{hostile.port}/hook")
    assert _first_attempt(production, webhook_id)["error"] == REFUSED_ERROR
    assert hostile.hits == before


def _stored_webhook(env: Env, url: str) -> str:
    """A webhook row written straight into the store, with one event queued for it."""
    webhook_id = f"wh_{free_port()}"
    store = Store(env.store_path)
    try:
        with store.transaction() as conn:
            conn.execute(
                "INSERT INTO webhooks (id, workspace_id, url, events, secret, created_at) "
                "VALUES (?, ?, ?, ?, 'whsec_x', 'now')",
                (webhook_id, env.workspace_id, url, json.dumps(["ideas.generated"])),
            )
            enqueue_event(store, env.workspace_id, "ideas.generated", {"n": 1})
    finally:
        store.close()
    return webhook_id


def _first_attempt(env: Env, webhook_id: str) -> dict[str, Any]:
    path = f"/v1/webhooks/{webhook_id}/deliveries"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        log = api_call(env.server, env.key, "GET", path).json()["data"]
        if log and log[0]["attempt_log"]:
            attempt: dict[str, Any] = log[0]["attempt_log"][0]
            return attempt
        time.sleep(0.05)
    raise AssertionError(f"no attempt for {webhook_id}")


def test_the_same_targets_work_in_dev_mode(tmp_path: Path, hostile: Target) -> None:
    with server_env(tmp_path, hostile, ["--dev"]) as dev:
        site = api_call(
            dev.server, dev.key, "POST", "/v1/sites", {"url": f"http://localhost:{hostile.port}/"}
        )
        assert site.status_code == 201, site.text
        intelligence = api_call(dev.server, dev.key, "GET", f"/v1/sites/{dev.site_id}/intelligence")
        assert intelligence.status_code == 200 and SECRET in intelligence.text
        body = {"url": f"{hostile.url}/hook", "events": ["ideas.generated"]}
        hook = api_call(dev.server, dev.key, "POST", "/v1/webhooks", body)
        assert hook.status_code == 201, hook.text
        before = hostile.hits
        webhook_id = _stored_webhook(dev, f"{hostile.url}/stored")
        assert _first_attempt(dev, webhook_id)["status_code"] == 200
        assert hostile.hits > before
