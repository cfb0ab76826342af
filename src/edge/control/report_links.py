"""Signed links to an experiment's results page (`edge.control.report_page`).

A browser cannot send an API key, so the page is reached by a signed link that
``GET /v1/experiments/{id}/results`` hands out as ``report_url``:
``/reports/{experiment_id}?expires=UNIX&sig=HEX``, where ``sig`` is HMAC-SHA256 of the
experiment id and the expiry under a secret of this server (kept in the store's ``meta``
table, made on first use). Anyone holding a valid link can read that one report until it
expires (`REPORT_LINK_SECONDS`); a wrong, altered or expired link is a 404 page.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from pathlib import Path

from edge.control.store import Store

__all__ = ["REPORT_LINK_SECONDS", "REPORT_SECRET_META_KEY", "ReportLinks", "server_secret"]

REPORT_SECRET_META_KEY = "report_link_secret"
REPORT_LINK_SECONDS = 7 * 24 * 3600


def server_secret(store_path: Path, meta_key: str) -> bytes:
    """A 32-byte secret of this server kept in the store's ``meta`` table under
    ``meta_key``, made on first use. One transaction: two workers starting at once agree
    on one secret."""
    store = Store(store_path)
    try:
        with store.transaction():
            secret = store.get_meta(meta_key)
            if secret is None:
                secret = secrets.token_hex(32)
                store.set_meta(meta_key, secret)
    finally:
        store.close()
    return bytes.fromhex(secret)


class ReportLinks:
    """Signs and checks report links with the server's secret (read once per process)."""

    def __init__(self, store_path: Path) -> None:
        self.store_path = store_path
        self._secret: bytes | None = None

    def _key(self) -> bytes:
        if self._secret is None:
            self._secret = server_secret(self.store_path, REPORT_SECRET_META_KEY)
        return self._secret

    def signature(self, experiment_id: str, expires: int) -> str:
        """HMAC-SHA256 (hex) of the experiment id and the expiry (Unix seconds)."""
        message = f"{experiment_id}\n{expires}".encode()
        return hmac.new(self._key(), message, hashlib.sha256).hexdigest()

    def path(self, experiment_id: str, now: float | None = None) -> str:
        """The signed path of an experiment's report, valid for `REPORT_LINK_SECONDS`."""
        expires = int(time.time() if now is None else now) + REPORT_LINK_SECONDS
        sig = self.signature(experiment_id, expires)
        return f"/reports/{experiment_id}?expires={expires}&sig={sig}"

    def valid(self, experiment_id: str, expires: str, sig: str, now: float | None = None) -> bool:
        """Whether a link's expiry and signature are this server's and still good."""
        if not expires.isdigit() or len(expires) > 12:
            return False
        if int(expires) < (time.time() if now is None else now):
            return False
        return hmac.compare_digest(self.signature(experiment_id, int(expires)), sig)
