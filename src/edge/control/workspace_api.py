"""What a workspace can read about itself: its credits and its audit trail.

``GET /v1/credits``: the plan, whether it is metered, the balance and the price of each
tool. ``GET /v1/credits/ledger``: every debit and grant, newest first. ``GET /v1/audit``:
who changed what and when, newest first, filtered by ``target_id`` or ``action``. All three
are free: reading what was charged must not cost anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import msgspec
from starlette.routing import Route
from starlette.types import Receive, Scope

from edge.control import credits
from edge.control.api import (
    ApiOperation,
    Meta,
    Page,
    Reply,
    api_route,
    authenticate,
    in_store,
    ok,
    page_params,
    query_params,
)
from edge.control.services import Services
from edge.control.store import Store
from edge.control.store.audit import AuditEntry
from edge.control.store.credits import LedgerEntry

__all__ = ["AuditFilter", "CreditsOut", "WorkspaceApi", "routes"]


class CreditsOut(msgspec.Struct, frozen=True):
    """The workspace's credits: its ``plan``, whether calls cost credits on it
    (``metered``), its ``balance``, and what each tool costs (``costs``)."""

    plan: str
    metered: bool
    balance: int
    costs: Mapping[str, int]


class AuditFilter(Page, frozen=True):
    """The query of ``GET /v1/audit``: a page, of one target's changes, of one action."""

    target_id: (
        Annotated[str, msgspec.Meta(description="Only the changes of this site, experiment...")]
        | None
    ) = None
    action: (
        Annotated[str, msgspec.Meta(description="Only this action, e.g. experiment.launch.")] | None
    ) = None


class WorkspaceApi:
    """The handlers of ``/v1/credits`` and ``/v1/audit``."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def credits(self, scope: Scope, receive: Receive) -> Reply:
        """``GET /v1/credits``."""
        auth = await authenticate(self.services, scope)

        def read(store: Store) -> CreditsOut:
            plan = store.get_workspace(auth.workspace_id).plan
            balance = store.credit_balance(auth.workspace_id)
            return CreditsOut(plan, auth.metered, balance, credits.TOOL_COSTS)

        return ok(await in_store(self.services, read), Meta(auth.workspace_id))

    async def ledger(self, scope: Scope, receive: Receive) -> Reply:
        """``GET /v1/credits/ledger``: a page of debits and grants, newest first."""
        auth = await authenticate(self.services, scope)
        page = page_params(scope)
        items, total = await in_store(
            self.services,
            lambda store: store.credit_ledger(auth.workspace_id, page.limit, page.offset),
        )
        return ok(items, Meta(auth.workspace_id, page.limit, page.offset, total))

    async def audit(self, scope: Scope, receive: Receive) -> Reply:
        """``GET /v1/audit``: a page of the trail, newest first; ``target_id`` and
        ``action`` (e.g. ``experiment.launch``) narrow it."""
        auth = await authenticate(self.services, scope)
        page = page_params(scope)
        params = query_params(scope)
        items, total = await in_store(
            self.services,
            lambda store: store.audit_entries(
                auth.workspace_id,
                page.limit,
                page.offset,
                target_id=params.get("target_id") or None,
                action=params.get("action") or None,
            ),
        )
        return ok(items, Meta(auth.workspace_id, page.limit, page.offset, total))


def routes(services: Services) -> list[Route]:
    """The routes of ``/v1/credits`` and ``/v1/audit``."""
    api = WorkspaceApi(services)
    credits_ = ApiOperation(
        handler=api.credits,
        summary="The workspace's plan, credit balance and the price of each tool",
        data=CreditsOut,
    )
    ledger = ApiOperation(
        handler=api.ledger,
        summary="The workspace's credit debits and grants, newest first",
        data=list[LedgerEntry],
        query=Page,
    )
    trail = ApiOperation(
        handler=api.audit,
        summary="Who changed what and when, newest first",
        data=list[AuditEntry],
        query=AuditFilter,
    )
    return [
        api_route("/v1/credits", {"GET": credits_}),
        api_route("/v1/credits/ledger", {"GET": ledger}),
        api_route("/v1/audit", {"GET": trail}),
    ]
