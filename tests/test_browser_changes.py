"""Variant changes in real Chromium: before first paint, once, to late elements too, never
breaking the page; and re-evaluated on single-page-app navigation.

Pages come from the site server in pieces (`tests.browser.SiteServer`), so elements are
parsed after the snippet ran. A script injected before the snippet records, at every
animation frame, the target's text and whether it is visible (so a page the snippet
hides counts as not rendered).
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from edge.control.records import NewVariant
from edge.control.store import Store
from tests.browser import (
    Beacons,
    BrowserEdge,
    Part,
    SiteServer,
    change,
    launch,
    only_variant,
    page_html,
)

pytestmark = pytest.mark.browser

# Every animation frame: [ms since navigation start, target's text or null, visible].
FRAME_RECORDER = """
window.__frames = [];
(function record() {
  const target = document.querySelector('SELECTOR');
  window.__frames.push([
    performance.now(),
    target ? target.textContent : null,
    !!target && target.checkVisibility({ opacityProperty: true, visibilityProperty: true }),
  ]);
  requestAnimationFrame(record);
})();
"""


def streamed(edge: BrowserEdge, early: str, late: str, delay: float = 0.15) -> tuple[Part, ...]:
    """A page whose ``late`` part is parsed ``delay`` seconds after the snippet ran."""
    start = page_html(edge, "")
    head, tail = start.split("</body>")
    return (head + early, (delay, late + "</body>" + tail))


def frames(page: Page) -> list[tuple[float, str | None, bool]]:
    page.wait_for_timeout(100)  # a few frames after the last change
    return [tuple(f) for f in page.evaluate("window.__frames")]


def test_variant_text_is_never_rendered_before_the_change(
    page: Page, site: SiteServer, browser_edge: BrowserEdge
) -> None:
    launch(browser_edge, "/flicker/variant", only_variant(change("#t", "set_content", "New")))
    page.add_init_script(FRAME_RECORDER.replace("SELECTOR", "#t"))
    url = site.add(
        "/flicker/variant",
        *streamed(browser_edge, "<p>intro</p>", '<h1 id="t">Original headline</h1><p>more</p>'),
    )
    page.goto(url)
    recorded = frames(page)
    shown = [text for _, text, visible in recorded if visible]
    assert shown and set(shown) == {"New"}, recorded
    assert page.text_content("#t") == "New"


def test_control_text_is_never_changed(
    page: Page, site: SiteServer, browser_edge: BrowserEdge
) -> None:
    variants = [
        NewVariant(name="Control", weight=1),
        NewVariant(name="B", weight=0, changes=(change("#t", "set_content", "New"),)),
    ]
    launch(browser_edge, "/flicker/control", variants)
    page.add_init_script(FRAME_RECORDER.replace("SELECTOR", "#t"))
    url = site.add(
        "/flicker/control",
        *streamed(browser_edge, "<p>intro</p>", '<h1 id="t">Original headline</h1><p>more</p>'),
    )
    page.goto(url)
    recorded = frames(page)
    assert {text for _, text, _ in recorded if text is not None} == {"Original headline"}
    assert any(visible for *_, visible in recorded)
    assert page.evaluate("window.__sk.a[0].ic") is True


# action, the change's payload (and attribute), one target element, and a check of every
# target afterwards (a JS function of the element).
ACTIONS: dict[str, tuple[dict[str, str], str, str]] = {
    "set_content": ({"payload": "Now 50% off"}, '<h2 class="t">Spring sale</h2>',
                    "e => e.textContent === 'Now 50% off'"),
    "set_style": ({"payload": "color: rgb(255, 0, 0); font-weight: 700"},
                  '<p class="t" style="margin: 3px">Text</p>',
                  "e => getComputedStyle(e).color === 'rgb(255, 0, 0)' && "
                  "getComputedStyle(e).fontWeight === '700' && e.style.margin === '3px'"),
    "set_attribute": ({"payload": "https://buy.example.com/b", "attribute_name": "href"},
                      '<a class="t" href="https://buy.example.com/a">Buy</a>',
                      "e => e.getAttribute('href') === 'https://buy.example.com/b'"),
    "insert_before": ({"payload": '<span class="t ins">New!</span>'}, '<p class="t">Offer</p>',
                      "e => e.classList.contains('ins') || "
                      "(e.previousElementSibling && e.previousElementSibling.matches('.ins'))"),
    "insert_after": ({"payload": '<span class="t ins">Limited</span>'}, '<p class="t">Offer</p>',
                     "e => e.classList.contains('ins') || "
                     "(e.nextElementSibling && e.nextElementSibling.matches('.ins'))"),
    "add_class": ({"payload": "big  bold"}, '<p class="t plain">Text</p>',
                  "e => e.className === 't plain big bold'"),
    "remove_class": ({"payload": "promo old"}, '<p class="t promo old keep">Text</p>',
                     "e => e.className === 't keep'"),
}  # fmt: skip


@pytest.mark.parametrize("placement", ["head", "end_of_body"])
@pytest.mark.parametrize("action", list(ACTIONS))
def test_each_action_applies_once_to_early_and_late_elements(
    page: Page, site: SiteServer, browser_edge: BrowserEdge, action: str, placement: str
) -> None:
    payload, element, check = ACTIONS[action]
    path = f"/actions/{action}/{placement}"
    launch(browser_edge, path, only_variant(change(".t", action, **payload)))
    edge, key = browser_edge.server.base_url, browser_edge.seed.site.public_key
    snippet = f'<script src="{edge}/s/{key}.js"></script>'
    if placement == "head":
        # One target parsed right after the snippet, one 150 ms later (after a first paint).
        url = site.add(path, *streamed(browser_edge, element, f"<div>{element}</div>"))
    else:
        # The snippet after the targets: they are all parsed when it runs.
        body = f"{element}<div>{element}</div>{snippet}"
        url = site.add(path, f"<!doctype html><html><head></head><body>{body}</body></html>")
    page.goto(url)
    page.wait_for_load_state("load")
    assert page.evaluate("window.__sk.a.length") == 1
    originals = 2
    inserted = page.locator(".ins").count()
    assert inserted == (originals if action.startswith("insert_") else 0)  # once each, no chains
    results = page.eval_on_selector_all(".t", f"els => els.map({check})")
    assert results == [True] * (originals + inserted)


def test_changes_to_elements_added_by_scripts_before_domcontentloaded(
    page: Page, site: SiteServer, browser_edge: BrowserEdge
) -> None:
    launch(browser_edge, "/scripted", only_variant(change("#late", "set_content", "Changed")))
    body = '<div id="box"></div><script>box.innerHTML = "<b id=late>Original</b>"</script><p>x</p>'
    page.goto(site.add("/scripted", page_html(browser_edge, body)))
    assert page.text_content("#late") == "Changed"


def test_a_broken_change_still_shows_the_page_within_the_timeout(
    page: Page, site: SiteServer, browser_edge: BrowserEdge
) -> None:
    changes = (
        change("div[[[", "set_content", "never"),  # a selector querySelectorAll rejects
        change("#t", "set_attribute", "x", attribute_name="1 bad name"),  # setAttribute throws
        change("#t", "set_content", "Applied"),
        change("#never-there", "set_content", "pending forever"),
    )
    launched = launch(browser_edge, "/broken", only_variant(*changes))
    page.add_init_script(FRAME_RECORDER.replace("SELECTOR", "#t"))
    beacons = Beacons(page)
    # The rest of the page comes 1.5 s late, so DOMContentLoaded cannot be what shows it.
    url = site.add(
        "/broken", *streamed(browser_edge, '<h1 id="t">Original</h1><p>x</p>', "<p>rest</p>", 1.5)
    )
    page.goto(url, wait_until="commit")
    page.wait_for_function("document.readyState === 'complete'", timeout=10_000)
    recorded = frames(page)
    first_shown = next(ms for ms, _, visible in recorded if visible)
    dcl = page.evaluate("performance.getEntriesByType('navigation')[0].domContentLoadedEventStart")
    assert first_shown < dcl - 1000, (first_shown, dcl)  # by the timeout, not by the parser
    assert first_shown < 250 + 400  # anti-flicker timeout (250 ms) after the snippet, + slack
    assert {text for _, text, visible in recorded if visible} == {"Applied"}
    beacons.wait_for(page, lambda events: any(e["type"] == "error" for e in events))
    errors = beacons.of_type("error")
    assert len(errors) == 1 and errors[0]["experiment_id"] == launched.id, errors
    assert errors[0]["variant_id"] == launched.variant_ids[1]


def test_a_sites_anti_flicker_timeout_bounds_the_hiding(
    page: Page, site: SiteServer, browser_edge: BrowserEdge
) -> None:
    """A site set to 1200 ms: a change whose element never comes keeps the page hidden
    about that long, not the default 250 ms, and not until the parser is done (3 s)."""
    store = Store(browser_edge.store_path)
    try:
        slow = store.create_site(
            browser_edge.seed.workspace_id, "slow.example", anti_flicker_ms=1200
        )
    finally:
        store.close()
    launch(
        browser_edge, "/slow", only_variant(change("#never-there", "set_content", "x")), site=slow
    )
    page.add_init_script(FRAME_RECORDER.replace("SELECTOR", "#t"))
    head, tail = page_html(browser_edge, "", site=slow).split("</body>")
    url = site.add("/slow", head + '<h1 id="t">Text</h1>', (3.0, "<p>rest</p></body>" + tail))
    page.goto(url, wait_until="commit")
    page.wait_for_function("document.readyState === 'complete'", timeout=10_000)
    recorded = frames(page)
    first_shown = next(ms for ms, _, visible in recorded if visible)
    assert 1100 < first_shown < 1200 + 500, first_shown
    assert any(ms < 1000 for ms, *_ in recorded)  # frames ran while it was hidden


def test_single_page_app_navigation_applies_and_reverts(
    page: Page, site: SiteServer, browser_edge: BrowserEdge
) -> None:
    changes = (
        change("#h", "set_content", "Deal of the day"),
        change("#h", "add_class", "hot"),
        change("#h", "set_attribute", "deal", attribute_name="data-mode"),
        change("#h", "set_style", "color: rgb(0, 128, 0)"),
        change("#h", "insert_after", '<p class="ins">Ends tonight</p>'),
    )
    launched = launch(browser_edge, "/spa/pricing", only_variant(*changes))
    beacons = Beacons(page)
    body = '<h1 id="h" class="title" data-mode="plain">Welcome</h1><p>footer</p>'
    page.goto(site.add("/spa/home", page_html(browser_edge, body)))
    original = page.evaluate("document.body.innerHTML")
    assert page.evaluate("window.__sk.a") == []

    page.evaluate("history.pushState({}, '', '/spa/pricing')")
    assert page.text_content("#h") == "Deal of the day"
    assert (
        page.evaluate("id => window.__sk.getVariant(id).variantId", launched.id)
        == launched.variant_ids[1]
    )
    assert page.locator(".ins").count() == 1
    assert page.get_attribute("#h", "data-mode") == "deal"

    page.evaluate("history.pushState({}, '', '/spa/home')")
    assert page.evaluate("document.body.innerHTML") == original
    assert page.evaluate("window.__sk.a") == []

    page.evaluate("history.back()")  # popstate, back on /spa/pricing
    page.wait_for_function("document.getElementById('h').textContent === 'Deal of the day'")
    assert page.locator(".ins").count() == 1
    page.evaluate("history.replaceState({}, '', '/spa/other')")
    assert page.evaluate("document.body.innerHTML") == original

    page.wait_for_timeout(1300)  # the batch timer (beacons of a page that is going are not seen)
    beacons.wait_for(page, lambda events: any(e["type"] == "exposure" for e in events))
    exposures = [e for e in beacons.of_type("exposure") if e["experiment_id"] == launched.id]
    assert len(exposures) == 1  # one per visitor per session, however often it matched
    assert exposures[0]["pathname"] == "/spa/pricing"
