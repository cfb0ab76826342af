"""The console's sites: ``/console/sites/new`` (the form), ``POST /console/sites`` (create)
and ``/console/sites/{site_id}`` (a site: its public key, the snippet tag with a copy
button, its experiments and the installation check). The list is the home page (``/``),
where ``/console/sites`` leads."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from edge.control.console.frame import (
    Console,
    RestFailure,
    Session,
    page,
    read_form,
    see_other,
)

__all__ = ["routes"]

_EXPERIMENTS_SHOWN = 20
"""How many of a site's experiments its page lists; the experiments page has them all."""


def _new_site_page(
    request: Request, session: Session, values: dict[str, str], message: str, status: int
) -> Response:
    return page(
        request, session, "console/site_new.html", status=status, values=values, message=message
    )


async def _site_list(request: Request, session: Session) -> Response:
    return see_other(request, "/")


def routes(console: Console) -> list[BaseRoute]:
    """The sites' pages and the create form's POST."""

    async def new_site(request: Request, session: Session) -> Response:
        return _new_site_page(request, session, {"url": "", "name": ""}, "", 200)

    async def create(request: Request, session: Session) -> Response:
        form = await read_form(request, session)
        # The name as typed (the API keeps it so); a blank one is the domain.
        values = {"url": (form.get("url") or "").strip(), "name": form.get("name") or ""}
        body: dict[str, Any] = {"url": values["url"]}
        if values["name"].strip():
            body["name"] = values["name"]
        try:
            site = await session.api("POST", "/v1/sites", body=body)
        except RestFailure as exc:
            # The form again, beside the API's own words (a bad URL, a domain already
            # registered, the plan's limit).
            return _new_site_page(request, session, values, exc.message, exc.status)
        return see_other(request, f"/console/sites/{site['id']}")

    async def show(request: Request, session: Session) -> Response:
        # Quoted: the id is one path segment of the API's route, whatever it holds.
        site_id = quote(request.path_params["site_id"], safe="")
        site = await session.api("GET", f"/v1/sites/{site_id}")
        answer = await session.api.answer(
            "GET", "/v1/experiments", query={"site_id": site["id"], "limit": _EXPERIMENTS_SHOWN}
        )
        total = answer.meta.get("total") if isinstance(answer.meta, dict) else None
        return page(
            request,
            session,
            "console/site.html",
            site=site,
            experiments=answer.data,
            experiments_total=total,
        )

    return [
        console.route("/console/sites", _site_list),
        console.route("/console/sites", create, methods=("POST",)),
        console.route("/console/sites/new", new_site),
        console.route("/console/sites/{site_id}", show),
    ]
