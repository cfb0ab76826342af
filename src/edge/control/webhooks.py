"""Webhooks: the events a workspace subscribes to, queueing them, and ``/v1/webhooks``.

`enqueue_event` runs inside the caller's store transaction, so an event is queued if and
only if the change it reports commits. It writes one pending delivery row per active
endpoint subscribed to the event and returns at once; the dispatcher
(`edge.control.webhook_dispatch`) delivers the rows later, in the server's parent process,
off the request path.

The routes (all with a workspace API key): ``GET /v1/webhooks`` lists the active
endpoints; ``POST /v1/webhooks`` registers one and shows its signing secret this once;
``DELETE /v1/webhooks/{id}`` deactivates it (soft delete; its queued deliveries are
cancelled); ``GET /v1/webhooks/{id}/deliveries`` is its delivery log, newest first, with
every attempt. Another workspace's endpoint is the same 404 as an unknown one.
"""

from __future__ import annotations

import base64
import ipaddress
import secrets
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
from starlette.routing import Route
from starlette.types import Receive, Scope

from edge.api_keys import Flavour
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
from edge.control.fetch_pool import shared_pool
from edge.control.secret_box import SecretBox
from edge.control.services import Services
from edge.control.store import Store
from edge.control.store.webhooks import EVENTS, Delivery, EventName, Webhook
from edge.errors import InvalidRequest, NotFound

__all__ = [
    "EVENTS",
    "DeletedWebhook",
    "NewWebhook",
    "RegisteredWebhook",
    "enqueue_event",
    "routes",
]

# The body's own fields; an event's payload may not use them.
_ENVELOPE_FIELDS = frozenset({"id", "event", "timestamp"})


def _event_body(event_id: str, event: str, payload: dict[str, Any]) -> bytes:
    """The JSON body every endpoint receives: ``id`` and ``event`` first, the payload's
    fields flat beside them, then ``timestamp`` (the shape of the references' examples)."""
    clash = _ENVELOPE_FIELDS.intersection(payload)
    if clash:
        raise ValueError(f"webhook payload may not set {sorted(clash)}: the body sets them")
    stamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return msgspec.json.encode({"id": event_id, "event": event, **payload, "timestamp": stamp})


def enqueue_event(store: Store, workspace_id: str, event: str, payload: dict[str, Any]) -> int:
    """Queue ``event`` for every active endpoint of the workspace subscribed to it, inside
    the caller's transaction; returns how many deliveries were queued.

    Every endpoint gets the same body and the same event ``id`` (receivers deduplicate
    retries by it). An unknown event name is a programming error (ValueError).
    """
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}; known: {', '.join(EVENTS)}")
    endpoints = store.subscribed_webhooks(workspace_id, event)
    if not endpoints:
        return 0
    event_id = "evt_" + uuid.uuid4().hex
    store.queue_deliveries(endpoints, event_id, event, _event_body(event_id, event, payload))
    return len(endpoints)


# -- the API ---------------------------------------------------------------------------


class RegisteredWebhook(Webhook, frozen=True):
    """The 201 of a registration: the endpoint and its signing secret, shown this once."""

    secret: str


class NewWebhook(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The body of ``POST /v1/webhooks``."""

    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
    events: Annotated[list[EventName], msgspec.Meta(min_length=1)]


class DeletedWebhook(msgspec.Struct, frozen=True):
    """The answer to ``DELETE /v1/webhooks/{id}``."""

    deleted: bool


_new_webhook = msgspec.json.Decoder(NewWebhook)
_EXAMPLE_URL = "https://your-app.com/webhooks/abtestbot"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(url: str, dev: bool) -> str:
    """The endpoint URL, if deliveries may go there: https, or http to a loopback host
    in development mode; a 400 that says which otherwise."""
    text = url.strip()
    try:
        parts = urlsplit(text)
    except ValueError as exc:  # e.g. an IPv6 host without its "]"
        raise InvalidRequest(f"url {text!r} is not a URL ({exc}); e.g. {_EXAMPLE_URL}") from None
    try:
        parts.port  # raises ValueError when the port is not a number from 0 to 65535
    except ValueError:
        raise InvalidRequest(f"url {text!r} has an invalid port; e.g. {_EXAMPLE_URL}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"url must be an absolute https:// URL, e.g. {_EXAMPLE_URL}")
    if parts.username is not None or parts.password is not None:
        raise InvalidRequest(
            "url must not carry credentials (user:password@); verify deliveries with the "
            "X-abTestBot-Signature header instead"
        )
    if parts.scheme == "http" and not (dev and _is_loopback(parts.hostname)):
        where = "" if dev else " when the server runs with --dev (SPLITEDGE_DEV=1)"
        raise InvalidRequest(
            "url must use https://; plain http:// is accepted only for loopback hosts "
            f"(localhost, 127.0.0.1, [::1]){where}"
        )
    return text


def _not_found(webhook_id: str) -> NotFound:
    return NotFound(
        f"no webhook {webhook_id[:64]!r} in the workspace of this API key; list them with "
        "GET /v1/webhooks"
    )


def _new_secret() -> str:
    """``whsec_`` and 256 random bits in standard base64 (unpadded): the form the Standard
    Webhooks libraries take as it is, and a plain HMAC key for the other signatures."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")


def _register(
    store: Store, workspace_id: str, url: str, events: list[EventName], flavour: Flavour
) -> RegisteredWebhook:
    secret = _new_secret()
    sealed = SecretBox(store.path).seal(secret)
    webhook = store.create_webhook(workspace_id, url, events, sealed, flavour)
    return RegisteredWebhook(
        webhook.id, webhook.url, webhook.events, webhook.is_active, webhook.created_at, secret
    )


def _delete(store: Store, workspace_id: str, webhook_id: str) -> bool:
    """Deactivate the endpoint; whether it was active (deleting twice changes nothing)."""
    with store.transaction():
        found = store.find_webhook(webhook_id, workspace_id)
        if found is None:
            raise _not_found(webhook_id)
        if not found.is_active:
            return False
        store.deactivate_webhook(webhook_id)
    return True


def _deliveries(
    store: Store, workspace_id: str, webhook_id: str, page: Page
) -> tuple[list[Delivery], int]:
    with store.read_snapshot():
        if store.find_webhook(webhook_id, workspace_id) is None:
            raise _not_found(webhook_id)
        return store.list_deliveries(webhook_id, page.limit, page.offset)


class _Endpoints:
    def __init__(self, services: Services) -> None:
        self.services = services

    async def index(self, scope: Scope, receive: Receive) -> Reply:
        auth = await authenticate(self.services, scope)
        page = page_params(scope)
        items, total = await in_store(
            self.services,
            lambda store: store.list_webhooks(auth.workspace_id, page.limit, page.offset),
        )
        return ok(items, Meta(auth.workspace_id, page.limit, page.offset, total))

    async def register(self, scope: Scope, receive: Receive) -> Reply:
        auth = await authenticate(self.services, scope)
        body = await read_json(scope, receive, _new_webhook, "webhook")
        url = _check_url(body.url, self.services.settings.dev)
        await shared_pool().run(
            auth.workspace_id, lambda: self.services.guard.check_url(url, "url")
        )
        events = list(dict.fromkeys(body.events))  # each once, in the order given

        def register(store: Store) -> RegisteredWebhook:
            created = _register(store, auth.workspace_id, url, events, auth.flavour)
            audit.record(
                store, auth.workspace_id, auth.key_id, "webhook.create", "webhook", created.id,
                {"url": url, "events": events},
            )  # fmt: skip
            return created

        created = await in_transaction(self.services, auth, register)
        return ok(created, Meta(auth.workspace_id), status=201)

    async def delete(self, scope: Scope, receive: Receive) -> Reply:
        auth = await authenticate(self.services, scope)
        webhook_id = scope["path_params"]["webhook_id"]

        def delete(store: Store) -> None:
            if _delete(store, auth.workspace_id, webhook_id):
                audit.record(
                    store, auth.workspace_id, auth.key_id, "webhook.delete", "webhook", webhook_id
                )

        await in_transaction(self.services, auth, delete)
        return ok(DeletedWebhook(True), Meta(auth.workspace_id))

    async def deliveries(self, scope: Scope, receive: Receive) -> Reply:
        auth = await authenticate(self.services, scope)
        webhook_id = scope["path_params"]["webhook_id"]
        page = page_params(scope)
        items, total = await in_store(
            self.services, lambda store: _deliveries(store, auth.workspace_id, webhook_id, page)
        )
        return ok(items, Meta(auth.workspace_id, page.limit, page.offset, total))


def routes(services: Services) -> list[Route]:
    """The ``/v1/webhooks`` routes; endpoints must be addresses the services' guard
    allows; ``--dev`` admits http:// endpoints on loopback hosts."""
    endpoints = _Endpoints(services)
    index = ApiOperation(
        handler=endpoints.index,
        summary="List the workspace's active webhook endpoints",
        data=list[Webhook],
        query=Page,
    )
    register = ApiOperation(
        handler=endpoints.register,
        summary="Register a webhook endpoint",
        description="The answer shows the endpoint's signing secret, this once.",
        body=_new_webhook,
        data=RegisteredWebhook,
        statuses=(201,),
        example={
            "url": "https://your-app.com/webhooks/abtestbot",
            "events": ["experiment.launched", "experiment.winner_declared"],
        },
    )
    delete = ApiOperation(
        handler=endpoints.delete,
        summary="Deactivate a webhook endpoint and cancel its queued deliveries",
        data=DeletedWebhook,
        errors=(404,),
    )
    deliveries = ApiOperation(
        handler=endpoints.deliveries,
        summary="An endpoint's delivery log, newest first, with every attempt",
        data=list[Delivery],
        query=Page,
        errors=(404,),
    )
    return [
        api_route("/v1/webhooks", {"GET": index, "POST": register}),
        api_route("/v1/webhooks/{webhook_id}", {"DELETE": delete}),
        api_route("/v1/webhooks/{webhook_id}/deliveries", {"GET": deliveries}),
    ]
