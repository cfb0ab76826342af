"""What a fresh store gets on first start: a workspace and its admin API key."""

from __future__ import annotations

from edge.control import audit
from edge.control.records import IssuedKey, Workspace
from edge.control.store import Store

__all__ = ["DEFAULT_WORKSPACE", "first_start"]

DEFAULT_WORKSPACE = "default"


def first_start(store: Store) -> tuple[Workspace, IssuedKey | None]:
    """The default workspace, created with an admin key when the store has none.

    The key is returned only on the start that created it; it is never stored and
    cannot be shown again.
    """
    with store.transaction():
        existing = store.workspace_by_name(DEFAULT_WORKSPACE)
        if existing is not None:
            return existing, None
        workspace = store.create_workspace(DEFAULT_WORKSPACE)
        issued = store.issue_api_key(workspace.id, name="admin")
        audit.record(store, workspace.id, None, "key.create", "api_key", issued.record.id)
        return workspace, issued
