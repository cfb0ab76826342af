"""The audit trail: who changed what in a workspace, and when.

Every change the control plane makes for a caller (a site registered, an experiment
created, launched, resplit, promoted or deleted, a webhook registered or removed) records
one entry inside the change's own store transaction, so an entry exists if and only if the
change committed. The command line's changes (keys, credit grants) are recorded with no
key. ``GET /v1/audit`` reads the trail (`edge.control.workspace_api`), the store keeps it
(`edge.control.store.audit`).
"""

from __future__ import annotations

from typing import Any

from edge.control.store import Store

__all__ = ["record"]


def record(
    store: Store,
    workspace_id: str,
    key_id: str | None,
    action: str,
    target_type: str,
    target_id: str,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append an entry; call it inside the transaction of the change it describes."""
    store.append_audit_entry(workspace_id, key_id, action, target_type, target_id, detail)
