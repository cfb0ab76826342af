"""2,000 fresh visitors in Chromium, each in a new browser context: the split is within
binomial bounds, and every visitor's variant is the one Python assigns to its visitor id."""

from __future__ import annotations

import math

from playwright.sync_api import Browser

from edge.assign import AssignmentTable
from edge.control.store import NewVariant
from tests.browser import SiteServer, launch, page_html
from tests.conftest import BrowserEdge

VISITORS = 2_000


def test_two_thousand_fresh_visitors_split_as_python_assigns(
    browser: Browser, site: SiteServer, browser_edge: BrowserEdge
) -> None:
    seed = browser_edge.seed
    variants = [NewVariant(name="Control", weight=50), NewVariant(name="B", weight=50)]
    launched = launch(
        browser_edge.store_path, browser_edge.server, seed.workspace_id, seed.site.id,
        seed.site.public_key, "/split", variants,
    )  # fmt: skip
    url = site.add("/split", page_html(browser_edge.server, seed.site.public_key, "<p>hi</p>"))
    table = AssignmentTable(launched.id, [5000, 5000])

    counts = [0, 0]
    mismatches = []
    visitor_ids = set()
    for _ in range(VISITORS):
        context = browser.new_context()
        page = context.new_page()
        page.goto(url, wait_until="domcontentloaded")
        visitor, variant = page.evaluate(
            "id => [window.__sk.v, window.__sk.getVariant(id).variantId]", launched.id
        )
        context.close()
        index = launched.variant_ids.index(variant)
        counts[index] += 1
        visitor_ids.add(visitor)
        if table.assign(visitor) != index:
            mismatches.append((visitor, variant))

    assert mismatches == []
    assert len(visitor_ids) == VISITORS  # every context was a new visitor
    # Binomial(2000, 0.5): sd 22.4; 4.5 sd either side fails a correct split 1 in 150,000.
    bound = 4.5 * math.sqrt(VISITORS * 0.25)
    assert abs(counts[0] - VISITORS / 2) < bound, counts
