"""The frame every console page is built in: the `Console` of a worker (its routes'
guard), the signed-in `Session`, `page` (rendering with the console's headers),
`read_form` (a POST's fields, CSRF-checked) and the error pages. The rules for page
authors are in `edge.control.console`'s docstring.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from markupsafe import Markup
from starlette.datastructures import ImmutableMultiDict
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from edge.control.api import Auth, base_url, in_store
from edge.control.in_process import InProcessRest, RestFailure
from edge.control.services import Services
from edge.control.store.console_sessions import ConsoleSessionRow
from edge.control.templating import render
from edge.errors import Forbidden, InvalidRequest, SplitedgeError
from edge.http import read_body

__all__ = [
    "CSRF_FIELD",
    "FORM_LIMIT",
    "SECURITY_HEADERS",
    "SESSION_COOKIE",
    "SESSION_SECONDS",
    "SIGN_IN_PATH",
    "Console",
    "CsrfRefused",
    "Form",
    "PageEndpoint",
    "PublicEndpoint",
    "RestFailure",
    "Session",
    "error_page",
    "new_session_token",
    "page",
    "read_form",
    "root_path",
    "see_other",
    "static_url",
    "token_digest",
]

SESSION_COOKIE = "splitedge_session"
SESSION_SECONDS = 12 * 3600
"""How long a session lasts from sign-in (the cookie's Max-Age and the stored expiry)."""

SIGN_IN_PATH = "/console/sign-in"
CSRF_FIELD = "csrf_token"
"""The hidden field every console form carries (``{{ csrf_field() }}`` in a template)."""

FORM_LIMIT = 64 * 1024
"""The default bound of a console form's body, in bytes (413 over it)."""

SECURITY_HEADERS: dict[str, str] = {
    # No inline script or style anywhere: charts are SVG with presentation attributes.
    "content-security-policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}
"""The headers of every console page (and error page)."""

Form = ImmutableMultiDict[str, str]
"""A form's fields: ``form.get(name)`` (the first value or None), ``form.getlist(name)``."""

_STATIC = resources.files("edge.control") / "static"
_CSRF_MESSAGE = b"splitedge console csrf"


def new_session_token() -> str:
    """A new session's secret token (the cookie's value)."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """The SHA-256 (hex) under which a session's token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def _csrf_token(token: str) -> str:
    # Keyed by the session's own secret token, which only its cookie carries: the form
    # token is tied to the session, and showing it reveals nothing of the cookie.
    return hmac.new(token.encode(), _CSRF_MESSAGE, hashlib.sha256).hexdigest()


@dataclasses.dataclass(frozen=True)
class Session:
    """A signed-in request: its workspace, the API key the session was exchanged for,
    the CSRF token its forms carry, and ``api``, the REST API called in this process as
    that key (`edge.control.in_process.InProcessRest`): ``await session.api("GET",
    "/v1/sites")`` is the ``data``; ``await session.api.answer(...)`` adds status and
    ``meta``; an error answer raises `RestFailure` (status and error object)."""

    id: str
    workspace_id: str
    workspace_name: str
    key_id: str
    csrf_token: str
    api: InProcessRest


PageEndpoint = Callable[[Request, Session], Awaitable[Response]]
"""A signed-in page: the request and its session in, a response out."""

PublicEndpoint = Callable[[Request], Awaitable[Response]]
"""A page a signed-out request may see (sign-in, static files)."""


class CsrfRefused(Forbidden):
    """A console form without the session's CSRF token (or with another one)."""

    code = "csrf_refused"


def root_path(request: Request) -> str:
    """The path prefix of the public URL (``--public-url https://host/edge`` → ``/edge``;
    usually empty): every console link and redirect starts with it."""
    return urlsplit(base_url(request.scope)).path.rstrip("/")


def see_other(request: Request, path: str) -> RedirectResponse:
    """303 to the console path ``path`` (e.g. after a form's POST), under `root_path`."""
    return RedirectResponse(root_path(request) + path, status_code=303)


def _static_files() -> dict[str, tuple[bytes, str, str]]:
    types = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
    files = {}
    for entry in _STATIC.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in types:
            body = entry.read_bytes()
            files[entry.name] = (body, types[suffix], hashlib.sha256(body).hexdigest()[:12])
    return files


_FILES = _static_files()
_NO_SNIFF = {"x-content-type-options": "nosniff"}


def static_url(request: Request, name: str) -> str:
    """The URL of a vendored static file (``src/edge/control/static/NAME``), versioned by
    its content's hash so that it may be cached for a year."""
    return f"{root_path(request)}/console/static/{name}?v={_FILES[name][2]}"


async def _static(request: Request) -> Response:
    found = _FILES.get(request.path_params["name"])
    if found is None:
        return Response(b"not found\n", 404, {"content-type": "text/plain", **_NO_SNIFF})
    body, media_type, _ = found
    headers = {"cache-control": "public, max-age=31536000, immutable", **_NO_SNIFF}
    return Response(body, 200, headers, media_type=media_type)


def page(
    request: Request,
    session: Session | None,
    template: str,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """``template`` (under ``templates/``, e.g. ``console/sites.html``, extending
    ``console/base.html``) rendered as a console page with ``status`` and the console's
    headers (`SECURITY_HEADERS`). Besides ``context`` the template gets ``session`` (None
    signed out), ``workspace_name``, ``csrf_token``, ``csrf_field()`` (the hidden input),
    ``root`` (`root_path`), ``static(name)`` (`static_url`) and ``current`` (the request's
    path, for the nav's aria-current)."""
    root = root_path(request)
    token = "" if session is None else session.csrf_token
    body = render(
        template,
        session=session,
        workspace_name="" if session is None else session.workspace_name,
        csrf_token=token,
        csrf_field=lambda: _csrf_input(token),
        root=root,
        static=lambda name: static_url(request, name),
        current=request.url.path,
        **context,
    )
    return HTMLResponse(body, status, {**SECURITY_HEADERS, **(headers or {})})


def _csrf_input(token: str) -> Markup:
    return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, token)


_TITLES = {
    400: "That request could not be read",
    401: "Sign in again",
    403: "Refused",
    404: "Not found",
    409: "That conflicts with the current state",
    413: "Too large",
    429: "Too many requests",
}


def error_page(request: Request, session: Session | None, status: int, message: str) -> Response:
    """The console's error page: ``status`` with its title and ``message`` (a 404 for
    anything of another workspace, as the API answers)."""
    title = _TITLES.get(status, "Something went wrong" if status >= 500 else "Refused")
    return page(request, session, "console/error.html", status=status, title=title, message=message)


async def read_form(request: Request, session: Session, limit: int = FORM_LIMIT) -> Form:
    """The fields of a console form's POST (``application/x-www-form-urlencoded``), once
    its CSRF field matches the session: `CsrfRefused` (403) when it is missing or
    forged, 400 when the body is not a form, 413 over ``limit`` bytes. The CSRF field is
    not among the fields answered. Every POST handler calls this before acting."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise InvalidRequest("send the form as application/x-www-form-urlencoded")
    body = await read_body(request.scope, request.receive, limit)
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
            max_num_fields=1000, errors="strict",
        )  # fmt: skip
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("the form is not valid UTF-8 form data") from None
    sent = [value for name, value in pairs if name == CSRF_FIELD]
    if len(sent) != 1 or not hmac.compare_digest(sent[0].encode(), session.csrf_token.encode()):
        raise CsrfRefused(
            "this form's security token is missing or is not this session's; reload the "
            "page and send the form again"
        )
    return ImmutableMultiDict([(name, value) for name, value in pairs if name != CSRF_FIELD])


class Console:
    """The console of one worker: its services, and ``rest_app`` (the app's REST routes,
    which pages call in this process; set once the app is built, as the MCP mount's).
    `route` builds a signed-in page's route; `public_route` one a signed-out request may
    see."""

    rest_app: ASGIApp

    def __init__(self, services: Services) -> None:
        self.services = services

    def _auth(self, row: ConsoleSessionRow) -> Auth:
        # As `edge.control.api.authenticate` would for the key: its workspace, the key
        # (for the audit trail), whether the plan pays in credits; splitedge's shapes.
        limits = self.services.limits
        metered = limits is not None and row.plan in limits.metered
        return Auth(row.workspace_id, row.key_id, metered, "splitedge")

    async def session_of(self, request: Request) -> Session | None:
        """The request's session: None without a cookie, or when it has expired, was
        signed out of, or its key was revoked (checked on every request, one read)."""
        token = request.cookies.get(SESSION_COOKIE)
        if not token or len(token) > 100:
            return None
        digest = token_digest(token)
        now = int(time.time())
        row = await in_store(self.services, lambda s: s.live_console_session(digest, now))
        if row is None:
            return None
        api = InProcessRest(self.rest_app, request.scope, self._auth(row))
        return Session(
            row.id, row.workspace_id, row.workspace_name, row.key_id, _csrf_token(token), api
        )

    def route(
        self,
        path: str,
        endpoint: PageEndpoint,
        methods: Iterable[str] = ("GET",),
        *,
        signed_out: PublicEndpoint | None = None,
    ) -> Route:
        """A signed-in page at ``path``. A signed-out request is sent (303) to the sign-in
        page, or answered by ``signed_out`` when given. A `SplitedgeError` the endpoint
        raises (`RestFailure` from the API, `CsrfRefused` from `read_form`, ...) becomes
        the error page with its status and message."""

        async def run(request: Request) -> Response:
            session = await self.session_of(request)
            if session is None:
                if signed_out is not None:
                    return await signed_out(request)
                return see_other(request, SIGN_IN_PATH)
            try:
                return await endpoint(request, session)
            except SplitedgeError as exc:
                return error_page(request, session, exc.status, exc.message)

        return Route(path, run, methods=list(methods))

    def public_route(
        self, path: str, endpoint: PublicEndpoint, methods: Iterable[str] = ("GET",)
    ) -> Route:
        """A page a signed-out request may see; its `SplitedgeError` is the error page."""

        async def run(request: Request) -> Response:
            try:
                return await endpoint(request)
            except SplitedgeError as exc:
                return error_page(request, None, exc.status, exc.message)

        return Route(path, run, methods=list(methods))

    def static_route(self) -> Route:
        """``/console/static/{name}``: the vendored files, cached for a year."""
        return Route("/console/static/{name}", _static, methods=["GET"])

    def not_found_route(self) -> Route:
        """Every other ``/console/...`` path: the console's 404 page (signed in)."""

        async def missing(request: Request, session: Session) -> Response:
            return error_page(request, session, 404, "There is no console page here.")

        return self.route("/console/{rest:path}", missing, ["GET", "POST"])
