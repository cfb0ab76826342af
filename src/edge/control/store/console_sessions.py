"""Console sessions: the SHA-256 of each session's token, never the token, with its
workspace, the API key it was exchanged for and its expiry (`edge.control.console`)."""

from __future__ import annotations

import msgspec

from edge.control.records import utc_now
from edge.control.store.connection import StoreConnection, new_id

__all__ = ["ConsoleSessionQueries", "ConsoleSessionRow"]


class ConsoleSessionRow(msgspec.Struct, frozen=True):
    """A live session: its id, its workspace (id, name, plan), the key it was exchanged
    for and when it expires (Unix seconds)."""

    id: str
    workspace_id: str
    workspace_name: str
    plan: str
    key_id: str
    expires_at: int


class ConsoleSessionQueries(StoreConnection):
    """The queries of the ``console_sessions`` table."""

    def create_console_session(
        self, token_sha256: str, workspace_id: str, key_id: str, now: int, expires_at: int
    ) -> str:
        """Record a new session and return its id; expired sessions are deleted on the
        way, so the table holds only live ones (and those signed out of by no one)."""
        session_id = new_id()
        with self.transaction():
            self.conn.execute("DELETE FROM console_sessions WHERE expires_at <= ?", (now,))
            self.conn.execute(
                "INSERT INTO console_sessions "
                "(id, token_sha256, workspace_id, key_id, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (session_id, token_sha256, workspace_id, key_id, utc_now(), expires_at),
            )
        return session_id

    def live_console_session(self, token_sha256: str, now: int) -> ConsoleSessionRow | None:
        """The session of a token digest if it has not expired and its key is still
        active; None otherwise. One indexed read."""
        row = self.conn.execute(
            "SELECT s.id, s.workspace_id, w.name, w.plan, s.key_id, s.expires_at "
            "FROM console_sessions s "
            "JOIN api_keys k ON k.id = s.key_id AND k.revoked_at IS NULL "
            "JOIN workspaces w ON w.id = s.workspace_id "
            "WHERE s.token_sha256 = ? AND s.expires_at > ?",
            (token_sha256, now),
        ).fetchone()
        return None if row is None else ConsoleSessionRow(*row)

    def delete_console_session(self, token_sha256: str) -> None:
        """End a session (sign-out); nothing happens for an unknown digest."""
        self.conn.execute("DELETE FROM console_sessions WHERE token_sha256 = ?", (token_sha256,))
