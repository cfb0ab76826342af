"""The default author: rule-based, no network beyond the pages it works on.

It reads prompts that name visible text or a link (`edge.authoring.prompts`), finds the
elements on the fetched page and gives them stable, validated selectors
(`edge.authoring.variants`), and writes ideas and loop challengers from conversion-copy
patterns (`edge.authoring.ideas`). Everything it returns is a pure function of the
prompt and the page: the same page gives the same variant, ideas and challengers.

A prompt it cannot act on at all is a 400 (`UnactionablePrompt`) naming the phrasings
it understands, rather than an empty variant: a variant without changes would launch
as a test of nothing. The caller charges credits for the call either way (the reference
charges generate_variant whatever it answers).
"""

from __future__ import annotations

from collections.abc import Sequence

from edge.authoring.drafts import (
    ElementType,
    IdeaDraft,
    NeedsClarification,
    SiteIntelligence,
    VariantDraft,
    VariantRequest,
)
from edge.authoring.fetch import PageFetcher
from edge.authoring.ideas import next_challenger, page_ideas
from edge.authoring.intelligence import site_intelligence_of
from edge.authoring.page import Page
from edge.authoring.prompts import UNDERSTOOD, parse_prompt
from edge.authoring.targets import clarification, resolve_target, site_root
from edge.authoring.validation import validate_mutations
from edge.authoring.variants import (
    UnactionablePrompt,
    author_changes,
    click_goal,
    variant_draft,
    variant_name,
)
from edge.config import MutationConfig

__all__ = ["DeterministicAuthor"]


class DeterministicAuthor:
    """The `edge.authoring.author.Author` that needs no LLM. ``fetcher`` fetches (and
    caches) the pages; by default a new one that fetches public addresses only."""

    def __init__(self, fetcher: PageFetcher | None = None) -> None:
        self.fetcher = fetcher if fetcher is not None else PageFetcher()

    def page(self, url: str) -> Page:
        """The page at ``url``, fetched and parsed. Raises `PageUnavailable`."""
        return Page(self.fetcher.fetch(url))

    def generate_variant(self, request: VariantRequest) -> VariantDraft | NeedsClarification:
        """A variant for ``request.prompt`` on its target page, or the question to ask
        when the page cannot be told."""
        target = resolve_target(request)
        if target is None:
            return clarification(request.site_url, self.fetcher.fetch)
        page = self.page(target)
        parsed = parse_prompt(request.prompt)
        changes = author_changes(page, parsed.intents)
        mutations, dropped = validate_mutations(page, changes.mutations)
        skipped = [
            f"Did not act on {clause[:120]!r}: it is not a change this author understands "
            f"(it understands {UNDERSTOOD})."
            for clause in parsed.unparsed
        ]
        warnings = [*changes.warnings, *dropped, *skipped]
        if not mutations:
            why = " ".join(warnings) if warnings else "The prompt names no change."
            raise UnactionablePrompt(
                f"Nothing to change on {page.url}. {why} Phrase the change as one of "
                f"{UNDERSTOOD}, naming text that is on the page."
            )
        return variant_draft(
            page,
            request,
            name=variant_name(changes.names),
            mutations=mutations,
            goals=click_goal(page, changes.clicked),
            hypothesis=" ".join(changes.sentences),
            assumptions=changes.assumptions,
            warnings=warnings,
        )

    def generate_ideas(
        self,
        site_url: str,
        count: int,
        element_types: Sequence[ElementType] | None = None,
        target_url: str | None = None,
    ) -> list[IdeaDraft]:
        """Up to ``count`` ideas for ``target_url`` (else the site's root page)."""
        page = self.page(target_url or site_root(site_url))
        return page_ideas(page, count, element_types)

    def challenger(
        self,
        target_url: str,
        element_types: Sequence[ElementType],
        champion: Sequence[MutationConfig],
        losers: Sequence[Sequence[MutationConfig]],
        selector_hints: dict[str, str] | None = None,
    ) -> IdeaDraft:
        """A loop's next challenger on ``target_url``."""
        page = self.page(target_url)
        return next_challenger(page, element_types, champion, losers, selector_hints)

    def site_intelligence(self, site_url: str) -> SiteIntelligence:
        """What the site's homepage says about it."""
        return site_intelligence_of(self.page(site_root(site_url)))
