"""What a plain-English prompt asks for, read without an LLM.

A prompt is cut into clauses ("... and update the CTA link ..."), each read as one
`Intent`:

- `TextChange`: "change the hero price from $99 to $499", "replace 'Start free' with
  'Try it free'", "change $99 to $499";
- `LinkChange`: "link the CTA to https://...", "update the CTA link to the Stripe
  checkout at https://...";
- `RoleText`: "make the headline say ...", "change the subheadline to ...", "set the
  button text to ...";
- `Hide`: "hide the testimonial".

Quoted text and URLs are set aside before the prompt is cut, so an "and" inside a quote
or a URL never splits it. A clause that matches none of these is returned in
``unparsed`` so the author can say what it did not act on.
"""

from __future__ import annotations

import re
from typing import Final, Literal

import msgspec

from edge.authoring.page import PRICE
from edge.authoring.targets import URL_IN_TEXT

__all__ = [
    "UNDERSTOOD",
    "Hide",
    "Intent",
    "LinkChange",
    "ParsedPrompt",
    "Role",
    "RoleText",
    "TextChange",
    "parse_prompt",
    "words",
]

UNDERSTOOD: Final = (
    '"change the hero price from $99 to $499", "change the button text from X to Y", '
    '"replace \'Old text\' with \'New text\'", "make the headline say ...", "change the '
    'subheadline to ...", "link the CTA to https://...", "hide the testimonial"'
)
"""The phrasings the deterministic author acts on, for error messages."""

Role = Literal["headline", "subhead", "cta"]


class TextChange(msgspec.Struct, frozen=True):
    """Replace visible text ``old`` with ``new``; ``hint`` is what the prompt called the
    element ("hero price")."""

    old: str
    new: str
    hint: str
    clause: str


class LinkChange(msgspec.Struct, frozen=True):
    """Point a link or CTA at ``url``; ``hint`` describes which one."""

    url: str
    hint: str
    clause: str


class RoleText(msgspec.Struct, frozen=True):
    """Set the text of the page's headline, subhead or a CTA."""

    role: Role
    new: str
    hint: str
    clause: str


class Hide(msgspec.Struct, frozen=True):
    """Hide the element the prompt names (by its text or by what its markup calls it)."""

    what: str
    quoted: bool
    clause: str


Intent = TextChange | LinkChange | RoleText | Hide


class ParsedPrompt(msgspec.Struct, frozen=True):
    """The intents of a prompt, in order, and the clauses that were not understood."""

    intents: tuple[Intent, ...]
    unparsed: tuple[str, ...]


_VERBS: Final = (
    r"change|update|make|link|point|set|replace|swap|switch|rename|rewrite|edit|use|hide|"
    r"remove|send|direct|add|show|move|test|try"
)
_QUOTED: Final = re.compile(
    r"\"([^\"]+)\"|\u201c([^\u201d]+)\u201d|\u2018([^\u2019]+)\u2019|(?<![\w])'([^']+?)'(?![\w])"
)
_HOLE: Final = re.compile(r"\x00(\d+)\x00")
_CLAUSE_BREAK: Final = re.compile(
    rf";|\.\s+|\n+|,?\s+(?:and|then|also|plus)\s+(?=(?:also\s+|then\s+)?(?:{_VERBS})\b)"
    rf"|[,:]\s+(?=(?:{_VERBS})\b)",
    re.I,
)
_HEADLINE: Final = r"(?:main\s+|hero\s+|page\s+)?(?:headline|heading|title|h1)"
_SUBHEAD: Final = (
    r"(?:hero\s+)?(?:sub-?head(?:line|ing)?|subtitle|tagline|hero\s+(?:copy|text|paragraph)"
    r"|intro(?:\s+(?:copy|text|paragraph))?)"
)
_CTA: Final = r"(?:cta|call[\s-]to[\s-]action|button)(?:\s+(?:text|label|copy|wording))?"
_ROLE: Final = rf"(?P<role>{_SUBHEAD}|{_HEADLINE}|{_CTA})"
_LEAD: Final = r"(?:please\s+|can\s+you\s+|let's\s+|let\s+us\s+|i\s+want\s+to\s+|try\s+to\s+)?"
_HINT: Final = r"(?:the\s+)?(?P<hint>(?:[\w$'-]+\s+){0,4}?)"

_FROM_TO: Final = re.compile(
    rf"^{_LEAD}(?:change|update|replace|swap|switch|set|edit|rename|make)\s+{_HINT}"
    r"(?:from\s+)(?P<old>.+?)\s+(?:to|into|with)\s+(?P<new>.+)$",
    re.I,
)
_REPLACE_WITH: Final = re.compile(
    rf"^{_LEAD}(?:replace|swap)\s+(?P<old>.+?)\s+(?:with|for|by)\s+(?P<new>.+)$", re.I
)
_ROLE_SAY: Final = re.compile(
    rf"^{_LEAD}(?:make|have|let)\s+{_HINT}{_ROLE}\s+(?:say|read|show|display|be)\s+(?P<new>.+)$",
    re.I,
)
_ROLE_TO: Final = re.compile(
    rf"^{_LEAD}(?:change|update|set|rewrite|edit|replace|make|use)\s+{_HINT}{_ROLE}"
    r"\s+(?:to\s+say|to\s+read|to|with|as|into)\s+(?P<new>.+)$",
    re.I,
)
_VALUE_TO: Final = re.compile(
    rf"^{_LEAD}(?:change|update|swap|switch|rename|edit|make)\s+(?:the\s+)?"
    rf"(?P<old>\x00\d+\x00|{PRICE.pattern})\s+(?:to|into|with)\s+(?P<new>.+)$",
    re.I,
)
_HIDE: Final = re.compile(rf"^{_LEAD}(?:hide|remove)\s+(?:the\s+)?(?P<what>.+)$", re.I)
_LINK_WORDS: Final = re.compile(
    r"\b(?:link|href|url|point|send|direct|redirect|go(?:es)?\s+to|destination|checkout|"
    r"target)\b",
    re.I,
)
_AIMED: Final = re.compile(r"(?:\bto|\bat|\bwith|:|->|\u2192)\s*$", re.I)
# Clauses that start with one of these ask for a change; others ("Test a new headline on
# the homepage") only set the scene and are not reported as not understood.
_ACTION: Final = re.compile(
    rf"^{_LEAD}(?:change|update|make|link|point|set|replace|swap|switch|rename|rewrite|edit|"
    r"hide|remove|send|direct|add|show|move)\b",
    re.I,
)
_STOP: Final = frozenset(
    "a an the to of on in at for with and or from into by my our your its this that it is "
    "be say says read show page link links url href change update make set point replace "
    "new current text copy label".split()
)


def words(text: str) -> set[str]:
    """The meaningful lower-case words of ``text`` (for matching against markup)."""
    found = set(re.findall(r"[a-z0-9]+", text.lower()))
    return {word for word in found if word not in _STOP and len(word) > 1}


def _role_of(name: str) -> Role:
    lowered = name.lower()
    if re.fullmatch(_SUBHEAD, lowered, re.I):
        return "subhead"
    if re.fullmatch(_HEADLINE, lowered, re.I):
        return "headline"
    return "cta"


def _value(text: str, holes: list[str]) -> str:
    """A value as written: quotes restored to their text, URLs back in place, a
    trailing full stop and a leading "say" dropped."""
    text = re.sub(r"^(?:say|read|show)\s+", "", text.strip(), flags=re.I)
    text = text.rstrip(".!,;").strip()
    return _HOLE.sub(lambda match: holes[int(match.group(1))], text).strip()


def _clause(clause: str, holes: list[str], kinds: list[str]) -> Intent | None:
    restored = _HOLE.sub(lambda match: holes[int(match.group(1))], clause)
    has_url = any(kinds[int(m.group(1))] == "url" for m in _HOLE.finditer(clause))
    match = _HIDE.match(clause)
    if match:
        what = match.group("what")
        quoted = bool(_HOLE.fullmatch(what.strip())) and not has_url
        return Hide(_value(what, holes), quoted, restored)
    match = _ROLE_SAY.match(clause) or _ROLE_TO.match(clause)
    if match and not (has_url and _LINK_WORDS.search(clause)):
        hint = f"{match.group('hint')}{match.group('role')}"
        return RoleText(
            _role_of(match.group("role")), _value(match.group("new"), holes), hint, restored
        )
    match = _FROM_TO.match(clause) or _VALUE_TO.match(clause)
    if match and not (has_url and _LINK_WORDS.search(clause)):
        hint = (match.groupdict().get("hint") or "").strip()
        return TextChange(
            _value(match.group("old"), holes), _value(match.group("new"), holes), hint, restored
        )
    match = _REPLACE_WITH.match(clause)
    if match and not has_url:
        return TextChange(
            _value(match.group("old"), holes), _value(match.group("new"), holes), "", restored
        )
    if has_url and (_LINK_WORDS.search(clause) or _ACTION.match(clause)):
        # "link the CTA to URL on URL2": the payload is the URL the link goes "to".
        urls = [m for m in _HOLE.finditer(clause) if kinds[int(m.group(1))] == "url"]
        aimed = [m for m in urls if _AIMED.search(clause[: m.start()])]
        chosen = (aimed or urls)[0]
        hint = _HOLE.sub(" ", clause[: chosen.start()])
        return LinkChange(holes[int(chosen.group(1))], " ".join(hint.split()), restored)
    return None


def parse_prompt(prompt: str) -> ParsedPrompt:
    """The intents of ``prompt`` (see the module docstring)."""
    holes: list[str] = []
    kinds: list[str] = []

    def hole(text: str, kind: str) -> str:
        holes.append(text)
        kinds.append(kind)
        return f"\x00{len(holes) - 1}\x00"

    def set_url_aside(match: re.Match[str]) -> str:
        url = match.group(0)
        stripped = url.rstrip(".,;:!?)]}")
        return hole(stripped, "url") + url[len(stripped) :]

    text = URL_IN_TEXT.sub(set_url_aside, prompt)
    text = _QUOTED.sub(lambda m: hole(next(g for g in m.groups() if g is not None), "quote"), text)
    intents: list[Intent] = []
    unparsed: list[str] = []
    for clause in _CLAUSE_BREAK.split(text):
        clause = clause.strip().rstrip(".!")
        if not clause:
            continue
        intent = _clause(clause, holes, kinds)
        if intent is None and _ACTION.match(clause):
            unparsed.append(_HOLE.sub(lambda match: holes[int(match.group(1))], clause))
        elif intent is not None:
            intents.append(intent)
    return ParsedPrompt(tuple(intents), tuple(unparsed))
