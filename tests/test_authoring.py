"""The deterministic author's generate_variant on the real fixture pages, served on
loopback: target resolution, needs_clarification, the reference's pricing prompt,
headline and link prompts, warnings and the errors it answers."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import pytest

from edge.authoring import (
    DeterministicAuthor,
    LlmAuthor,
    PageFetcher,
    configured_author,
)
from edge.authoring.drafts import NeedsClarification, VariantDraft, VariantRequest
from edge.authoring.fetch import fetch_page
from edge.authoring.page import Page
from edge.authoring.targets import resolve_target, url_pattern_for
from tests.page_server import serve_pages
from tests.support import LOOPBACK_ALLOWED

REFERENCE_PROMPT = (
    "Change the hero price from $99 to $499 and update the CTA link to the Stripe Pro-plan "
    "checkout at https://buy.stripe.com/pro_abc123"
)


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with serve_pages() as url:
        yield url


@pytest.fixture
def author() -> DeterministicAuthor:
    return DeterministicAuthor(PageFetcher(guard=LOOPBACK_ALLOWED))


def variant(author: DeterministicAuthor, request: VariantRequest) -> VariantDraft:
    draft = author.generate_variant(request)
    assert isinstance(draft, VariantDraft), draft
    return draft


def test_the_reference_pricing_prompt(author: DeterministicAuthor, base: str) -> None:
    draft = variant(author, VariantRequest(base, REFERENCE_PROMPT, f"{base}/pricing"))
    page = Page(fetch_page(f"{base}/pricing", guard=LOOPBACK_ALLOWED))
    price, link = draft.variant.mutations
    assert (price.action, price.payload, price.attribute_name) == ("set_content", "$499", None)
    assert (link.action, link.attribute_name) == ("set_attribute", "href")
    assert link.payload == "https://buy.stripe.com/pro_abc123"
    # Each selector finds exactly one element, and the right one: the old value is there.
    [price_element] = page.soup.select(price.selector)
    assert page.text(price_element) == "$99"
    assert "plan--pro" in (price_element.find_parent(class_="plan") or {}).get("class", [])
    [link_element] = page.soup.select(link.selector)
    assert link_element.get("href") == "https://buy.stripe.com/test_pro_99"
    assert draft.suggested_goals[0].type == "click"
    assert draft.suggested_goals[0].selector == link.selector
    assert "$99" in draft.hypothesis and "$499" in draft.hypothesis
    assert "Price $499" in draft.variant.name
    context = draft.context
    assert context.page_analyzed == f"{base}/pricing"
    assert context.tech_stack == "Next.js, Stripe"
    assert context.url_pattern is None and context.warnings == ()
    # "$99" is on the Pro card and in the FAQ: the choice is said.
    assert any("appears 2 times" in text and price.selector in text for text in context.assumptions)
    assert context.page_fetched_at is not None and context.page_fetched_at.endswith("Z")
    # The wire shape is the reference's.
    wire = msgspec.json.decode(msgspec.json.encode(draft))
    assert wire["variant"]["mutations"][1] == {
        "selector": link.selector,
        "action": "set_attribute",
        "payload": "https://buy.stripe.com/pro_abc123",
        "attribute_name": "href",
        "description": link.description,
    }
    assert wire["variant"]["redirect_url"] is None


def test_the_headline_prompt_on_the_homepage_hint(author: DeterministicAuthor, base: str) -> None:
    request = VariantRequest(base, "On the homepage, make the headline say Ship faster with Acme")
    draft = variant(author, request)
    [change] = draft.variant.mutations
    assert (change.selector, change.action, change.payload) == (
        ".hero__title",
        "set_content",
        "Ship faster with Acme",
    )
    assert draft.context.page_analyzed == f"{base}/"
    assert draft.suggested_goals[0].selector == ".hero__cta"  # the page's primary CTA
    draft = variant(
        author,
        VariantRequest(base, 'Change the headline to "Fast, simple, yours"', f"{base}/landing"),
    )
    assert draft.variant.mutations[0].selector == ".heading-hero"
    assert draft.variant.mutations[0].payload == "Fast, simple, yours"
    assert draft.context.tech_stack == "Webflow, jQuery"


def test_button_text_and_link_prompts(author: DeterministicAuthor, base: str) -> None:
    draft = variant(
        author,
        VariantRequest(
            base,
            "Change the button text from Start Pro trial to Start my free trial, and link the "
            "CTA to https://buy.stripe.com/pro_new",
            f"{base}/pricing",
        ),
    )
    text, link = draft.variant.mutations
    assert (text.selector, text.payload) == (".plan--pro a.cta", "Start my free trial")
    assert (link.selector, link.payload) == (".plan--pro a.cta", "https://buy.stripe.com/pro_new")


def test_text_inside_a_longer_element_is_replaced_in_place(
    author: DeterministicAuthor, base: str
) -> None:
    draft = variant(
        author,
        VariantRequest(
            base, "change 'Pro at $99 a month' to 'Pro at $79 a month'", f"{base}/pricing"
        ),
    )
    [change] = draft.variant.mutations
    assert change.selector == "#faq > details:nth-of-type(1) > p"
    assert change.payload.startswith("Yes. Upgrade or downgrade at any time")
    assert "Most teams start on Pro at $79 a month and move up" in change.payload


def test_a_target_on_another_domain_gives_a_warning(author: DeterministicAuthor, base: str) -> None:
    site = base.replace("127.0.0.1", "localhost")  # the same server under another name
    draft = variant(author, VariantRequest(site, REFERENCE_PROMPT, f"{base}/pricing"))
    assert len(draft.variant.mutations) == 2
    [warning] = draft.context.warnings
    assert "on 127.0.0.1 but the site is localhost" in warning and "site_id" in warning


def test_a_prompt_with_no_page_asks_with_the_homepage_links(
    author: DeterministicAuthor, base: str
) -> None:
    # The Stripe URL is a payload, not the page to change.
    answer = author.generate_variant(VariantRequest(base, REFERENCE_PROMPT))
    assert isinstance(answer, NeedsClarification)
    assert answer.retry_hint.startswith("Re-send the same call with target_url set")
    [question] = answer.questions
    assert (question.field, question.input_type, question.required) == ("target_url", "url", True)
    assert question.prompt == "Which page URL should this test target?"
    assert "no 'homepage' / 'landing' hint" in question.reason
    suggestions = question.suggestions
    assert suggestions[0] == f"{base}/"
    for path in (
        "/pricing",
        "/features",
        "/about",
        "/checkout",
        "/signup",
        "/blog/funnel-analysis-guide",
    ):
        assert f"{base}{path}" in suggestions
    assert len(suggestions) == len(set(suggestions)) <= 8
    assert all(url.startswith(base) for url in suggestions)  # no off-site link


def test_a_site_whose_homepage_is_down_still_gets_the_common_paths(
    author: DeterministicAuthor,
) -> None:
    with serve_pages() as gone:
        pass  # nothing listens there any more
    answer = author.generate_variant(VariantRequest(gone, "Change the price from $99 to $499"))
    assert isinstance(answer, NeedsClarification)
    assert answer.questions[0].suggestions == tuple(
        f"{gone}{path}" for path in ("/", "/pricing", "/checkout", "/signup", "/about")
    )


def test_target_resolution_order() -> None:
    site = "https://mysite.com"
    assert resolve_target(VariantRequest(site, "x", "/pricing")) == "https://mysite.com/pricing"
    assert (
        resolve_target(
            VariantRequest(
                site, "On https://www.mysite.com/pricing, link the CTA to https://buy.stripe.com/x"
            )
        )
        == "https://www.mysite.com/pricing"
    )
    assert (
        resolve_target(VariantRequest(site, "change $9 to $19/month on /pricing"))
        == "https://mysite.com/pricing"
    )
    assert (
        resolve_target(VariantRequest(site, "make the landing page headline say Hi"))
        == "https://mysite.com/"
    )
    assert resolve_target(VariantRequest(site, "Link the CTA to https://buy.stripe.com/x")) is None
    assert resolve_target(VariantRequest(site, "change $99/month to $79/month")) is None


def test_url_patterns_the_prompt_implies(author: DeterministicAuthor, base: str) -> None:
    assert (
        url_pattern_for("change it on every /checkout/* page", "https://a.com/checkout/1")[0]
        == "/checkout/*"
    )
    assert (
        url_pattern_for("all product pages", "https://a.com/products/blue-mug")[0] == "/products/*"
    )
    pattern, _, warnings = url_pattern_for("all report pages", "https://a.com/pricing")
    assert pattern is None and "no 'report' segment" in warnings[0]
    draft = variant(
        author, VariantRequest(base, "Change $99 to $89 on all pricing pages", f"{base}/pricing")
    )
    assert draft.context.url_pattern == "/pricing"


def ask(author: DeterministicAuthor, request: VariantRequest) -> str:
    """The reason of the needs_clarification ``request`` must answer."""
    answer = author.generate_variant(request)
    assert isinstance(answer, NeedsClarification), answer
    [question] = answer.questions
    assert (question.field, question.input_type, question.required) == ("prompt", "text", True)
    assert question.suggestions and "rephrased" in answer.retry_hint
    return question.reason


def test_what_it_is_not_sure_of_is_a_question_never_a_partial_variant(
    author: DeterministicAuthor, base: str
) -> None:
    pricing = f"{base}/pricing"
    reason = ask(
        author, VariantRequest(base, "Make the headline say Hello and make the page pop", pricing)
    )
    assert "Did not understand 'make the page pop'" in reason
    assert "change the hero price from $99 to $499" in ask(
        author, VariantRequest(base, "make it pop", pricing)
    )
    assert "the prices it shows: $249, $29, $99" in ask(
        author, VariantRequest(base, "change $55 to $66", pricing)
    )
    assert "shows gold" in ask(
        author, VariantRequest(base, "Rename the Gold plan button to Buy Gold", f"{base}/plans")
    )


def test_hide_prompt(author: DeterministicAuthor, base: str) -> None:
    draft = variant(author, VariantRequest(base, "hide the testimonial", f"{base}/pricing"))
    [change] = draft.variant.mutations
    assert (change.selector, change.action, change.payload) == (
        ".testimonial",
        "set_style",
        "display: none",
    )


def test_same_prompt_same_page_same_variant(author: DeterministicAuthor, base: str) -> None:
    request = VariantRequest(base, REFERENCE_PROMPT, f"{base}/pricing")
    first = variant(author, request)
    again = variant(DeterministicAuthor(PageFetcher(guard=LOOPBACK_ALLOWED)), request)
    assert first.variant == again.variant and first.hypothesis == again.hypothesis


def test_configured_author_is_deterministic_unless_an_llm_url_is_set() -> None:
    assert isinstance(configured_author(LOOPBACK_ALLOWED, {}), DeterministicAuthor)
    assert isinstance(
        configured_author(LOOPBACK_ALLOWED, {"SPLITEDGE_LLM_URL": "  "}), DeterministicAuthor
    )
    llm = configured_author(
        LOOPBACK_ALLOWED,
        {"SPLITEDGE_LLM_URL": "http://127.0.0.1:9/v1/", "SPLITEDGE_LLM_MODEL": "m"},
    )
    assert isinstance(llm, LlmAuthor)
    assert (llm.settings.url, llm.settings.model) == ("http://127.0.0.1:9/v1", "m")
