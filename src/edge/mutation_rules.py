"""The one rule for what a variant's DOM change may not do, whoever wrote it: the author
(`edge.authoring.validation`, which drops such a change with a warning) or a caller's
explicit changes (`edge.control.experiment_input`, which answers 400).

A change must not run script in a visitor's browser or restyle the page behind
``set_style``'s back. So ``set_attribute`` may not set an event handler (any ``on*``
attribute), ``style`` (use ``set_style``) or ``srcdoc`` (a whole document), nor give a
URL attribute a ``javascript:``, ``vbscript:`` or ``data:`` URL. URLs are judged as a
browser reads them: case-insensitively, with the spaces, tabs, newlines and control
characters it ignores taken out first (``" java\\tscript:"`` is ``javascript:``).
The snippet sets attributes with ``setAttribute``, so no HTML entity is decoded on the
way. HTML payloads (``set_content``, ``insert_before``, ``insert_after``) are the site
owner's own markup and are not judged here; docs/variants.md says so.
"""

from __future__ import annotations

import re
from typing import Final

from edge.config import MutationConfig

__all__ = ["SCRIPT_URL_ATTRIBUTES", "script_risk"]

SCRIPT_URL_ATTRIBUTES: Final = frozenset(
    {"href", "src", "action", "formaction", "srcset", "poster", "xlink:href", "data",
     "codebase", "background", "cite", "ping", "manifest", "lowsrc", "dynsrc"}
)  # fmt: skip
"""Attributes whose value the browser may load or navigate to as a URL."""

_SCRIPT_SCHEME: Final = re.compile(r"(?:javascript|vbscript|data):", re.I)
_IGNORED_IN_URLS: Final = re.compile(r"[\x00-\x20\x7f]+")


def script_risk(change: MutationConfig) -> str | None:
    """Why ``change`` could run script or restyle the page, or None when it cannot."""
    if change.action != "set_attribute":
        return None
    name = (change.attribute_name or "").strip().lower()
    if name.startswith("on"):
        return f"setting {name!r} would install an event handler, which runs script"
    if name in ("style", "srcdoc"):
        return f"setting {name!r} could run script or restyle the page; use set_style"
    if name in SCRIPT_URL_ATTRIBUTES and _SCRIPT_SCHEME.match(
        _IGNORED_IN_URLS.sub("", change.payload)
    ):
        return f"its {name} URL would run script (javascript:, vbscript: or data:)"
    return None
