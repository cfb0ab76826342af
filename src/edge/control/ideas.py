"""A/B test ideas: a hypothesis for a site and, in ``mockup_data.mutations``, the DOM
changes that would test it (the reference's idea shape, `edge.control.idea_records`);
finding them, moving them through their statuses, and generating them with an
`edge.authoring.author.Author`.

An experiment created with ``idea_id`` takes its variant's changes from the idea, and its
hypothesis and target page when the create body names none
(`edge.control.experiment_input.new_experiment`). Another workspace's idea is the same 404
as an unknown one.

Generating ideas costs generate_ideas (10 credits on a metered plan), paid up front in the
transaction that finds the site (`begin_generation`), so a short balance or an unknown
site is answered before any page is fetched. The author then runs on a thread, outside
any store transaction (it fetches the page); its ideas are stored, audited and announced
with the ``ideas.generated`` webhook in one transaction (`record_generated`). A run that
fails is refunded and announced too, as ``ideas.generated`` with ``success: false`` and
its errors (`record_failed`), so a caller who did not wait learns of it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

from edge.authoring.author import Author
from edge.authoring.drafts import IdeaDraft
from edge.authoring.fetch import PageUnavailable
from edge.authoring.ideas import unseen
from edge.config import MutationConfig
from edge.control import audit, credits
from edge.control.api import Auth, in_store, in_transaction
from edge.control.fetch_pool import record_failure, shared_pool
from edge.control.idea_records import (
    MAX_IDEAS_PER_RUN,
    Idea,
    IdeaFilter,
    IdeaOut,
    IdeaStatus,
    NewIdea,
)
from edge.control.records import SiteRecord, utc_now
from edge.control.services import Services
from edge.control.sites_api import require_site
from edge.control.store import Store
from edge.control.webhooks import enqueue_event
from edge.errors import InvalidRequest, NotFound, SplitedgeError

__all__ = [
    "REFUND_REASON",
    "GenerationError",
    "add_idea",
    "begin_generation",
    "complete_generation",
    "error_of",
    "generate_ideas",
    "get_idea",
    "idea_mutations",
    "record_failed",
    "record_generated",
    "require_idea",
    "set_idea_status",
]

REFUND_REASON = "refund:generate_ideas"
"""The ledger's reason for the credits given back for a generation that made nothing."""


class GenerationError(msgspec.Struct, frozen=True):
    """Why a page of a generation run gave no ideas: the page, and the error's code and
    message (e.g. ``page_unavailable``)."""

    url: str
    code: str
    message: str


def _not_found(idea_id: str) -> NotFound:
    return NotFound(
        f"no idea {idea_id[:100]!r} in the workspace of this API key; GET /v1/ideas lists its ideas"
    )


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
    store.insert_idea(idea)
    return idea


def require_idea(store: Store, workspace_id: str, idea_id: str) -> Idea:
    """The workspace's idea; a 404 saying where ideas are listed otherwise."""
    idea = store.find_idea(workspace_id, idea_id)
    if idea is None:
        raise _not_found(idea_id)
    return idea


def get_idea(store: Store, workspace_id: str, idea_id: str) -> IdeaOut:
    """The workspace's idea with its site; a 404 saying where ideas are listed otherwise."""
    idea = store.find_idea_out(workspace_id, idea_id)
    if idea is None:
        raise _not_found(idea_id)
    return idea


def set_idea_status(
    store: Store, workspace_id: str, key_id: str, idea_id: str, status: IdeaStatus
) -> IdeaOut:
    """Move the idea to ``status``; when that changes it, the change is audited and the
    ``idea.status_changed`` webhook queued, in one transaction. The idea after."""
    with store.transaction():
        before = require_idea(store, workspace_id, idea_id)
        if before.status != status:
            store.update_idea_status(idea_id, status, utc_now())
            audit.record(
                store, workspace_id, key_id, "idea.status", "idea", idea_id,
                {"from": before.status, "status": status},
            )  # fmt: skip
        idea = get_idea(store, workspace_id, idea_id)
        if before.status != status:
            enqueue_event(
                store, workspace_id, "idea.status_changed",
                {"idea_id": idea.id, "site_id": idea.site_id, "title": idea.title,
                 "previous_status": before.status, "status": status,
                 "updated_at": idea.updated_at},
            )  # fmt: skip
    return idea


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


# -- generation ------------------------------------------------------------------------


def _new_idea(draft: IdeaDraft, output_type: str) -> NewIdea:
    mockup: dict[str, Any] = {"mutations": msgspec.to_builtins(draft.mutations)}
    if draft.element_type is not None:
        mockup["element_type"] = draft.element_type
    return NewIdea(
        title=draft.title,
        hypothesis=draft.hypothesis,
        category=draft.category,
        priority=draft.priority,
        output_type=output_type,
        estimated_impact=draft.estimated_impact,
        mockup_data=mockup,
        source_url=draft.source_url,
    )


def _announce(
    store: Store,
    workspace_id: str,
    site_id: str,
    schedule_id: str | None,
    ideas: Sequence[IdeaOut],
    errors: Sequence[GenerationError],
) -> None:
    enqueue_event(
        store, workspace_id, "ideas.generated",
        {"success": bool(ideas) or not errors, "site_id": site_id, "schedule_id": schedule_id,
         "ideas": msgspec.to_builtins(ideas), "errors": msgspec.to_builtins(errors)},
    )  # fmt: skip


def record_generated(
    store: Store,
    workspace_id: str,
    key_id: str | None,
    site: SiteRecord,
    drafts: Sequence[IdeaDraft],
    output_type: str,
    schedule_id: str | None = None,
    errors: Sequence[GenerationError] = (),
    limit: int | None = None,
) -> list[IdeaOut]:
    """Store a run's ideas for the site (at most ``limit``, none the site already has:
    `edge.authoring.ideas.unseen`), audit them and queue ``ideas.generated`` with them
    (and the ``errors`` of the run's pages that gave none), in the caller's transaction;
    the ideas as stored."""
    with store.transaction():
        known, _ = store.list_ideas(workspace_id, IdeaFilter(site_id=site.id), 100_000, 0)
        stored = [(idea.title, idea.mockup_data.get("mutations") or []) for idea in known]
        drafts = unseen(drafts, stored)[:limit]
        ids = [add_idea(store, workspace_id, site.id, _new_idea(d, output_type)).id for d in drafts]
        ideas = [get_idea(store, workspace_id, idea_id) for idea_id in ids]
        audit.record(
            store, workspace_id, key_id, "ideas.generate", "site", site.id,
            {"ideas": ids, "schedule_id": schedule_id, "errors": len(errors)},
        )  # fmt: skip
        _announce(store, workspace_id, site.id, schedule_id, ideas, errors)
    return ideas


def record_failed(
    store: Store,
    workspace_id: str,
    site_id: str,
    errors: Sequence[GenerationError],
    refund: int,
    schedule_id: str | None = None,
) -> None:
    """A run that stored no idea: give back the ``refund`` credits it was charged and
    queue ``ideas.generated`` with ``success: false`` and its ``errors``, in the caller's
    transaction."""
    with store.transaction():
        if refund:
            credits.grant(store, workspace_id, refund, REFUND_REASON)
        _announce(store, workspace_id, site_id, schedule_id, (), errors)


def error_of(url: str, exc: Exception) -> GenerationError:
    """What a page's failed generation tells the caller: the error's own code and message
    when it is a `SplitedgeError`, else that the author failed (the log has the rest)."""
    if isinstance(exc, SplitedgeError):
        return GenerationError(url, exc.code, exc.message)
    return GenerationError(
        url, "authoring_failed", f"the author failed on {url} ({type(exc).__name__}); retry later"
    )


async def begin_generation(services: Services, auth: Auth, site_id: str) -> SiteRecord:
    """Pay generate_ideas (when metered) and find the workspace's site, in one
    transaction: a 402 or a 404 charges nothing and nothing is generated."""
    return await in_transaction(
        services,
        auth,
        lambda store: require_site(store, auth.workspace_id, site_id),
        "generate_ideas",
    )


async def complete_generation(
    services: Services,
    auth: Auth,
    site: SiteRecord,
    num_ideas: int,
    output_type: str,
    author: Author,
) -> list[IdeaOut]:
    """Run the author for ``num_ideas`` ideas of the site's root page on a thread, then
    store and announce them (`record_generated`). When the author fails, the run is
    refunded and announced as failed (`record_failed`) and the error raised again."""
    try:
        drafts = await shared_pool().run(
            # More than asked for: those the site already has are left out.
            auth.workspace_id,
            lambda: author.generate_ideas(site.url, num_ideas + MAX_IDEAS_PER_RUN),
        )
    except Exception as exc:
        refund = credits.TOOL_COSTS["generate_ideas"] if auth.metered else 0
        failure = [error_of(site.url, exc)]
        unfetched = isinstance(exc, PageUnavailable)

        def failed(store: Store) -> None:
            record_failed(store, auth.workspace_id, site.id, failure, refund)
            if unfetched:
                record_failure(store, auth.key_id)

        await in_store(services, failed)
        raise
    return await in_store(
        services,
        lambda store: record_generated(
            store, auth.workspace_id, auth.key_id, site, drafts, output_type, limit=num_ideas
        ),
    )


async def generate_ideas(
    services: Services,
    auth: Auth,
    site_id: str,
    num_ideas: int,
    author: Author,
    output_type: str = "html",
) -> list[IdeaOut]:
    """Generate, store and announce ``num_ideas`` ideas for the site and answer them (the
    synchronous form, e.g. ``POST /v1/ideas/generate`` with ``wait: true``)."""
    site = await begin_generation(services, auth, site_id)
    return await complete_generation(services, auth, site, num_ideas, output_type, author)
