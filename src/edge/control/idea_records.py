"""A/B test ideas' records (`edge.control.ideas` lists, moves and generates them, and
`edge.control.store.ideas` reads and writes them): an idea, what one is stored with, and
the idea as the API shows it."""

from __future__ import annotations

from typing import Any, Literal, get_args

import msgspec

__all__ = [
    "IDEA_STATUSES",
    "MAX_IDEAS_PER_RUN",
    "Idea",
    "IdeaFilter",
    "IdeaOut",
    "IdeaSite",
    "IdeaStatus",
    "NewIdea",
    "OutputType",
]

IdeaStatus = Literal["new", "approved", "implemented", "rejected", "archived"]
IDEA_STATUSES: tuple[IdeaStatus, ...] = get_args(IdeaStatus)

OutputType = Literal["html", "screenshot"]
"""How an idea's mockup is meant to be shown (the reference's field). splitedge renders
no screenshots: either way ``mockup_data.mutations`` holds the changes."""

MAX_IDEAS_PER_RUN = 10
"""The most ideas one generation asks the author for (the reference's max)."""


class NewIdea(msgspec.Struct, frozen=True):
    """An idea to store for a site."""

    title: str
    hypothesis: str | None = None
    category: str | None = None
    priority: str | None = None
    output_type: str = "html"
    estimated_impact: str | None = None
    mockup_data: dict[str, Any] = {}
    source_url: str | None = None


class Idea(NewIdea, frozen=True, kw_only=True):
    """A stored idea of a workspace's site."""

    id: str
    workspace_id: str
    site_id: str
    status: IdeaStatus
    created_at: str
    updated_at: str


class IdeaSite(msgspec.Struct, frozen=True):
    """The parent site of an idea (the reference's nested ``sites``)."""

    name: str
    url: str


class IdeaOut(msgspec.Struct, frozen=True):
    """An idea as the API shows it: the reference's fields, the page it is for
    (``source_url``) and its parent site."""

    id: str
    title: str
    hypothesis: str | None
    category: str | None
    priority: str | None
    status: IdeaStatus
    output_type: str
    estimated_impact: str | None
    mockup_data: dict[str, Any]
    source_url: str | None
    site_id: str
    sites: IdeaSite
    created_at: str
    updated_at: str


class IdeaFilter(msgspec.Struct, frozen=True):
    """Which ideas a list answers: of one site, one status, one category (None: any)."""

    site_id: str | None = None
    status: IdeaStatus | None = None
    category: str | None = None
