"""The deterministic author's ideas, loop challengers and site intelligence, on the
fixture pages served on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.authoring import DeterministicAuthor, NothingToVary, PageFetcher
from edge.authoring.fetch import fetch_page
from edge.authoring.page import Page
from edge.config import MutationConfig
from tests.page_server import serve_pages
from tests.support import LOOPBACK_ALLOWED


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with serve_pages() as url:
        yield url


@pytest.fixture
def author() -> DeterministicAuthor:
    return DeterministicAuthor(PageFetcher(guard=LOOPBACK_ALLOWED))


def test_ideas_carry_real_selectors_and_are_deterministic(
    author: DeterministicAuthor, base: str
) -> None:
    ideas = author.generate_ideas(base, 10)
    page = Page(fetch_page(f"{base}/", guard=LOOPBACK_ALLOWED))
    assert len(ideas) >= 8
    assert {idea.category for idea in ideas} >= {"headline", "copy", "cta", "social_proof"}
    for idea in ideas:
        assert idea.title and idea.hypothesis and idea.source_url == f"{base}/"
        for change in idea.mutations:
            [element] = page.soup.select(change.selector)
            assert change.action == "set_content" and change.payload != page.text(element)
    # The first ones vary different elements.
    assert [idea.element_type for idea in ideas[:3]] == ["headline", "copy", None]
    assert author.generate_ideas(base, 10) == DeterministicAuthor(
        PageFetcher(guard=LOOPBACK_ALLOWED)
    ).generate_ideas(base, 10)
    assert author.generate_ideas(base, 3) == ideas[:3]
    social = next(idea for idea in ideas if idea.category == "social_proof")
    assert "Trusted by 2,400 product teams" in social.mutations[0].payload


def test_ideas_filtered_to_element_types(author: DeterministicAuthor, base: str) -> None:
    headline = author.generate_ideas(base, 10, ["headline"], f"{base}/pricing")
    assert headline and all(idea.element_type == "headline" for idea in headline)
    assert {change.selector for idea in headline for change in idea.mutations} == {".hero__title"}
    both = author.generate_ideas(base, 10, ["headline", "copy"], f"{base}/pricing")
    assert {idea.element_type for idea in both} == {"headline", "copy"}
    assert ".hero__subhead" in {idea.mutations[0].selector for idea in both}


def test_challengers_never_repeat_the_champion_or_a_loser(
    author: DeterministicAuthor, base: str
) -> None:
    champion: tuple[MutationConfig, ...] = ()
    losers: list[tuple[MutationConfig, ...]] = []
    titles = []
    for round_number in range(12):
        challenger = author.challenger(f"{base}/pricing", ["headline", "copy"], champion, losers)
        shown = {c.payload for c in champion} | {c.payload for loser in losers for c in loser}
        assert [c.selector for c in challenger.mutations] == [".hero__title", ".hero__subhead"]
        assert not {c.payload for c in challenger.mutations} & shown, round_number
        assert challenger.element_type == "headline"
        titles.append(challenger.title)
        # Deterministic: the same history gives the same challenger.
        assert (
            author.challenger(f"{base}/pricing", ["headline", "copy"], champion, losers)
            == challenger
        )
        if round_number == 4:
            champion = challenger.mutations  # promoted
        else:
            losers.append(challenger.mutations)
    assert len(set(titles)) == 12


def test_challengers_use_selector_hints_and_only_the_element_types(
    author: DeterministicAuthor, base: str
) -> None:
    challenger = author.challenger(
        f"{base}/landing",
        ["copy"],
        (),
        (),
        {"headline": ".nope h1", "copy": ".section-hero p.paragraph-hero"},
    )
    [change] = challenger.mutations
    assert change.selector == ".section-hero p.paragraph-hero"
    assert challenger.element_type == "copy" and challenger.category == "copy"
    # A hint that matches nothing falls back to the page's own element.
    challenger = author.challenger(
        f"{base}/landing", ["headline"], (), (), {"headline": ".nope h1"}
    )
    assert challenger.mutations[0].selector == ".heading-hero"


def test_a_page_with_nothing_to_vary_is_a_400(author: DeterministicAuthor, tmp_path: Path) -> None:
    (tmp_path / "bare.html").write_text(
        "<!doctype html><html><head><title>Bare</title></head><body><img src=x.png></body></html>"
    )
    with serve_pages(tmp_path) as base, pytest.raises(NothingToVary, match="selector_hints"):
        author.challenger(f"{base}/bare", ["headline"], (), ())


def test_site_intelligence_from_the_homepage(author: DeterministicAuthor, base: str) -> None:
    intelligence = author.site_intelligence(f"{base}/pricing")  # the site's root is read
    assert intelligence.url == f"{base}/"
    assert intelligence.title == "Acme Analytics: product analytics for fast-moving teams"
    assert intelligence.description is not None and "funnel" in intelligence.description
    assert intelligence.headings[0] == "See exactly where your users drop off"
    assert "Experiments built in" in intelligence.headings  # an h3
    assert intelligence.tech_stack == ("Next.js", "Google Tag Manager")
    keywords = {keyword.keyword: keyword for keyword in intelligence.keywords}
    assert {"product analytics", "funnel analysis", "analytics"} <= set(keywords)
    assert not {"the", "and", "your", "with"} & set(keywords)
    scores = [keyword.relevance_score for keyword in intelligence.keywords]
    assert scores == sorted(scores, reverse=True) and scores[0] == 1.0
    tiers = [keyword.tier for keyword in intelligence.keywords]
    assert tiers[:5] == ["primary"] * 5 and set(tiers[5:]) == {"secondary"}
