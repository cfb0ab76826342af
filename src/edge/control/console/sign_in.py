"""Signing in and out of the console: an API key exchanged for a session.

``POST /console/sign-in`` checks the key with the API's own `edge.control.api.authenticate`
(so a revoked key, a site's public key or a key over its plan's rate are refused with the
API's words) and answers a session cookie: a random token, of which the store keeps only
the SHA-256 (`edge.control.store.console_sessions`). The cookie is HttpOnly,
SameSite=Strict, Path=/, with a Max-Age of `SESSION_SECONDS`, and Secure when the public
origin is https (``--public-url https://...``, or a trusted proxy's forwarded scheme).

Login CSRF (a hostile page signing a visitor in as the attacker): the sign-in POST must
come from this origin: a browser's ``Origin`` header naming another origin (or ``null``),
or ``Sec-Fetch-Site: cross-site``, is refused with 403. A client that sends neither (curl)
is not a browser another site can drive.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from edge.control.api import Auth, authenticate, base_url, in_store
from edge.control.console.frame import (
    SESSION_COOKIE,
    SESSION_SECONDS,
    SIGN_IN_PATH,
    Console,
    Session,
    new_session_token,
    page,
    read_form,
    see_other,
    token_digest,
)
from edge.control.store import Store
from edge.errors import Forbidden, InvalidRequest, SplitedgeError, Unauthorized
from edge.http import read_body

__all__ = ["routes", "sign_in_page"]

_SIGN_IN_LIMIT = 4096  # a key is 51 characters; the form has nothing else


def sign_in_page(request: Request, message: str = "", status: int = 200) -> Response:
    """The sign-in form, with ``message`` (why the last try failed) when there is one."""
    return page(request, None, "console/sign_in.html", status=status, message=message)


def _origins(request: Request) -> set[str]:
    """The origins a same-origin browser request names: the public origin and the one
    the request itself reached (a server reached by two names takes either)."""
    public = urlsplit(base_url(request.scope))
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    return {f"{public.scheme}://{public.netloc}", own}


def _check_origin(request: Request) -> None:
    origin = request.headers.get("origin")
    if origin is not None and origin not in _origins(request):
        raise Forbidden(
            f"sign-in is only accepted from this console's own page, not from {origin[:100]}; "
            "behind a proxy, set --public-url or --forwarded-allow-ips"
        )
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise Forbidden("sign-in is only accepted from this console's own page")


async def _key_of(request: Request) -> str:
    body = await read_body(request.scope, request.receive, _SIGN_IN_LIMIT)
    try:
        fields = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("the sign-in form could not be read; send it again") from None
    key = fields.get("api_key", "").strip()
    if not key:
        raise Unauthorized("enter an API key (sk_live_...)")
    return key


async def _authenticate(console: Console, key: str) -> Auth:
    try:
        header = b"Bearer " + key.encode("latin-1")
    except UnicodeEncodeError:
        raise Unauthorized("this is not an API key: they look like sk_live_...") from None
    scope = {"type": "http", "headers": [(b"authorization", header)]}
    return await authenticate(console.services, scope)


def routes(console: Console) -> list[BaseRoute]:
    """``GET``/``POST /console/sign-in`` and ``POST /console/sign-out``."""

    async def show(request: Request) -> Response:
        if await console.session_of(request) is not None:
            return see_other(request, "/")
        return sign_in_page(request)

    async def sign_in(request: Request) -> Response:
        _check_origin(request)
        try:
            auth = await _authenticate(console, await _key_of(request))
        except SplitedgeError as exc:
            # A wrong key is the form again, saying why; so is a key over its rate.
            status = exc.status if exc.status in (400, 413, 429) else 401
            return sign_in_page(request, exc.message, status)
        token = new_session_token()
        now = int(time.time())

        def create(store: Store) -> str:
            return store.create_console_session(
                token_digest(token), auth.workspace_id, auth.key_id, now, now + SESSION_SECONDS
            )

        await in_store(console.services, create)
        response = see_other(request, "/")
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=SESSION_SECONDS,
            path="/",
            secure=base_url(request.scope).startswith("https://"),
            httponly=True,
            samesite="strict",
        )
        return response

    async def sign_out(request: Request, session: Session) -> Response:
        await read_form(request, session)
        token = request.cookies[SESSION_COOKIE]
        await in_store(
            console.services, lambda store: store.delete_console_session(token_digest(token))
        )
        response = see_other(request, SIGN_IN_PATH)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    return [
        console.public_route(SIGN_IN_PATH, show),
        console.public_route(SIGN_IN_PATH, sign_in, ["POST"]),
        console.route("/console/sign-out", sign_out, ["POST"]),
    ]
