"""What a route's methods do, declared next to their endpoints for the OpenAPI document.

An `Operation` names the types an endpoint really decodes and encodes (the body's
decoder itself, the ``data`` and ``meta`` of its answer), its success statuses, its
query parameters (the fields of a Struct) and the error statuses it can answer; a
`DocumentedRoute` is a Starlette route that carries the operation of each of its methods.
`edge.control.openapi` builds the document from the app's documented routes, so what
the document says is what the code does: the shapes come from the same Structs, and
schemathesis checks the answers against them (``tests/test_openapi.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Literal

import msgspec
from starlette.routing import Route
from starlette.types import Receive, Send

__all__ = ["AuthMode", "DocumentedRoute", "Operation"]

AuthMode = Literal["required", "optional", "none"]
"""Whether an operation takes the bearer API key: always, only for some requests (e.g.
``/v1/assign`` by ``site_id``), or never (public keys, health)."""


class Operation(msgspec.Struct, frozen=True, kw_only=True):
    """One method of a route as the OpenAPI document tells it.

    ``body`` is the decoder the endpoint reads its JSON body with (its ``type`` is the
    request schema); ``data`` is the type of the answer's ``data``, ``meta`` that of its
    ``meta`` (None: the answer has no ``meta``), or with ``envelope=False`` ``data`` is
    the whole answer; ``data=None`` is an answer without a body. ``statuses`` are the
    success statuses, ``errors`` the error statuses beyond those the plumbing implies
    (a body: 400 and 413; query parameters: 400; a required key: 401). ``query`` is a
    Struct whose fields are the query parameters, described by their ``msgspec.Meta``.
    ``media_type`` is that of the answers (errors included) when they are not JSON;
    ``example`` is a request body as a caller would send it (the tests decode it).
    """

    summary: str
    description: str = ""
    body: msgspec.json.Decoder[Any] | None = None
    data: Any = None
    meta: Any = None
    envelope: bool = True
    statuses: tuple[int, ...] = (200,)
    query: Any = None
    errors: tuple[int, ...] = ()
    auth: AuthMode = "required"
    media_type: str = "application/json"
    example: Any = None


# A raw ASGI endpoint; the servers pass the scope as a dict.
Endpoint = Callable[[Any, Receive, Send], Awaitable[None]]


class DocumentedRoute(Route):
    """A Starlette route for a raw ASGI ``endpoint`` with the `Operation` of each of its
    methods, which the OpenAPI document reads. It answers ``methods`` (default: those of
    ``operations``); any other method is Starlette's 405."""

    def __init__(
        self,
        path: str,
        endpoint: Endpoint,
        operations: Mapping[str, Operation],
        methods: Iterable[str] | None = None,
    ) -> None:
        super().__init__(path, endpoint, methods=sorted(operations if methods is None else methods))
        self.operations: dict[str, Operation] = dict(operations)
