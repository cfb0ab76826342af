"""The Jinja environment of the server's HTML pages (results report, API docs, demo).

Templates live in ``edge/control/templates`` (package data, so they ship in the wheel)
and are autoescaped: every value a template prints is HTML-escaped unless it is marked
safe, so a name a user chose can never become markup.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

__all__ = ["render"]

_ENVIRONMENT = Environment(
    loader=PackageLoader("edge.control", "templates"),
    autoescape=select_autoescape(("html",), default_for_string=True, default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def render(name: str, **context: Any) -> str:
    """The template ``name`` rendered with ``context``."""
    return _ENVIRONMENT.get_template(name).render(**context)
