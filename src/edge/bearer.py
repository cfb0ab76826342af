"""API keys on edge requests: ``Authorization: Bearer sk_live_...`` → workspace id."""

from __future__ import annotations

from typing import Any

from edge.errors import Unauthorized
from edge.http import header
from edge.kv import ConfigKV

__all__ = ["bearer_key", "require_workspace"]


def bearer_key(scope: dict[str, Any]) -> str | None:
    """The API key of an ``Authorization: Bearer`` header, if there is one."""
    value = header(scope, b"authorization")
    if value is None:
        return None
    scheme, _, token = value.decode("latin-1").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def require_workspace(kv: ConfigKV, scope: dict[str, Any], needs_it: str) -> str:
    """The workspace of the request's API key; 401 without one or with a bad one.
    ``needs_it`` tells the caller what asked for a key (e.g. "site_id")."""
    key = bearer_key(scope)
    if key is None:
        raise Unauthorized(f"{needs_it} needs an API key: send Authorization: Bearer sk_live_...")
    workspace = kv.workspace_of_key(key)
    if workspace is None:
        raise Unauthorized("the API key is unknown or revoked")
    return workspace
