"""``/v1/ideas``: list, get, review (PATCH status) and generate the A/B test ideas of the
API key's workspace (the reference's routes; the rules are `edge.control.ideas`').

``POST /v1/ideas/generate`` answers ``202 Accepted`` at once with what it started (in the
reference's shape ``{success, ideas}``, the ideas still to come, so none), having
paid generate_ideas and found the site; the author runs in the background of the worker and
the ``ideas.generated`` webhook carries the stored ideas (or, when the run failed and was
refunded, ``success: false`` and the errors). With ``"wait": true`` it answers ``200`` with
``{success, ideas}`` when they are stored instead (the MCP tool's form). Another
workspace's idea is the same 404 as an unknown id.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Literal

import msgspec
from starlette.routing import Route
from starlette.types import Receive, Scope

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
    query_params,
    read_json,
)
from edge.control.idea_records import (
    IDEA_STATUSES,
    MAX_IDEAS_PER_RUN,
    IdeaFilter,
    IdeaOut,
    IdeaStatus,
    OutputType,
)
from edge.control.ideas import (
    begin_generation,
    complete_generation,
    generate_ideas,
    get_idea,
    set_idea_status,
)
from edge.control.records import SiteRecord
from edge.control.services import Services
from edge.errors import InvalidRequest, SplitedgeError

__all__ = [
    "GenerateIdeas",
    "GeneratedIdeas",
    "GenerationStarted",
    "IdeaQuery",
    "IdeasApi",
    "UpdateIdea",
    "routes",
]

log = logging.getLogger("splitedge.ideas")


class IdeaQuery(Page, frozen=True):
    """The query of ``GET /v1/ideas``: a page of the ideas of one site, status and
    category."""

    site_id: Annotated[str, msgspec.Meta(description="Only this site's ideas.")] | None = None
    status: Annotated[IdeaStatus, msgspec.Meta(description="Only ideas in this status.")] | None = (
        None
    )
    category: (
        Annotated[str, msgspec.Meta(description="Only this category, e.g. cta, headline.")] | None
    ) = None


class UpdateIdea(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``PATCH /v1/ideas/{idea_id}``: the idea's new status."""

    status: Annotated[str, msgspec.Meta(max_length=50)]


class GenerateIdeas(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/ideas/generate``: the site, how many ideas (1 to 10, default 5), their
    output type, and whether to wait for them (``wait``: answer them, 200) or not (202,
    the ``ideas.generated`` webhook brings them)."""

    site_id: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    num_ideas: Annotated[int, msgspec.Meta(ge=1, le=MAX_IDEAS_PER_RUN)] = 5
    output_type: OutputType = "html"
    wait: bool = False


class GenerationStarted(msgspec.Struct, frozen=True):
    """The 202 of ``POST /v1/ideas/generate``, the reference's ``{success, ideas}``: the
    run is paid for and under way, so ``ideas`` is empty; they arrive with the
    ``ideas.generated`` webhook and in ``GET /v1/ideas`` (``wait: true`` answers them)."""

    success: bool
    ideas: list[IdeaOut]
    status: Literal["generating"]
    site_id: str
    num_ideas: int
    output_type: OutputType
    message: str


class GeneratedIdeas(msgspec.Struct, frozen=True):
    """The 200 of ``POST /v1/ideas/generate`` with ``wait: true``: the stored ideas."""

    success: bool
    ideas: list[IdeaOut]


_update_decoder = msgspec.json.Decoder(UpdateIdea)
_generate_decoder = msgspec.json.Decoder(GenerateIdeas)


def _status(text: str) -> IdeaStatus:
    for status in IDEA_STATUSES:
        if text == status:
            return status
    raise InvalidRequest(
        f"status {text[:50]!r} is not an idea status; use one of {', '.join(IDEA_STATUSES)}"
    )


class IdeasApi:
    """The handlers of ``/v1/ideas``, over the worker's services (whose author generates
    ideas). Background runs are kept until they end (the event loop holds tasks weakly)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.running: set[asyncio.Task[None]] = set()

    async def list_ideas(self, scope: Scope, receive: Receive) -> Reply:
        """``GET /v1/ideas``: newest first, filtered by site, status and category."""
        auth = await authenticate(self.services, scope)
        page = page_params(scope)
        params = query_params(scope)
        status = _status(params["status"]) if "status" in params else None
        where = IdeaFilter(params.get("site_id") or None, status, params.get("category") or None)
        ideas, total = await paid_read(
            self.services,
            auth,
            "list_ideas",
            lambda store: store.list_ideas(auth.workspace_id, where, page.limit, page.offset),
        )
        meta = Meta(auth.workspace_id, limit=page.limit, offset=page.offset, total=total)
        return ok(ideas, meta)

    async def get(self, scope: Scope, receive: Receive) -> Reply:
        """``GET /v1/ideas/{idea_id}``: the idea in full, with its site."""
        auth = await authenticate(self.services, scope)
        idea_id = scope["path_params"]["idea_id"]
        idea = await in_store(
            self.services, lambda store: get_idea(store, auth.workspace_id, idea_id)
        )
        return ok(idea, Meta(auth.workspace_id))

    async def update(self, scope: Scope, receive: Receive) -> Reply:
        """``PATCH /v1/ideas/{idea_id}``: ``{"status": ...}``; the idea after."""
        auth = await authenticate(self.services, scope)
        idea_id = scope["path_params"]["idea_id"]
        body = await read_json(scope, receive, _update_decoder, "idea update")
        status = _status(body.status)
        idea = await in_transaction(
            self.services,
            auth,
            lambda store: set_idea_status(store, auth.workspace_id, auth.key_id, idea_id, status),
        )
        return ok(idea, Meta(auth.workspace_id))

    async def generate(self, scope: Scope, receive: Receive) -> Reply:
        """``POST /v1/ideas/generate``: 202 with the run started, or with ``wait`` 200
        with the ideas."""
        auth = await authenticate(self.services, scope)
        body = await read_json(scope, receive, _generate_decoder, "generate request")
        if body.site_id is None:
            raise InvalidRequest(
                "site_id is required: ideas are generated for one of your sites "
                "(GET /v1/sites lists them)"
            )
        if body.wait:
            ideas = await generate_ideas(
                self.services,
                auth,
                body.site_id,
                body.num_ideas,
                self.services.author,
                body.output_type,
            )
            return ok(GeneratedIdeas(True, ideas), Meta(auth.workspace_id))
        site = await begin_generation(self.services, auth, body.site_id)
        task = asyncio.create_task(self._in_background(auth, site, body), name="ideas")
        self.running.add(task)
        task.add_done_callback(self.running.discard)
        started = GenerationStarted(
            success=True,
            ideas=[],
            status="generating",
            site_id=site.id,
            num_ideas=body.num_ideas,
            output_type=body.output_type,
            message=(
                f"Generating {body.num_ideas} idea(s) for {site.url}. The ideas.generated "
                f"webhook carries them when they are stored; GET /v1/ideas?site_id={site.id} "
                'lists them then. Pass "wait": true to have them in this answer.'
            ),
        )
        return ok(started, Meta(auth.workspace_id), status=202)

    async def _in_background(self, auth: Auth, site: SiteRecord, body: GenerateIdeas) -> None:
        try:
            await complete_generation(
                self.services, auth, site, body.num_ideas, body.output_type, self.services.author
            )
        except SplitedgeError as exc:  # refunded and announced as failed already
            log.warning("generating ideas for site %s failed: %s", site.id, exc.message)
        except Exception:
            log.exception("generating ideas for site %s failed", site.id)


def routes(services: Services) -> list[Route]:
    """The routes of ``/v1/ideas``; the services' author generates ideas."""
    api = IdeasApi(services)
    listing = ApiOperation(
        handler=api.list_ideas,
        summary="List the workspace's A/B test ideas, newest first",
        data=list[IdeaOut],
        query=IdeaQuery,
        errors=(402,),
    )
    generate = ApiOperation(
        handler=api.generate,
        summary="Generate A/B test ideas for a site",
        description="202 at once with {success, ideas: []}: the run is paid "
        "(generate_ideas) and under way; the ideas.generated webhook carries the stored "
        "ideas, or success false and the errors "
        "when it failed (and was refunded). With wait: true, 200 with {success, ideas} once "
        "they are stored; 422 when the site's page cannot be fetched.",
        body=_generate_decoder,
        data=GenerationStarted | GeneratedIdeas,
        statuses=(202, 200),
        errors=(402, 404, 422, 502),
        example={"site_id": "e0e3f741-5a4e-4c2a-9d7a-3b1f0c8e2d10", "num_ideas": 5},
    )
    get = ApiOperation(
        handler=api.get,
        summary="Get an idea in full, with its site and mockup data",
        data=IdeaOut,
        errors=(404,),
    )
    update = ApiOperation(
        handler=api.update,
        summary="Change an idea's status",
        description="new, approved, implemented, rejected or archived; a change queues the "
        "idea.status_changed webhook.",
        body=_update_decoder,
        data=IdeaOut,
        errors=(404,),
        example={"status": "approved"},
    )
    return [
        api_route("/v1/ideas", {"GET": listing}),
        api_route("/v1/ideas/generate", {"POST": generate}),
        api_route("/v1/ideas/{idea_id}", {"GET": get, "PATCH": update}),
    ]
