"""Credits: the optional per-call ledger of the reference's tools.

The reference charges each tool a number of credits (`TOOL_COSTS`), "deducted atomically
before execution"; an insufficient balance is a 402. Here a debit is one statement inside
the same store transaction as the action it pays for (`edge.control.api.in_transaction`):
if the action fails, the debit rolls back with it, and if the balance is short, the action
never runs. Every debit and grant appends a ledger row with the balance after it.

Metering is a property of a plan (`edge.control.plans.Plan.metered`). A self-hosted install
meters nothing by default (``--limits off``); with the reference's plans, Free, Starter,
Pro and Team are metered and Enterprise is unmetered, as the reference says. Credits are
granted by the operator: ``splitedge credits grant --workspace NAME AMOUNT``.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from edge.control.records import utc_now
from edge.control.store import Store
from edge.errors import NotFound, SplitedgeError

__all__ = [
    "TOOL_COSTS",
    "InsufficientCredits",
    "LedgerEntry",
    "balance",
    "debit",
    "grant",
    "ledger",
]

TOOL_COSTS: Mapping[str, int] = {
    "create_site": 5,
    "list_sites": 1,
    "get_site_intelligence": 2,
    "list_ideas": 1,
    "generate_ideas": 10,
    "generate_variant": 10,
    "list_experiments": 1,
    "get_experiment": 2,
    "create_experiment": 5,
    "launch_experiment": 2,
    "create_loop": 15,
    "get_loop_status": 2,
    "pause_loop": 2,
    "resume_loop": 2,
}
"""The credits each of the reference's tools costs; a REST route costs what its tool does
(``POST /v1/sites`` is create_site). Routes without a tool are free."""


class InsufficientCredits(SplitedgeError):
    """The workspace's balance does not cover the call; nothing was done."""

    code = "insufficient_credits"
    status = 402


class LedgerEntry(msgspec.Struct, frozen=True):
    """One change of a workspace's balance: ``delta`` (negative for a debit), the
    ``balance`` after it, what it was for (a tool name, or ``grant``) and by which key
    (None: the command line)."""

    id: int
    delta: int
    balance: int
    reason: str
    key_id: str | None
    created_at: str


def _append(
    store: Store, workspace_id: str, key_id: str | None, delta: int, balance: int, reason: str
) -> None:
    store.conn.execute(
        "INSERT INTO credit_ledger (workspace_id, key_id, delta, balance, reason, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (workspace_id, key_id, delta, balance, reason, utc_now()),
    )


def debit(store: Store, workspace_id: str, key_id: str, tool: str, extra: int = 0) -> int:
    """Take ``tool``'s cost (plus ``extra``, e.g. the inline generate of a prompt create)
    from the workspace's balance; the balance after. `InsufficientCredits` when it is
    short, and then the balance is unchanged. Call it inside the action's transaction."""
    cost = TOOL_COSTS[tool] + extra
    with store.transaction():
        row = store.conn.execute(
            "UPDATE workspaces SET credits = credits - ? WHERE id = ? AND credits >= ? "
            "RETURNING credits",
            (cost, workspace_id, cost),
        ).fetchone()
        if row is None:
            have = balance(store, workspace_id)
            raise InsufficientCredits(
                f"Insufficient credits: {tool} costs {cost} credits and this workspace has "
                f"{have}; nothing was done. Ask the operator to add credits "
                "(splitedge credits grant --workspace NAME AMOUNT), or move the workspace "
                "to an unmetered plan"
            )
        (after,) = row
        _append(store, workspace_id, key_id, -cost, after, tool)
    return int(after)


def grant(store: Store, workspace_id: str, amount: int, reason: str = "grant") -> int:
    """Add ``amount`` credits (negative takes them back, never below 0); the balance
    after."""
    with store.transaction():
        row = store.conn.execute(
            "UPDATE workspaces SET credits = MAX(0, credits + ?) WHERE id = ? RETURNING credits",
            (amount, workspace_id),
        ).fetchone()
        if row is None:
            raise NotFound(f"no workspace {workspace_id!r}")
        (after,) = row
        _append(store, workspace_id, None, amount, after, reason)
    return int(after)


def balance(store: Store, workspace_id: str) -> int:
    """The workspace's credits now."""
    row = store.conn.execute(
        "SELECT credits FROM workspaces WHERE id = ?", (workspace_id,)
    ).fetchone()
    if row is None:
        raise NotFound(f"no workspace {workspace_id!r}")
    return int(row[0])


def ledger(
    store: Store, workspace_id: str, limit: int, offset: int
) -> tuple[list[LedgerEntry], int]:
    """A page of the workspace's ledger, newest first, and how many entries it has."""
    rows = store.conn.execute(
        "SELECT id, delta, balance, reason, key_id, created_at FROM credit_ledger "
        "WHERE workspace_id = ? ORDER BY id DESC LIMIT ? OFFSET ?",
        (workspace_id, limit, offset),
    ).fetchall()
    (total,) = store.conn.execute(
        "SELECT count(*) FROM credit_ledger WHERE workspace_id = ?", (workspace_id,)
    ).fetchone()
    return [LedgerEntry(*row) for row in rows], int(total)
