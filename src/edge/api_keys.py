"""API keys: how they are made, stored and checked.

A key is ``sk_live_`` followed by 43 URL-safe random characters (256 bits). The store
keeps only its SHA-256 and a short non-secret prefix for display and lookup; a key is
shown once, when it is issued. Because keys are long random strings, a fast hash is the
right tool (no password stretching needed); the digest comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["KEY_PREFIX_CHARS", "digests_match", "key_digest", "key_prefix", "new_api_key"]

_SCHEME = "sk_live_"
KEY_PREFIX_CHARS = len(_SCHEME) + 8


def new_api_key() -> str:
    """A fresh secret API key; show it once, store only `key_digest` of it."""
    return _SCHEME + secrets.token_urlsafe(32)


def key_digest(key: str) -> str:
    """The hex SHA-256 the store keeps in place of the key."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def key_prefix(key: str) -> str:
    """The non-secret head of a key, used to find its row and to name it in listings."""
    return key[:KEY_PREFIX_CHARS]


def digests_match(key: str, stored_digest: str) -> bool:
    """Whether ``key`` hashes to ``stored_digest``, compared in constant time."""
    return hmac.compare_digest(key_digest(key), stored_digest)
