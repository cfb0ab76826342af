"""The webhooks pages: ``/console/webhooks`` lists the workspace's endpoints and registers
one (its signing secret is on the answer page, this once: the API never shows it again);
``/console/webhooks/{id}`` is an endpoint's delivery log with every attempt; deleting one
asks first (``/console/webhooks/{id}/delete``). All of it through ``/v1/webhooks``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from edge.control.console.account import find_listed, paged
from edge.control.console.frame import Console, RestFailure, Session, page, read_form, see_other
from edge.control.store.webhooks import EVENTS
from edge.errors import NotFound

__all__ = ["routes"]


async def _active(session: Session, webhook_id: str) -> dict[str, object]:
    """The workspace's active endpoint ``webhook_id``; the console's 404 otherwise."""
    found = await find_listed(session, "/v1/webhooks", webhook_id)
    if found is None:
        raise NotFound("There is no active webhook endpoint with this id in your workspace.")
    return found


def routes(console: Console) -> list[BaseRoute]:
    """The webhooks area."""

    async def listing(
        request: Request, session: Session, message: str = "", status: int = 200
    ) -> Response:
        hooks, pager = await paged(request, session, "/v1/webhooks")
        return page(
            request, session, "console/webhooks.html", status=status, hooks=hooks,
            pager=pager, narrow={}, events=EVENTS, message=message,
        )  # fmt: skip

    async def index(request: Request, session: Session) -> Response:
        return await listing(request, session)

    async def create(request: Request, session: Session) -> Response:
        form = await read_form(request, session)
        body = {"url": form.get("url", ""), "events": form.getlist("events")}
        try:
            created = await session.api("POST", "/v1/webhooks", body)
        except RestFailure as exc:
            if exc.status != 400:
                raise
            return await listing(request, session, exc.message, 400)
        return page(request, session, "console/webhooks_created.html", status=201, hook=created)

    async def deliveries(request: Request, session: Session) -> Response:
        webhook_id = request.path_params["webhook_id"]
        # The log answers 404 for another workspace's endpoint; a deleted one keeps its log.
        log, pager = await paged(request, session, f"/v1/webhooks/{webhook_id}/deliveries")
        hook = await find_listed(session, "/v1/webhooks", webhook_id)
        return page(
            request, session, "console/webhooks_deliveries.html", webhook_id=webhook_id,
            hook=hook, deliveries=log, pager=pager, narrow={},
        )  # fmt: skip

    async def confirm_delete(request: Request, session: Session) -> Response:
        hook = await _active(session, request.path_params["webhook_id"])
        return page(request, session, "console/webhooks_delete.html", hook=hook)

    async def delete(request: Request, session: Session) -> Response:
        await read_form(request, session)
        webhook_id = request.path_params["webhook_id"]
        await session.api("DELETE", f"/v1/webhooks/{webhook_id}")
        return see_other(request, "/console/webhooks")

    return [
        console.route("/console/webhooks", index),
        console.route("/console/webhooks", create, ["POST"]),
        console.route("/console/webhooks/{webhook_id}", deliveries),
        console.route("/console/webhooks/{webhook_id}/delete", confirm_delete),
        console.route("/console/webhooks/{webhook_id}/delete", delete, ["POST"]),
    ]
