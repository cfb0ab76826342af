"""edge.authoring.page, .selectors and .stack: parsing the fixture pages, the selectors
built for their elements, and the tech stacks detected in them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from bs4 import BeautifulSoup
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.authoring.fetch import FetchedPage, fetch_page
from edge.authoring.page import Page, text_pattern
from edge.authoring.selectors import count_matches, is_stable_class, stable_selector
from edge.authoring.stack import detect_stack
from tests.page_server import FIXTURES, serve_pages
from tests.support import LOOPBACK_ALLOWED


@pytest.fixture(scope="module")
def pages() -> Iterator[dict[str, Page]]:
    with serve_pages() as base:
        yield {
            name: Page(fetch_page(f"{base}/{name}", guard=LOOPBACK_ALLOWED))
            for name in ("", "pricing", "landing")
        }


def page_of(html: str) -> Page:
    return Page(FetchedPage("http://x.test/", "http://x.test/", html, "2026-01-01T00:00:00Z"))


def test_fixture_pages_are_small_and_realistic() -> None:
    for path in FIXTURES.glob("*.html"):
        assert len(path.read_bytes()) < 10_000, path.name


def test_every_element_gets_a_selector_matching_it_alone(pages: dict[str, Page]) -> None:
    for page in pages.values():
        elements = page.elements("a", "button", "p", "h1", "h2", "h3", "li", "span", "section")
        assert len(elements) > 15
        for element in elements:
            selector = page.selector(element)
            found = page.soup.select(selector)
            assert found == [element], (page.url, selector)


def test_selectors_prefer_ids_and_meaningful_classes_to_positions(pages: dict[str, Page]) -> None:
    pricing, landing = pages["pricing"], pages["landing"]
    assert pricing.headline is not None and pricing.selector(pricing.headline) == ".hero__title"
    cards = {pricing.selector(cta) for cta in pricing.ctas}
    assert {".plan--starter a.cta", ".plan--pro a.cta", ".plan--team a.cta"} <= cards
    assert landing.primary_cta is not None
    assert landing.selector(landing.primary_cta) == "#subscribe-cta"
    # No position where a class names the element; none anchored on bare tags.
    assert not any(":nth" in selector for selector in cards)
    faq = pricing.containing("Most teams start on Pro")
    assert [pricing.selector(el) for el in faq] == ["#faq > details:nth-of-type(1) > p"]


def test_generated_and_state_classes_are_never_used() -> None:
    for name in (
        "css-1q2w3e4",
        "sc-bdfBwQ",
        "Hero_title__3kXyZ",
        "jsx-2893742",
        "x1a2b3c4",
        "is-active",
    ):
        assert not is_stable_class(name), name
    for name in ("hero__title", "plan--pro", "cta", "button-primary", "w-nav", "col-12"):
        assert is_stable_class(name), name
    soup = BeautifulSoup(
        '<div class="css-1q2w3e4"><h2 class="sc-bdfBwQ title">A</h2></div>'
        '<div class="css-9z8y7x6"><h2 class="sc-gsTCUz title">B</h2></div>',
        "html.parser",
    )
    second = soup.find_all("h2")[1]
    selector = stable_selector(soup, second)
    assert "css-" not in selector and "sc-" not in selector
    assert soup.select(selector) == [second]


def test_count_matches_treats_an_invalid_selector_as_matching_nothing() -> None:
    soup = BeautifulSoup("<p class='a'>x</p><p class='a'>y</p>", "html.parser")
    assert count_matches(soup, ".a") == 2
    assert count_matches(soup, "p:::nope(") == 0
    assert count_matches(soup, ".missing") == 0


def test_pseudo_elements_and_at_rules_match_nothing_but_quoted_colons_do() -> None:
    soup = BeautifulSoup("<p class='a' title='x::y' data-at='@'>x</p>", "html.parser")
    for selector in (".a::before", "p::after", "::marker", ".a::part(x)", "@Pfoo", ".a @Px"):
        assert count_matches(soup, selector) == 0, selector
    for selector in ('[title="x::y"]', "[title='x::y']", '[data-at="@"]', ".a:not(.b)"):
        assert count_matches(soup, selector) == 1, selector


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=".#:@[]()='\\\" >+~*pa-1 ", max_size=24))
def test_count_matches_answers_every_selector(selector: str) -> None:
    soup = BeautifulSoup("<p class='a' title='x::y'>x</p>", "html.parser")
    assert count_matches(soup, selector) in (0, 1)


def test_page_parts(pages: dict[str, Page]) -> None:
    home, pricing = pages[""], pages["pricing"]
    assert home.title == "Acme Analytics: product analytics for fast-moving teams"
    assert (home.meta("description") or "").startswith("Acme Analytics shows")
    assert home.subhead is not None and home.selector(home.subhead) == ".hero__subhead"
    assert home.primary_cta is not None and home.text(home.primary_cta) == "Start your free trial"
    assert pricing.primary_cta is not None
    assert pricing.selector(pricing.primary_cta) == ".plan--pro a.cta"  # the featured plan's
    assert [price for price, _ in pricing.prices()] == ["$29", "$99", "$249", "$99"]
    # The billing toggle's buttons are controls, not calls to action.
    assert "Monthly" not in [pricing.text(cta) for cta in pricing.ctas]
    links = home.links()
    assert home.url.rstrip("/") + "/checkout?plan=pro" in links
    assert "https://github.com/acme-analytics/sdk" in links
    assert not any(link.startswith("mailto:") or "#" in link for link in links)


def test_text_is_found_whole_and_visible_only() -> None:
    page = page_of(
        "<body><p>Only $999 today</p><p class='p'>Now <b>$99</b>/mo</p>"
        "<script>var price = '$99';</script><p hidden>$99</p>"
        "<a class='b'>Start <em>free</em> trial</a></body>"
    )
    assert [page.text(el) for el in page.containing("$99")] == ["$99"]
    assert [el.name for el in page.containing("start free trial")] == ["a"]
    assert text_pattern("$99").search("$99.50") is None
    assert text_pattern("$99").search("($99/month)") is not None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("pricing", ("Next.js", "Stripe")),
        ("", ("Next.js", "Google Tag Manager")),
        ("landing", ("Webflow", "jQuery")),
    ],
)
def test_tech_stack_of_the_fixtures(
    pages: dict[str, Page], name: str, expected: tuple[str, ...]
) -> None:
    assert pages[name].tech_stack == expected


def test_tech_stack_markers() -> None:
    assert detect_stack('<script src="https://cdn.shopify.com/s/x.js"></script>') == ("Shopify",)
    assert detect_stack('<link href="/wp-content/themes/a.css">') == ("WordPress",)
    assert detect_stack('<div id="___gatsby"></div><div data-reactroot></div>') == ("Gatsby",)
    assert detect_stack("<script>window.__NUXT__={}</script>") == ("Nuxt",)
    assert detect_stack("<div data-reactroot></div>") == ("React",)
    assert detect_stack("<p>We love Stripe.</p>") == ()
