"""Credits: each workspace's balance (a column of ``workspaces``) and its ledger."""

from __future__ import annotations

import msgspec

from edge.control.records import utc_now
from edge.control.store.connection import StoreConnection
from edge.errors import NotFound

__all__ = ["CreditQueries", "LedgerEntry"]


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


def _no_workspace(workspace_id: str) -> NotFound:
    return NotFound(f"no workspace {workspace_id!r}")


class CreditQueries(StoreConnection):
    """The queries of the workspaces' credits and the ``credit_ledger`` table."""

    def take_credits(self, workspace_id: str, amount: int) -> int | None:
        """Take ``amount`` from the balance in one statement, only if it covers it; the
        balance after, or None when it is short (and then unchanged)."""
        row = self.conn.execute(
            "UPDATE workspaces SET credits = credits - ? WHERE id = ? AND credits >= ? "
            "RETURNING credits",
            (amount, workspace_id, amount),
        ).fetchone()
        return None if row is None else int(row[0])

    def add_credits(self, workspace_id: str, amount: int) -> int:
        """Add ``amount`` (negative takes it back, never below 0); the balance after."""
        row = self.conn.execute(
            "UPDATE workspaces SET credits = MAX(0, credits + ?) WHERE id = ? RETURNING credits",
            (amount, workspace_id),
        ).fetchone()
        if row is None:
            raise _no_workspace(workspace_id)
        return int(row[0])

    def credit_balance(self, workspace_id: str) -> int:
        """The workspace's credits now."""
        row = self.conn.execute(
            "SELECT credits FROM workspaces WHERE id = ?", (workspace_id,)
        ).fetchone()
        if row is None:
            raise _no_workspace(workspace_id)
        return int(row[0])

    def append_ledger_entry(
        self, workspace_id: str, key_id: str | None, delta: int, balance: int, reason: str
    ) -> None:
        """Append a ledger row stamped now."""
        self.conn.execute(
            "INSERT INTO credit_ledger (workspace_id, key_id, delta, balance, reason, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (workspace_id, key_id, delta, balance, reason, utc_now()),
        )

    def credit_ledger(
        self, workspace_id: str, limit: int, offset: int
    ) -> tuple[list[LedgerEntry], int]:
        """A page of the workspace's ledger, newest first, and how many entries it has."""
        rows = self.conn.execute(
            "SELECT id, delta, balance, reason, key_id, created_at FROM credit_ledger "
            "WHERE workspace_id = ? ORDER BY id DESC LIMIT ? OFFSET ?",
            (workspace_id, limit, offset),
        ).fetchall()
        (total,) = self.conn.execute(
            "SELECT count(*) FROM credit_ledger WHERE workspace_id = ?", (workspace_id,)
        ).fetchone()
        return [LedgerEntry(*row) for row in rows], int(total)
