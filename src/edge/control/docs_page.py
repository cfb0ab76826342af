"""``GET /docs``: the API reference for people, rendered once from the OpenAPI document.

A self-contained HTML page (no script, no CDN: the server may have no internet, and
users self-host it): every operation with its method, path, summary, parameters, body
fields and responses, grouped by tag, then every schema with its fields. Everything that
comes from the document is escaped.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any

from starlette.types import Receive, Scope, Send

from edge.http import send_response

__all__ = ["DocsPage", "render_docs"]

_REF_PREFIX = "#/components/schemas/"
_METHODS = ("get", "post", "put", "patch", "delete", "options", "head")

_STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; margin: 0 auto; max-width: 70rem;
       padding: 1rem 2rem; color: #1d1f23; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ccd; margin-top: 2.5rem; }
section.op { border: 1px solid #dde; border-radius: 6px; margin: 1.2rem 0; padding: 0 1rem 1rem; }
h3 code { font-size: 1.05rem; }
.method { display: inline-block; min-width: 4.2rem; padding: 0 0.4rem; border-radius: 4px;
          color: #fff; font: bold 0.8rem monospace; text-align: center; background: #557; }
.get { background: #2b6cb0; } .post { background: #2f855a; } .patch { background: #b7791f; }
.delete { background: #c53030; } .options { background: #718096; }
table { border-collapse: collapse; margin: 0.4rem 0 0.8rem; width: 100%; }
th, td { border-bottom: 1px solid #e4e4ee; padding: 0.25rem 0.5rem; text-align: left;
         vertical-align: top; }
th { font-size: 0.8rem; text-transform: uppercase; color: #556; }
code { font-family: ui-monospace, monospace; font-size: 0.9em; }
pre { background: #f4f5f9; border-radius: 4px; padding: 0.5rem 0.8rem; overflow-x: auto; }
.muted { color: #667; } nav ul { columns: 2; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _ref_name(schema: Mapping[str, Any]) -> str | None:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF_PREFIX):
        return ref[len(_REF_PREFIX) :]
    return None


def _anchor(name: str) -> str:
    return "schema-" + "".join(c if c.isalnum() else "-" for c in name)


def _type(schema: Mapping[str, Any]) -> str:
    """The schema's type as HTML, named components linked to their section."""
    name = _ref_name(schema)
    if name is not None:
        return f'<a href="#{_e(_anchor(name))}"><code>{_e(name)}</code></a>'
    for combinator in ("anyOf", "oneOf", "allOf"):
        if combinator in schema:
            joiner = " &amp; " if combinator == "allOf" else " | "
            return joiner.join(_type(part) for part in schema[combinator])
    if "const" in schema:
        return f"<code>{_e(json.dumps(schema['const']))}</code>"
    if "enum" in schema:
        return " | ".join(f"<code>{_e(json.dumps(v))}</code>" for v in schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(_type({**schema, "type": k}) for k in kind)
    if kind == "array":
        if "prefixItems" in schema:
            return "[" + ", ".join(_type(item) for item in schema["prefixItems"]) + "]"
        return "array of " + _type(schema.get("items", {}))
    if kind == "object":
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and "properties" not in schema:
            return "map of " + _type(extra)
        return "object"
    if kind is None:
        return "any"
    text = f"<code>{_e(kind)}</code>"
    if "format" in schema:
        text += f" ({_e(schema['format'])})"
    return text


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


def _constraints(schema: Mapping[str, Any]) -> list[str]:
    found = [template.format(schema[key]) for key, template in _BOUNDS if key in schema]
    for part in schema.get("anyOf", ()):
        found += _constraints(part)
    return found


def _notes(schema: Mapping[str, Any], description: str | None = None) -> str:
    parts = []
    text = description if description is not None else schema.get("description")
    if text:
        parts.append(_e(text))
    bounds = _constraints(schema)
    if bounds:
        parts.append(f'<span class="muted">{_e("; ".join(bounds))}</span>')
    if "default" in schema:
        default = json.dumps(schema["default"])
        parts.append(f'<span class="muted">default <code>{_e(default)}</code></span>')
    return "<br>".join(parts)


def _fields_table(schema: Mapping[str, Any]) -> str:
    properties: Mapping[str, Any] = schema.get("properties", {})
    if not properties:
        return ""
    required = set(schema.get("required", ()))
    rows = "".join(
        f"<tr><td><code>{_e(name)}</code></td><td>{_type(field)}</td>"
        f"<td>{'yes' if name in required else ''}</td><td>{_notes(field)}</td></tr>"
        for name, field in properties.items()
    )
    return (
        f"<table><tr><th>field</th><th>type</th><th>required</th><th>notes</th></tr>{rows}</table>"
    )


class _Page:
    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document
        self.components: Mapping[str, Any] = document.get("components", {}).get("schemas", {})

    def resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        name = _ref_name(schema)
        if name is None:
            return schema
        found: Mapping[str, Any] = self.components.get(name, {})
        return found

    def operations(self) -> list[tuple[str, str, Mapping[str, Any]]]:
        found = []
        for path, item in self.document.get("paths", {}).items():
            for method in _METHODS:
                if method in item:
                    found.append((path, method, item[method]))
        return found

    def parameters(self, op: Mapping[str, Any]) -> str:
        params = op.get("parameters", ())
        if not params:
            return ""
        rows = "".join(
            f"<tr><td><code>{_e(p['name'])}</code></td><td>{_e(p['in'])}</td>"
            f"<td>{_type(p.get('schema', {}))}</td><td>{'yes' if p.get('required') else ''}</td>"
            f"<td>{_notes(p.get('schema', {}), p.get('description'))}</td></tr>"
            for p in params
        )
        return (
            "<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>type</th>"
            f"<th>required</th><th>notes</th></tr>{rows}</table>"
        )

    def body(self, op: Mapping[str, Any]) -> str:
        body = op.get("requestBody")
        if not body:
            return ""
        parts = []
        for media, content in body.get("content", {}).items():
            schema = content.get("schema", {})
            resolved = self.resolve(schema)
            parts.append(f"<p><code>{_e(media)}</code>: {_type(schema)}</p>")
            if resolved.get("description") and resolved is not schema:
                parts.append(f"<p>{_e(resolved['description'])}</p>")
            parts.append(_fields_table(resolved))
            if "example" in content:
                example = json.dumps(content["example"], indent=2, ensure_ascii=False)
                parts.append(f"<p>Example:</p><pre><code>{_e(example)}</code></pre>")
        return "<h4>Body</h4>" + "".join(parts)

    def answer(self, schema: Mapping[str, Any]) -> str:
        properties = schema.get("properties", {})
        if "data" in properties and _ref_name(schema) is None:
            inner = ", ".join(
                f"<code>{_e(name)}</code>: {_type(field)}" for name, field in properties.items()
            )
            return "{" + inner + "}"
        return _type(schema)

    def responses(self, op: Mapping[str, Any]) -> str:
        rows = []
        for status, response in op.get("responses", {}).items():
            bodies = "<br>".join(
                f"<code>{_e(media)}</code>: {self.answer(content.get('schema', {}))}"
                for media, content in response.get("content", {}).items()
            )
            rows.append(
                f"<tr><td><code>{_e(status)}</code></td><td>{_e(response.get('description', ''))}"
                f"</td><td>{bodies or '<span class=muted>no body</span>'}</td></tr>"
            )
        return (
            "<h4>Responses</h4><table><tr><th>status</th><th>meaning</th><th>body</th></tr>"
            + "".join(rows)
            + "</table>"
        )

    def operation(self, path: str, method: str, op: Mapping[str, Any]) -> str:
        security = op.get("security", [])
        if not security:
            auth = "No API key."
        elif {} in security:
            auth = "API key for some requests (see the description)."
        else:
            auth = "API key: <code>Authorization: Bearer sk_live_...</code>"
        description = op.get("description")
        return (
            f'<section class="op" id="{_e(op.get("operationId", ""))}">'
            f'<h3><span class="method {_e(method)}">{_e(method.upper())}</span> '
            f"<code>{_e(path)}</code></h3>"
            f"<p><strong>{_e(op.get('summary', ''))}</strong></p>"
            + (f"<p>{_e(description)}</p>" if description else "")
            + f'<p class="muted">{auth}</p>'
            + self.parameters(op)
            + self.body(op)
            + self.responses(op)
            + "</section>"
        )

    def schemas(self) -> str:
        parts = ["<h2 id=schemas>Schemas</h2>"]
        for name, schema in self.components.items():
            description = schema.get("description")
            parts.append(
                f'<section id="{_e(_anchor(name))}"><h3><code>{_e(name)}</code></h3>'
                + (f"<p>{_e(description)}</p>" if description else "")
                + (_fields_table(schema) or f"<p>{_type(schema)}</p>")
                + "</section>"
            )
        return "".join(parts)

    def render(self) -> str:
        info = self.document.get("info", {})
        title = f"{info.get('title', 'API')} {info.get('version', '')}".strip()
        by_tag: dict[str, list[tuple[str, str, Mapping[str, Any]]]] = {}
        for path, method, op in self.operations():
            by_tag.setdefault((op.get("tags") or ["other"])[0], []).append((path, method, op))
        nav = "".join(
            f"<li><strong>{_e(tag)}</strong>: "
            + ", ".join(
                f'<a href="#{_e(op.get("operationId", ""))}">{_e(method.upper())} {_e(path)}</a>'
                for path, method, op in ops
            )
            + "</li>"
            for tag, ops in by_tag.items()
        )
        sections = "".join(
            f'<h2 id="tag-{_e(tag)}">{_e(tag)}</h2>'
            + "".join(self.operation(path, method, op) for path, method, op in ops)
            for tag, ops in by_tag.items()
        )
        return (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{_e(title)}</h1><p>{_e(info.get('description', ''))}</p>"
            '<p>The machine-readable document: <a href="/openapi.json">/openapi.json</a> '
            f"(OpenAPI {_e(self.document.get('openapi', ''))}).</p>"
            f"<nav><ul>{nav}</ul></nav>{sections}{self.schemas()}</body></html>"
        )


def render_docs(document: Mapping[str, Any]) -> str:
    """The reference page of an OpenAPI document."""
    return _Page(document).render()


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
