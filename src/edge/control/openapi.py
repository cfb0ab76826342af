"""The OpenAPI 3.1 document of the server, built from its routes, and ``GET /openapi.json``.

Every `edge.operation.DocumentedRoute` of the app contributes the `Operation` of each of
its methods: the schemas come from the very types the endpoints decode and encode
(``msgspec.json.schema_components``), the path parameters from the route's path, the
query parameters from the fields of the operation's ``query`` Struct, and each status it
can answer is documented: the success envelope ``{data, meta}``, or the shared error
envelope ``{error: {code, message}}``. The document is built once, when the app is made.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterable
from importlib import metadata
from typing import Any, Union, get_args, get_origin

import msgspec
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

from edge.http import ErrorEnvelope, send_response
from edge.operation import DocumentedRoute, Operation

__all__ = ["OPENAPI_VERSION", "OpenApiEndpoint", "openapi_document", "operations"]

OPENAPI_VERSION = "3.1.0"

_REF = "#/components/schemas/{name}"
_ERROR_REF = {"$ref": _REF.format(name=ErrorEnvelope.__name__)}
_PATH_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?}")
_NO_BODY = frozenset({204, 304})
# A path segment: never empty, and a "/" (even sent as %2F) makes it another path.
_PATH_SCHEMA = {"type": "string", "minLength": 1, "pattern": "^[^/]+$"}

_SUCCESS = {
    200: "OK.",
    201: "Created.",
    204: "No content.",
    304: "Not modified: the If-None-Match tag is current.",
}
_ERRORS = {
    400: "Invalid request: the message names what is wrong and what to send instead.",
    401: "No API key, or an unknown or revoked one: send Authorization: Bearer sk_live_...",
    402: "The workspace's plan does not allow it: no more sites, or not enough credits.",
    403: "A site's public key where the API takes a workspace key (sk_live_...).",
    404: "Unknown, or another workspace's (the two are never told apart).",
    409: "The change contradicts the resource's current state.",
    413: "The body is over the size limit.",
    429: "The API key is over its plan's requests per minute; retry after Retry-After.",
    503: "Not ready (the config is loading, or ClickHouse is unavailable); retry after "
    "Retry-After.",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds after which a retry may succeed.",
        "schema": {"type": "integer", "minimum": 0},
    }
}

_INFO_DESCRIPTION = (
    "splitedge: website A/B tests and AI-agent experiments on one self-hosted engine. "
    "Control-plane routes take a workspace API key (Authorization: Bearer sk_live_...) "
    'and answer {"data": ..., "meta": {...}}; every error is '
    '{"error": {"code": ..., "message": ...}} with a message that says what to fix.'
)


def operations(routes: Iterable[BaseRoute]) -> list[tuple[str, str, Operation]]:
    """The (path, method, operation) of every documented method of ``routes``, in order."""
    return [
        (route.path, method, operation)
        for route in routes
        if isinstance(route, DocumentedRoute)
        for method, operation in route.operations.items()
    ]


def _without_none(kind: Any) -> Any:
    """A query parameter's type without its ``| None``: a query string has no null."""
    if get_origin(kind) in (Union, types.UnionType):
        rest = tuple(arg for arg in get_args(kind) if arg is not type(None))
        return rest[0] if len(rest) == 1 else Union[rest]  # noqa: UP007 (a runtime union)
    return kind


def _members(kind: Any) -> tuple[Any, ...]:
    if get_origin(kind) in (Union, types.UnionType):
        return get_args(kind)
    return (kind,)


class _Schemas:
    """The types of every operation, turned into schemas in one pass so that each Struct
    is one shared component. A union is added member by member: msgspec describes only
    the tagged unions of Structs it can decode, and the answers' unions are not tagged."""

    def __init__(self) -> None:
        self.types: list[Any] = [ErrorEnvelope]
        self.schemas: list[dict[str, Any]] = []
        self.components: dict[str, Any] = {}

    def add(self, kind: Any) -> list[int]:
        """Where the schema of ``kind`` will be: one index per member of a union."""
        start = len(self.types)
        self.types.extend(_members(kind))
        return list(range(start, len(self.types)))

    def build(self) -> None:
        schemas, self.components = msgspec.json.schema_components(self.types, ref_template=_REF)
        self.schemas = list(schemas)

    def __getitem__(self, slot: list[int]) -> dict[str, Any]:
        if len(slot) == 1:
            return self.schemas[slot[0]]
        return {"anyOf": [self.schemas[index] for index in slot]}


class _Planned(msgspec.Struct):
    """One operation with where the schemas of its types are in `_Schemas`."""

    path: str
    method: str
    operation: Operation
    body: list[int] | None
    data: list[int] | None
    meta: list[int] | None
    query: list[tuple[msgspec.structs.FieldInfo, list[int]]]


def _plan(path: str, method: str, operation: Operation, schemas: _Schemas) -> _Planned:
    query = []
    if operation.query is not None:
        for field in msgspec.structs.fields(operation.query):
            query.append((field, schemas.add(_without_none(field.type))))
    return _Planned(
        path=path,
        method=method,
        operation=operation,
        body=None if operation.body is None else schemas.add(operation.body.type),
        data=None if operation.data is None else schemas.add(operation.data),
        meta=None if operation.meta is None else schemas.add(operation.meta),
        query=query,
    )


def _tag(path: str) -> str:
    parts = path.strip("/").split("/")
    if parts[0] == "v1" and len(parts) > 1:
        return parts[1]
    return "snippet" if parts[0] == "s" else "health"


def _operation_id(method: str, path: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", path)
    return "_".join([method.lower(), *words])


def _parameters(planned: _Planned, schemas: _Schemas) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": _PATH_SCHEMA}
        for name in _PATH_PARAM.findall(planned.path)
    ]
    for field, slot in planned.query:
        schema = dict(schemas[slot])
        param: dict[str, Any] = {"name": field.encode_name, "in": "query"}
        if "description" in schema:
            param["description"] = schema.pop("description")
        if field.default not in (msgspec.NODEFAULT, None):
            schema["default"] = field.default
        param["required"] = field.required
        param["schema"] = schema
        params.append(param)
    return params


def _success(planned: _Planned, schemas: _Schemas) -> dict[str, Any]:
    op = planned.operation
    if planned.data is None:
        return {}
    data = schemas[planned.data]
    if not op.envelope:
        return {op.media_type: {"schema": data}}
    properties = {"data": data}
    if planned.meta is not None:
        properties["meta"] = schemas[planned.meta]
    envelope = {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }
    return {op.media_type: {"schema": envelope}}


def _error_statuses(op: Operation) -> list[int]:
    statuses = set(op.errors)
    if op.body is not None:
        statuses |= {400, 413}
    if op.query is not None:
        statuses.add(400)
    if op.auth == "required":
        statuses.add(401)
    return sorted(statuses)


def _responses(planned: _Planned, schemas: _Schemas) -> dict[str, Any]:
    op = planned.operation
    responses: dict[str, Any] = {}
    for status in op.statuses:
        response: dict[str, Any] = {"description": _SUCCESS.get(status, "Success.")}
        content = {} if status in _NO_BODY else _success(planned, schemas)
        if content:
            response["content"] = content
        responses[str(status)] = response
    for status in _error_statuses(op):
        if op.media_type == "application/json":
            schema: dict[str, Any] = _ERROR_REF
        else:
            schema = {"type": "string"}
        response = {
            "description": _ERRORS.get(status, "Error."),
            "content": {op.media_type: {"schema": schema}},
        }
        if status in (429, 503):
            response["headers"] = _RETRY_AFTER
        responses[str(status)] = response
    return responses


def _security(op: Operation) -> list[dict[str, list[str]]]:
    if op.auth == "required":
        return [{"bearerAuth": []}]
    if op.auth == "optional":
        return [{}, {"bearerAuth": []}]
    return []


def _operation_object(planned: _Planned, schemas: _Schemas) -> dict[str, Any]:
    op = planned.operation
    result: dict[str, Any] = {
        "operationId": _operation_id(planned.method, planned.path),
        "summary": op.summary,
        "tags": [_tag(planned.path)],
    }
    if op.description:
        result["description"] = op.description
    parameters = _parameters(planned, schemas)
    if parameters:
        result["parameters"] = parameters
    if planned.body is not None:
        media: dict[str, Any] = {"schema": schemas[planned.body]}
        if op.example is not None:
            media["example"] = op.example
        result["requestBody"] = {"required": True, "content": {"application/json": media}}
    result["responses"] = _responses(planned, schemas)
    result["security"] = _security(op)
    return result


def _version() -> str:
    try:
        return metadata.version("splitedge")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0.0.0"


def openapi_document(routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the documented ``routes``, as a JSON-ready dict."""
    schemas = _Schemas()
    planned = [_plan(path, method, op, schemas) for path, method, op in operations(routes)]
    schemas.build()
    paths: dict[str, dict[str, Any]] = {}
    for plan in planned:
        paths.setdefault(plan.path, {})[plan.method.lower()] = _operation_object(plan, schemas)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "splitedge", "version": _version(), "description": _INFO_DESCRIPTION},
        "servers": [{"url": "/", "description": "This server."}],
        "paths": paths,
        "components": {
            "schemas": schemas.components,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A workspace API key, sk_live_ and 43 more characters "
                    "(`splitedge keys create --workspace NAME`).",
                }
            },
        },
    }


class OpenApiEndpoint:
    """``GET /openapi.json``: the document, encoded once."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.body = msgspec.json.encode(document)
        self.headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-cache")]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_response(
            send, 200, self.headers, b"" if scope["method"] == "HEAD" else self.body
        )
