"""``GET /``: the console's home. Signed in, the workspace's sites (as ``GET /v1/sites``
answers them); signed out, the sign-in form."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from edge.control.console.frame import Console, Session, page
from edge.control.console.sign_in import sign_in_page

__all__ = ["routes"]


def routes(console: Console) -> list[BaseRoute]:
    """The home page at ``/``."""

    async def home(request: Request, session: Session) -> Response:
        answer = await session.api.answer("GET", "/v1/sites", query={"limit": 100})
        total = answer.meta.get("total") if isinstance(answer.meta, dict) else None
        return page(request, session, "console/home.html", sites=answer.data, total=total)

    async def signed_out(request: Request) -> Response:
        return sign_in_page(request)

    return [console.route("/", home, signed_out=signed_out)]
