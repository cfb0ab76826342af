"""``/v1/keys``: a workspace's API keys, listed, issued and revoked over the API.

``GET /v1/keys`` lists the workspace's keys, revoked ones too, oldest first, by prefix
(never a secret; the store keeps only a digest). ``POST /v1/keys`` issues one and shows it
this once (201). ``DELETE /v1/keys/{key_id}`` revokes one at once: requests with it get
401 from the next one on. Another workspace's key is the same 404 as an unknown one.

A key may revoke itself: a leaked key must be revocable by whoever holds it, even when it
is the one in hand, so the answer is a 200 and the key stops working from the next request
(the console's session of that key ends with it). What a key may not do is revoke the
workspace's last active key: that would lock the workspace out of its API until someone
with the server's command line issues a new one, so it is a 409 that says to create
another first. Revoking a revoked key is a 200 that changes nothing.

The command line (`edge.control.keys_cli`) issues and revokes through `issue_key` and
`revoke_key` too, so both record the same audit entries (with no key for the command
line's).
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from starlette.routing import Route
from starlette.types import Receive, Scope

from edge.api_keys import Flavour, flavour_of_key
from edge.control import audit
from edge.control.api import (
    ApiOperation,
    Meta,
    Page,
    Reply,
    api_route,
    authenticate,
    in_store,
    in_transaction,
    ok,
    page_params,
    read_json,
)
from edge.control.records import ApiKeyInfo, IssuedKey
from edge.control.services import Services
from edge.control.store import Store
from edge.errors import Conflict, NotFound

__all__ = ["ApiKey", "IssuedApiKey", "NewApiKey", "issue_key", "revoke_key", "routes"]


class ApiKey(msgspec.Struct, frozen=True):
    """A key as listings show it: its ``prefix`` (the first characters of the secret,
    enough to recognise it), its label, whose shapes its requests get (``flavour``), when
    it was created, last used (to the minute; None: never) and revoked (None: active), and
    whether it is the key that made this request (``current``)."""

    id: str
    name: str
    prefix: str
    flavour: Flavour
    created_at: str
    last_used_at: str | None
    revoked_at: str | None
    current: bool


class IssuedApiKey(ApiKey, frozen=True):
    """The 201 of ``POST /v1/keys``: the new key, with the secret itself in ``key``, shown
    this once."""

    key: str


class NewApiKey(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The body of ``POST /v1/keys``: a label and the key's flavour (docs/compatibility.md)."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] = "default"
    flavour: Flavour = "splitedge"


_new_key = msgspec.json.Decoder(NewApiKey)


def _view(info: ApiKeyInfo, current_key_id: str | None) -> ApiKey:
    return ApiKey(
        info.id, info.name, info.prefix,
        # Every stored prefix starts with its flavour's scheme (edge.api_keys).
        flavour_of_key(info.prefix) or "splitedge", info.created_at,
        info.last_used_at, info.revoked_at, info.id == current_key_id,
    )  # fmt: skip


def issue_key(
    store: Store, workspace_id: str, by_key_id: str | None, name: str, flavour: Flavour
) -> IssuedKey:
    """Issue a key of the workspace and record it in the audit trail (``by_key_id``: the
    key that asked; None for the command line); call it inside a transaction."""
    issued = store.issue_api_key(workspace_id, name=name, flavour=flavour)
    audit.record(
        store, workspace_id, by_key_id, "key.create", "api_key", issued.record.id,
        {"flavour": flavour, "name": name},
    )  # fmt: skip
    return issued


def revoke_key(store: Store, key: ApiKeyInfo, by_key_id: str | None) -> None:
    """Revoke an active key and record it in the audit trail (``by_key_id`` as for
    `issue_key`); call it inside a transaction."""
    store.revoke_api_key(key.id)
    audit.record(store, key.workspace_id, by_key_id, "key.revoke", "api_key", key.id)


def _find(store: Store, workspace_id: str, key_id: str) -> ApiKeyInfo:
    for key in store.find_api_keys(key_id):
        # find_api_keys matches prefixes too; this route takes ids only.
        if key.id == key_id and key.workspace_id == workspace_id:
            return key
    raise NotFound(
        f"no API key {key_id[:64]!r} in the workspace of this API key; list them with GET /v1/keys"
    )


def _revoke(store: Store, workspace_id: str, key_id: str, by_key_id: str) -> ApiKey:
    key = _find(store, workspace_id, key_id)
    if key.revoked_at is None:
        active = [k for k in store.list_api_keys(workspace_id) if k.revoked_at is None]
        if len(active) == 1:
            raise Conflict(
                f"key {key.prefix}... is the workspace's last active key: revoking it would "
                "lock the workspace out of its API; create another first (POST /v1/keys)"
            )
        revoke_key(store, key, by_key_id)
        key = _find(store, workspace_id, key_id)
    return _view(key, by_key_id)


class _Endpoints:
    def __init__(self, services: Services) -> None:
        self.services = services

    async def index(self, scope: Scope, receive: Receive) -> Reply:
        auth = await authenticate(self.services, scope)
        page = page_params(scope)
        # A workspace has a handful of keys: the store lists them all, the page is a slice.
        keys = await in_store(self.services, lambda store: store.list_api_keys(auth.workspace_id))
        items = [_view(k, auth.key_id) for k in keys[page.offset : page.offset + page.limit]]
        return ok(items, Meta(auth.workspace_id, page.limit, page.offset, len(keys)))

    async def create(self, scope: Scope, receive: Receive) -> Reply:
        auth = await authenticate(self.services, scope)
        body = await read_json(scope, receive, _new_key, "key")

        def create(store: Store) -> IssuedKey:
            return issue_key(store, auth.workspace_id, auth.key_id, body.name, body.flavour)

        issued = await in_transaction(self.services, auth, create)
        record = issued.record
        created = IssuedApiKey(
            record.id, record.name, record.prefix, body.flavour, record.created_at,
            None, None, False, issued.key,
        )  # fmt: skip
        return ok(created, Meta(auth.workspace_id), status=201)

    async def revoke(self, scope: Scope, receive: Receive) -> Reply:
        auth = await authenticate(self.services, scope)
        key_id = scope["path_params"]["key_id"]
        revoked = await in_transaction(
            self.services,
            auth,
            lambda store: _revoke(store, auth.workspace_id, key_id, auth.key_id),
        )
        return ok(revoked, Meta(auth.workspace_id))


def routes(services: Services) -> list[Route]:
    """The ``/v1/keys`` routes."""
    endpoints = _Endpoints(services)
    index = ApiOperation(
        handler=endpoints.index,
        summary="List the workspace's API keys, revoked ones too, by prefix",
        data=list[ApiKey],
        query=Page,
    )
    create = ApiOperation(
        handler=endpoints.create,
        summary="Issue an API key for the workspace",
        description="The answer shows the key itself, this once; only its digest is kept.",
        body=_new_key,
        data=IssuedApiKey,
        statuses=(201,),
        example={"name": "ci", "flavour": "splitedge"},
    )
    revoke = ApiOperation(
        handler=endpoints.revoke,
        summary="Revoke an API key at once",
        description=(
            "A key may revoke itself: it stops working from the next request. The "
            "workspace's last active key cannot be revoked (409): create another first."
        ),
        data=ApiKey,
        errors=(404, 409),
    )
    return [
        api_route("/v1/keys", {"GET": index, "POST": create}),
        api_route("/v1/keys/{key_id}", {"DELETE": revoke}),
    ]
