"""The HTTP plumbing the edge routes share: bounded body reads, JSON errors, raw sends.

The hot routes are plain ASGI callables mounted in Starlette's router, so a request
costs one dict lookup and one ``send`` of precomputed headers. Errors are raised as
`SplitedgeError` and rendered here as ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import TypeVar

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from edge.errors import InvalidRequest, PayloadTooLarge, SplitedgeError

__all__ = [
    "EXCEPTION_HANDLERS",
    "FORWARDED_HEADERS",
    "ErrorDetail",
    "ErrorEnvelope",
    "ExceptionHandler",
    "JSON_HEADERS",
    "PublicOrigin",
    "decode_body",
    "error_body",
    "header",
    "http_exception_response",
    "read_body",
    "send_response",
    "splitedge_error_response",
    "unexpected_error_response",
]

JSON_HEADERS = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]


class ErrorDetail(msgspec.Struct):
    """What went wrong: a stable machine ``code`` and a ``message`` that says what to do
    next. Some errors carry more fields (a duplicate site's 409 has ``existing_site``)."""

    code: str
    message: str


class ErrorEnvelope(msgspec.Struct):
    """The body of every error answer."""

    error: ErrorDetail


def error_body(code: str, message: str) -> bytes:
    """The encoded failure envelope."""
    return msgspec.json.encode(ErrorEnvelope(ErrorDetail(code, message)))


T = TypeVar("T")


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of a request header; ``name`` in lower case, as ASGI gives it."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


FORWARDED_HEADERS = frozenset((b"forwarded", b"x-forwarded-proto", b"x-forwarded-host"))
"""The headers in which a proxy says how the client reached it."""

# A host as a URL may carry it: a name or IPv4 address, or a bracketed IPv6 address, and
# a port. Anything else in a forwarded header is ignored rather than put into a URL.
_HOST = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


class PublicOrigin:
    """Where clients reach this server, for the URLs it hands out (snippet tags, install
    steps, report links, the redirect of ``/``).

    ``public_url`` (``--public-url``), when set, is the answer for every request. Otherwise
    it is the request's scheme and Host; when the peer is one of ``forwarded_allow_ips``
    (IPs or CIDRs, comma-separated, ``*`` for any), the proxy's ``Forwarded`` header
    (RFC 7239), else its ``X-Forwarded-Proto`` and ``X-Forwarded-Host``, say them instead.
    Only the routes that make URLs ask, so the hot routes pay nothing for it.
    """

    def __init__(self, public_url: str = "", forwarded_allow_ips: str = "") -> None:
        self.public_url = public_url.rstrip("/")
        entries = [entry.strip() for entry in forwarded_allow_ips.split(",") if entry.strip()]
        self.trust_any = "*" in entries
        # ValueError for an entry that is neither an address nor a network.
        self.networks = tuple(
            ipaddress.ip_network(entry, strict=False) for entry in entries if entry != "*"
        )

    def trusts(self, peer: str | None) -> bool:
        """Whether a request from ``peer`` may say, in forwarded headers, where it came from."""
        if self.trust_any:
            return True
        if not self.networks or not peer:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:  # a Unix socket's path, say
            return False
        return any(address in network for network in self.networks)

    def of(self, scope: Scope) -> str:
        """``scheme://host[:port][/prefix]`` for the request of ``scope``, no trailing slash."""
        if self.public_url:
            return self.public_url
        scheme = str(scope.get("scheme", "http"))
        raw_host = header(scope, b"host")
        host = None if raw_host is None else raw_host.decode("latin-1")
        client = scope.get("client")
        if self.trusts(client[0] if client else None):
            proto, forwarded_host = _forwarded(scope)
            scheme = proto or scheme
            host = forwarded_host or host
        if host is None:
            server = scope.get("server") or ("127.0.0.1", 80)
            host = f"{server[0]}:{server[1]}"
        return f"{scheme}://{host}"


def _forwarded(scope: Scope) -> tuple[str | None, str | None]:
    """The scheme and host the client used, as the proxy's headers say: ``Forwarded``'s
    first element (the proxy nearest the client) over the ``X-Forwarded-*`` headers; None
    for what they do not say, or say in a shape that is not a scheme or a host."""
    proto = host = None
    forwarded = header(scope, b"forwarded")
    if forwarded is not None:
        first = forwarded.decode("latin-1").split(",")[0]
        for pair in first.split(";"):
            name, _, value = pair.partition("=")
            name, value = name.strip().lower(), value.strip().strip('"')
            if name == "proto":
                proto = value.lower()
            elif name == "host":
                host = value
    else:
        for name, value in scope["headers"]:
            if name == b"x-forwarded-proto" and proto is None:
                proto = value.decode("latin-1").split(",")[0].strip().lower()
            elif name == b"x-forwarded-host" and host is None:
                host = value.decode("latin-1").split(",")[0].strip()
    if proto not in ("http", "https"):
        proto = None
    if host is not None and not _HOST.fullmatch(host):
        host = None
    return proto, host


def decode_body(decoder: msgspec.json.Decoder[T], body: bytes, what: str) -> T:
    """Decode a JSON body into its Struct; every way it can be wrong is a 400 that says
    where (msgspec names the path, e.g. ``$.events[0].ts``)."""
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid {what}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"the body is not valid JSON ({exc}); send a JSON {what}") from None
    except UnicodeDecodeError:
        raise InvalidRequest("the body is not valid UTF-8; send UTF-8 JSON") from None
    except RecursionError:
        raise InvalidRequest(
            f"the body nests arrays or objects too deeply to decode; send a flatter JSON {what}"
        ) from None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, refusing (413) anything over ``limit`` bytes before and
    while reading it, so an oversized body is never buffered."""
    length = header(scope, b"content-length")
    if length is not None:
        if not length.isdigit():
            raise PayloadTooLarge("the Content-Length header is not a number")
        if int(length) > limit:
            raise PayloadTooLarge(f"the body is over the {limit}-byte limit; send less")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is over the {limit}-byte limit; send less")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_response(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes = b""
) -> None:
    """Send a complete response in two messages."""
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def splitedge_error_response(request: Request, exc: Exception) -> Response:
    """Starlette handler: a `SplitedgeError` becomes its status and JSON envelope."""
    assert isinstance(exc, SplitedgeError)
    headers = {"cache-control": "no-store"}
    if exc.retry_after is not None:
        headers["retry-after"] = str(exc.retry_after)
    return Response(
        error_body(exc.code, exc.message),
        status_code=exc.status,
        headers=headers,
        media_type="application/json",
    )


def http_exception_response(request: Request, exc: Exception) -> Response:
    """Starlette handler: routing errors (unknown path, wrong method) in our envelope."""
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    message = {
        404: f"no route {request.url.path}; see the README for the API",
        405: f"{request.method} is not allowed on {request.url.path}",
    }.get(exc.status_code, str(exc.detail))
    return Response(
        error_body(code, message),
        status_code=exc.status_code,
        headers=exc.headers,
        media_type="application/json",
    )


def unexpected_error_response(request: Request, exc: Exception) -> Response:
    """Starlette handler of last resort: a bug on our side, still in the envelope."""
    return Response(
        error_body("internal", "an unexpected error occurred; it has been logged"),
        status_code=500,
        media_type="application/json",
    )


ExceptionHandler = Callable[[Request, Exception], Response]

# The app's exception handlers, for Starlette and for the routes dispatched ahead of it
# (`edge.hot_routes`): the most specific class of an exception picks its handler.
EXCEPTION_HANDLERS: dict[type[Exception], ExceptionHandler] = {
    SplitedgeError: splitedge_error_response,
    HTTPException: http_exception_response,
    Exception: unexpected_error_response,
}
