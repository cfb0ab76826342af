"""2,000 fresh visitors in Chromium, each in a new browser context: the split is within
binomial bounds, and every visitor's variant is the one Python assigns to its visitor id.

A new context costs Chromium a renderer process (~0.3 s here), so the visitors run four
at a time through Playwright's async API, on a thread of their own (the session's
browser fixture uses the sync API, whose event loop must not be nested)."""

from __future__ import annotations

import asyncio
import math
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.async_api import async_playwright

from edge.assign import AssignmentTable
from tests.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    BrowserEdge,
    SiteServer,
    launch,
    page_html,
    two_arms,
)

pytestmark = pytest.mark.browser

VISITORS = 2_000
AT_ONCE = 4


async def visit(url: str, experiment_id: str) -> list[tuple[str, str]]:
    """(visitor id, variant id) of VISITORS new contexts loading ``url``."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, "--renderer-process-limit=2"]
        )
        slots = asyncio.Semaphore(AT_ONCE)

        async def one_visitor() -> tuple[str, str]:
            async with slots:
                context = await browser.new_context()
                try:
                    page = await context.new_page()
                    await page.goto(url, wait_until="domcontentloaded")
                    visitor, variant = await page.evaluate(
                        "id => [window.__sk.v, window.__sk.getVariant(id).variantId]",
                        experiment_id,
                    )
                    return visitor, variant
                finally:
                    await context.close()

        try:
            return await asyncio.gather(*(one_visitor() for _ in range(VISITORS)))
        finally:
            await browser.close()


def test_two_thousand_fresh_visitors_split_as_python_assigns(
    site: SiteServer, browser_edge: BrowserEdge
) -> None:
    launched = launch(browser_edge, "/split", two_arms())
    url = site.add("/split", page_html(browser_edge, "<p>hi</p>"))
    with ThreadPoolExecutor(1) as thread:
        visits = thread.submit(asyncio.run, visit(url, launched.id)).result()

    table = AssignmentTable(launched.id, [5000, 5000])
    mismatches = [
        (visitor, variant)
        for visitor, variant in visits
        if table.assign(visitor) != launched.variant_ids.index(variant)
    ]
    assert mismatches == []
    assert len({visitor for visitor, _ in visits}) == VISITORS  # each context a new visitor
    control = sum(variant == launched.variant_ids[0] for _, variant in visits)
    # Binomial(2000, 0.5): sd 22.4; 4.5 sd either side fails a correct split 1 in 150,000.
    assert abs(control - VISITORS / 2) < 4.5 * math.sqrt(VISITORS * 0.25), control
