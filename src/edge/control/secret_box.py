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
import tempfile
from pathlib import Path

import msgspec
from cryptography.fernet import Fernet, InvalidToken

from edge.control.store import Store
from edge.errors import SplitedgeError

__all__ = ["KEY_FILE", "SecretBox", "SecretUnreadable", "seal_stored_secrets"]

KEY_FILE = "secrets.key"
_PREFIX = "fernet:"


class SecretUnreadable(SplitedgeError):
    """A stored secret that the key file cannot decrypt (the store was restored or copied
    without its own key file, or the key file was replaced), or a key file that holds no
    key."""

    code = "secret_unreadable"
    status = 500


class SecretBox:
    """Seals and opens the secrets of the store at ``store_path`` with the key file beside
    it, made (0600) on first use."""

    def __init__(self, store_path: Path) -> None:
        self.key_path = Path(store_path).parent / KEY_FILE
        self._fernet: Fernet | None = None

    def _key(self) -> Fernet:
        if self._fernet is None:
            if not self.key_path.exists():
                self._make_key()
            try:
                self._fernet = Fernet(self.key_path.read_bytes().strip())
            except ValueError:
                raise SecretUnreadable(
                    f"{KEY_FILE} in the data directory holds no valid key: restore it from "
                    "the backup of this store"
                ) from None
        return self._fernet

    def _make_key(self) -> None:
        # Written whole under another name, then linked into place: a reader never sees a
        # partly written key, and of two processes making one at once, the first to link
        # wins and both use its key.
        fd, name = tempfile.mkstemp(prefix=f".{KEY_FILE}.", dir=self.key_path.parent)
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(Fernet.generate_key())
                out.flush()
                os.fsync(out.fileno())
            os.link(tmp, self.key_path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)

    def seal(self, secret: str) -> str:
        """What the store keeps for ``secret``."""
        return _PREFIX + self._key().encrypt(secret.encode("utf-8")).decode("ascii")

    def open(self, stored: str) -> str:
        """The secret a stored value holds; `SecretUnreadable` if this key cannot open it."""
        if not stored.startswith(_PREFIX):
            return stored
        try:
            secret = self._key().decrypt(stored[len(_PREFIX) :].encode("ascii"))
        except InvalidToken:
            raise SecretUnreadable(
                f"a secret in the store cannot be decrypted with the {KEY_FILE} in the data "
                "directory: restore the key file that belongs with this store"
            ) from None
        return secret.decode("utf-8")


def seal_stored_secrets(store: Store, box: SecretBox) -> int:
    """Encrypt the webhook secrets still stored in plain text; returns how many."""
    with store.transaction():
        plain = store.unsealed_webhook_secrets(_PREFIX)
        store.set_webhook_secrets(
            [msgspec.structs.replace(s, secret=box.seal(s.secret)) for s in plain]
        )
    return len(plain)
