"""The `Author` interface: who writes variants, ideas and loop challengers.

The default is `edge.authoring.deterministic.DeterministicAuthor`, which needs no
network beyond the target page; `edge.authoring.llm.LlmAuthor` calls an
OpenAI-compatible chat endpoint when configured (``SPLITEDGE_LLM_URL``). Both validate
what they produce against the fetched page the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from edge.authoring.drafts import (
    ElementType,
    IdeaDraft,
    NeedsClarification,
    SiteIntelligence,
    VariantDraft,
    VariantRequest,
)
from edge.config import MutationConfig

__all__ = ["Author"]


class Author(Protocol):
    """Writes A/B test material for a site's pages. Methods block (they fetch pages);
    the control plane calls them on a thread. A page that cannot be fetched raises
    `edge.authoring.fetch.PageUnavailable` (a 4xx the caller can act on)."""

    def generate_variant(self, request: VariantRequest) -> VariantDraft | NeedsClarification:
        """A variant for the prompt, or the questions to ask when the target page cannot
        be resolved."""
        ...

    def generate_ideas(
        self,
        site_url: str,
        count: int,
        element_types: Sequence[ElementType] | None = None,
        target_url: str | None = None,
    ) -> list[IdeaDraft]:
        """Up to ``count`` ideas for the page (``target_url``, else the site's root),
        varying only ``element_types`` when given."""
        ...

    def challenger(
        self,
        target_url: str,
        element_types: Sequence[ElementType],
        champion: Sequence[MutationConfig],
        losers: Sequence[Sequence[MutationConfig]],
        selector_hints: dict[str, str] | None = None,
    ) -> IdeaDraft:
        """A loop's next challenger: differs from the champion and from every prior
        loser, varying only ``element_types``."""
        ...

    def site_intelligence(self, site_url: str) -> SiteIntelligence:
        """What the homepage says about the site."""
        ...
