"""What an author returns: the wire shapes of generate_variant, generate_ideas, a loop's
challenger and site intelligence, in the reference's field names (abtestbot-mcp-tools.txt).

These are the contract between `edge.authoring.author.Author` implementations and the
control plane; both the deterministic author and the LLM author produce exactly these.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from edge.config import MutationConfig

__all__ = [
    "AuthoredVariant",
    "AuthoringContext",
    "ClarificationQuestion",
    "ElementType",
    "IdeaDraft",
    "Keyword",
    "NeedsClarification",
    "SiteIntelligence",
    "SuggestedGoal",
    "VariantDraft",
    "VariantRequest",
]

ElementType = Literal["headline", "copy", "image", "layout"]
"""What a loop may vary; v1 authors headline and copy only (the reference)."""


class VariantRequest(msgspec.Struct, frozen=True):
    """A generate_variant call as the author sees it: the site's registered URL, the
    user's prompt, and the page it names (None: resolve it from the prompt or ask)."""

    site_url: str
    prompt: str
    target_url: str | None = None


class AuthoredVariant(msgspec.Struct, frozen=True):
    """The variant: its name, its DOM changes, and a redirect for split-URL tests."""

    name: str
    mutations: tuple[MutationConfig, ...]
    redirect_url: str | None = None


class SuggestedGoal(msgspec.Struct, frozen=True, omit_defaults=True):
    """A goal the variant is judged on, in create_experiment's goal shape."""

    name: str
    type: str
    selector: str | None = None
    url_pattern: str | None = None


class AuthoringContext(msgspec.Struct, frozen=True):
    """What the author looked at and assumed. ``warnings`` include a selector not found
    on the page and a target on another domain than the site's."""

    page_analyzed: str
    page_fetched_at: str | None
    tech_stack: str | None
    url_pattern: str | None
    assumptions: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


class VariantDraft(msgspec.Struct, frozen=True):
    """generate_variant's happy path."""

    variant: AuthoredVariant
    suggested_goals: tuple[SuggestedGoal, ...]
    hypothesis: str
    context: AuthoringContext


class ClarificationQuestion(msgspec.Struct, frozen=True):
    """One thing the author needs before it can author (the reference's shape)."""

    field: str
    prompt: str
    reason: str
    input_type: Literal["url", "text", "select", "boolean"]
    required: bool
    suggestions: tuple[str, ...] = ()


class NeedsClarification(msgspec.Struct, frozen=True):
    """The body of ``needs_clarification``: nothing was authored."""

    retry_hint: str
    questions: tuple[ClarificationQuestion, ...]


class IdeaDraft(msgspec.Struct, frozen=True):
    """An A/B test idea before it is stored (`edge.control.ideas.NewIdea`); ``mutations``
    become its ``mockup_data.mutations``. ``element_type`` says what it varies."""

    title: str
    hypothesis: str
    category: str
    priority: Literal["high", "medium", "low"]
    estimated_impact: Literal["high", "medium", "low"]
    mutations: tuple[MutationConfig, ...]
    element_type: ElementType | None = None
    source_url: str | None = None


class Keyword(msgspec.Struct, frozen=True):
    """A keyword of the site, ranked."""

    keyword: str
    tier: Literal["primary", "secondary"]
    relevance_score: float


class SiteIntelligence(msgspec.Struct, frozen=True):
    """What the homepage says about the site, read without an LLM: its title,
    description, headings, keywords and detected tech stack."""

    url: str
    title: str | None
    description: str | None
    headings: tuple[str, ...]
    keywords: tuple[Keyword, ...]
    tech_stack: tuple[str, ...]
    fetched_at: str
