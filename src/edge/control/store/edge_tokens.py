"""Edge tokens: the credentials of remote edge nodes, kept as a SHA-256 digest and a
display prefix, never the token."""

from __future__ import annotations

import msgspec

from edge.control.records import utc_now
from edge.control.store.connection import StoreConnection, new_id

__all__ = ["EdgeTokenCredential", "EdgeTokenQueries", "EdgeTokenRecord"]


class EdgeTokenRecord(msgspec.Struct, frozen=True):
    """An edge token as listed (no secret)."""

    id: str
    name: str
    prefix: str
    created_at: str
    revoked_at: str | None


class EdgeTokenCredential(msgspec.Struct, frozen=True):
    """What checking a presented token needs: its digest, and whether it was revoked."""

    id: str
    name: str
    sha256: str
    revoked_at: str | None


class EdgeTokenQueries(StoreConnection):
    """The queries of the ``edge_tokens`` table."""

    def create_edge_token(self, name: str, prefix: str, sha256: str) -> str:
        """Record a token by its prefix and digest; returns its id."""
        token_id = new_id()
        self.conn.execute(
            "INSERT INTO edge_tokens (id, name, prefix, sha256, created_at) VALUES (?, ?, ?, ?, ?)",
            (token_id, name, prefix, sha256, utc_now()),
        )
        return token_id

    def list_edge_tokens(self) -> list[EdgeTokenRecord]:
        """Every edge token, oldest first."""
        rows = self.conn.execute(
            "SELECT id, name, prefix, created_at, revoked_at FROM edge_tokens "
            "ORDER BY created_at, id"
        ).fetchall()
        return [EdgeTokenRecord(*row) for row in rows]

    def revoke_edge_token(self, token_id: str) -> None:
        """Revoke a token; revoking it again keeps the first time."""
        self.conn.execute(
            "UPDATE edge_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?",
            (utc_now(), token_id),
        )

    def edge_tokens_with_prefix(self, prefix: str) -> list[EdgeTokenCredential]:
        """The tokens whose display prefix is ``prefix``, revoked ones too."""
        rows = self.conn.execute(
            "SELECT id, name, sha256, revoked_at FROM edge_tokens WHERE prefix = ?", (prefix,)
        ).fetchall()
        return [EdgeTokenCredential(*row) for row in rows]
