"""API keys: how they are made, stored and checked, and which product's shapes they get.

A key is a flavour's scheme followed by 43 URL-safe random characters (256 bits):
``sk_live_`` (splitedge's own shapes), ``cs_live_`` (ClawSplit's), ``ct_`` (ClawTrait's)
or ``ck_`` (crewkit's; its documentation names no format, so this one is ours). The
scheme is the flavour: it is part of the stored display prefix, so the flavour needs no
column of its own and the edge, which sees only the key, knows it too
(docs/compatibility.md). The store keeps only the key's SHA-256 and a short non-secret
prefix for display and lookup; a key is shown once, when it is issued. Because keys are
long random strings, a fast hash is the right tool (no password stretching needed); the
digest comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Literal, get_args

__all__ = [
    "FLAVOURS",
    "KEY_PREFIX_CHARS",
    "Flavour",
    "digests_match",
    "flavour_of_key",
    "key_digest",
    "key_prefix",
    "new_api_key",
]

Flavour = Literal["splitedge", "clawsplit", "clawtrait", "crewkit"]
"""Whose request and response shapes a key's requests get."""

FLAVOURS: tuple[Flavour, ...] = get_args(Flavour)

_SCHEMES: dict[Flavour, str] = {
    "splitedge": "sk_live_",
    "clawsplit": "cs_live_",
    "clawtrait": "ct_",
    "crewkit": "ck_",
}

# One length for every flavour, so the edge finds a key's row by its head without first
# telling the flavours apart; for the shortest scheme it shows 13 random characters,
# leaving 30 (180 bits) secret.
KEY_PREFIX_CHARS = len(_SCHEMES["splitedge"]) + 8


def new_api_key(flavour: Flavour = "splitedge") -> str:
    """A fresh secret API key of ``flavour``; show it once, store only `key_digest` of it."""
    return _SCHEMES[flavour] + secrets.token_urlsafe(32)


def flavour_of_key(key: str) -> Flavour | None:
    """The flavour a key's scheme names; None for a string no key starts like."""
    for flavour, scheme in _SCHEMES.items():
        if key.startswith(scheme):
            return flavour
    return None


def key_digest(key: str) -> str:
    """The hex SHA-256 the store keeps in place of the key."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def key_prefix(key: str) -> str:
    """The non-secret head of a key, used to find its row and to name it in listings."""
    return key[:KEY_PREFIX_CHARS]


def digests_match(key: str, stored_digest: str) -> bool:
    """Whether ``key`` hashes to ``stored_digest``, compared in constant time."""
    return hmac.compare_digest(key_digest(key), stored_digest)
