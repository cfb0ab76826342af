"""Workspaces: the tenants, each with its plan."""

from __future__ import annotations

import sqlite3

from edge.control.records import Workspace, utc_now
from edge.control.store.connection import StoreConnection, new_id
from edge.errors import Conflict, NotFound

__all__ = ["WorkspaceQueries"]


class WorkspaceQueries(StoreConnection):
    """The queries of the ``workspaces`` table."""

    def create_workspace(self, name: str, plan: str = "enterprise") -> Workspace:
        """Create a workspace; its name is unique."""
        ws = Workspace(id=new_id(), name=name, plan=plan, created_at=utc_now())
        try:
            self.conn.execute(
                "INSERT INTO workspaces (id, name, plan, created_at) VALUES (?, ?, ?, ?)",
                (ws.id, ws.name, ws.plan, ws.created_at),
            )
        except sqlite3.IntegrityError:
            raise Conflict(f"a workspace named {name!r} already exists") from None
        return ws

    def set_workspace_plan(self, workspace_id: str, plan: str) -> None:
        """Move a workspace to another plan (its limits follow on the next request)."""
        self.conn.execute("UPDATE workspaces SET plan = ? WHERE id = ?", (plan, workspace_id))

    def workspace_by_name(self, name: str) -> Workspace | None:
        """The workspace of that name, if any."""
        row = self.conn.execute(
            "SELECT id, name, plan, created_at FROM workspaces WHERE name = ?", (name,)
        ).fetchone()
        return None if row is None else Workspace(*row)

    def get_workspace(self, workspace_id: str) -> Workspace:
        """One workspace by id."""
        row = self.conn.execute(
            "SELECT id, name, plan, created_at FROM workspaces WHERE id = ?", (workspace_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"no workspace with id {workspace_id!r}")
        return Workspace(*row)
