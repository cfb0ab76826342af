"""Previews in real Chromium: a preview URL from the API applies its variant before first
paint for a draft, a running and a paused experiment, and a redirect draft redirects;
nothing is sent and nothing reaches ClickHouse; a forged token applies nothing; and an
ordinary visitor never gets a draft (`edge.control.previews`, the snippet's preview)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page

from tests.browser import BrowserEdge, SiteServer, browser_edge_on, page_html
from tests.support import api_call, clickhouse_rows, wait_flushed, wait_served
from tests.test_browser_changes import FRAME_RECORDER, frames, streamed
from tests.test_browser_runtime import FLUSH_MS, leave

pytestmark = pytest.mark.browser

CLICK_GOAL = {"name": "Buy", "type": "click", "selector": ".buy"}


def experiment(
    edge: BrowserEdge, status: str, target_url: str, variant: dict[str, Any]
) -> dict[str, Any]:
    """An experiment made through the REST API, brought to ``status``, as its GET
    answers it (with its preview URLs)."""
    key = edge.seed.key.key
    path = httpx.URL(target_url).path
    body = {
        "site_id": edge.seed.site.id,
        "name": f"preview {status} {path}",
        "target_url": target_url,
        "url_pattern": path,
        "variants": [{"name": "Variant", **variant}],
        "goals": [CLICK_GOAL],
    }
    created = api_call(edge.server, key, "POST", "/v1/experiments", body)
    assert created.status_code == 201, created.text
    experiment_id = created.json()["data"]["experiment"]["id"]
    for action in {"draft": [], "running": ["launch"], "paused": ["launch", "pause"]}[status]:
        changed = api_call(
            edge.server, key, "PATCH", f"/v1/experiments/{experiment_id}", {"action": action}
        )
        assert changed.status_code == 200, changed.text
    got = api_call(edge.server, key, "GET", f"/v1/experiments/{experiment_id}")
    assert got.status_code == 200, got.text
    answer = got.json()["data"]
    # The experiment with its preview URLs beside it, as one dict.
    data: dict[str, Any] = {**answer["experiment"], "preview_urls": answer["preview_urls"]}
    assert data["status"] == status
    return data


def collected(page: Page) -> list[str]:
    """The URLs of the page's requests to the edge's /v1/collect, as they are made."""
    seen: list[str] = []
    page.context.on("request", lambda r: "/v1/collect" in r.url and seen.append(r.url))
    return seen


@pytest.mark.parametrize("status", ["draft", "running", "paused"])
def test_a_preview_url_applies_its_variant_before_first_paint_and_sends_nothing(
    page: Page, site: SiteServer, browser_edge: BrowserEdge, status: str
) -> None:
    path = f"/preview/{status}"
    url = site.add(
        path,
        *streamed(browser_edge, "<p>intro</p>", '<h1 id="t">Original</h1><a class="buy">B</a>'),
    )
    set_text = {"selector": "#t", "action": "set_content", "payload": f"Previewed {status}"}
    data = experiment(browser_edge, status, url, {"changes": [set_text]})
    [preview] = data["preview_urls"]
    assert preview["variant_id"] == data["variants"][1]["id"]
    token = preview["url"].split("sk_preview=")[1]
    assert token != preview["variant_id"] and len(token) == 64
    requests = collected(page)
    page.add_init_script(FRAME_RECORDER.replace("SELECTOR", "#t"))

    page.goto(preview["url"])
    recorded = frames(page)
    shown = [text for _, text, visible in recorded if visible]
    assert shown and set(shown) == {f"Previewed {status}"}, recorded
    sk = page.evaluate(f"[window.__sk.preview, window.__sk.getVariant({data['id']!r})?.variantId]")
    assert sk == [True, preview["variant_id"]]
    page.click(".buy")
    page.evaluate("window.__sk.track('anything', 1)")
    page.wait_for_timeout(FLUSH_MS + 300)
    leave(page, site)
    assert requests == []


def test_an_ordinary_visitor_never_gets_a_draft(
    page: Page, site: SiteServer, browser_edge: BrowserEdge
) -> None:
    url = site.add("/preview/plain", page_html(browser_edge, '<h1 id="t">Original</h1>'))
    set_text = {"selector": "#t", "action": "set_content", "payload": "Draft text"}
    data = experiment(browser_edge, "draft", url, {"changes": [set_text]})
    snippet = httpx.get(f"{browser_edge.server.base_url}/s/{browser_edge.seed.site.public_key}.js")
    assert data["id"] not in snippet.text and "Draft text" not in snippet.text
    page.goto(url)
    assert page.text_content("#t") == "Original"
    assert page.evaluate(f"[window.__sk.preview, window.__sk.getVariant({data['id']!r})]") == [
        False,
        None,
    ]
    # The variant id alone (the older preview URLs) does not reach a draft either.
    page.goto(f"{url}?sk_preview={data['variants'][1]['id']}")
    page.wait_for_function("document.documentElement.style.opacity === ''")
    assert page.text_content("#t") == "Original"


def test_a_forged_token_applies_nothing_and_shows_the_page(
    page: Page, site: SiteServer, browser_edge: BrowserEdge
) -> None:
    url = site.add("/preview/forged", page_html(browser_edge, '<h1 id="t">Original</h1>'))
    set_text = {"selector": "#t", "action": "set_content", "payload": "Draft text"}
    data = experiment(browser_edge, "draft", url, {"changes": [set_text]})
    preview = data["preview_urls"][0]["url"]
    flipped = "A" if preview[-1] != "A" else "B"
    requests = collected(page)
    for forged in (preview[:-1] + flipped, f"{url}?sk_preview=not-a-token"):
        page.goto(forged)
        page.wait_for_function("document.documentElement.style.opacity === ''", timeout=2000)
        assert page.text_content("#t") == "Original"
        assert page.evaluate(f"window.__sk.getVariant({data['id']!r})") is None
    page.wait_for_timeout(FLUSH_MS + 300)
    leave(page, site)
    assert requests == []


def test_a_redirect_draft_redirects_its_preview(
    page: Page, site: SiteServer, browser_edge: BrowserEdge
) -> None:
    url = site.add("/preview/split", page_html(browser_edge, "<h1>A</h1>"))
    landing = site.add("/preview/split-b", page_html(browser_edge, "<h1>B</h1>"))
    data = experiment(browser_edge, "draft", url, {"redirect_url": landing})
    preview = data["preview_urls"][0]["url"]
    token = preview.split("sk_preview=")[1]
    requests = collected(page)
    page.goto(preview)
    page.wait_for_url(f"{landing}?sk_preview={token}")
    assert page.text_content("h1") == "B"
    assert page.evaluate("window.__sk.preview") is True
    assert site.requests.count(f"/preview/split-b?sk_preview={token}") == 1
    page.wait_for_timeout(FLUSH_MS + 300)
    leave(page, site)
    assert requests == []


@pytest.fixture
def own_edge(tmp_path: Path) -> Iterator[BrowserEdge]:
    """A server of the test's own, to stop and read its ClickHouse."""
    with browser_edge_on(tmp_path / "data") as edge:
        yield edge


def test_previews_are_never_counted(
    browser: Browser, site: SiteServer, own_edge: BrowserEdge
) -> None:
    url = site.add(
        "/preview/counted", page_html(own_edge, '<h1 id="t">Original</h1><a class="buy">B</a>')
    )
    set_text = {"selector": "#t", "action": "set_content", "payload": "Variant"}
    running = experiment(own_edge, "running", url, {"changes": [set_text]})
    wait_served(own_edge.server, own_edge.seed.site.public_key, running["id"])
    for preview in running["preview_urls"]:
        context = browser.new_context()
        page = context.new_page()
        page.goto(preview["url"])
        # (The preview config may arrive after the load event; the page is hidden till then.)
        page.wait_for_function("document.querySelector('#t').textContent === 'Variant'")
        page.click(".buy")
        page.wait_for_timeout(FLUSH_MS + 300)
        leave(page, site)
        context.close()

    # An ordinary visit of the same page is counted: its exposure and its click only.
    context = browser.new_context()
    page = context.new_page()
    page.goto(url)
    visitor = page.evaluate("window.__sk.v")
    page.click(".buy")
    page.wait_for_timeout(FLUSH_MS + 300)
    leave(page, site)
    context.close()
    wait_flushed(own_edge.server, 2)
    own_edge.server.stop()
    rows = clickhouse_rows(
        own_edge.store_path.parent,
        f"SELECT kind, unit_id FROM splitedge.events WHERE experiment_id = '{running['id']}' "
        "ORDER BY kind",
    )
    assert rows == [("exposure", visitor), ("goal", visitor)]
