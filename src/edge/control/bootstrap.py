"""What a fresh store gets on first start: a workspace and its admin API key."""

from __future__ import annotations

from edge.control.keys_api import issue_key
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
        issued = issue_key(store, workspace.id, None, "admin", "splitedge")
        return workspace, issued
