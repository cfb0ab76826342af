"""``POST /v1/variants/generate``: a variant authored from a plain-English prompt, ready
to pass to ``POST /v1/experiments`` as ``variants[0].changes`` (the reference's route).

The author (`edge.authoring.author.Author`) resolves the page (``target_url``, else a URL
in the prompt, else a homepage hint), fetches it and answers a `VariantDraft`, or, when
the page cannot be resolved, the reference's ``needs_clarification`` (status 200 too).
Both cost generate_variant (10 credits on a metered plan), debited once the author has
answered (`edge.control.authoring_calls`); a page that cannot be fetched is a 422 and costs
nothing, and so does an invalid body. `draft_variant` is the same authoring for the prompt
path of ``POST /v1/experiments``.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from starlette.routing import Route
from starlette.types import Receive, Scope

from edge.authoring.author import Author
from edge.authoring.drafts import NeedsClarification, VariantDraft, VariantRequest
from edge.control.api import (
    ApiOperation,
    Auth,
    Meta,
    Reply,
    api_route,
    authenticate,
    in_transaction,
    ok,
    read_json,
)
from edge.control.authoring_calls import authored_for_site
from edge.control.experiment_input import http_url
from edge.control.records import SiteRecord
from edge.control.services import Services
from edge.errors import InvalidRequest

__all__ = [
    "PROMPT_MAX_CHARS",
    "PROMPT_MIN_CHARS",
    "Clarification",
    "GenerateVariant",
    "VariantsApi",
    "check_prompt",
    "draft_variant",
    "routes",
]

PROMPT_MIN_CHARS = 10
"""The shortest prompt the author takes (the reference's minimum)."""

PROMPT_MAX_CHARS = 4000
"""The longest: a description of one test, URLs included, not a document."""


class GenerateVariant(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/variants/generate``: the site, the prompt (10 characters at least; full
    URLs where relevant) and, optionally, the page it is for."""

    site_id: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    prompt: Annotated[str, msgspec.Meta(max_length=PROMPT_MAX_CHARS)] | None = None
    target_url: Annotated[str, msgspec.Meta(max_length=2048)] | None = None


class Clarification(msgspec.Struct, frozen=True):
    """The answer when the author cannot tell which page to change: what to ask, and how
    to retry. Nothing was authored (the call is still paid for, as in the reference)."""

    needs_clarification: NeedsClarification


_generate_decoder = msgspec.json.Decoder(GenerateVariant)


def check_prompt(prompt: str | None) -> str:
    """The prompt, if the author can take it; a 400 saying what it needs otherwise."""
    text = (prompt or "").strip()
    if not text:
        raise InvalidRequest(
            'prompt is required: describe the change in plain English, e.g. "Change the '
            'hero price from $99 to $499 and link the CTA to https://buy.stripe.com/pro"'
        )
    if len(text) < PROMPT_MIN_CHARS:
        raise InvalidRequest(
            f"prompt is {len(text)} characters; describe the change in {PROMPT_MIN_CHARS} or "
            "more (what to change, from what to what, and full URLs where relevant)"
        )
    if len(text) > PROMPT_MAX_CHARS:
        raise InvalidRequest(
            f"prompt is {len(text)} characters; describe one test in {PROMPT_MAX_CHARS} or fewer"
        )
    return text


async def draft_variant(
    services: Services,
    auth: Auth,
    author: Author,
    site_id: str,
    prompt: str,
    target_url: str | None,
    tool: str = "generate_variant",
    extra: int = 0,
) -> tuple[SiteRecord, VariantDraft | NeedsClarification]:
    """The workspace's site and the author's answer to ``prompt`` for it (``target_url``:
    the page, else the author resolves one), once the balance covers ``tool`` plus
    ``extra``; the caller debits. ``prompt`` is checked (`check_prompt`) already."""
    target = None if target_url is None else http_url(target_url, "target_url")
    return await authored_for_site(
        services,
        auth,
        site_id,
        tool,
        lambda site: author.generate_variant(VariantRequest(site.url, prompt, target)),
        extra,
    )


class VariantsApi:
    """The handler of ``POST /v1/variants/generate``, over the worker's services."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def generate(self, scope: Scope, receive: Receive) -> Reply:
        """``POST /v1/variants/generate``: the `VariantDraft`, or ``needs_clarification``."""
        auth = await authenticate(self.services, scope)
        body = await read_json(scope, receive, _generate_decoder, "generate request")
        if body.site_id is None:
            raise InvalidRequest(
                "site_id is required: a variant is authored for one of your sites (GET "
                "/v1/sites lists them)"
            )
        prompt = check_prompt(body.prompt)
        _, answer = await draft_variant(
            self.services, auth, self.services.author, body.site_id, prompt, body.target_url
        )
        if auth.metered:
            await in_transaction(self.services, auth, lambda store: None, "generate_variant")
        if isinstance(answer, NeedsClarification):
            return ok(Clarification(answer), Meta(auth.workspace_id))
        return ok(answer, Meta(auth.workspace_id))


def routes(services: Services) -> list[Route]:
    """The route ``POST /v1/variants/generate``."""
    api = VariantsApi(services)
    generate = ApiOperation(
        handler=api.generate,
        summary="Author a variant from a plain-English prompt",
        description="Fetches the target page (target_url, else one named in the prompt, "
        "else the homepage when the prompt hints at it) and answers VariantMutation[] with "
        "suggested goals, a hypothesis and context; when the page cannot be resolved, "
        "{needs_clarification: {retry_hint, questions}} (200 too). Both cost "
        "generate_variant; 422 (free) when the page cannot be fetched.",
        body=_generate_decoder,
        data=VariantDraft | Clarification,
        errors=(402, 404, 422, 502),
        example={
            "site_id": "e0e3f741-5a4e-4c2a-9d7a-3b1f0c8e2d10",
            "prompt": "Change the hero price from $99 to $499 and update the CTA link to "
            "https://buy.stripe.com/pro_abc123",
            "target_url": "https://mysite.com/pricing",
        },
    )
    return [api_route("/v1/variants/generate", {"POST": generate})]
