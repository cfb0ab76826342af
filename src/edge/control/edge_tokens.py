"""Edge tokens: the credentials of remote edge nodes (``splitedge edge``), which pull the
config snapshot (``GET /v1/edge/snapshot``) and relay their events
(``POST /v1/edge/segments``) with ``Authorization: Bearer et_...``.

An edge token belongs to the install, not to a workspace: a node serves every site. The
operator issues one per node with ``splitedge edge-tokens create --name NAME`` (shown
once), lists and revokes them; the store keeps only the token's SHA-256, found by its
non-secret prefix and compared in constant time, like API keys (`edge.api_keys`).
"""

from __future__ import annotations

import secrets

import msgspec
from starlette.types import Scope

from edge.api_keys import digests_match, key_digest
from edge.bearer import bearer_key
from edge.control.api import in_store
from edge.control.services import Services
from edge.control.store import Store
from edge.control.store.edge_tokens import EdgeTokenRecord
from edge.errors import Forbidden, NotFound, Unauthorized

__all__ = [
    "EDGE_TOKEN_SCHEME",
    "EdgeToken",
    "IssuedEdgeToken",
    "authenticate_edge",
    "check_edge_token",
    "issue_edge_token",
    "revoke_edge_token",
]

EDGE_TOKEN_SCHEME = "et_"
_PREFIX_CHARS = 11  # "et_" and 8 characters: names the token in listings


class EdgeToken(msgspec.Struct, frozen=True):
    """The edge node a request came from."""

    id: str
    name: str


class IssuedEdgeToken(msgspec.Struct, frozen=True):
    """A new edge token: ``token`` is shown this once."""

    id: str
    name: str
    token: str


def issue_edge_token(store: Store, name: str) -> IssuedEdgeToken:
    """Issue a token for the node ``name``; only its digest is stored."""
    token = EDGE_TOKEN_SCHEME + secrets.token_urlsafe(32)
    token_id = store.create_edge_token(name, token[:_PREFIX_CHARS], key_digest(token))
    return IssuedEdgeToken(token_id, name, token)


def revoke_edge_token(store: Store, id_or_prefix: str) -> EdgeTokenRecord:
    """Revoke the token with this id or prefix (`NotFound` if none, or several, match)."""
    matches = [t for t in store.list_edge_tokens() if id_or_prefix in (t.id, t.prefix)]
    if len(matches) != 1:
        raise NotFound(
            f"no single edge token has the id or prefix {id_or_prefix!r}; "
            "`splitedge edge-tokens list` shows them"
        )
    store.revoke_edge_token(matches[0].id)
    return next(t for t in store.list_edge_tokens() if t.id == matches[0].id)


def check_edge_token(store: Store, token: str | None) -> EdgeToken:
    """The node of ``token``; 401 when it is missing, unknown or revoked, 403 for a
    workspace API key (which cannot read every site's config)."""
    if token is None:
        raise Unauthorized("an edge node's request needs Authorization: Bearer et_... "
                           "(`splitedge edge-tokens create --name NODE` issues one)")  # fmt: skip
    if not token.startswith(EDGE_TOKEN_SCHEME):
        raise Forbidden(
            "this credential is not an edge token: edge routes take Authorization: Bearer "
            "et_... from `splitedge edge-tokens create`, not a workspace API key"
        )
    for found in store.edge_tokens_with_prefix(token[:_PREFIX_CHARS]):
        if digests_match(token, found.sha256):
            if found.revoked_at is not None:
                raise Unauthorized(f"this edge token was revoked at {found.revoked_at}; issue "
                                   "a new one with `splitedge edge-tokens create`")  # fmt: skip
            return EdgeToken(found.id, found.name)
    raise Unauthorized("this edge token is unknown; check it was copied whole, or issue one "
                       "with `splitedge edge-tokens create --name NODE`")  # fmt: skip


async def authenticate_edge(services: Services, scope: Scope) -> EdgeToken:
    """The edge node of a request (`check_edge_token`), off the event loop."""
    token = bearer_key(scope)
    return await in_store(services, lambda store: check_edge_token(store, token))
