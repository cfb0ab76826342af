"""What every authenticated ``/v1`` control-plane route shares.

A route module (``sites_api``, ``experiments_api``, ...) exposes
``routes(services) -> list[Route]`` built with `api_route` over the worker's
`edge.control.services.Services`: one Starlette route per
path whose methods map to `ApiOperation`s, each a `Handler` coroutine with what the OpenAPI
document says of it (`edge.control.openapi`): its body's decoder, the type of its answer's
``data``, its statuses. A handler authenticates the request
(`authenticate`: the workspace comes from the API key, never from the request), reads its
body (`read_json`) and query (`page_params`), does its store work on a thread
(`in_store`), and returns a `Reply` (`ok`: the ``{data, meta}`` envelope). Errors are
raised as `edge.errors.SplitedgeError` and rendered by the app's exception handlers
(`edge.http`) as ``{error: {code, message}}``; an `edge.errors.DetailedConflict` also
carries the fields the reference adds to its error object (e.g. ``existing_site``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl

import msgspec
from starlette.types import Receive, Scope, Send

from edge.api_keys import KEY_PREFIX_CHARS, Flavour, digests_match, flavour_of_key, key_prefix
from edge.bearer import bearer_key
from edge.control import credits, plans
from edge.control.plans import PlanLimits
from edge.control.services import Services
from edge.control.store import Store
from edge.errors import DetailedConflict, Forbidden, InvalidRequest, Unauthorized
from edge.http import JSON_HEADERS, PublicOrigin, decode_body, read_body, send_response
from edge.operation import DocumentedRoute, Operation

__all__ = [
    "AUTH_SCOPE_KEY",
    "BODY_LIMIT",
    "MAX_LIMIT",
    "ApiOperation",
    "Auth",
    "Handler",
    "Meta",
    "Page",
    "Reply",
    "TOOL_SCOPE_KEY",
    "api_route",
    "authenticate",
    "base_url",
    "in_store",
    "int_param",
    "in_transaction",
    "ok",
    "page_params",
    "paid_read",
    "query_params",
    "read_json",
]

T = TypeVar("T")

BODY_LIMIT = 256 * 1024
"""The default bound of a request body, in bytes (413 over it)."""

AUTH_SCOPE_KEY = "splitedge.auth"
"""The scope key under which an in-process caller hands `authenticate` the `Auth` of a
request it has already authenticated (the MCP gateway's calls of the REST routes,
`edge.control.mcp_gateway`). Only code in this process can put it there: the server
builds a network request's scope, and a client cannot add keys to it."""

TOOL_SCOPE_KEY = "splitedge.tool"
"""The scope key the MCP gateway sets (to True) on its calls of the REST routes: an answer's
next-step texts then name tools (``launch_experiment``), not routes. In-process only, as
`AUTH_SCOPE_KEY`."""

# last_used_at is for people auditing keys; a minute's precision spares the store a write
# on every request.
_LAST_USED_EVERY = timedelta(minutes=1)

# The reference's text for 401; what follows the colon says what to fix.
_UNAUTHORIZED = "Invalid or missing API key"


class Auth(msgspec.Struct, frozen=True):
    """Who is calling: the workspace of the API key, the key (for the audit trail),
    whether the workspace's plan pays for calls in credits, and the key's flavour, whose
    product's shapes the answers take (`edge.control.flavours`)."""

    workspace_id: str
    key_id: str
    metered: bool = False
    flavour: Flavour = "splitedge"


class Meta(msgspec.Struct, frozen=True, omit_defaults=True):
    """The ``meta`` of a success envelope: the key's workspace (as in the reference) and,
    for lists, the page that was asked for and how many items there are in all."""

    workspace_id: str
    limit: int | None = None
    offset: int | None = None
    total: int | None = None


class Reply(msgspec.Struct, frozen=True):
    """A handler's answer: status and encoded JSON body."""

    status: int
    body: bytes


class _Envelope(msgspec.Struct):
    data: Any
    meta: Any


def ok(data: Any, meta: Meta | None = None, status: int = 200) -> Reply:
    """The success envelope ``{data, meta}``; ``data`` is anything msgspec encodes."""
    return Reply(status, msgspec.json.encode(_Envelope(data, {} if meta is None else meta)))


class _DetailedError(msgspec.Struct):
    error: dict[str, Any]


def _detailed_body(exc: DetailedConflict) -> bytes:
    return msgspec.json.encode(
        _DetailedError({"code": exc.code, "message": exc.message, **exc.details})
    )


async def in_store(services: Services, work: Callable[[Store], T]) -> T:
    """Run ``work`` with its own store connection on a thread, off the event loop."""

    def run() -> T:
        store = services.open_store()
        try:
            return work(store)
        finally:
            store.close()

    return await asyncio.to_thread(run)


async def in_transaction(
    services: Services, auth: Auth, work: Callable[[Store], T], tool: str | None = None
) -> T:
    """Run ``work`` in one write transaction on a thread, paying ``tool``'s credits first
    when the caller's plan is metered (`edge.control.credits`): a short balance is a 402
    and ``work`` never runs; a failing ``work`` rolls the debit back. Changes run here, so
    that they, their audit entry and their webhook events commit together or not at all."""

    def run(store: Store) -> T:
        with store.transaction():
            if tool is not None and auth.metered:
                credits.debit(store, auth.workspace_id, auth.key_id, tool)
            return work(store)

    return await in_store(services, run)


async def paid_read(services: Services, auth: Auth, tool: str, work: Callable[[Store], T]) -> T:
    """Run ``work``, a read that costs ``tool``'s credits: in one write transaction with
    its debit when the caller's plan is metered, else as a plain read that takes no write
    lock."""
    if auth.metered:
        return await in_transaction(services, auth, work, tool)
    return await in_store(services, work)


def _check_key(store: Store, key: str, flavour: Flavour, limits: PlanLimits | None) -> Auth:
    now = datetime.now(UTC)
    for found in store.api_keys_with_prefix(key_prefix(key)):
        if not digests_match(key, found.sha256):
            continue
        if found.revoked_at is not None:
            raise Unauthorized(
                f"{_UNAUTHORIZED}: this key was revoked at {found.revoked_at}; issue a new "
                "one with `splitedge keys create --workspace NAME`"
            )
        last = found.last_used_at
        if last is None or now - datetime.fromisoformat(last) >= _LAST_USED_EVERY:
            store.touch_api_key(found.id, now.isoformat())
        if limits is None:
            return Auth(workspace_id=found.workspace_id, key_id=found.id, flavour=flavour)
        plan = store.get_workspace(found.workspace_id).plan
        if plan in limits.per_minute:  # only a rate limit needs the count (a write)
            clock = now.timestamp()
            limits.check(plan, store.count_request(found.id, plans.window_start(clock)), clock)
        return Auth(found.workspace_id, found.id, plan in limits.metered, flavour)
    raise Unauthorized(
        f"{_UNAUTHORIZED}: this key is unknown; check it was copied whole, or issue one "
        "with `splitedge keys create --workspace NAME`"
    )


async def authenticate(services: Services, scope: Scope) -> Auth:
    """The caller of an ``Authorization: Bearer sk_live_...`` request (or a key of
    another flavour, `edge.api_keys`); 401 (with the
    reference's text and what to fix) without a key, or with an unknown or revoked one;
    429 with Retry-After when the key is over its plan's limits this minute (the
    services' `PlanLimits`; None: unmetered). The digest comparison is constant-time;
    the store work, the rate count included, runs in one visit on a thread."""
    known = scope.get(AUTH_SCOPE_KEY)
    if isinstance(known, Auth):
        return known
    key = bearer_key(scope)
    if key is None:
        raise Unauthorized(f"{_UNAUTHORIZED}: send the header Authorization: Bearer sk_live_...")
    flavour = flavour_of_key(key)
    if flavour is None or len(key) <= KEY_PREFIX_CHARS:
        if await in_store(services, lambda store: store.is_public_key(key)):
            raise Forbidden(
                "this is a site's public key: it only loads the site's snippet "
                "(GET /s/{public_key}.js) and sends its events (POST /v1/collect); the API "
                "takes a workspace key, Authorization: Bearer sk_live_..."
            )
        raise Unauthorized(f"{_UNAUTHORIZED}: API keys look like sk_live_ and 43 more characters")
    return await in_store(services, lambda store: _check_key(store, key, flavour, services.limits))


async def read_json(
    scope: Scope,
    receive: Receive,
    decoder: msgspec.json.Decoder[T],
    what: str,
    limit: int = BODY_LIMIT,
) -> T:
    """The request body decoded into ``decoder``'s type: 413 over ``limit`` bytes, 400
    naming where it is wrong (msgspec's path, e.g. ``$.variants[1].name``). ``what``
    names the body in messages (e.g. "site")."""
    body = await read_body(scope, receive, limit)
    if not body.strip():
        raise InvalidRequest(f"the body is empty; send a JSON {what}")
    return decode_body(decoder, body, what)


def query_params(scope: Scope) -> dict[str, str]:
    """The query string's parameters (the last value of a repeated one)."""
    return dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))


# What an app built without a `PublicOrigin` of its own (a test's, say) answers with: the
# request's own scheme and Host, as a server without --public-url.
_REQUEST_ORIGIN = PublicOrigin()


def base_url(scope: Scope) -> str:
    """The origin clients reach us at, for links in answers (e.g. the snippet URL):
    ``--public-url``, else what the request (or its trusted proxy) says, as the app's
    `edge.http.PublicOrigin` (``app.state.public_origin``) resolves it."""
    origin: PublicOrigin = getattr(scope["app"].state, "public_origin", _REQUEST_ORIGIN)
    return origin.of(scope)


MAX_LIMIT = 100
"""The largest page a list answers."""


# SQLite's largest integer: a bigger offset could not be bound to the query.
_SQLITE_MAX = 2**63 - 1


class Page(msgspec.Struct, frozen=True):
    """The standard pagination: ``limit`` (1 to 100, default 20) and ``offset`` (>= 0).
    As an operation's ``query`` it documents the parameters `page_params` reads."""

    limit: Annotated[
        int, msgspec.Meta(ge=1, le=MAX_LIMIT, description="How many items to answer, at most.")
    ] = 20
    offset: Annotated[
        int, msgspec.Meta(ge=0, le=_SQLITE_MAX, description="How many items to skip first.")
    ] = 0


def int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """The whole-number query parameter ``name`` in ``[low, high]`` (``default`` when it is
    absent); 400 saying the bounds otherwise."""
    text = params.get(name)
    if text is None:
        return default
    bounds = f"{low} or more" if high == _SQLITE_MAX else f"from {low} to {high}"
    digits = text.strip()
    # Bounded before int(): Python refuses to parse thousands of digits.
    # isdigit alone admits digits int() refuses, such as "²".
    if not (digits.isascii() and digits.isdigit()) or len(digits) > len(str(_SQLITE_MAX)):
        raise InvalidRequest(f"{name} must be a whole number {bounds}, not {text[:40]!r}")
    value = int(digits)
    if value > high:
        raise InvalidRequest(f"{name} must be at most {high}, not {value}")
    if value < low:
        raise InvalidRequest(f"{name} must be {bounds}, not {value}")
    return value


def page_params(scope: Scope) -> Page:
    """The page a list request asks for; 400 saying the bounds when out of them."""
    params = query_params(scope)
    return Page(
        limit=int_param(params, "limit", 20, 1, MAX_LIMIT),
        offset=int_param(params, "offset", 0, 0, _SQLITE_MAX),
    )


Handler = Callable[[Scope, Receive], Awaitable[Reply]]
"""A method of an API route: the request's scope and receive in, a `Reply` out."""


class ApiOperation(Operation, frozen=True, kw_only=True):
    """A method of a control-plane route: its `Handler` and what the OpenAPI document
    says of it (`edge.operation.Operation`; ``meta`` defaults to `Meta`). Every handler
    authenticates, so 401, 403 (a site's public key) and 429 go without saying."""

    handler: Handler
    meta: Any = Meta


# What `authenticate` answers besides the handler's own errors.
_AUTH_ERRORS = (401, 403, 429)


class _MethodDispatch:
    """The ASGI endpoint of one path: picks the handler of the method and sends its reply.
    HEAD runs GET's handler and sends no body."""

    def __init__(self, handlers: Mapping[str, Handler]) -> None:
        self.handlers = dict(handlers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        handler = self.handlers["GET" if method == "HEAD" else method]
        try:
            reply = await handler(scope, receive)
        except DetailedConflict as exc:
            reply = Reply(exc.status, _detailed_body(exc))
        await send_response(
            send, reply.status, JSON_HEADERS, b"" if method == "HEAD" else reply.body
        )


def api_route(path: str, methods: Mapping[str, ApiOperation]) -> DocumentedRoute:
    """A Starlette route for ``path`` answering each method of ``methods`` (e.g.
    ``{"GET": ApiOperation(handler=list_sites, summary=...), "POST": ...}``), documented
    by those operations; other methods are Starlette's 405."""
    handlers = {method: m.handler for method, m in methods.items()}
    operations = {
        method: msgspec.structs.replace(m, errors=tuple(sorted({*m.errors, *_AUTH_ERRORS})))
        for method, m in methods.items()
    }
    return DocumentedRoute(path, _MethodDispatch(handlers), operations)
