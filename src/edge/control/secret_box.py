"""Webhook signing secrets at rest.

An API key only ever needs checking, so the store keeps its digest. A webhook's signing
secret must sign every delivery, so it has to be recoverable: the store keeps it
encrypted (Fernet: AES-128-CBC with HMAC-SHA256, from the ``cryptography`` package) under
a key kept beside the store in ``secrets.key``, a file of the owner's alone (0600, like
the whole data directory). A copy or backup of the SQLite file alone then reveals no
secret, and the key file can be kept out of backups or on other storage.

Stored values are ``fernet:<token>``; a value without that prefix is a secret stored
before this existed, used as it is until `seal_stored_secrets` (run at every server
start) encrypts it.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet

from edge.control.store import Store

__all__ = ["KEY_FILE", "SecretBox", "seal_stored_secrets"]

KEY_FILE = "secrets.key"
_PREFIX = "fernet:"


class SecretBox:
    """Seals and opens the secrets of the store at ``store_path`` with the key file beside
    it, made (0600) on first use."""

    def __init__(self, store_path: Path) -> None:
        self.key_path = Path(store_path).parent / KEY_FILE
        self._fernet: Fernet | None = None

    def _key(self) -> Fernet:
        if self._fernet is None:
            try:
                # O_EXCL: of two processes making it at once, one writes and both read it.
                fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "wb") as out:
                    out.write(Fernet.generate_key())
            key = self.key_path.read_bytes().strip()
            while not key:  # another process created it and is writing it now
                key = self.key_path.read_bytes().strip()
            self._fernet = Fernet(key)
        return self._fernet

    def seal(self, secret: str) -> str:
        """What the store keeps for ``secret``."""
        return _PREFIX + self._key().encrypt(secret.encode("utf-8")).decode("ascii")

    def open(self, stored: str) -> str:
        """The secret a stored value holds."""
        if not stored.startswith(_PREFIX):
            return stored
        return self._key().decrypt(stored[len(_PREFIX) :].encode("ascii")).decode("utf-8")


def seal_stored_secrets(store: Store, box: SecretBox) -> int:
    """Encrypt the webhook secrets still stored in plain text; returns how many."""
    with store.transaction() as conn:
        rows = conn.execute(
            "SELECT id, secret FROM webhooks WHERE secret NOT LIKE ?", (_PREFIX + "%",)
        ).fetchall()
        conn.executemany(
            "UPDATE webhooks SET secret = ? WHERE id = ?",
            [(box.seal(secret), webhook_id) for webhook_id, secret in rows],
        )
    return len(rows)
