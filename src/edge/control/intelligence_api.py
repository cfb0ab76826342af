"""``GET /v1/sites/{site_id}/intelligence``: what the site's homepage says about it (the
reference's get_site_intelligence, 2 credits on a metered plan).

The author (`edge.authoring.author.Author.site_intelligence`) fetches the site's URL and
reads it without an LLM: title, meta description, headings, ranked keywords and the
detected tech stack. The answer keeps the reference's shape, ``{intelligence, keywords,
competitors}``. What only a language model can say (industry, business model, audience,
value propositions, brand tone, pain points, competitors) is not made up: ``competitors``
stays empty, and the fields the reference lists beside them are left out. A page that
cannot be fetched is a 422 and costs nothing.
"""

from __future__ import annotations

import msgspec
from starlette.routing import Route
from starlette.types import Receive, Scope

from edge.authoring.drafts import Keyword, SiteIntelligence
from edge.control.api import (
    ApiOperation,
    Meta,
    Reply,
    api_route,
    authenticate,
    in_transaction,
    ok,
)
from edge.control.authoring_calls import authored_for_site
from edge.control.services import Services

__all__ = ["Competitor", "IntelligenceApi", "PageIntelligence", "SiteIntelligenceOut", "routes"]


class PageIntelligence(msgspec.Struct, frozen=True):
    """What the homepage says: its URL, title, meta description, headings (in page
    order) and detected tech stack (e.g. ``Next.js``, ``Stripe``); ``updated_at`` is when
    it was fetched."""

    url: str
    title: str | None
    description: str | None
    headings: tuple[str, ...]
    tech_stack: tuple[str, ...]
    updated_at: str


class Competitor(msgspec.Struct, frozen=True):
    """A competitor in the reference's shape; none are named without a language model."""

    domain: str
    name: str
    confidence_score: float


class SiteIntelligenceOut(msgspec.Struct, frozen=True):
    """The answer, in the reference's shape: the page's intelligence, its keywords
    (``primary`` or ``secondary``, with a relevance score from 0 to 1) and competitors."""

    intelligence: PageIntelligence
    keywords: tuple[Keyword, ...]
    competitors: tuple[Competitor, ...]


def _out(found: SiteIntelligence) -> SiteIntelligenceOut:
    page = PageIntelligence(
        url=found.url,
        title=found.title,
        description=found.description,
        headings=found.headings,
        tech_stack=found.tech_stack,
        updated_at=found.fetched_at,
    )
    return SiteIntelligenceOut(page, found.keywords, ())


class IntelligenceApi:
    """The handler of ``GET /v1/sites/{site_id}/intelligence``."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def get(self, scope: Scope, receive: Receive) -> Reply:
        """The site's homepage, read (``get_site_intelligence``)."""
        auth = await authenticate(self.services, scope)
        site_id = scope["path_params"]["site_id"]
        _, found = await authored_for_site(
            self.services,
            auth,
            site_id,
            "get_site_intelligence",
            lambda site: self.services.author.site_intelligence(site.url),
        )
        if auth.metered:
            await in_transaction(self.services, auth, lambda store: None, "get_site_intelligence")
        return ok(_out(found), Meta(auth.workspace_id))


def routes(services: Services) -> list[Route]:
    """The route ``GET /v1/sites/{site_id}/intelligence``."""
    api = IntelligenceApi(services)
    get = ApiOperation(
        handler=api.get,
        summary="What a site's homepage says: title, description, headings, keywords, stack",
        description="Fetched and read without an LLM; competitors stay empty (they need a "
        "language model). 422 (free) when the homepage cannot be fetched.",
        data=SiteIntelligenceOut,
        errors=(402, 404, 422, 502),
    )
    return [api_route("/v1/sites/{site_id}/intelligence", {"GET": get})]
