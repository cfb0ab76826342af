"""window.__sk, goals, beacons, preview, redirects and opt-out, in real Chromium against
the real edge (and, for what must reach ClickHouse, a server of the test's own)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page

from edge.control.records import NewGoal, NewVariant
from edge.control.store import Store
from tests.browser import (
    Beacons,
    BrowserEdge,
    SiteServer,
    browser_edge_on,
    change,
    launch,
    only_variant,
    page_html,
    two_arms,
)
from tests.support import clickhouse_rows, metric, wait_flushed

pytestmark = pytest.mark.browser

FLUSH_MS = 1000  # the runtime sends a batch this long after its first event


def leave(page: Page, site: SiteServer) -> None:
    """Navigate away: pagehide flushes the page's pending events. (Playwright does not
    report beacons sent from a page that is going; the tests that read the beacons wait
    for the batch timer instead, and `test_pagehide_flushes_the_batch` counts on the
    server.)"""
    page.goto(site.add("/elsewhere", "<p>bye</p>"))


def test_window_sk_has_the_reference_shape(
    page: Page, site: SiteServer, browser_edge: BrowserEdge
) -> None:
    launched = launch(
        browser_edge, "/shape",
        only_variant(change("h1", "set_content", "B")),
        goals=[NewGoal(name="Buy", type="click", selector=".buy")],
    )  # fmt: skip
    page.goto(site.add("/shape", page_html(browser_edge, "<h1>A</h1>")))
    sk = page.evaluate(
        "(id) => { const sk = window.__sk; return {keys: Object.keys(sk).sort(), "
        "types: Object.fromEntries(Object.entries(sk).map(([k, v]) => [k, typeof v])), "
        "a: sk.a, sk: sk.sk, dt: sk.dt, preview: sk.preview, "
        "hit: sk.getVariant(id), miss: sk.getVariant('nope'), "
        "v: sk.v, s: sk.s} }",
        launched.id,
    )
    assert set(sk["keys"]) == {
        "v", "s", "dt", "sk", "a", "preview", "getVariant", "track", "optOut",
    }  # fmt: skip
    assert sk["types"]["getVariant"] == sk["types"]["track"] == sk["types"]["optOut"] == "function"
    assert sk["sk"] == browser_edge.seed.site.public_key and sk["dt"] == "desktop"
    assert sk["preview"] is False
    [entry] = sk["a"]
    assert sorted(entry) == ["ch", "eid", "gs", "ic", "vid"]
    assert entry["eid"] == launched.id and entry["vid"] == launched.variant_ids[1]
    assert entry["ic"] is False and entry["gs"][0]["id"] == launched.goal_ids[0]
    assert entry["ch"] == [{"selector": "h1", "action": "set_content", "payload": "B"}]
    assert sk["hit"] == {"variantId": launched.variant_ids[1], "isControl": False}
    assert sk["miss"] is None
    # The visitor id stays across page views; the session id stays within the tab.
    page.reload()
    assert page.evaluate("[window.__sk.v, window.__sk.s]") == [sk["v"], sk["s"]]
    assert len({sk["v"], sk["s"]}) == 2


def test_visitor_id_falls_back_to_a_first_party_cookie(
    page: Page, site: SiteServer, browser_edge: BrowserEdge
) -> None:
    page.add_init_script(
        "Object.defineProperty(window, 'localStorage', "
        "{get() { throw new DOMException('denied', 'SecurityError'); }});"
    )
    url = site.add("/cookie", page_html(browser_edge, "<p>x</p>"))
    page.goto(url)
    visitor = page.evaluate("window.__sk.v")
    assert visitor and f"sk_v={visitor}" in page.evaluate("document.cookie")
    page.reload()
    assert page.evaluate("window.__sk.v") == visitor


def test_a_new_visitor_gets_a_new_id(
    browser: Browser, site: SiteServer, browser_edge: BrowserEdge
) -> None:
    url = site.add("/ids", page_html(browser_edge, "<p>x</p>"))
    ids = set()
    for _ in range(3):
        context = browser.new_context()
        page = context.new_page()
        page.goto(url)
        ids.add(page.evaluate("window.__sk.v"))
        context.close()
    assert len(ids) == 3


PRICING_BRIDGE = """
<span id="sk-price">$29/mo</span>
<a id="sk-buy-btn" href="https://buy.stripe.com/CONTROL_LINK">Get started</a>
<script>
(function () {
var EXP_ID = '%(exp)s'
var VARIANTS = {
'%(control)s': {
price: '$29/mo',
href: 'https://buy.stripe.com/CONTROL_LINK'
},
'%(variant)s': {
price: '$19/mo',
href: 'https://buy.stripe.com/VARIANT_B_LINK'
}
}
var assignment = window.__sk && window.__sk.getVariant(EXP_ID)
var v = (assignment && VARIANTS[assignment.variantId]) || VARIANTS['%(control)s']
document.getElementById('sk-price').textContent = v.price
document.getElementById('sk-buy-btn').href = v.href
})()
</script>
<div id="section-a">Plan A</div><div id="section-b">Plan B</div>
<script>
var assignment = window.__sk && window.__sk.getVariant('%(exp)s')
var isVariantB = assignment && !assignment.isControl
document.getElementById('section-a').style.display = isVariantB ? 'none' : ''
document.getElementById('section-b').style.display = isVariantB ? '' : 'none'
</script>
"""


def test_the_reference_recipes_work_unchanged(
    browser: Browser, site: SiteServer, browser_edge: BrowserEdge
) -> None:
    """The reference's pricing bridge and show/hide recipe, verbatim, for visitors of
    both arms (fresh contexts until each arm was seen)."""
    launched = launch(browser_edge, "/recipe", two_arms())
    control, variant = launched.variant_ids
    body = PRICING_BRIDGE % {"exp": launched.id, "control": control, "variant": variant}
    url = site.add("/recipe", page_html(browser_edge, body))
    seen: dict[str, tuple[str, str, bool, bool]] = {}
    for _ in range(40):
        context = browser.new_context()
        page = context.new_page()
        page.goto(url)
        vid = page.evaluate(f"window.__sk.getVariant({launched.id!r}).variantId")
        seen[vid] = (
            page.text_content("#sk-price") or "",
            page.get_attribute("#sk-buy-btn", "href") or "",
            page.is_visible("#section-a"),
            page.is_visible("#section-b"),
        )
        context.close()
        if len(seen) == 2:
            break
    assert seen[control] == ("$29/mo", "https://buy.stripe.com/CONTROL_LINK", True, False)
    assert seen[variant] == ("$19/mo", "https://buy.stripe.com/VARIANT_B_LINK", False, True)


def test_one_exposure_per_visitor_per_session(
    page: Page, site: SiteServer, browser_edge: BrowserEdge
) -> None:
    launched = launch(browser_edge, "/once", two_arms())
    beacons = Beacons(page)
    url = site.add("/once", page_html(browser_edge, "<p>x</p>"))
    for _ in range(3):
        page.goto(url)
        page.wait_for_timeout(FLUSH_MS + 300)  # each page view's batch is sent (and seen)
    beacons.wait_for(page, lambda events: any(e["type"] == "exposure" for e in events))
    exposures = [e for e in beacons.of_type("exposure") if e["experiment_id"] == launched.id]
    assert len(exposures) == 1
    sk = exposures[0]
    assert sk["visitor_id"] and sk["session_id"] and sk["device"] == "desktop"
    assert sk["pathname"] == "/once" and sk["variant_id"] in launched.variant_ids
    assert all(b["public_key"] == browser_edge.seed.site.public_key for b in beacons.batches)


def test_a_deployed_winner_changes_every_page_and_counts_nothing(
    page: Page, site: SiteServer, browser_edge: BrowserEdge
) -> None:
    launched = launch(
        browser_edge, "/deployed",
        two_arms(change("h1", "set_content", "Winner")),
        goals=[NewGoal(name="Buy", type="click", selector=".buy")],
    )  # fmt: skip
    winner = launched.variant_ids[1]
    store = Store(browser_edge.store_path)
    try:
        store.promote_variant(launched.id, winner)
    finally:
        store.close()
    snippet = f"{browser_edge.server.base_url}/s/{browser_edge.seed.site.public_key}.js"
    deadline = time.monotonic() + 5
    while launched.goal_ids[0] in httpx.get(snippet).text:  # served without its goals
        assert time.monotonic() < deadline, "the deployment was not served within 5 s"
        time.sleep(0.05)
    beacons = Beacons(page)
    url = site.add("/deployed", page_html(browser_edge, "<h1>A</h1><a class='buy'>Buy</a>"))
    for _ in range(3):
        page.context.clear_cookies()
        page.goto(url)
        page.evaluate("localStorage.clear(); sessionStorage.clear()")
        page.goto(url)  # a new visitor
        assert page.text_content("h1") == "Winner"
        assert page.evaluate("(id) => window.__sk.getVariant(id).variantId", launched.id) == winner
        page.click(".buy")
    page.wait_for_timeout(FLUSH_MS + 300)
    leave(page, site)
    assert [e for e in beacons.events if e.get("experiment_id") == launched.id] == []


def test_pageview_and_custom_goals(page: Page, site: SiteServer, browser_edge: BrowserEdge) -> None:
    launched = launch(
        browser_edge, "/shop",
        only_variant(),
        goals=[
            NewGoal(name="Checkout seen", type="pageview", url_pattern="/shop/checkout"),
            NewGoal(name="signup", type="custom"),
        ],
    )  # fmt: skip
    pageview_goal, custom_goal = launched.goal_ids
    beacons = Beacons(page)
    page.goto(site.add("/shop/list", page_html(browser_edge, "<p>list</p>")))
    page.goto(site.add("/shop/checkout", page_html(browser_edge, "<p>pay</p>")))
    page.evaluate("window.__sk.track('signup', 49.5)")
    page.evaluate("window.__sk.track('newsletter', 1)")  # no such goal: a custom event
    beacons.wait_for(page, lambda events: len(beacons.of_type("goal")) >= 2)
    goals = {e["goal_id"]: e for e in beacons.of_type("goal")}
    assert set(goals) == {pageview_goal, custom_goal}
    assert goals[pageview_goal]["pathname"] == "/shop/checkout"
    assert goals[custom_goal]["value"] == 49.5
    assert all(g["experiment_id"] == launched.id for g in goals.values())
    beacons.wait_for(page, lambda events: bool(beacons.of_type("custom")))
    [custom] = beacons.of_type("custom")
    assert custom["name"] == "newsletter" and custom["value"] == 1
    assert not custom.get("experiment_id")


def test_redirect_before_paint_keeps_query_and_hash_and_exposes_on_the_destination(
    page: Page, site: SiteServer, browser_edge: BrowserEdge
) -> None:
    variants = [
        NewVariant(name="Control", weight=0),
        NewVariant(name="New page", weight=1, redirect_url="/landing-b"),
    ]
    launched = launch(browser_edge, "/landing", variants)
    beacons = Beacons(page)
    site.add("/landing", page_html(browser_edge, "<h1>Old landing</h1>"))
    site.add("/landing-b", page_html(browser_edge, "<h1>New landing</h1>"))
    page.goto(site.base_url + "/landing?utm_source=mail#plans")
    page.wait_for_load_state("load")
    assert page.url == site.base_url + "/landing-b?utm_source=mail#plans"
    assert page.text_content("h1") == "New landing"
    page.wait_for_timeout(300)
    assert page.url.endswith("/landing-b?utm_source=mail#plans")  # no loop
    beacons.wait_for(page, lambda events: bool(beacons.of_type("exposure")))
    [exposure] = [e for e in beacons.of_type("exposure") if e["experiment_id"] == launched.id]
    assert exposure["pathname"] == "/landing-b"
    assert exposure["variant_id"] == launched.variant_ids[1]
    assert site.requests.count("/landing?utm_source=mail") == 1


def test_a_redirect_onto_a_matching_page_does_not_loop(
    page: Page, site: SiteServer, browser_edge: BrowserEdge
) -> None:
    variants = [
        NewVariant(name="Control", weight=0),
        NewVariant(name="B", weight=1, redirect_url="/loop/b"),
    ]
    launch(browser_edge, "/loop", variants)
    site.add("/loop/a", page_html(browser_edge, "<h1>a</h1>"))
    site.add("/loop/b", page_html(browser_edge, "<h1>b</h1>"))
    before = len(site.requests)
    page.goto(site.base_url + "/loop/a")
    page.wait_for_timeout(500)
    assert page.url == site.base_url + "/loop/b"
    assert site.requests[before:] == ["/loop/a", "/loop/b"]


def test_opt_out_stops_all_sending_and_persists(
    page: Page, site: SiteServer, browser_edge: BrowserEdge
) -> None:
    launch(
        browser_edge, "/optout", two_arms(),
        goals=[NewGoal(name="Buy", type="click", selector=".buy")],
    )  # fmt: skip
    beacons = Beacons(page)
    url = site.add("/optout", page_html(browser_edge, '<button class="buy">Buy</button>'))
    page.goto(url)
    page.evaluate("window.__sk.optOut()")
    page.click(".buy")
    page.reload()
    page.click(".buy")
    page.evaluate("window.__sk.track('anything', 1)")
    page.wait_for_timeout(FLUSH_MS + 500)
    assert beacons.batches == []
    assert page.evaluate("localStorage.sk_o") == "1"


def test_pagehide_flushes_the_batch(page: Page, site: SiteServer, own_edge: BrowserEdge) -> None:
    """On a server of its own, so that the only event it can receive is this one."""
    launch(own_edge, "/gone", two_arms())
    page.goto(site.add("/gone", page_html(own_edge, "<p>x</p>")))
    leave(page, site)  # before the batch timer: only pagehide can send the exposure
    received = 'splitedge_events_received_total{source="browser"}'
    deadline = time.monotonic() + 5
    while metric(own_edge.server, received) < 1:
        assert time.monotonic() < deadline, "the exposure was not sent on pagehide"
        time.sleep(0.1)


@pytest.fixture
def own_edge(tmp_path: Path) -> Iterator[BrowserEdge]:
    """A server of the test's own, to stop and read its ClickHouse."""
    with browser_edge_on(tmp_path / "data") as edge:
        yield edge


def test_click_goal_reaches_clickhouse_and_preview_sends_nothing(
    browser: Browser, site: SiteServer, own_edge: BrowserEdge
) -> None:
    launched = launch(
        own_edge, "/buy",
        two_arms(change("h1", "set_content", "Variant headline")),
        goals=[NewGoal(name="Buy", type="click", selector=".buy")],
    )  # fmt: skip
    url = site.add(
        "/buy", page_html(own_edge, '<h1>Headline</h1><a class="buy" href="#"><b>Buy</b></a>')
    )

    # Preview of the variant: applied, and not a single event sent.
    context = browser.new_context()
    page = context.new_page()
    preview_beacons = Beacons(page)
    page.goto(f"{url}?sk_preview={launched.variant_ids[1]}")
    assert page.text_content("h1") == "Variant headline"
    assert page.evaluate("window.__sk.preview") is True
    page.click(".buy b")
    page.wait_for_timeout(FLUSH_MS + 300)
    leave(page, site)
    context.close()

    # A real visit: exposure, then a click on a child of the goal element.
    context = browser.new_context()
    page = context.new_page()
    beacons = Beacons(page)
    page.goto(url)
    visitor, variant = page.evaluate(
        f"[window.__sk.v, window.__sk.getVariant({launched.id!r}).variantId]"
    )
    page.click(".buy b")
    beacons.wait_for(page, lambda events: bool(beacons.of_type("goal")))
    context.close()
    assert preview_beacons.batches == []

    wait_flushed(own_edge.server, 2)
    own_edge.server.stop()
    rows = clickhouse_rows(
        own_edge.store_path.parent,
        "SELECT kind, experiment_id, variant_id, goal_id, unit_id, site_id "
        "FROM splitedge.events ORDER BY kind",
    )
    site_id = own_edge.seed.site.id
    assert rows == [
        ("exposure", launched.id, variant, "", visitor, site_id),
        ("goal", launched.id, variant, launched.goal_ids[0], visitor, site_id),
    ]
