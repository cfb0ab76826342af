"""A/B test ideas and loop challengers for a parsed page, from `edge.authoring.rewrites`.

`page_ideas` applies every strategy to the page's headline, subhead and primary call to
action and interleaves them (headline, copy, CTA, headline...), so the first few ideas
already vary different elements. `next_challenger` picks, for each element a loop
varies, the first rewrite (starting at the loop's number of losers, so successive rounds
try successive strategies) that neither the champion nor any loser has shown, falling
back to `rewrites.numbered` when every named strategy was used.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import count, zip_longest
from typing import Any

from bs4 import Tag

from edge.authoring.drafts import ElementType, IdeaDraft
from edge.authoring.page import Page
from edge.authoring.rewrites import (
    COPY_STRATEGIES,
    CTA_STRATEGIES,
    HEADLINE_STRATEGIES,
    PageFacts,
    Strategy,
    numbered,
    page_facts,
)
from edge.config import MutationConfig
from edge.errors import InvalidRequest

__all__ = ["NothingToVary", "next_challenger", "page_ideas", "unseen"]


class NothingToVary(InvalidRequest):
    """The page has none of the elements a loop or an idea would vary."""

    code = "nothing_to_vary"


def _quote(text: str) -> str:
    return f"\u201c{text if len(text) <= 80 else text[:79].rstrip() + chr(0x2026)}\u201d"


def _rewrites(
    strategies: Sequence[Strategy], text: str, facts: PageFacts
) -> list[tuple[Strategy, str]]:
    found: list[tuple[Strategy, str]] = []
    for strategy in strategies:
        rewrite = strategy.rewrite(text, facts)
        if rewrite and rewrite != text and all(rewrite != seen for _, seen in found):
            found.append((strategy, rewrite))
    return found


def _idea(
    page: Page,
    element: Tag,
    element_type: ElementType | None,
    strategy: Strategy,
    rewrite: str,
) -> IdeaDraft:
    selector = page.selector(element)
    old = page.text(element)
    return IdeaDraft(
        title=strategy.title,
        hypothesis=(
            f"Replacing {_quote(old)} with {_quote(rewrite)} {strategy.why}, so more visitors "
            "click the main call to action."
        ),
        category=strategy.category,
        priority=strategy.priority,
        estimated_impact=strategy.impact,
        mutations=(MutationConfig(selector, "set_content", rewrite, None, strategy.title),),
        element_type=element_type,
        source_url=page.url,
    )


def page_ideas(
    page: Page, count_: int, element_types: Sequence[ElementType] | None = None
) -> list[IdeaDraft]:
    """Up to ``count_`` ideas for ``page``; only headline and copy ideas when
    ``element_types`` is given (CTA text ideas have no element type)."""
    facts = page_facts(page, page.subhead)
    tracks: list[list[IdeaDraft]] = []
    parts: tuple[tuple[Tag | None, ElementType | None, Sequence[Strategy]], ...] = (
        (page.headline, "headline", HEADLINE_STRATEGIES),
        (page.subhead, "copy", COPY_STRATEGIES),
        (page.primary_cta, None, CTA_STRATEGIES),
    )
    for element, element_type, strategies in parts:
        if element is None or element_types is not None and element_type not in element_types:
            continue
        found = _rewrites(strategies, page.text(element), facts)
        tracks.append([_idea(page, element, element_type, s, text) for s, text in found])
    ideas = [idea for row in zip_longest(*tracks) for idea in row if idea is not None]
    return ideas[: max(0, count_)]


def _idea_keys(title: str, mutations: Sequence[Any]) -> tuple[str, str]:
    changes = [
        (m.get("selector"), m.get("action"), m.get("payload"), m.get("attribute_name"))
        if isinstance(m, dict)
        else (m.selector, m.action, m.payload, m.attribute_name)
        for m in mutations
    ]
    return " ".join(title.lower().split()), repr(sorted(changes, key=repr))


def unseen(
    drafts: Sequence[IdeaDraft], stored: Sequence[tuple[str, Sequence[Any]]]
) -> list[IdeaDraft]:
    """The ``drafts`` that repeat neither the title nor the changes of an idea the site
    already has (``stored``: each idea's title and ``mockup_data.mutations``) nor an
    earlier draft: a generate run adds new ideas, it does not re-add the last run's."""
    titles: set[str] = set()
    changes: set[str] = set()
    for title, mutations in stored:
        key_title, key_changes = _idea_keys(title, mutations)
        titles.add(key_title)
        changes.add(key_changes)
    fresh: list[IdeaDraft] = []
    for draft in drafts:
        key_title, key_changes = _idea_keys(draft.title, draft.mutations)
        if key_title in titles or key_changes in changes:
            continue
        titles.add(key_title)
        changes.add(key_changes)
        fresh.append(draft)
    return fresh


def _element(page: Page, element_type: ElementType, hints: dict[str, str]) -> Tag | None:
    hint = hints.get(element_type)
    if hint and page.count(hint) >= 1:
        found = page.soup.select_one(hint)
        if found is not None:
            return found
    return page.headline if element_type == "headline" else page.subhead


def _series(
    element_type: ElementType, text: str, facts: PageFacts
) -> Iterator[tuple[Strategy, str]]:
    strategies = HEADLINE_STRATEGIES if element_type == "headline" else COPY_STRATEGIES
    yield from _rewrites(strategies, text, facts)
    for n in count(1):
        yield numbered(element_type, text, n)


def next_challenger(
    page: Page,
    element_types: Sequence[ElementType],
    champion: Sequence[MutationConfig],
    losers: Sequence[Sequence[MutationConfig]],
    selector_hints: dict[str, str] | None = None,
) -> IdeaDraft:
    """The next challenger of a loop on ``page`` (see the module docstring). Selectors
    come from ``selector_hints`` when they match the page, else from the page."""
    hints = selector_hints or {}
    shown = {change.payload for change in champion}
    shown |= {change.payload for loser in losers for change in loser}
    facts = page_facts(page, page.subhead)
    mutations: list[MutationConfig] = []
    titles: list[str] = []
    reasons: list[str] = []
    varied: list[ElementType] = []
    for element_type in dict.fromkeys(element_types):
        if element_type not in ("headline", "copy"):
            continue
        element = _element(page, element_type, hints)
        if element is None:
            continue
        hint = hints.get(element_type)
        selector = hint if hint and page.count(hint) >= 1 else page.selector(element)
        original = page.text(element)
        series = _series(element_type, original, facts)
        # Successive rounds start at successive strategies; skip what was already shown.
        candidates = (item for index, item in enumerate(series) if index >= len(losers))
        strategy, rewrite = next(item for item in candidates if item[1] not in shown)
        mutations.append(MutationConfig(selector, "set_content", rewrite, None, strategy.title))
        titles.append(strategy.title)
        varied.append(element_type)
        reasons.append(f"{_quote(rewrite)} {strategy.why}")
    if not mutations:
        kinds = " or ".join(element_types) or "headline or copy"
        raise NothingToVary(
            f"{page.url} has no {kinds} element to vary (no h1, no paragraph under it); pass "
            'selector_hints such as {"headline": ".hero h1", "copy": ".hero p"}'
        )
    first = varied[0]
    return IdeaDraft(
        title=f"Challenger {len(losers) + 1}: {' + '.join(titles)}",
        hypothesis=f"{'; '.join(reasons)}, so it should beat the current champion.",
        category=first,
        priority="medium",
        estimated_impact="medium",
        mutations=tuple(mutations),
        element_type=first,
        source_url=page.url,
    )
