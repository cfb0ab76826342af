"""The default author: rule-based, no network beyond the pages it works on.

It reads prompts that name visible text or a link (`edge.authoring.prompts`), finds the
elements on the fetched page and gives them stable, validated selectors
(`edge.authoring.variants`), and writes ideas and loop challengers from conversion-copy
patterns (`edge.authoring.ideas`). Everything it returns is a pure function of the
prompt and the page: the same page gives the same variant, ideas and challengers.

It answers a variant only when it acted on every change the prompt asks for. A clause it
does not understand, text that is not on the page, or a description that fits nothing
there ("the Gold plan button") is answered with ``needs_clarification`` (`targets.unsure`)
saying why and suggesting phrasings that name what the page shows: a partial or guessed
variant could launch (``auto_launch``) as a change nobody asked for. The caller charges
credits for the call either way (the reference charges generate_variant whatever it
answers).
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
from edge.authoring.prompts import UNDERSTOOD, parse_prompt, scope_phrases
from edge.authoring.targets import clarification, resolve_target, site_root, unsure, urls_in
from edge.authoring.validation import validate_mutations
from edge.authoring.variants import (
    author_changes,
    click_goal,
    examples,
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
        forbidden = (*urls_in(request.prompt), *scope_phrases(request.prompt))
        mutations, dropped, notes = validate_mutations(page, changes.mutations, forbidden)
        reasons = [
            *(
                f"Did not understand {clause[:120]!r} (this author understands {UNDERSTOOD})."
                for clause in parsed.unparsed
            ),
            *changes.unsure,
            *dropped,
        ]
        if not parsed.intents and not reasons:
            reasons.append(f"The prompt names no change (this author understands {UNDERSTOOD}).")
        if reasons or not mutations:
            return unsure(page.url, reasons, examples(page))
        return variant_draft(
            page,
            request,
            name=variant_name(changes.names),
            mutations=mutations,
            goals=click_goal(page, changes.clicked),
            hypothesis=" ".join(changes.sentences),
            assumptions=changes.assumptions,
            warnings=[*changes.warnings, *notes],
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
