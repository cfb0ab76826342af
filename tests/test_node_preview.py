"""Previews through a remote edge node (issue 23), real processes on loopback: a control
plane, an edge node of it, Chromium. A snippet loaded from the node fetches a draft's
preview config from the node, which relays it to the control plane
(`edge.node.previews`): the same answer as the control plane's, the variant applied in
the browser, nothing sent; the node's snippet never carries the draft; a forged token is
the control plane's 404; and with the control plane away the node says so (502)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from playwright.sync_api import Page

from tests.browser import BrowserEdge, SiteServer, page_html
from tests.support import Server, api_call, free_port, running_server, seed_store
from tests.test_edge_nodes import edge_tokens, node_args

pytestmark = [pytest.mark.server, pytest.mark.browser]


class Fleet(msgspec.Struct):
    control: Server
    node: Server
    edge: BrowserEdge  # the node, as the edge the browser pages load the snippet from
    root: Path


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("node-preview")
    data = root / "control"
    store_path = data / "splitedge.sqlite3"
    seed = seed_store(store_path)
    made = edge_tokens(data, "create", "--name", "nodes")
    assert made.returncode == 0, made.stderr
    env = {"SPLITEDGE_EDGE_TOKEN": made.stdout.strip()}
    with ExitStack() as stack:
        control = stack.enter_context(running_server(data))
        node = stack.enter_context(
            running_server(root / "node", command="edge", args=node_args(control), env=env)
        )
        yield Fleet(control, node, BrowserEdge(node, seed, store_path), root)


def draft(fleet: Fleet, target_url: str) -> dict[str, Any]:
    body = {
        "site_id": fleet.edge.seed.site.id,
        "name": f"node preview {target_url}",
        "target_url": target_url,
        "url_pattern": httpx.URL(target_url).path,
        "variants": [
            {
                "name": "Variant",
                "changes": [{"selector": "#t", "action": "set_content", "payload": "Previewed"}],
            }
        ],
        "goals": [{"name": "Buy", "type": "click", "selector": ".buy"}],
    }
    created = api_call(fleet.control, fleet.edge.seed.key.key, "POST", "/v1/experiments", body)
    assert created.status_code == 201, created.text
    data: dict[str, Any] = created.json()["data"]
    assert data["experiment"]["status"] == "draft"
    return data


def preview_path(fleet: Fleet, token: str) -> str:
    return f"/s/{fleet.edge.seed.site.public_key}/preview/{token}.json"


def test_the_node_relays_a_drafts_preview_config(fleet: Fleet) -> None:
    data = draft(fleet, "https://shop.example/pricing")
    [preview] = data["preview_urls"]
    token = preview["url"].split("sk_preview=")[1]
    path = preview_path(fleet, token)
    from_control = httpx.get(fleet.control.base_url + path, timeout=10)
    from_node = httpx.get(fleet.node.base_url + path, timeout=10)
    assert from_control.status_code == from_node.status_code == 200, from_node.text
    assert from_node.json() == from_control.json()
    assert from_node.json()["variant"] == preview["variant_id"]
    assert from_node.headers["access-control-allow-origin"] == "*"
    assert from_node.headers["cache-control"] == "no-store"
    # The node's snapshot, and so its snippet, never carries the draft.
    snippet = httpx.get(f"{fleet.node.base_url}/s/{fleet.edge.seed.site.public_key}.js")
    assert snippet.status_code == 200
    assert data["experiment"]["id"] not in snippet.text and "Previewed" not in snippet.text
    # A forged token is the control plane's 404, through the node too.
    forged = preview_path(fleet, token[:-1] + ("A" if token[-1] != "A" else "B"))
    refused = httpx.get(fleet.node.base_url + forged, timeout=10)
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
    assert refused.headers["access-control-allow-origin"] == "*"


def test_a_preview_url_applies_a_draft_on_a_page_of_the_nodes_snippet(
    fleet: Fleet, page: Page, site: SiteServer
) -> None:
    html = page_html(fleet.edge, '<h1 id="t">Original</h1><a class="buy">Buy</a>')
    url = site.add("/node-preview", html)
    data = draft(fleet, url)
    [preview] = data["preview_urls"]
    sent: list[str] = []
    page.context.on("request", lambda r: "/v1/collect" in r.url and sent.append(r.url))
    fetched: list[str] = []
    page.context.on("request", lambda r: "/preview/" in r.url and fetched.append(r.url))
    page.goto(preview["url"])
    page.wait_for_function("document.documentElement.style.opacity === ''")
    assert page.text_content("#t") == "Previewed"
    experiment_id = data["experiment"]["id"]
    assert (
        page.evaluate(f"window.__sk.getVariant({experiment_id!r})?.variantId")
        == (preview["variant_id"])
    )
    assert fetched and all(u.startswith(fleet.node.base_url) for u in fetched)
    page.click(".buy")
    page.wait_for_timeout(1500)
    assert sent == []
    # An ordinary visitor of the same page gets the page unchanged.
    page.goto(url)
    page.wait_for_function("document.documentElement.style.opacity === ''")
    assert page.text_content("#t") == "Original"


def test_without_the_control_plane_the_node_answers_502(fleet: Fleet) -> None:
    away = f"http://127.0.0.1:{free_port()}"
    env = {"SPLITEDGE_EDGE_TOKEN": "et_" + "x" * 43}
    args = ["--control-url", away]
    with running_server(fleet.root / "lonely", command="edge", args=args, env=env,
                        until_ready=False) as node:  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx.get(node.base_url + preview_path(fleet, "x" * 64), timeout=10)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the node did not listen"
                time.sleep(0.2)
        assert answer.status_code == 502, answer.text
        assert answer.json()["error"]["code"] == "control_plane_unavailable"
        assert answer.headers["access-control-allow-origin"] == "*"
