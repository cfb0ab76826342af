"""The ideas pages: ``/console/ideas`` lists the workspace's A/B test ideas with their
status (narrowed by status), ``/console/ideas/{id}`` shows one with the changes it
proposes; each can be approved or rejected (``POST /console/ideas/{id}/status``), which
``PATCH /v1/ideas/{id}`` records, audits and announces (``idea.status_changed``). A
status change is not destructive (a rejected idea can be approved later), so it asks no
confirmation.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from edge.control.console.account import paged
from edge.control.console.frame import Console, Session, page, read_form, see_other
from edge.control.idea_records import IDEA_STATUSES
from edge.errors import InvalidRequest

__all__ = ["routes"]

# The reviews a person makes here; the API takes every status.
_REVIEWS = ("approved", "rejected")


def routes(console: Console) -> list[BaseRoute]:
    """The ideas area."""

    async def index(request: Request, session: Session) -> Response:
        status = request.query_params.get("status", "")
        narrow = {"status": status} if status else {}
        ideas, pager = await paged(request, session, "/v1/ideas", narrow)
        return page(
            request, session, "console/ideas.html", ideas=ideas, pager=pager, narrow=narrow,
            statuses=IDEA_STATUSES,
        )  # fmt: skip

    async def detail(request: Request, session: Session) -> Response:
        idea = await session.api("GET", f"/v1/ideas/{request.path_params['idea_id']}")
        return page(request, session, "console/ideas_detail.html", idea=idea)

    async def review(request: Request, session: Session) -> Response:
        form = await read_form(request, session)
        status = form.get("status", "")
        if status not in _REVIEWS:
            raise InvalidRequest(f"an idea is approved or rejected here, not {status[:50]!r}")
        idea_id = request.path_params["idea_id"]
        idea = await session.api("PATCH", f"/v1/ideas/{idea_id}", {"status": status})
        back = form.get("back", "")
        # Back to the list the form was on, or to the idea; never to another origin.
        return see_other(
            request, "/console/ideas" if back == "list" else f"/console/ideas/{idea['id']}"
        )

    return [
        console.route("/console/ideas", index),
        console.route("/console/ideas/{idea_id}", detail),
        console.route("/console/ideas/{idea_id}/status", review, ["POST"]),
    ]
