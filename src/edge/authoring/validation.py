"""Checking authored mutations against the page they were authored for.

Every author's output goes through `validate_mutations` before it is returned, so a
variant never carries a selector that finds nothing on the fetched page, an action the
snippet does not know, a ``set_attribute`` without an attribute name, or a change that
would run script in a visitor's browser (`edge.mutation_rules`: an ``on*`` handler, a
``javascript:`` URL).
A text payload (``set_content``, ``insert_before``, ``insert_after``) may not show
what the request gave as something else (``forbidden``): a URL in a request is where a
link goes, and scope words ("on every /report/* page") say where the test runs.
What is dropped is said, and the author asks rather than answer without it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final, get_args

from edge.authoring.page import Page
from edge.config import MutationAction, MutationConfig
from edge.mutation_rules import script_risk

__all__ = ["ACTIONS", "MAX_MUTATIONS", "MAX_PAYLOAD", "validate_mutations"]

ACTIONS: Final = frozenset(get_args(MutationAction))
"""The actions the snippet runtime applies."""

MAX_MUTATIONS: Final = 20
"""Most changes one authored variant may carry."""

MAX_PAYLOAD: Final = 10_000
"""Longest payload accepted, in characters."""

MAX_SELECTOR: Final = 500

# ASCII attribute names only: what an author legitimately sets (href, src, alt, data-*).
_ATTRIBUTE: Final = re.compile(r"[A-Za-z_:][A-Za-z0-9_:.-]*")


_TEXT_ACTIONS: Final = frozenset({"set_content", "insert_before", "insert_after"})


def _problem(page: Page, change: MutationConfig, forbidden: Sequence[str]) -> str | None:
    """Why ``change`` cannot be kept, or None."""
    if change.action not in ACTIONS:
        return f"its action {change.action!r} is not one of {', '.join(sorted(ACTIONS))}"
    selector = change.selector.strip()
    if not selector or len(selector) > MAX_SELECTOR:
        return "its selector is empty or too long"
    if len(change.payload) > MAX_PAYLOAD:
        return f"its payload is over {MAX_PAYLOAD:,} characters"
    if change.action == "set_attribute":
        name = (change.attribute_name or "").lower()
        if not _ATTRIBUTE.fullmatch(name):
            return "set_attribute needs an attribute_name such as href"
        risk = script_risk(change)
        if risk is not None:
            return risk
    elif change.attribute_name:
        return "attribute_name is only for set_attribute"
    if change.action in ("add_class", "remove_class") and not change.payload.split():
        return f"{change.action} needs class names in its payload"
    if page.count(selector) == 0:
        return f"its selector {selector!r} matches nothing on {page.url}"
    if change.action in _TEXT_ACTIONS:
        shown = change.payload.lower()
        for text in forbidden:
            if text.strip() and text.strip().lower() in shown:
                return (
                    f"it would show {text.strip()[:200]!r} on the page, which the request "
                    "gives as a link's destination or as where the test runs, not as text"
                )
    return None


def validate_mutations(
    page: Page, mutations: Sequence[MutationConfig], forbidden: Sequence[str] = ()
) -> tuple[tuple[MutationConfig, ...], tuple[str, ...], tuple[str, ...]]:
    """The mutations that may be applied to ``page`` (duplicates dropped, at most
    `MAX_MUTATIONS`), why each other one was dropped, and a note for each kept one that
    matches several elements. ``forbidden``: texts no text payload may contain."""
    kept: list[MutationConfig] = []
    dropped: list[str] = []
    notes: list[str] = []
    for change in mutations:
        problem = _problem(page, change, forbidden)
        if problem is not None:
            dropped.append(f"Dropped a {change.action} change: {problem}.")
            continue
        if change in kept:
            continue
        if len(kept) == MAX_MUTATIONS:
            dropped.append(f"Kept the first {MAX_MUTATIONS} changes; the rest were dropped.")
            break
        matched = page.count(change.selector)
        if matched > 1:
            notes.append(
                f"{change.selector} matches {matched} elements on the page; the change "
                "applies to all of them."
            )
        kept.append(change)
    return tuple(kept), tuple(dropped), tuple(notes)
