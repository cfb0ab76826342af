"""A fetched page, parsed for authoring: its visible text, its headline, subhead, copy,
calls to action, prices and links, its tech stack, and stable selectors for its elements.

Parsed with BeautifulSoup's ``html.parser`` (no native dependency); the elements it hands
out are the soup's own, so `Page.selector` can check a selector against exactly the
document it was built from.
"""

from __future__ import annotations

import re
from functools import cached_property
from urllib.parse import urljoin, urlsplit, urlunsplit

from bs4 import BeautifulSoup, Tag
from bs4.element import NavigableString

from edge.authoring.fetch import FetchedPage
from edge.authoring.selectors import count_matches, stable_selector
from edge.authoring.stack import detect_stack

__all__ = ["HIDING_CLASSES", "PRICE", "Page", "normalize_text", "text_pattern", "tight_text"]

PRICE = re.compile(r"[$€£¥]\s?\d[\d,]*(?:\.\d{1,2})?|\d[\d,]*(?:\.\d{1,2})?\s?(?:USD|EUR|GBP|€)")
"""A price as pages write it: ``$99``, ``€1,299.00``, ``49 EUR``."""

HIDING_CLASSES = frozenset({"hidden", "is-hidden", "d-none", "hide", "invisible"})
"""Class names sites use to hide an element (Tailwind, Bootstrap and the like)."""

# "$ 99": a currency sign in its own element ("<sup>$</sup>99") reads with a space.
_SPLIT_PRICE = re.compile(r"([$€£¥])\s+(?=\d)")

_INVISIBLE = {"script", "style", "noscript", "template", "svg", "head", "title", "meta"}
_CHROME = {"nav", "header", "footer"}
_CTA_TOKENS = {"button", "btn", "cta"}
_WORDS = re.compile(r"[a-z0-9]+")


def normalize_text(text: str) -> str:
    """Text with every run of whitespace (non-breaking spaces included) as one space."""
    return " ".join(text.replace("\u00a0", " ").split())


def tight_text(text: str) -> str:
    """``text`` with a currency sign joined to its amount, as a reader sees "$99" that
    the markup splits ("<span>$</span>99" gives "$ 99" with spaces between elements)."""
    return _SPLIT_PRICE.sub(r"\1", text)


def text_pattern(needle: str) -> re.Pattern[str]:
    """``needle`` as a regex that does not match inside a longer word or number:
    ``$99`` finds "$99/month", not "$999" or "$99.50"."""
    body = re.escape(normalize_text(needle))
    before = r"(?<![\w$€£])" if needle[:1].isalnum() else ""
    after = r"(?![\w]|[.,]\d)" if needle[-1:].isalnum() else ""
    return re.compile(before + body + after, re.I)


def _tokens(element: Tag) -> set[str]:
    names: list[str] = []
    value = element.get("class")
    names += value if isinstance(value, list) else (value or "").split()
    own_id = element.get("id")
    if isinstance(own_id, str):
        names.append(own_id)
    return {word for name in names for word in _WORDS.findall(name.lower())}


def _inside(element: Tag, ancestor: Tag) -> bool:
    return any(node is ancestor for node in element.parents)


class Page:
    """One fetched page, parsed. ``url`` is where the fetch ended (after redirects)."""

    def __init__(self, fetched: FetchedPage) -> None:
        self.url = fetched.final_url
        self.fetched_at = fetched.fetched_at
        self.html = fetched.html
        self.soup = BeautifulSoup(fetched.html, "html.parser")
        body = self.soup.body
        self.body: Tag = body if body is not None else self.soup
        self._selectors: dict[int, str] = {}

    # What the page is.

    @cached_property
    def tech_stack(self) -> tuple[str, ...]:
        """Detected technologies (`edge.authoring.stack.detect_stack`)."""
        return detect_stack(self.html)

    @cached_property
    def title(self) -> str | None:
        """The document title, if any."""
        tag = self.soup.title
        text = normalize_text(tag.get_text()) if tag is not None else ""
        return text or None

    def meta(self, name: str) -> str | None:
        """The content of ``<meta name=...>`` (or ``property=``), if any."""
        for attribute in ("name", "property"):
            tag = self.soup.find("meta", attrs={attribute: name})
            if isinstance(tag, Tag):
                content = tag.get("content")
                if isinstance(content, str) and content.strip():
                    return normalize_text(content)
        return None

    # Visible elements.

    def visible(self, element: Tag) -> bool:
        """Whether ``element`` is rendered: not in head, script or template, and not
        hidden by an attribute."""
        for node in (element, *element.parents):
            if not isinstance(node, Tag):
                continue
            if node.name in _INVISIBLE or node.has_attr("hidden"):
                return False
            if node.get("aria-hidden") == "true":
                return False
            style = node.get("style")
            if isinstance(style, str) and re.search(r"display\s*:\s*none", style):
                return False
        return True

    def text(self, element: Tag) -> str:
        """The visible text of ``element``, whitespace normalised."""
        return normalize_text(element.get_text(" "))

    def strings(self) -> list[str]:
        """The visible text of the page, one entry per text node, whitespace normalised."""
        found: list[str] = []
        for string in self.body.find_all(string=True):
            parent = string.parent
            if type(string) is NavigableString and parent is not None and self.visible(parent):
                text = normalize_text(str(string))
                if text:
                    found.append(text)
        return found

    def elements(self, *names: str) -> list[Tag]:
        """Visible elements named ``names``, with text, in document order."""
        return [
            element
            for element in self.body.find_all(names)
            if isinstance(element, Tag) and self.visible(element) and self.text(element)
        ]

    def in_chrome(self, element: Tag) -> bool:
        """Whether ``element`` sits in the site's navigation, header or footer."""
        return any(isinstance(node, Tag) and node.name in _CHROME for node in element.parents)

    def own_words(self, element: Tag) -> set[str]:
        """The words of the classes and id of ``element`` itself."""
        return _tokens(element)

    def context_words(self, element: Tag) -> set[str]:
        """The words of the classes and ids of ``element`` and its ancestors
        (``plan plan--pro`` gives plan, pro): what the markup says the element is, and
        ``hero`` for an element in the headline's section (`hero`) whatever its classes."""
        words = _tokens(element)
        for node in element.parents:
            if isinstance(node, Tag):
                words |= _tokens(node)
        hero = self.hero
        if hero is not None and (element is hero or _inside(element, hero)):
            words.add("hero")
        return words

    @cached_property
    def hero(self) -> Tag | None:
        """The section the headline opens (its nearest ``section``, else its parent):
        what a prompt calls "the hero" on a page whose markup never says so."""
        headline = self.headline
        if headline is None:
            return None
        for node in headline.parents:
            if not isinstance(node, Tag) or node.name in ("main", "body", "[document]"):
                break
            if node.name == "section":
                return node
        parent = headline.parent
        return parent if isinstance(parent, Tag) and parent.name not in ("main", "body") else None

    def card(self, element: Tag, group: list[Tag]) -> Tag:
        """The largest box around ``element`` holding no other member of ``group``: the
        pricing card of a price or a button, among the page's prices or buttons."""
        card = element
        for node in element.parents:
            if not isinstance(node, Tag) or node is self.body or node.name == "[document]":
                break
            if any(other is not element and _inside(other, node) for other in group):
                break
            card = node
        return card

    def hidden_by(self, element: Tag) -> str | None:
        """How ``element`` itself is hidden: ``"class:NAME"`` for a hiding class,
        ``"attribute"`` for ``hidden``, ``"style"`` for an inline ``display: none``; None
        when its own markup does not hide it."""
        value = element.get("class")
        names = value if isinstance(value, list) else (value or "").split()
        for name in names:
            if name in HIDING_CLASSES:
                return f"class:{name}"
        if element.has_attr("hidden"):
            return "attribute"
        style = element.get("style")
        if isinstance(style, str) and re.search(r"display\s*:\s*none", style):
            return "style"
        return None

    # The parts authors change.

    @cached_property
    def headline(self) -> Tag | None:
        """The main headline: the first visible h1 (else h2) outside the site chrome."""
        for name in ("h1", "h2"):
            found = [el for el in self.elements(name) if not self.in_chrome(el)]
            if found:
                return found[0]
        return None

    @cached_property
    def subhead(self) -> Tag | None:
        """The copy under the headline: the first paragraph after it in its section."""
        headline = self.headline
        if headline is not None:
            container = headline.parent
            for _ in range(3):
                if not isinstance(container, Tag):
                    break
                for paragraph in headline.find_all_next("p"):
                    if not _inside(paragraph, container):
                        break
                    if self.visible(paragraph) and len(self.text(paragraph)) >= 20:
                        return paragraph
                container = container.parent
        copy = self.copy_blocks
        return copy[0] if copy else None

    @cached_property
    def copy_blocks(self) -> list[Tag]:
        """Paragraphs of body copy (40 characters or more), outside the site chrome."""
        return [
            paragraph
            for paragraph in self.elements("p")
            if len(self.text(paragraph)) >= 40 and not self.in_chrome(paragraph)
        ]

    @cached_property
    def ctas(self) -> list[Tag]:
        """Calls to action: links and buttons styled as buttons, and submit buttons, in
        document order."""
        found: list[Tag] = []
        for element in self.elements("a", "button"):
            styled = bool(_tokens(element) & _CTA_TOKENS) or element.get("role") == "button"
            submit = element.name == "button" and element.get("type", "submit") == "submit"
            if styled or submit:
                found.append(element)
        return found

    @cached_property
    def primary_cta(self) -> Tag | None:
        """The call to action the page leads with: a primary/hero/featured one outside
        the site chrome, else the first outside the chrome, else the first at all."""

        def rank(element: Tag) -> int:
            words = self.context_words(element)
            return (
                (0 if self.in_chrome(element) else 4)
                + (2 if words & {"primary", "featured", "popular", "recommended"} else 0)
                + (1 if "hero" in words else 0)
            )

        ctas = self.ctas
        return max(ctas, key=rank) if ctas else None  # max keeps the first of equals

    def containing(self, needle: str) -> list[Tag]:
        """The innermost visible elements whose text contains ``needle`` (as
        `text_pattern` matches it), in document order."""
        pattern = text_pattern(needle)
        strings = [
            string
            for string in self.body.find_all(string=True)
            # Plain text only: not comments, CDATA or script text.
            if type(string) is NavigableString and isinstance(string.parent, Tag)
        ]
        found: dict[int, Tag] = {}
        for string in strings:
            parent = string.parent
            if parent is not None and pattern.search(normalize_text(str(string))):
                if self.visible(parent):
                    found.setdefault(id(parent), parent)
        # The needle spans inline children ("Start <b>free</b> today", "<sup>$</sup>99"):
        # climb a little from every text node.
        for string in strings:
            node = string.parent
            for _ in range(3):
                if node is None or node is self.body:
                    break
                if pattern.search(tight_text(self.text(node))) and self.visible(node):
                    found.setdefault(id(node), node)
                    break
                node = node.parent
        return [
            element
            for element in found.values()
            if not any(other is not element and _inside(other, element) for other in found.values())
        ]

    def shown_text(self, element: Tag) -> str:
        """The text of ``element`` as a reader sees it: inline children ("$<small>99
        </small>/mo") run on without the space `text` puts between elements."""
        inline = {"span", "small", "sup", "sub", "b", "strong", "em", "i", "u", "s", "mark"}
        if all(child.name in inline for child in element.find_all(True)):
            return normalize_text(element.get_text(""))
        return tight_text(self.text(element))

    def prices(self) -> list[tuple[str, Tag]]:
        """The prices the page shows, each with its innermost element."""
        found: list[tuple[str, Tag]] = []
        for string in self.body.find_all(string=PRICE):
            parent = string.parent
            if type(string) is NavigableString and isinstance(parent, Tag):
                if self.visible(parent):
                    for match in PRICE.finditer(normalize_text(str(string))):
                        found.append((match.group(0), parent))
        return found

    def links(self) -> list[str]:
        """The absolute http(s) URLs the page links to, without fragments, de-duplicated,
        in document order."""
        seen: dict[str, None] = {}
        for anchor in self.body.find_all("a", href=True):
            href = anchor.get("href")
            if not isinstance(href, str):
                continue
            parts = urlsplit(urljoin(self.url, href.strip()))
            if parts.scheme in ("http", "https") and parts.hostname:
                seen.setdefault(urlunsplit(parts._replace(fragment="")), None)
        return list(seen)

    def headings(self, *levels: str) -> list[str]:
        """The texts of the visible headings of ``levels`` (h1, h2, h3...), in order."""
        return [self.text(element) for element in self.elements(*levels)]

    # Selectors.

    def selector(self, element: Tag) -> str:
        """A stable selector matching ``element`` only (`edge.authoring.selectors`)."""
        key = id(element)
        if key not in self._selectors:
            self._selectors[key] = stable_selector(self.soup, element)
        return self._selectors[key]

    def count(self, selector: str) -> int:
        """How many elements of the page ``selector`` matches (0 if it is invalid)."""
        return count_matches(self.soup, selector)
