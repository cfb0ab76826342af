"""``GET /docs``: the API reference for people, rendered once from the OpenAPI document.

A self-contained HTML page (``templates/docs.html``; no script, no CDN: the server may
have no internet, and users self-host it): every operation with its method, path,
summary, parameters, body fields and responses, grouped by tag, then every schema with
its fields. The template is autoescaped: everything that comes from the document is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.types import Receive, Scope, Send

from edge.control.templating import render
from edge.http import send_response

__all__ = ["DocsPage", "render_docs"]

_REF_PREFIX = "#/components/schemas/"
_METHODS = ("get", "post", "put", "patch", "delete", "options", "head")

_COMBINATORS = ("anyOf", "oneOf", "allOf")

_BOUNDS = (
    ("minimum", "≥ {}"),
    ("exclusiveMinimum", "> {}"),
    ("maximum", "≤ {}"),
    ("exclusiveMaximum", "< {}"),
    ("minLength", "length ≥ {}"),
    ("maxLength", "length ≤ {}"),
    ("minItems", "≥ {} items"),
    ("maxItems", "≤ {} items"),
    ("minProperties", "≥ {} entries"),
    ("maxProperties", "≤ {} entries"),
    ("pattern", "matches {}"),
)


def _ref_name(schema: Mapping[str, Any]) -> str | None:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF_PREFIX):
        return ref[len(_REF_PREFIX) :]
    return None


def _anchor(name: str) -> str:
    return "schema-" + "".join(c if c.isalnum() else "-" for c in name)


def _first_combinator(schema: Mapping[str, Any]) -> str | None:
    return next((c for c in _COMBINATORS if c in schema), None)


def _with_type(schema: Mapping[str, Any], kind: str) -> dict[str, Any]:
    return {**schema, "type": kind}


def _constraints(schema: Mapping[str, Any]) -> list[str]:
    found = [template.format(schema[key]) for key, template in _BOUNDS if key in schema]
    for part in schema.get("anyOf", ()):
        found += _constraints(part)
    return found


def _example_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def render_docs(document: Mapping[str, Any]) -> str:
    """The reference page of an OpenAPI document."""
    components: Mapping[str, Any] = document.get("components", {}).get("schemas", {})

    def resolve(schema: Mapping[str, Any]) -> Mapping[str, Any]:
        name = _ref_name(schema)
        found: Mapping[str, Any] = schema if name is None else components.get(name, {})
        return found

    by_tag: dict[str, list[tuple[str, str, Mapping[str, Any]]]] = {}
    for path, item in document.get("paths", {}).items():
        for method in _METHODS:
            if method in item:
                op = item[method]
                by_tag.setdefault((op.get("tags") or ["other"])[0], []).append((path, method, op))
    info = document.get("info", {})
    return render(
        "docs.html",
        title=f"{info.get('title', 'API')} {info.get('version', '')}".strip(),
        info=info,
        openapi=document.get("openapi", ""),
        by_tag=by_tag,
        components=components,
        resolve=resolve,
        ref_name=_ref_name,
        anchor=_anchor,
        first_combinator=_first_combinator,
        with_type=_with_type,
        constraints=_constraints,
        to_json=json.dumps,
        example_json=_example_json,
    )


class DocsPage:
    """``GET /docs``: the page, rendered once."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.body = render_docs(document).encode()
        self.headers = [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_response(
            send, 200, self.headers, b"" if scope["method"] == "HEAD" else self.body
        )
