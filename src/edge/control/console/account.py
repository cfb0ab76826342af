"""The workspace's account pages: its credits (``/console/credits``: the balance and the
ledger, when its plan is metered; otherwise a page saying calls cost nothing) and its audit
trail (``/console/audit``, paged, narrowed by action or target).

`paged`, `all_listed` and `find_listed` are the paging the admin areas share (webhooks,
keys, loops, ideas): a page of a ``/v1`` list by the request's ``offset``, a whole short
list, and one item of a list by id. The trail and the ledger name keys by prefix and name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from edge.control.api import MAX_LIMIT
from edge.control.console.frame import Console, Session, page

__all__ = ["Pager", "all_listed", "find_listed", "paged", "routes"]

PAGE_SIZE = 50
"""How many rows a console list shows at once."""


class Pager(msgspec.Struct, frozen=True):
    """Where a page of a list is: its ``offset``, how many rows there are in all, and the
    offsets of the pages before and after it (None: there is none)."""

    offset: int
    total: int
    shown: int
    previous: int | None
    next: int | None


async def paged(
    request: Request, session: Session, path: str, query: Mapping[str, str] | None = None
) -> tuple[list[Any], Pager]:
    """The page of the list at ``path`` (a ``/v1`` route) that the request's ``offset``
    asks for, ``query`` narrowing it, and where that page is. A wrong offset is the API's
    400."""
    offset = request.query_params.get("offset", "0")
    answer = await session.api.answer(
        "GET", path, query={**(query or {}), "limit": str(PAGE_SIZE), "offset": offset}
    )
    meta = answer.meta if isinstance(answer.meta, dict) else {}
    start = int(meta.get("offset", 0))
    total = int(meta.get("total", len(answer.data)))
    after = start + PAGE_SIZE
    return answer.data, Pager(
        start,
        total,
        len(answer.data),
        max(start - PAGE_SIZE, 0) if start > 0 else None,
        after if after < total else None,
    )


async def all_listed(session: Session, path: str) -> list[dict[str, Any]]:
    """Every item of the list at ``path`` (a short one: webhooks, keys), page after page."""
    items: list[dict[str, Any]] = []
    while True:
        answer = await session.api.answer(
            "GET", path, query={"limit": str(MAX_LIMIT), "offset": str(len(items))}
        )
        items += answer.data
        total = answer.meta.get("total", 0) if isinstance(answer.meta, dict) else 0
        if not answer.data or len(items) >= total:
            return items


async def find_listed(session: Session, path: str, item_id: str) -> dict[str, Any] | None:
    """The item of the list at ``path`` whose ``id`` is ``item_id`` (None: not there), for
    the lists that have no route of one item."""
    return next((item for item in await all_listed(session, path) if item["id"] == item_id), None)


async def _key_labels(session: Session) -> dict[str, str]:
    # A key id means nothing to a person; its prefix and name do.
    return {k["id"]: f"{k['prefix']}… ({k['name']})" for k in await all_listed(session, "/v1/keys")}


def routes(console: Console) -> list[BaseRoute]:
    """``/console/credits`` and ``/console/audit``."""

    async def credits(request: Request, session: Session) -> Response:
        account = await session.api("GET", "/v1/credits")
        ledger: list[Any] = []
        pager = None
        if account["metered"]:
            ledger, pager = await paged(request, session, "/v1/credits/ledger")
        return page(
            request,
            session,
            "console/credits.html",
            account=account,
            ledger=ledger,
            pager=pager,
            narrow={},
        )

    async def audit(request: Request, session: Session) -> Response:
        narrow = {
            name: value.strip()
            for name in ("action", "target_id")
            if (value := request.query_params.get(name, "")).strip()
        }
        entries, pager = await paged(request, session, "/v1/audit", narrow)
        return page(
            request, session, "console/audit.html", entries=entries, pager=pager,
            narrow=narrow, keys=await _key_labels(session),
        )  # fmt: skip

    return [
        console.route("/console/credits", credits),
        console.route("/console/audit", audit),
    ]
