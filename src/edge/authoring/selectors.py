"""Stable CSS selectors for elements of a parsed page, and their validation.

A variant's selector must still find its element after the next deploy of the site, so
it is built from what people name on purpose: an ``#id``, then the element's own
meaningful class, scoped by the nearest ancestor class that makes it unique (the
reference's ``.plan--pro a.cta``), then a link's ``href``; ``:nth-of-type`` only as the
last resort. Class names that look generated (CSS-in-JS and CSS-module hashes such as
``css-1q2w3e4``, ``sc-bdfBwQ``, ``Hero_title__3kXyZ``) and state classes (``is-active``)
are never used: they change between builds or while the page runs.

Every selector returned matches exactly one element of the page (`count_matches`, with
soupsieve, the engine BeautifulSoup uses).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import soupsieve
from bs4 import BeautifulSoup, Tag

__all__ = ["count_matches", "is_stable_class", "stable_selector"]

_PLAIN_IDENT = re.compile(r"-?[A-Za-z_][A-Za-z0-9_-]*")
_GENERATED_PREFIX = re.compile(r"(?:css|sc|jsx|emotion|svelte|astro|tw)-", re.I)
# A CSS-module suffix ("title__3kXyZ", "title_a1b2c"): a hash after an underscore that
# has a digit or an upper-case letter (BEM's "hero__title" has neither).
_MODULE_HASH = re.compile(r"_(?=[A-Za-z0-9-]*[0-9A-Z])[A-Za-z0-9-]{5,}$")
_STATE_CLASS = re.compile(
    r"(?:is|has)-.*|active|current|selected|open|hover|focus|visible|hidden", re.I
)
_UNSAFE_ATTRIBUTE_VALUE = re.compile(r'["\\\n\r]')


# Escapes and quoted strings (attribute values, :contains() text) may hold "::" or "@";
# outside them, "::" starts a pseudo-element and "@" an at-rule.
_ESCAPE_OR_STRING = re.compile(r"""\\.|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'""", re.S)
_PSEUDO_ELEMENT_OR_AT_RULE = re.compile(r"::|@")


def _matches_no_element(selector: str) -> bool:
    """Whether ``selector`` names a pseudo-element (``::before``) or holds an at-rule:
    neither matches an element, and soupsieve refuses both rather than answer none."""
    return bool(_PSEUDO_ELEMENT_OR_AT_RULE.search(_ESCAPE_OR_STRING.sub("x", selector)))


def _select(soup: BeautifulSoup | Tag, selector: str, limit: int = 0) -> list[Tag]:
    """The elements ``selector`` matches (at most ``limit``, 0: all); none for a selector
    that matches no element by its form or that soupsieve cannot parse."""
    if _matches_no_element(selector):
        return []
    try:
        return list(soup.select(selector, limit=limit))
    except (soupsieve.SelectorSyntaxError, ValueError):
        return []


def count_matches(soup: BeautifulSoup | Tag, selector: str) -> int:
    """How many elements ``selector`` matches; 0 for a selector soupsieve cannot parse
    (the browser would reject it too)."""
    return len(_select(soup, selector))


def is_stable_class(name: str) -> bool:
    """Whether ``name`` is a class a person chose (not a build hash or a runtime state)
    that can be written in a selector without escaping."""
    if not _PLAIN_IDENT.fullmatch(name) or len(name) > 40:
        return False
    if _GENERATED_PREFIX.match(name) or _MODULE_HASH.search(name):
        return False
    if _STATE_CLASS.fullmatch(name):
        return False
    # A run of mixed letters and digits with no separator ("x1a2b3c") is a hash.
    return not (re.fullmatch(r"[A-Za-z0-9]{6,}", name) and re.search(r"\d.*\d", name))


def _classes(element: Tag) -> list[str]:
    value = element.get("class")
    names = value if isinstance(value, list) else (value or "").split()
    return [name for name in names if is_stable_class(name)]


def _id_selector(element: Tag) -> str | None:
    value = element.get("id")
    if isinstance(value, str) and _PLAIN_IDENT.fullmatch(value) and is_stable_class(value):
        return f"#{value}"
    return None


def _own_forms(element: Tag) -> Iterator[str]:
    """Ways to name the element itself, most meaningful first."""
    classes = _classes(element)
    for name in classes:
        yield f"{element.name}.{name}"
    href = element.get("href")
    if element.name == "a" and isinstance(href, str) and href:
        if not _UNSAFE_ATTRIBUTE_VALUE.search(href) and len(href) <= 200:
            yield f'a[href="{href}"]'
    yield element.name


def _scopes(element: Tag) -> Iterator[str]:
    """Names of the element's ancestors, nearest first: each ancestor's id, then its
    stable classes."""
    for ancestor in element.parents:
        if not isinstance(ancestor, Tag) or ancestor.name in ("[document]", "html", "body"):
            continue
        own_id = _id_selector(ancestor)
        if own_id:
            yield own_id
        for name in _classes(ancestor):
            yield f".{name}"


def _short(form: str, element: Tag) -> str:
    """``.price`` rather than ``span.price`` when the tag adds nothing to a class; links
    and buttons keep theirs (``.plan--pro a.cta`` says what is clicked)."""
    prefix = f"{element.name}."
    if element.name in ("a", "button") or not form.startswith(prefix):
        return form
    return form[len(element.name) :]


def _unique(soup: BeautifulSoup, selector: str, element: Tag) -> bool:
    found = _select(soup, selector, limit=2)
    return len(found) == 1 and found[0] is element


def _step(element: Tag) -> str:
    """One level of a positional path: tag and first stable class, with its position
    among its siblings of the same tag when it has any."""
    classes = _classes(element)
    name = f"{element.name}.{classes[0]}" if classes else element.name
    parent = element.parent
    if not isinstance(parent, Tag):
        return name
    same = parent.find_all(element.name, recursive=False)
    return name if len(same) == 1 else f"{name}:nth-of-type({same.index(element) + 1})"


def _nth_path(soup: BeautifulSoup, element: Tag) -> str:
    """The last resort: a ``>`` path of positions from the nearest ancestor that makes
    it unique (or from ``body``)."""
    steps: list[str] = []
    node: Tag = element
    while True:
        steps.insert(0, _step(node))
        path = " > ".join(steps)
        parent = node.parent
        if not isinstance(parent, Tag) or parent.name in ("[document]", "html", "body"):
            return f"body > {path}" if parent is not None and parent.name == "body" else path
        # A path of bare tags that happens to be unique ("p:nth-of-type(3)") breaks as
        # soon as a paragraph is added anywhere: it needs a named start.
        if "." in steps[0] and _unique(soup, path, element):
            return path
        anchors = [own for own in (_id_selector(parent),) if own]
        anchors += [f".{name}" for name in _classes(parent)]
        for anchor in anchors:
            if _unique(soup, f"{anchor} > {path}", element):
                return f"{anchor} > {path}"
        node = parent


def stable_selector(soup: BeautifulSoup, element: Tag) -> str:
    """A selector that matches ``element`` and nothing else in ``soup``, as stable as the
    markup allows (see the module docstring for the order of preference)."""
    own_id = _id_selector(element)
    if own_id and _unique(soup, own_id, element):
        return own_id
    forms = list(_own_forms(element))
    # A class alone when it names this element: a BEM element ("hero__title") or the
    # first class, never a modifier ("button--primary" styles many elements over time).
    classes = _classes(element)
    alone = [name for name in classes if "__" in name and "--" not in name]
    alone += [name for name in classes[:1] if "--" not in name and name not in alone]
    for name in alone:
        if _unique(soup, f".{name}", element):
            return f".{name}"
    scopes = list(_scopes(element))
    for form in forms:
        for scope in scopes:
            candidate = f"{scope} {_short(form, element)}"
            if _unique(soup, candidate, element):
                return candidate
        if _unique(soup, _short(form, element), element):
            return _short(form, element)
    return _nth_path(soup, element)
