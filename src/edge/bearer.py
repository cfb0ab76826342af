"""API keys on edge requests: ``Authorization: Bearer sk_live_...`` → workspace id (and,
for a route that shapes its answer by the key's flavour, the `Principal`)."""

from __future__ import annotations

from typing import NamedTuple, Protocol

from starlette.types import Scope

from edge.api_keys import Flavour, flavour_of_key
from edge.errors import Unauthorized
from edge.http import header
from edge.kv import ConfigKV

__all__ = ["KeyLedger", "Principal", "bearer_key", "require_principal", "require_workspace"]


class KeyLedger(Protocol):
    """The authority on API keys behind a worker's config KV (the control plane's store).

    The KV follows the store by polling, so for a moment after a key is revoked (or
    issued) it still answers the old way. A route that takes API keys asks the ledger's
    `version` first, and only when the store has moved past the KV's version asks the
    ledger itself: a revoked key is refused from the next request on."""

    def version(self) -> int:
        """The store's config version (one indexed row: microseconds)."""
        ...

    def workspace_of_key(self, key: str) -> str | None:
        """The workspace of an active key; None for an unknown or revoked one."""
        ...


def bearer_key(scope: Scope) -> str | None:
    """The API key of an ``Authorization: Bearer`` header, if there is one."""
    value = header(scope, b"authorization")
    if value is None:
        return None
    scheme, _, token = value.decode("latin-1").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class Principal(NamedTuple):
    """Who calls an edge route: the workspace of the API key, and the key's flavour, whose
    product's shapes the answer takes (docs/compatibility.md)."""

    workspace_id: str
    flavour: Flavour


def require_workspace(
    kv: ConfigKV, scope: Scope, needs_it: str, ledger: KeyLedger | None = None
) -> str:
    """The workspace of the request's API key; 401 without one or with a bad one.
    ``needs_it`` tells the caller what asked for a key (e.g. "site_id"); ``ledger`` is
    asked when the KV is behind it (None: the KV is the authority, as on an edge node)."""
    return _workspace_of(kv, bearer_key(scope), needs_it, ledger)


def require_principal(
    kv: ConfigKV, scope: Scope, needs_it: str, ledger: KeyLedger | None = None
) -> Principal:
    """`require_workspace`, with the key's flavour."""
    key = bearer_key(scope)
    workspace = _workspace_of(kv, key, needs_it, ledger)
    return Principal(workspace, (key and flavour_of_key(key)) or "splitedge")


def _workspace_of(kv: ConfigKV, key: str | None, needs_it: str, ledger: KeyLedger | None) -> str:
    if key is None:
        raise Unauthorized(f"{needs_it} needs an API key: send Authorization: Bearer sk_live_...")
    if ledger is not None and ledger.version() != kv.version:
        workspace = ledger.workspace_of_key(key)
    else:
        workspace = kv.workspace_of_key(key)
    if workspace is None:
        raise Unauthorized("the API key is unknown or revoked")
    return workspace
