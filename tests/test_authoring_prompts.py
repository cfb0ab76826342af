"""Issue 23's prompts on the real fixture pages (served on loopback), through the
deterministic author: each gives the right change or needs_clarification, never a wrong
change. tests/test_browser_authoring.py applies the same variants in Chromium."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edge.authoring import DeterministicAuthor, PageFetcher
from edge.authoring.drafts import NeedsClarification, VariantDraft, VariantRequest
from edge.authoring.fetch import fetch_page
from edge.authoring.page import Page
from tests.page_server import serve_pages
from tests.support import LOOPBACK_ALLOWED

ONE_SHOT = (
    "Change the hero price from $99 to $499 and update the CTA to https://buy.stripe.com/pro_abc123"
)


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with serve_pages() as url:
        yield url


@pytest.fixture
def author() -> DeterministicAuthor:
    return DeterministicAuthor(PageFetcher(guard=LOOPBACK_ALLOWED))


def changes(author: DeterministicAuthor, base: str, prompt: str, path: str) -> VariantDraft:
    draft = author.generate_variant(VariantRequest(base, prompt, base + path))
    assert isinstance(draft, VariantDraft), draft
    return draft


def element(base: str, path: str, selector: str) -> str:
    page = Page(fetch_page(base + path, guard=LOOPBACK_ALLOWED))
    [found] = page.soup.select(selector)
    return page.shown_text(found)


@pytest.mark.parametrize("path", ["/plans", "/pricing"])
def test_the_one_shot_example_changes_the_price_and_the_ctas_href(
    author: DeterministicAuthor, base: str, path: str
) -> None:
    draft = changes(author, base, ONE_SHOT, path)
    price, link = draft.variant.mutations
    assert price.action == "set_content" and "$499" in price.payload
    assert "$99" in element(base, path, price.selector)
    assert (link.action, link.attribute_name, link.payload) == (
        "set_attribute",
        "href",
        "https://buy.stripe.com/pro_abc123",
    )
    # Nothing shows the URL as text.
    assert all(
        "https://" not in m.payload for m in draft.variant.mutations if m.action != "set_attribute"
    )


def test_the_hero_price_is_the_one_in_the_hero(author: DeterministicAuthor, base: str) -> None:
    # On /plans the hero's "$<span>$</span>99" is split by markup, and "$99/mo" is also on the
    # Pro card: "hero price" is the hero's, and the CTA beside it is the one re-pointed.
    price, link = changes(author, base, ONE_SHOT, "/plans").variant.mutations
    assert (price.selector, price.payload) == (".big-price", "$499/mo")
    assert link.selector == ".offer a.btn"


@pytest.mark.parametrize(
    ("prompt", "attribute"),
    [
        ("Point the Basic button to https://buy.stripe.com/basic_new", "href"),
        ("update the sales form to post to https://crm.example/lead", "action"),
        ("Change the Choose Basic button to https://buy.stripe.com/basic_new", "href"),
    ],
)
def test_a_url_changes_a_link_or_a_form_never_text(
    author: DeterministicAuthor, base: str, prompt: str, attribute: str
) -> None:
    [change] = changes(author, base, prompt, "/plans").variant.mutations
    assert (change.action, change.attribute_name) == ("set_attribute", attribute)
    assert change.payload.startswith("https://")


@pytest.mark.parametrize(
    ("prompt", "pattern"),
    [
        ("Change the headline to Hello world on every /report/* page", "/report/*"),
        ("Change the headline to Hello world site-wide", "/**"),
        ("Change the headline to Hello world across the whole site", "/**"),
    ],
)
def test_scope_words_set_the_url_pattern_and_stay_out_of_the_payload(
    author: DeterministicAuthor, base: str, prompt: str, pattern: str
) -> None:
    draft = changes(author, base, prompt, "/report/q3")
    [change] = draft.variant.mutations
    assert (change.selector, change.payload) == (".report-title", "Hello world")
    assert draft.context.url_pattern == pattern


def test_colour_size_rename_plan_price_hide_and_show(
    author: DeterministicAuthor, base: str
) -> None:
    [style] = changes(
        author, base, "Make the CTA button green and larger", "/plans"
    ).variant.mutations
    assert (style.selector, style.action) == (".offer a.btn", "set_style")
    assert style.payload == "background-color: green; border-color: green; zoom: 1.25"
    [rename] = changes(
        author, base, "Rename the Pro plan button to Buy Pro", "/plans"
    ).variant.mutations
    assert rename.action == "set_content" and rename.payload == "Buy Pro"
    assert element(base, "/plans", rename.selector) == "Choose Pro"
    [price] = changes(
        author, base, "Update the price of the pro plan to $79", "/plans"
    ).variant.mutations
    assert price.payload == "$79/mo" and element(base, "/plans", price.selector) == "$99/mo"
    hide, show = changes(
        author, base, "hide the reviews and show the annual note", "/plans"
    ).variant.mutations
    assert (hide.selector, hide.action, hide.payload) == (".reviews", "set_style", "display: none")
    assert (show.selector, show.action, show.payload) == (".annual-note", "remove_class", "hidden")
    # The same requests on the other pricing page, whose markup names its plans.
    [rename] = changes(
        author, base, "Rename the Pro plan button to Buy Pro", "/pricing"
    ).variant.mutations
    assert rename.selector == ".plan--pro a.cta"
    [price] = changes(
        author, base, "Update the price of the pro plan to $79", "/pricing"
    ).variant.mutations
    assert (price.selector, price.payload) == (".plan--pro .price__amount", "$79")


def test_a_plan_the_page_does_not_show_is_a_question(
    author: DeterministicAuthor, base: str
) -> None:
    for prompt in ("Update the price of the gold plan to $79", "Rename the Gold plan button to X"):
        answer = author.generate_variant(VariantRequest(base, prompt, f"{base}/plans"))
        assert isinstance(answer, NeedsClarification), (prompt, answer)
