"""The API keys page: ``/console/keys`` lists the workspace's keys (prefix, name, flavour,
created, last used, revoked) and issues one (shown on the answer page, this once);
revoking one asks first (``/console/keys/{id}/revoke``). Revoking the session's own key
ends the session with it: the next page is the sign-in form. All of it through
``/v1/keys`` (`edge.control.keys_api`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from edge.api_keys import FLAVOURS
from edge.control.console.account import find_listed, paged
from edge.control.console.frame import (
    SIGN_IN_PATH,
    Console,
    RestFailure,
    Session,
    page,
    read_form,
    see_other,
)
from edge.errors import NotFound

__all__ = ["routes"]


def routes(console: Console) -> list[BaseRoute]:
    """The keys area."""

    async def listing(
        request: Request, session: Session, message: str = "", status: int = 200
    ) -> Response:
        keys, pager = await paged(request, session, "/v1/keys")
        return page(
            request, session, "console/keys.html", status=status, keys=keys, pager=pager,
            narrow={}, flavours=FLAVOURS, message=message,
        )  # fmt: skip

    async def index(request: Request, session: Session) -> Response:
        return await listing(request, session)

    async def create(request: Request, session: Session) -> Response:
        form = await read_form(request, session)
        body = {"name": form.get("name", ""), "flavour": form.get("flavour", "splitedge")}
        try:
            created = await session.api("POST", "/v1/keys", body)
        except RestFailure as exc:
            if exc.status != 400:
                raise
            return await listing(request, session, exc.message, 400)
        return page(request, session, "console/keys_created.html", status=201, key=created)

    async def confirm_revoke(request: Request, session: Session) -> Response:
        key = await find_listed(session, "/v1/keys", request.path_params["key_id"])
        if key is None:
            raise NotFound("There is no API key with this id in your workspace.")
        return page(request, session, "console/keys_revoke.html", key=key)

    async def revoke(request: Request, session: Session) -> Response:
        await read_form(request, session)
        revoked = await session.api("DELETE", f"/v1/keys/{request.path_params['key_id']}")
        # The session's own key: the session ended with it.
        return see_other(request, SIGN_IN_PATH if revoked["current"] else "/console/keys")

    return [
        console.route("/console/keys", index),
        console.route("/console/keys", create, ["POST"]),
        console.route("/console/keys/{key_id}/revoke", confirm_revoke),
        console.route("/console/keys/{key_id}/revoke", revoke, ["POST"]),
    ]
