"""The audit trail: one row per change a caller made in a workspace."""

from __future__ import annotations

from typing import Any

import msgspec

from edge.control.records import utc_now
from edge.control.store.connection import StoreConnection

__all__ = ["AuditEntry", "AuditQueries"]


class AuditEntry(msgspec.Struct, frozen=True):
    """One change: ``action`` (e.g. ``experiment.launch``) on ``target_type``/``target_id``
    by the API key ``key_id`` (None: the command line) at ``created_at``; ``detail`` holds
    what the action needs to be understood later (e.g. the new traffic split)."""

    id: int
    action: str
    target_type: str
    target_id: str
    key_id: str | None
    detail: dict[str, Any] | None
    created_at: str


_detail_decoder = msgspec.json.Decoder(dict[str, Any])


class AuditQueries(StoreConnection):
    """The queries of the ``audit_log`` table."""

    def append_audit_entry(
        self,
        workspace_id: str,
        key_id: str | None,
        action: str,
        target_type: str,
        target_id: str,
        detail: dict[str, Any] | None,
    ) -> None:
        """Append an entry stamped now."""
        self.conn.execute(
            "INSERT INTO audit_log (workspace_id, key_id, action, target_type, target_id, "
            "detail, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                workspace_id,
                key_id,
                action,
                target_type,
                target_id,
                None if detail is None else msgspec.json.encode(detail).decode(),
                utc_now(),
            ),
        )

    def audit_entries(
        self,
        workspace_id: str,
        limit: int,
        offset: int,
        target_id: str | None = None,
        action: str | None = None,
    ) -> tuple[list[AuditEntry], int]:
        """A page of the workspace's trail, newest first, optionally of one target or one
        action, and how many entries match."""
        where = "workspace_id = ? AND (? IS NULL OR target_id = ?) AND (? IS NULL OR action = ?)"
        args = (workspace_id, target_id, target_id, action, action)
        rows = self.conn.execute(
            "SELECT id, action, target_type, target_id, key_id, detail, created_at "
            f"FROM audit_log WHERE {where} ORDER BY id DESC LIMIT ? OFFSET ?",
            (*args, limit, offset),
        ).fetchall()
        (total,) = self.conn.execute(
            f"SELECT count(*) FROM audit_log WHERE {where}", args
        ).fetchone()
        return [
            AuditEntry(
                id, act, ttype, tid, key,
                None if detail is None else _detail_decoder.decode(detail), at,
            )
            for id, act, ttype, tid, key, detail, at in rows
        ], int(total)  # fmt: skip
