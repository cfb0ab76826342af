"""A/B test ideas: a hypothesis for a site and, in ``mockup_data.mutations``, the DOM
changes that would test it (the reference's idea shape).

An experiment created with ``idea_id`` takes its variant's changes from the idea, and its
hypothesis and target page when the create body names none
(`edge.control.experiment_input.new_experiment`). Ideas are written by idea generation;
another workspace's idea is the same 404 as an unknown one.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

import msgspec

from edge.config import MutationConfig
from edge.control.store import Store, utc_now
from edge.errors import InvalidRequest, NotFound

__all__ = ["Idea", "IdeaStatus", "NewIdea", "add_idea", "idea_mutations", "require_idea"]

IdeaStatus = Literal["new", "approved", "implemented", "rejected", "archived"]


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


_COLUMNS = (
    "id, workspace_id, site_id, title, hypothesis, category, priority, status, output_type, "
    "estimated_impact, mockup_data, source_url, created_at, updated_at"
)
_mockup_decoder = msgspec.json.Decoder(dict[str, Any])


def add_idea(store: Store, workspace_id: str, site_id: str, new: NewIdea) -> Idea:
    """Store an idea for the workspace's site; the idea as stored."""
    now = utc_now()
    idea = Idea(
        **msgspec.structs.asdict(new),
        id=str(uuid.uuid4()),
        workspace_id=workspace_id,
        site_id=site_id,
        status="new",
        created_at=now,
        updated_at=now,
    )
    store.conn.execute(
        f"INSERT INTO ideas ({_COLUMNS}) VALUES ({', '.join('?' * 14)})",
        (
            idea.id, workspace_id, site_id, idea.title, idea.hypothesis, idea.category,
            idea.priority, idea.status, idea.output_type, idea.estimated_impact,
            msgspec.json.encode(idea.mockup_data).decode(), idea.source_url, now, now,
        ),
    )  # fmt: skip
    return idea


def require_idea(store: Store, workspace_id: str, idea_id: str) -> Idea:
    """The workspace's idea; a 404 saying where ideas are listed otherwise."""
    row = store.conn.execute(
        f"SELECT {_COLUMNS} FROM ideas WHERE id = ? AND workspace_id = ?",
        (idea_id, workspace_id),
    ).fetchone()
    if row is None:
        raise NotFound(
            f"no idea {idea_id[:100]!r} in the workspace of this API key; GET /v1/ideas "
            "lists its ideas"
        )
    (id_, ws, site, title, hypothesis, category, priority, status, output_type, impact,
     mockup, source_url, created_at, updated_at) = row  # fmt: skip
    return Idea(
        title=title, hypothesis=hypothesis, category=category, priority=priority,
        output_type=output_type, estimated_impact=impact,
        mockup_data=_mockup_decoder.decode(mockup), source_url=source_url, id=id_,
        workspace_id=ws, site_id=site, status=status, created_at=created_at,
        updated_at=updated_at,
    )  # fmt: skip


def idea_mutations(idea: Idea) -> tuple[MutationConfig, ...]:
    """The DOM changes of the idea (``mockup_data.mutations``); a 400 when it has none
    or they are not VariantMutations."""
    raw = idea.mockup_data.get("mutations")
    if not raw:
        raise InvalidRequest(
            f"idea {idea.id} has no mutations to test (its mockup_data.mutations is empty); "
            "pass variants: [{name, changes}] instead"
        )
    try:
        return msgspec.convert(raw, tuple[MutationConfig, ...])
    except msgspec.ValidationError as exc:
        raise InvalidRequest(
            f"idea {idea.id}'s mockup_data.mutations are not VariantMutations ({exc}); "
            "pass variants: [{name, changes}] instead"
        ) from None
