"""The HTTP plumbing the edge routes share: bounded body reads, JSON errors, raw sends.

The hot routes are plain ASGI callables mounted in Starlette's router, so a request
costs one dict lookup and one ``send`` of precomputed headers. Errors are raised as
`SplitedgeError` and rendered here as ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

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
    "ErrorDetail",
    "ErrorEnvelope",
    "ExceptionHandler",
    "JSON_HEADERS",
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
