"""``/v1/loops``: continuous loops over REST (the reference's create_loop, get_loop_status,
pause_loop and resume_loop; docs/loops.md).

``POST /v1/loops`` is two-phase: without ``selected_idea_id`` the author proposes 3 to 5
seed ideas for the page (stored as ideas, so the second call finds them by id) and no
loop is created; with it (and ``name`` and ``primary_goal``) the loop and its round-1
experiment are created and launched, in one transaction with the debit and the audit
entry. Both phases cost create_loop; a request that fails validation costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec
from starlette.routing import Route
from starlette.types import Receive, Scope

from edge.authoring.drafts import ElementType
from edge.control.api import (
    ApiOperation,
    Auth,
    Meta,
    Page,
    Reply,
    api_route,
    authenticate,
    in_store,
    in_transaction,
    ok,
    page_params,
    paid_read,
    read_json,
)
from edge.control.authoring_calls import authored_for_site
from edge.control.experiment_input import http_url
from edge.control.idea_records import NewIdea
from edge.control.ideas import add_idea, idea_mutations, require_idea
from edge.control.loop_records import Loop, LoopConfig, LoopGoal, Round
from edge.control.loops import (
    LoopStatus,
    RoundResults,
    Toggle,
    create_loop,
    loop_status,
    pause_loop,
    require_loop,
    resume_loop,
)
from edge.control.services import Services
from edge.control.sites_api import require_site
from edge.control.store import Store
from edge.errors import InvalidRequest

__all__ = [
    "SEED_IDEAS",
    "ComingSoon",
    "CreateLoop",
    "Launched",
    "LoopsApi",
    "Paused",
    "Resumed",
    "SeedIdea",
    "SeedIdeas",
    "routes",
]

SEED_IDEAS = 5
"""How many seed ideas phase 1 asks the author for (it answers 3 to 5)."""

_SUPPORTED: tuple[ElementType, ...] = ("headline", "copy")


class ComingSoon(InvalidRequest):
    """A loop option that is planned but not yet supported (image and layout elements)."""

    code = "coming_soon"


class CreateLoop(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/loops``: phase 1 needs site_id and element_types; phase 2 adds
    selected_idea_id (from phase 1), name and primary_goal."""

    site_id: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    element_types: list[Annotated[str, msgspec.Meta(max_length=50)]] | None = None
    name: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    target_url: Annotated[str, msgspec.Meta(max_length=2048)] | None = None
    url_pattern: Annotated[str, msgspec.Meta(max_length=2048)] | None = None
    selector_hints: dict[str, Annotated[str, msgspec.Meta(max_length=2048)]] | None = None
    primary_goal: LoopGoal | None = None
    selected_idea_id: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    min_round_days: Annotated[int, msgspec.Meta(ge=1, le=90)] = 7
    max_round_days: Annotated[int, msgspec.Meta(ge=1, le=180)] = 28
    min_samples_per_arm: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 500
    decision_threshold: Annotated[float, msgspec.Meta(ge=0.8, le=0.999)] = 0.95


class SeedIdea(msgspec.Struct, frozen=True):
    """A seed-idea candidate: pass its id as selected_idea_id to launch."""

    id: str
    title: str
    hypothesis: str | None
    mockup_data: dict[str, Any]


class SeedIdeas(msgspec.Struct, frozen=True):
    """Phase 1's answer."""

    phase: Literal["seed_ideas"]
    ideas: list[SeedIdea]
    next_step: str


class Launched(msgspec.Struct, frozen=True):
    """Phase 2's answer: the loop, its round 1, and a link to preview the challenger."""

    phase: Literal["launched"]
    loop: Loop
    round: Round
    preview_url: str


class Paused(msgspec.Struct, frozen=True):
    """pause_loop's answer."""

    loop: Loop
    paused_experiment_id: str | None
    no_op: bool
    message: str


class Resumed(msgspec.Struct, frozen=True):
    """resume_loop's answer."""

    loop: Loop
    resumed_experiment_id: str | None
    no_op: bool
    message: str


_create_decoder = msgspec.json.Decoder(CreateLoop)


def _element_types(raw: list[str] | None) -> tuple[ElementType, ...]:
    if not raw:
        raise InvalidRequest(
            'element_types is required: what the loop may vary, e.g. ["headline", "copy"]'
        )
    soon = [t for t in raw if t in ("image", "layout")]
    if soon:
        raise ComingSoon(
            f"element_types {', '.join(soon)} are coming soon: loops vary headline and copy "
            'for now; pass element_types from ["headline", "copy"]'
        )
    unknown = [t for t in raw if t not in _SUPPORTED]
    if unknown:
        raise InvalidRequest(
            f"unknown element_types {', '.join(repr(t[:50]) for t in unknown)}; pass "
            'element_types from ["headline", "copy"]'
        )
    return tuple(t for t in _SUPPORTED if t in raw)


def _preview_url(target_url: str, variant_id: str | None) -> str:
    joiner = "&" if "?" in target_url else "?"
    return f"{target_url}{joiner}sk_preview={variant_id}"


class LoopsApi:
    """The handlers of ``/v1/loops``, over the worker's services and the rounds'
    results."""

    def __init__(self, services: Services, results: RoundResults) -> None:
        self.services = services
        self.results = results

    async def create(self, scope: Scope, receive: Receive) -> Reply:
        """``POST /v1/loops``: seed ideas (phase 1) or the launched loop (phase 2)."""
        auth = await authenticate(self.services, scope)
        body = await read_json(scope, receive, _create_decoder, "loop")
        if body.site_id is None:
            raise InvalidRequest(
                "site_id is required: a loop runs on one of your sites (GET /v1/sites lists them)"
            )
        element_types = _element_types(body.element_types)
        limits = self.services.limits
        if limits is not None:
            plan = await in_store(
                self.services, lambda store: store.get_workspace(auth.workspace_id).plan
            )
            limits.check_loops(plan)
        if body.min_round_days > body.max_round_days:
            raise InvalidRequest(
                f"min_round_days ({body.min_round_days}) exceeds max_round_days "
                f"({body.max_round_days}); a round's minimum runtime must fit in its maximum"
            )
        target = None if body.target_url is None else http_url(body.target_url, "target_url")
        if body.selected_idea_id is None:
            return await self._seed(auth, body.site_id, element_types, target)
        if not (body.name or "").strip():
            raise InvalidRequest("name is required to launch a loop: give it a display name")
        if body.primary_goal is None:
            raise InvalidRequest(
                "primary_goal is required to launch a loop: the goal it optimises, e.g. "
                '{"name": "Signup click", "type": "click", "selector": ".cta"}'
            )
        site_id, idea_id, goal = body.site_id, body.selected_idea_id, body.primary_goal
        now = datetime.now(UTC)

        def launch(store: Store) -> tuple[Loop, Round]:
            site = require_site(store, auth.workspace_id, site_id)
            idea = require_idea(store, auth.workspace_id, idea_id)
            if idea.site_id != site.id:
                raise InvalidRequest(
                    f"idea {idea.id} is for another site; pick a selected_idea_id that "
                    f"create_loop proposed for site {site.id}"
                )
            config_target = target or idea.source_url or site.url
            config = LoopConfig(
                name=(body.name or "").strip(),
                site_id=site.id,
                target_url=config_target,
                element_types=element_types,
                primary_goal=goal,
                # A round's changes are for its page: by default they run there (and
                # below it), not on every page of the site.
                url_pattern=body.url_pattern or urlsplit(config_target).path or "/",
                selector_hints=body.selector_hints,
                min_round_days=body.min_round_days,
                max_round_days=body.max_round_days,
                min_samples_per_arm=body.min_samples_per_arm,
                decision_threshold=body.decision_threshold,
            )
            return create_loop(
                store, auth.workspace_id, auth.key_id, config, idea_mutations(idea),
                idea.hypothesis, now,
            )  # fmt: skip

        loop, first = await in_transaction(self.services, auth, launch, "create_loop")
        answer = Launched(
            "launched", loop, first, _preview_url(loop.target_url, first.challenger_variant_id)
        )
        return ok(answer, Meta(auth.workspace_id), status=201)

    async def _seed(
        self, auth: Auth, site_id: str, element_types: tuple[ElementType, ...], target: str | None
    ) -> Reply:
        site, drafts = await authored_for_site(
            self.services,
            auth,
            site_id,
            "create_loop",
            lambda site: self.services.author.generate_ideas(
                site.url, SEED_IDEAS, element_types, target
            ),
        )

        def store_ideas(store: Store) -> list[SeedIdea]:
            stored = []
            for draft in drafts:
                new = NewIdea(
                    title=draft.title,
                    hypothesis=draft.hypothesis,
                    category=draft.category,
                    priority=draft.priority,
                    estimated_impact=draft.estimated_impact,
                    mockup_data={"mutations": msgspec.to_builtins(draft.mutations)},
                    source_url=draft.source_url or target,
                )
                idea = add_idea(store, auth.workspace_id, site.id, new)
                stored.append(SeedIdea(idea.id, idea.title, idea.hypothesis, idea.mockup_data))
            return stored

        ideas = await in_transaction(self.services, auth, store_ideas, "create_loop")
        answer = SeedIdeas(
            "seed_ideas",
            ideas,
            "Call create_loop again with selected_idea_id, name, and primary_goal to launch.",
        )
        return ok(answer, Meta(auth.workspace_id))

    async def list_loops(self, scope: Scope, receive: Receive) -> Reply:
        """``GET /v1/loops``: a page of the workspace's loops, newest first."""
        auth = await authenticate(self.services, scope)
        page = page_params(scope)
        loops, total = await in_store(
            self.services,
            lambda store: store.list_loops(auth.workspace_id, page.limit, page.offset),
        )
        return ok(loops, Meta(auth.workspace_id, limit=page.limit, offset=page.offset, total=total))

    async def status(self, scope: Scope, receive: Receive) -> Reply:
        """``GET /v1/loops/{loop_id}``: get_loop_status, without advancing the loop."""
        auth = await authenticate(self.services, scope)
        loop_id = scope["path_params"]["loop_id"]
        now = datetime.now(UTC)

        def read(store: Store) -> LoopStatus:
            return loop_status(store, require_loop(store, auth.workspace_id, loop_id),
                               self.results, now)  # fmt: skip

        # The ClickHouse query runs outside the write lock; the debit once it answered.
        status = await in_store(self.services, read)
        await paid_read(self.services, auth, "get_loop_status", lambda store: None)
        return ok(status, Meta(auth.workspace_id))

    async def pause(self, scope: Scope, receive: Receive) -> Reply:
        """``POST /v1/loops/{loop_id}/pause``: idempotent."""
        toggle, auth = await self._toggle(scope, pause_loop, "pause_loop")
        answer = Paused(toggle.loop, toggle.experiment_id, toggle.no_op, toggle.message)
        return ok(answer, Meta(auth.workspace_id))

    async def resume(self, scope: Scope, receive: Receive) -> Reply:
        """``POST /v1/loops/{loop_id}/resume``: idempotent."""
        toggle, auth = await self._toggle(scope, resume_loop, "resume_loop")
        answer = Resumed(toggle.loop, toggle.experiment_id, toggle.no_op, toggle.message)
        return ok(answer, Meta(auth.workspace_id))

    async def _toggle(
        self,
        scope: Scope,
        change: Callable[[Store, str, str | None, str, datetime], Toggle],
        tool: str,
    ) -> tuple[Toggle, Auth]:
        """Pause or resume (``change``) the path's loop, paying ``tool``."""
        auth = await authenticate(self.services, scope)
        loop_id = scope["path_params"]["loop_id"]
        now = datetime.now(UTC)
        toggle = await in_transaction(
            self.services, auth,
            lambda store: change(store, auth.workspace_id, auth.key_id, loop_id, now), tool,
        )  # fmt: skip
        return toggle, auth


def routes(services: Services, results: RoundResults) -> list[Route]:
    """The routes of ``/v1/loops``; ``results`` gives a round's arms."""
    api = LoopsApi(services, results)
    create = ApiOperation(
        handler=api.create,
        summary="Create a continuous loop (two-phase)",
        description="Without selected_idea_id: 200 with {phase: seed_ideas, ideas, next_step} "
        "(3-5 candidates, stored as ideas); nothing else is created. With selected_idea_id, "
        "name and primary_goal: 201 with {phase: launched, loop, round, preview_url}, round 1 "
        "running. Both cost create_loop; element_types image or layout is a 400 coming_soon "
        "(free).",
        body=_create_decoder,
        data=SeedIdeas | Launched,
        statuses=(200, 201),
        errors=(402, 404, 422),
        example={
            "site_id": "e0e3f741-5a4e-4c2a-9d7a-3b1f0c8e2d10",
            "target_url": "https://mysite.com/pricing",
            "element_types": ["headline", "copy"],
        },
    )
    listing = ApiOperation(
        handler=api.list_loops,
        summary="List the workspace's loops, newest first",
        data=list[Loop],
        query=Page,
    )
    status = ApiOperation(
        handler=api.status,
        summary="Get a loop's status: config, current round, history, next decision",
        description="The last 10 rounds newest first, and next_decision_eta {decision, "
        "reason, samples_needed, days_needed} from the live data; does not advance the "
        "loop. Costs get_loop_status.",
        data=LoopStatus,
        errors=(402, 404),
    )
    pause = ApiOperation(
        handler=api.pause,
        summary="Pause a loop and its round's experiment",
        description="Idempotent: pausing a paused loop is no_op true. A completed or "
        "archived loop is a 400. Costs pause_loop.",
        data=Paused,
        errors=(402, 404),
    )
    resume = ApiOperation(
        handler=api.resume,
        summary="Resume a loop and its round's experiment",
        description="Idempotent: resuming a running loop is no_op true. Resets "
        "consecutive_inconclusive and makes the loop due now. Costs resume_loop.",
        data=Resumed,
        errors=(402, 404),
    )
    return [
        api_route("/v1/loops", {"GET": listing, "POST": create}),
        api_route("/v1/loops/{loop_id}", {"GET": status}),
        api_route("/v1/loops/{loop_id}/pause", {"POST": pause}),
        api_route("/v1/loops/{loop_id}/resume", {"POST": resume}),
    ]
