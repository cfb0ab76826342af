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

from edge.control.store import Store
from edge.errors import SplitedgeError

__all__ = [
    "TOOL_COSTS",
    "InsufficientCredits",
    "debit",
    "grant",
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


def debit(store: Store, workspace_id: str, key_id: str, tool: str, extra: int = 0) -> int:
    """Take ``tool``'s cost (plus ``extra``, e.g. the inline generate of a prompt create)
    from the workspace's balance; the balance after. `InsufficientCredits` when it is
    short, and then the balance is unchanged. Call it inside the action's transaction."""
    cost = TOOL_COSTS[tool] + extra
    with store.transaction():
        after = store.take_credits(workspace_id, cost)
        if after is None:
            have = store.credit_balance(workspace_id)
            raise InsufficientCredits(
                f"Insufficient credits: {tool} costs {cost} credits and this workspace has "
                f"{have}; nothing was done. Ask the operator to add credits "
                "(splitedge credits grant --workspace NAME AMOUNT), or move the workspace "
                "to an unmetered plan"
            )
        store.append_ledger_entry(workspace_id, key_id, -cost, after, tool)
    return after


def grant(store: Store, workspace_id: str, amount: int, reason: str = "grant") -> int:
    """Add ``amount`` credits (negative takes them back, never below 0); the balance
    after."""
    with store.transaction():
        after = store.add_credits(workspace_id, amount)
        store.append_ledger_entry(workspace_id, None, amount, after, reason)
    return after
