"""``/v1/sites``: list, register and get the websites of the API key's workspace.

As in the reference: a URL without a scheme gets ``https://``, the name defaults to the
domain, a second site for a domain is a 409 whose error carries ``existing_site`` (or,
with ``reuse_if_exists: true``, a 200 with ``reused: true``), and a new site's answer
includes its snippet tag and install instructions. Another workspace's site is the same
404 as an unknown id.

``GET /v1/sites/{site_id}`` adds the snippet tag and the installation check: when the
site's snippet was last fetched (`edge.snippet_fetches`, published by the workers every
few seconds) and when the warehouse last received an event of the site.

Plan site limits (`edge.control.plans`; reference: Starter 1, Pro 10, Enterprise 25) apply
only when the services the app passes to `routes` hold a limits table; a self-hosted
install is unlimited by default.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from starlette.routing import Route
from starlette.types import Receive, Scope

from analytics.warehouse import EVENTS_TABLE
from edge.config import ANTI_FLICKER_MS, MAX_ANTI_FLICKER_MS
from edge.control import audit
from edge.control.api import (
    ApiOperation,
    Auth,
    Meta,
    Page,
    Reply,
    api_route,
    authenticate,
    base_url,
    in_store,
    in_transaction,
    ok,
    page_params,
    paid_read,
    read_json,
)
from edge.control.fetch_pool import shared_pool
from edge.control.records import SiteRecord
from edge.control.services import Services
from edge.control.store import Store, normalize_site_url
from edge.errors import DetailedConflict, NotFound, PlanLimitReached, ServiceUnavailable
from edge.snippet_fetches import fetch_times_path, read_fetch_times

__all__ = [
    "CreateSite",
    "CreatedSite",
    "ExistingSite",
    "Installation",
    "SiteDetail",
    "SiteOut",
    "REST_SITE_HINTS",
    "SiteHints",
    "SitesApi",
    "require_site",
    "routes",
]


class CreateSite(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/sites``: the site's URL (``https://`` added when it has no scheme), its
    display name (default: the domain), whether a duplicate domain answers with the
    existing site instead of 409, and how long its snippet may hide a page (ms)."""

    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    reuse_if_exists: bool = False
    anti_flicker_ms: Annotated[int, msgspec.Meta(ge=0, le=MAX_ANTI_FLICKER_MS)] = ANTI_FLICKER_MS


class SiteOut(msgspec.Struct, frozen=True):
    """A site as the API shows it. ``public_key`` names its snippet, ``/s/{public_key}.js``;
    ``crawl_status`` is the reference's field and always null: splitedge does not crawl."""

    id: str
    name: str
    url: str
    domain: str
    platform: str | None
    public_key: str
    crawl_status: str | None
    anti_flicker_ms: int
    created_at: str
    updated_at: str


class CreatedSite(SiteOut, frozen=True):
    """The answer to ``POST /v1/sites``: the site, its snippet tag, how to install it, and
    whether an existing site was reused (``reuse_if_exists``)."""

    snippet: str
    instructions: str
    reused: bool


class ExistingSite(msgspec.Struct, frozen=True):
    """The ``existing_site`` of a duplicate-domain 409, in the reference's shape."""

    id: str
    name: str
    url: str
    public_key: str


class Installation(msgspec.Struct, frozen=True):
    """Whether a site's snippet is installed, as seen from the server: when its snippet
    was last fetched from this server (published by the workers every few seconds; null:
    never) and when the warehouse last received an event of the site (null: never, or
    ``last_event_error`` says why the warehouse could not tell)."""

    snippet_fetched_at: str | None
    last_event_at: str | None
    last_event_error: str | None = None


class SiteDetail(SiteOut, frozen=True):
    """``GET /v1/sites/{site_id}``: the site, its snippet tag and its installation check."""

    snippet: str
    installation: Installation


_create_decoder = msgspec.json.Decoder(CreateSite)

_LAST_EVENT_SQL = (
    f"SELECT maxOrNull(received_at) AS at FROM {EVENTS_TABLE} "
    "WHERE workspace_id = {ws:String} AND site_id = {site:String}"
)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


def _site_out(site: SiteRecord) -> SiteOut:
    return SiteOut(
        id=site.id,
        name=site.name,
        url=site.url,
        domain=site.domain,
        platform=site.platform,
        public_key=site.public_key,
        crawl_status=None,
        anti_flicker_ms=site.anti_flicker_ms,
        created_at=site.created_at,
        updated_at=site.updated_at,
    )


class SiteHints(msgspec.Struct, frozen=True):
    """What a missing site's 404 tells the caller to do, in the words of its interface:
    ``register`` when the workspace has no site at all, ``choose`` when it has others."""

    register: str
    choose: str


REST_SITE_HINTS = SiteHints(
    register="No sites registered in this workspace. Register one with POST /v1/sites first.",
    choose="Call GET /v1/sites for the ids of its sites, or POST /v1/sites to add a new one.",
)
"""The hints of the REST API."""


def require_site(
    store: Store, workspace_id: str, site_id: str, hints: SiteHints = REST_SITE_HINTS
) -> SiteRecord:
    """The workspace's site ``site_id``; a 404 that says what to do otherwise (``hints``),
    the same whether the id is unknown or another workspace's."""
    site = store.find_site(site_id, workspace_id)
    if site is not None:
        return site
    if store.count_sites(workspace_id) == 0:
        raise NotFound(hints.register)
    raise NotFound(f"No site {site_id[:100]!r} in this workspace. {hints.choose}")


def _snippet_tag(origin: str, site: SiteRecord) -> str:
    return f'<script src="{origin}/s/{site.public_key}.js"></script>'


def _created(origin: str, site: SiteRecord, reused: bool) -> CreatedSite:
    tag = _snippet_tag(origin, site)
    if reused:
        instructions = (
            f'Site "{site.name}" ({site.url}) is already registered (ID: {site.id}). Reusing it.'
        )
    else:
        instructions = (
            f'Site "{site.name}" created successfully (ID: {site.id}).\n\n'
            f"Add this snippet to the <head> of {site.url}, before any other scripts:\n\n"
            f"{tag}\n\n"
            "The script is synchronous — placing it first in <head> prevents A/B variant "
            "flicker.\nOnce installed, create an experiment with POST /v1/experiments and "
            f'"site_id": "{site.id}".'
        )
    return CreatedSite(
        **msgspec.structs.asdict(_site_out(site)),
        snippet=tag,
        instructions=instructions,
        reused=reused,
    )


class SitesApi:
    """The handlers of ``/v1/sites``, over the worker's services and their plans' limits
    (None: no limits)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def list_sites(self, scope: Scope, receive: Receive) -> Reply:
        """``GET /v1/sites``: the workspace's sites, newest first, a page at a time."""
        auth = await authenticate(self.services, scope)
        page = page_params(scope)
        sites, total = await paid_read(
            self.services,
            auth,
            "list_sites",
            lambda store: store.list_sites(auth.workspace_id, page.limit, page.offset),
        )
        meta = Meta(auth.workspace_id, limit=page.limit, offset=page.offset, total=total)
        return ok([_site_out(site) for site in sites], meta)

    async def get(self, scope: Scope, receive: Receive) -> Reply:
        """``GET /v1/sites/{site_id}``: the site with its snippet tag and installation
        check."""
        auth = await authenticate(self.services, scope)
        site_id = scope["path_params"]["site_id"]
        site = await in_store(
            self.services, lambda store: require_site(store, auth.workspace_id, site_id)
        )
        installation = await asyncio.to_thread(self._installation, site)
        detail = SiteDetail(
            **msgspec.structs.asdict(_site_out(site)),
            snippet=_snippet_tag(base_url(scope), site),
            installation=installation,
        )
        return ok(detail, Meta(auth.workspace_id))

    def _installation(self, site: SiteRecord) -> Installation:
        fetched = read_fetch_times(fetch_times_path(self.services.settings)).get(site.id)
        fetched_at = None if fetched is None else _iso(datetime.fromtimestamp(fetched, UTC))
        # The warehouse down must not hide the site: the check says it could not tell.
        try:
            rows: list[dict[str, Any]] = self.services.run(
                _LAST_EVENT_SQL, {"ws": site.workspace_id, "site": site.id}
            ).to_pylist()
        except ServiceUnavailable as exc:
            return Installation(fetched_at, None, f"the warehouse could not be asked: {exc}")
        last = rows[0]["at"] if rows else None
        return Installation(fetched_at, _iso(last) if isinstance(last, datetime) else None)

    async def create(self, scope: Scope, receive: Receive) -> Reply:
        """``POST /v1/sites``: 201 with the new site, or 200 with the existing one when
        ``reuse_if_exists`` is set and the domain is registered already."""
        auth = await authenticate(self.services, scope)
        body = await read_json(scope, receive, _create_decoder, "site")
        # The site's pages are fetched later (intelligence, ideas, loops): refuse now a
        # URL on the server's own network. Outside the transaction: it may ask DNS.
        site_url, domain = normalize_site_url(body.url)
        await shared_pool().run(
            auth.workspace_id, lambda: self.services.guard.check_url(site_url, "url")
        )
        site, reused = await in_transaction(
            self.services,
            auth,
            lambda store: self._register(store, auth, body, domain),
            "create_site",
        )
        return ok(
            _created(base_url(scope), site, reused),
            Meta(auth.workspace_id),
            status=200 if reused else 201,
        )

    def _register(
        self, store: Store, auth: Auth, body: CreateSite, domain: str
    ) -> tuple[SiteRecord, bool]:
        workspace_id = auth.workspace_id
        # One write transaction: the duplicate check, the limit and the insert see the same
        # sites, so two concurrent requests cannot both pass the limit.
        with store.transaction():
            existing = store.site_by_domain(workspace_id, domain)
            if existing is not None:
                if body.reuse_if_exists:
                    return existing, True
                raise DetailedConflict(
                    f"A site for {domain} is already registered (ID: {existing.id}). Reuse it "
                    "via GET /v1/sites / its id, or POST /v1/sites again with "
                    "reuse_if_exists: true for idempotent behavior.",
                    existing_site=ExistingSite(
                        existing.id, existing.name, existing.url, existing.public_key
                    ),
                )
            self._check_limit(store, workspace_id)
            created = store.create_site(workspace_id, body.url, body.name, body.anti_flicker_ms)
            site = store.find_site(created.id, workspace_id)
            assert site is not None  # created in this transaction
            audit.record(store, workspace_id, auth.key_id, "site.create", "site", site.id)
        return site, False

    def _check_limit(self, store: Store, workspace_id: str) -> None:
        limits = self.services.limits
        if limits is None:
            return
        plan = store.get_workspace(workspace_id).plan
        limit = limits.sites.get(plan)
        if limit is None:
            return
        count = store.count_sites(workspace_id)
        if count >= limit:
            raise PlanLimitReached(
                f"the {plan} plan allows {limit} site(s) and this workspace has {count}; "
                "reuse one of them (GET /v1/sites) or move the workspace to a plan with more"
            )


def routes(services: Services) -> list[Route]:
    """The routes of ``/v1/sites``; site URLs must be addresses the services' guard
    allows; their limits are the plans': rate, metering and sites per workspace (None:
    none)."""
    api = SitesApi(services)
    listing = ApiOperation(
        handler=api.list_sites,
        summary="List the workspace's sites, newest first",
        data=list[SiteOut],
        query=Page,
        errors=(402,),
    )
    create = ApiOperation(
        handler=api.create,
        summary="Register a site",
        description="201 with the new site, its snippet tag and install instructions; 200 "
        "with the existing site when reuse_if_exists is set and the domain is registered "
        "already (409 with existing_site without it); 402 at the plan's site limit.",
        body=_create_decoder,
        data=CreatedSite,
        statuses=(201, 200),
        errors=(400, 402, 409),
        example={"name": "My store", "url": "https://mystore.com", "reuse_if_exists": True},
    )
    get = ApiOperation(
        handler=api.get,
        summary="Get a site, its snippet tag and its installation check",
        description="installation.snippet_fetched_at: the last fetch of the site's snippet "
        "from this server (the workers publish it every few seconds); "
        "installation.last_event_at: the last event of the site the warehouse received; "
        "null for never. When the warehouse cannot be reached, last_event_error says so.",
        data=SiteDetail,
        errors=(404,),
    )
    return [
        api_route("/v1/sites", {"GET": listing, "POST": create}),
        api_route("/v1/sites/{site_id}", {"GET": get}),
    ]
