"""Running an `edge.authoring.author.Author` for a route that pays for it afterwards.

An author fetches a page: seconds of blocking work that must neither hold the store's
write lock nor run on the event loop. So the routes that author (``POST
/v1/variants/generate``, the prompt path of ``POST /v1/experiments``, ``GET
/v1/sites/{site_id}/intelligence``) find the site and check the balance first, run the
author on a thread outside any transaction, and only then debit, in the transaction of
whatever the result is stored with. A short balance is a 402 before anything is fetched;
a failed author (e.g. `edge.authoring.fetch.PageUnavailable`) costs nothing; a balance
spent by a concurrent call in the meantime is a 402 after authoring, and then nothing is
charged or stored either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from edge.authoring.fetch import PageUnavailable
from edge.control import credits
from edge.control.api import Auth, in_store
from edge.control.fetch_pool import record_failure, shared_pool
from edge.control.records import SiteRecord
from edge.control.services import Services
from edge.control.sites_api import require_site
from edge.control.store import Store

__all__ = ["authored_for_site", "require_credits"]

T = TypeVar("T")


def require_credits(store: Store, auth: Auth, tool: str, extra: int = 0) -> None:
    """A 402 now when the caller's metered balance cannot pay ``tool`` (plus ``extra``)
    later; takes nothing."""
    if not auth.metered:
        return
    # Under the write lock, so the balance read is the one a debit would see: a debit
    # that cannot be paid raises the standard 402 and takes nothing.
    with store.transaction():
        if store.credit_balance(auth.workspace_id) < credits.TOOL_COSTS[tool] + extra:
            credits.debit(store, auth.workspace_id, auth.key_id, tool, extra)


async def authored_for_site(
    services: Services,
    auth: Auth,
    site_id: str,
    tool: str,
    work: Callable[[SiteRecord], T],
    extra: int = 0,
) -> tuple[SiteRecord, T]:
    """The workspace's site (404 otherwise) and what ``work`` (the author's call) makes
    of it on a thread, once the balance was seen to cover ``tool`` plus ``extra`` (402
    otherwise). The caller debits when it stores the result. The work runs on the
    worker's `edge.control.fetch_pool` (429 when the workspace has too many running); a
    page that cannot be fetched counts against the caller's rate limit instead of costing
    credits."""

    def find(store: Store) -> SiteRecord:
        site = require_site(store, auth.workspace_id, site_id)
        require_credits(store, auth, tool, extra)
        return site

    site = await in_store(services, find)
    try:
        return site, await shared_pool().run(auth.workspace_id, lambda: work(site))
    except PageUnavailable:
        await in_store(services, lambda store: record_failure(store, auth.key_id))
        raise
