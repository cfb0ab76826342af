"""API keys: stored as a SHA-256 digest and a display prefix, never the secret."""

from __future__ import annotations

from edge.api_keys import Flavour, key_digest, key_prefix, new_api_key
from edge.config import ApiKeyEntry
from edge.control.records import (
    ApiKeyCredential,
    ApiKeyInfo,
    ApiKeyRecord,
    IssuedKey,
    utc_now,
)
from edge.control.store.connection import StoreConnection, new_id
from edge.errors import NotFound

__all__ = ["ApiKeyQueries"]

_API_KEY_INFO_COLUMNS = (
    "k.id, k.workspace_id, k.name, k.prefix, k.created_at, w.name, k.last_used_at, k.revoked_at"
)


class ApiKeyQueries(StoreConnection):
    """The queries of the ``api_keys`` table."""

    def issue_api_key(
        self, workspace_id: str, name: str = "default", flavour: Flavour = "splitedge"
    ) -> IssuedKey:
        """Issue a key of ``flavour`` for a workspace and return the secret, which is not
        stored (its scheme, part of the stored prefix, is the flavour)."""
        key = new_api_key(flavour)
        record = ApiKeyRecord(
            id=new_id(),
            workspace_id=workspace_id,
            name=name,
            prefix=key_prefix(key),
            created_at=utc_now(),
        )
        self.conn.execute(
            "INSERT INTO api_keys (id, workspace_id, name, prefix, sha256, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (record.id, workspace_id, name, record.prefix, key_digest(key), record.created_at),
        )
        return IssuedKey(record=record, key=key)

    def revoke_api_key(self, key_id: str) -> None:
        """Revoke a key; the edge stops accepting it at the next config version."""
        cur = self.conn.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (utc_now(), key_id),
        )
        if cur.rowcount == 0:
            raise NotFound(f"no active API key with id {key_id!r}")

    def api_keys_with_prefix(self, prefix: str) -> list[ApiKeyCredential]:
        """The keys whose display prefix is ``prefix`` (almost always one), revoked
        ones too, so the caller can tell a revoked key from an unknown one."""
        return [
            ApiKeyCredential(*row)
            for row in self.conn.execute(
                "SELECT id, workspace_id, sha256, last_used_at, revoked_at FROM api_keys "
                "WHERE prefix = ?",
                (prefix,),
            )
        ]

    def active_api_keys(self) -> list[ApiKeyEntry]:
        """Every workspace's keys that are not revoked, as the edge checks them."""
        return [
            ApiKeyEntry(*row)
            for row in self.conn.execute(
                "SELECT prefix, sha256, workspace_id FROM api_keys WHERE revoked_at IS NULL"
            )
        ]

    def touch_api_key(self, key_id: str, at: str) -> None:
        """Record that a key was used at ``at``; it does not bump the config version."""
        self.conn.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (at, key_id))

    def list_api_keys(self, workspace_id: str | None = None) -> list[ApiKeyInfo]:
        """Keys (of one workspace, or all), oldest first; never their secrets."""
        return [
            ApiKeyInfo(*row)
            for row in self.conn.execute(
                f"SELECT {_API_KEY_INFO_COLUMNS} FROM api_keys k "
                "JOIN workspaces w ON w.id = k.workspace_id "
                "WHERE ? IS NULL OR k.workspace_id = ? ORDER BY k.created_at, k.rowid",
                (workspace_id, workspace_id),
            )
        ]

    def find_api_keys(self, id_or_prefix: str) -> list[ApiKeyInfo]:
        """The keys whose id or display prefix is ``id_or_prefix``."""
        return [
            ApiKeyInfo(*row)
            for row in self.conn.execute(
                f"SELECT {_API_KEY_INFO_COLUMNS} FROM api_keys k "
                "JOIN workspaces w ON w.id = k.workspace_id "
                "WHERE k.id = ? OR k.prefix = ? ORDER BY k.created_at, k.rowid",
                (id_or_prefix, id_or_prefix),
            )
        ]
