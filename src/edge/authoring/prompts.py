"""What a plain-English prompt asks for, read without an LLM.

A prompt is cut into clauses ("... and update the CTA link ..."), each read as one
`Intent`:

- `TextChange`: "change the hero price from $99 to $499", "replace 'Start free' with
  'Try it free'", "change $99 to $499";
- `LinkChange`: "link the CTA to https://...", "update the CTA link to the Stripe
  checkout at https://...";
- `RoleText`: "make the headline say ...", "change the subheadline to ...", "set the
  button text to ...";
- `PlanPrice`: "update the price of the pro plan to $79", "change the Pro plan price to
  $79";
- `Style`: "make the CTA button green and larger", "make the headline red";
- `Hide` and `Show`: "hide the testimonial", "show the annual note".

Quoted text and URLs are set aside before the prompt is cut, so an "and" inside a quote
or a URL never splits it. A URL the request gives is a link's destination (a
`LinkChange`), never text to show; a URL after "on" names the page and is dropped from
the clause. Scope words ("on every /report/* page", "site-wide") say where the test runs
(`edge.authoring.targets.url_pattern_for`) and are cut from the clause, so they never
reach a payload. A clause that matches none of these is returned in ``unparsed`` so the
author can ask rather than guess.
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
    "PlanPrice",
    "Role",
    "RoleText",
    "Show",
    "Style",
    "TextChange",
    "parse_prompt",
    "scope_phrases",
    "words",
]

UNDERSTOOD: Final = (
    '"change the hero price from $99 to $499", "update the price of the Pro plan to $79", '
    "\"change the button text from X to Y\", \"replace 'Old text' with 'New text'\", "
    '"make the headline say ...", "rename the Pro plan button to ...", "link the CTA to '
    'https://...", "make the CTA button green and larger", "hide the testimonial", "show '
    'the annual note"'
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


class Show(msgspec.Struct, frozen=True):
    """Show a hidden element the prompt names (by what its markup or text calls it)."""

    what: str
    clause: str


class PlanPrice(msgspec.Struct, frozen=True):
    """Set the price shown for the plan ``plan`` ("pro") to ``new``."""

    plan: str
    new: str
    clause: str


class Style(msgspec.Struct, frozen=True):
    """Restyle the element ``hint`` names: a colour (a CSS colour name or hex) and/or a
    size step (``scale`` above 1 is larger)."""

    hint: str
    color: str | None
    scale: float | None
    clause: str


Intent = TextChange | LinkChange | RoleText | PlanPrice | Style | Hide | Show


class ParsedPrompt(msgspec.Struct, frozen=True):
    """The intents of a prompt, in order, and the clauses that were not understood."""

    intents: tuple[Intent, ...]
    unparsed: tuple[str, ...]


_VERBS: Final = (
    r"change|update|make|link|point|set|replace|swap|switch|rename|rewrite|edit|use|hide|"
    r"remove|send|direct|add|show|unhide|reveal|move|test|try|turn|colou?r|paint|lower|raise"
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
    rf"^{_LEAD}(?:change|update|set|rewrite|edit|replace|make|use|rename|relabel)\s+{_HINT}{_ROLE}"
    r"\s+(?:to\s+say|to\s+read|to|with|as|into)\s+(?P<new>.+)$",
    re.I,
)
_VALUE_TO: Final = re.compile(
    rf"^{_LEAD}(?:change|update|swap|switch|rename|edit|make)\s+(?:the\s+)?"
    rf"(?P<old>\x00\d+\x00|{PRICE.pattern})\s+(?:to|into|with)\s+(?P<new>.+)$",
    re.I,
)
_HIDE: Final = re.compile(rf"^{_LEAD}(?:hide|remove)\s+(?:the\s+)?(?P<what>.+)$", re.I)
_SHOW: Final = re.compile(
    rf"^{_LEAD}(?:show|unhide|reveal|display)\s+(?:the\s+)?(?P<what>.+?)(?:\s+again)?$", re.I
)
_PLAN: Final = r"(?:the\s+)?(?P<plan>[\w' -]+?)(?:'s)?(?:\s+(?:plan|tier|package|option))"
_PLAN_PRICE: Final = (
    re.compile(
        rf"^{_LEAD}(?:change|update|set|make|lower|raise|drop|cut|reduce|increase)\s+(?:the\s+)?"
        rf"price\s+(?:of|for|on)\s+{_PLAN}?\s+(?:to|at)\s+(?P<new>{PRICE.pattern}\S*)$",
        re.I,
    ),
    re.compile(
        rf"^{_LEAD}(?:change|update|set|make|lower|raise|drop|cut|reduce|increase)\s+{_PLAN}?"
        rf"(?:'s)?\s+price\s+(?:to|at)\s+(?P<new>{PRICE.pattern}\S*)$",
        re.I,
    ),
    re.compile(
        rf"^{_LEAD}(?:make|price)\s+{_PLAN}\s+(?:cost\s+|at\s+)?(?P<new>{PRICE.pattern}\S*)$",
        re.I,
    ),
)
_COLORS: Final = frozenset(
    "red green blue orange yellow purple pink black white gray grey teal navy maroon olive "
    "lime aqua cyan magenta fuchsia silver gold brown indigo violet crimson coral salmon "
    "tomato turquoise".split()
)
_SIZES: Final = {
    "larger": 1.25, "bigger": 1.25, "large": 1.25, "big": 1.25,
    "smaller": 0.85, "small": 0.85, "tinier": 0.85,
}  # fmt: skip
_DEGREE: Final = {"much": 1.2, "slightly": 0.4, "bit": 0.4, "little": 0.4, "lot": 1.2}
_STYLE_LEAD: Final = re.compile(
    rf"^{_LEAD}(?:make|turn|paint|colou?r|change|set)\s+(?:the\s+)?(?P<what>.+)$", re.I
)
_COLOR_OF: Final = re.compile(
    rf"^{_LEAD}(?:change|set|make)\s+(?:the\s+)?(?:colou?r|background)\s+(?:of\s+)?"
    r"(?:the\s+)?(?P<what>.+?)\s+(?:to|into)\s+(?P<style>\S+)$",
    re.I,
)
_HEX: Final = re.compile(r"#(?:[0-9a-f]{3}|[0-9a-f]{6})", re.I)
# Where the test runs, not what it shows: cut from a clause before it is read.
_SCOPE: Final = re.compile(
    r",?\s*\b(?:(?:on|across|for|in|to)\s+(?:every|all|each|any)\s+(?:of\s+the\s+)?"
    r"(?:[^\s,;]+\s+){0,3}?pages?\b|site[\s-]?wide|across\s+the\s+(?:whole\s+|entire\s+)?"
    r"(?:site|website)|everywhere(?:\s+on\s+the\s+site)?|(?:on|across)\s+(?:the\s+)?"
    r"(?:whole|entire)\s+(?:site|website))\b",
    re.I,
)
# "on /pricing", "on the pricing page", "on <page URL>": the page, named at a clause's end.
_ON_PAGE: Final = re.compile(
    r"\s+(?:on|at|in)\s+(?:the\s+)?(?:/[\w\-./]*(?:\s+page)?|[\w-]+\s+page)\s*$", re.I
)
_PAGE_URL_LEAD: Final = re.compile(r"\b(?:on|in|for|from)\s+(?:the\s+page\s+)?$", re.I)
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
    r"hide|remove|send|direct|add|show|unhide|reveal|move|turn|colou?r|paint|lower|raise)\b",
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


def _restore(text: str, holes: list[str]) -> str:
    return _HOLE.sub(lambda match: holes[int(match.group(1))], text)


def _color(word: str) -> str | None:
    lowered = word.lower().strip(".,!")
    return lowered if lowered in _COLORS or _HEX.fullmatch(lowered) else None


_STYLE_GLUE: Final = frozenset({"and", "more", "a", "to", "colour", "color", "in", "size"})


def _style(clause: str, restored: str) -> Style | None:
    """A restyle ("make the CTA button green and larger"), or None."""
    match = _COLOR_OF.match(clause)
    named_color = _color(match.group("style")) if match else None
    if match and named_color:
        return Style(match.group("what"), named_color, None, restored)
    match = _STYLE_LEAD.match(clause)
    if not match:
        return None
    tokens = match.group("what").split()
    color: str | None = None
    scale: float | None = None
    while tokens:
        word = tokens[-1].lower().strip(",")
        if (found := _color(word)) and color is None:
            color = found
        elif word in _SIZES and scale is None:
            scale = _SIZES[word]
        elif word in _DEGREE and scale is not None:
            scale = round(1 + (scale - 1) * _DEGREE[word], 2)
        elif word not in _STYLE_GLUE or (color is None and scale is None):
            break
        tokens.pop()
    what = " ".join(tokens)
    what = re.sub(r"\s+(?:colou?r|background(?:\s+colou?r)?|size)$", "", what, flags=re.I)
    if not what or (color is None and scale is None):
        return None
    verb = clause.split(maxsplit=1)[0].lower()
    named = re.search(r"\b(?:colou?r|background|size)\b", match.group("what"), re.I)
    if verb in ("change", "set") and not named:
        return None  # "change the headline to Green" is text, not a colour
    return Style(what, color, scale, restored)


def _strip_scope(clause: str, kinds: list[str]) -> str:
    """``clause`` without the words that say where the test runs: scope phrases, a page
    named at its end, and page URLs ("on https://mysite.com/pricing")."""
    clause = _SCOPE.sub("", clause)
    clause = _ON_PAGE.sub("", clause)
    for match in reversed(list(_HOLE.finditer(clause))):
        if kinds[int(match.group(1))] == "url" and _PAGE_URL_LEAD.search(clause[: match.start()]):
            lead = _PAGE_URL_LEAD.search(clause[: match.start()])
            assert lead is not None
            clause = clause[: lead.start()] + clause[match.end() :]
    return " ".join(clause.split()).rstrip(",")


def _clause(clause: str, holes: list[str], kinds: list[str]) -> Intent | None:
    clause = _strip_scope(clause, kinds)
    restored = _HOLE.sub(lambda match: holes[int(match.group(1))], clause)
    urls = [m for m in _HOLE.finditer(clause) if kinds[int(m.group(1))] == "url"]
    match = _HIDE.match(clause)
    if match:
        what = match.group("what")
        quoted = bool(_HOLE.fullmatch(what.strip())) and not urls
        return Hide(_value(what, holes), quoted, restored)
    match = _SHOW.match(clause)
    if match and not urls:
        return Show(_value(match.group("what"), holes), restored)
    if urls and (_LINK_WORDS.search(clause) or _ACTION.match(clause)):
        # A URL is where a link goes, never text to show: "update the CTA to URL" points
        # the CTA at it. With several, the one the link goes "to".
        aimed = [m for m in urls if _AIMED.search(clause[: m.start()])]
        chosen = (aimed or urls)[0]
        before = _HOLE.sub(
            lambda m: " " if kinds[int(m.group(1))] == "url" else m.group(0),
            clause[: chosen.start()],
        )
        hint = _restore(before, holes)
        return LinkChange(holes[int(chosen.group(1))], " ".join(hint.split()), restored)
    for pattern in _PLAN_PRICE:
        match = pattern.match(clause)
        if match and match.group("plan"):
            plan = re.sub(r"^the\s+", "", match.group("plan").strip(), flags=re.I)
            return PlanPrice(_value(plan, holes), _value(match.group("new"), holes), restored)
    style = _style(clause, restored)
    if style is not None:
        return msgspec.structs.replace(style, hint=_restore(style.hint, holes))
    match = _ROLE_SAY.match(clause) or _ROLE_TO.match(clause)
    if match:
        hint = _restore(f"{match.group('hint')}{match.group('role')}", holes)
        return RoleText(
            _role_of(match.group("role")), _value(match.group("new"), holes), hint, restored
        )
    match = _FROM_TO.match(clause) or _VALUE_TO.match(clause)
    if match:
        hint = (match.groupdict().get("hint") or "").strip()
        return TextChange(
            _value(match.group("old"), holes), _value(match.group("new"), holes), hint, restored
        )
    match = _REPLACE_WITH.match(clause)
    if match:
        return TextChange(
            _value(match.group("old"), holes), _value(match.group("new"), holes), "", restored
        )
    return None


def scope_phrases(prompt: str) -> list[str]:
    """The words of ``prompt`` that say where the test runs ("on every /report/* page",
    "site-wide"): never part of what a variant shows."""
    return [" ".join(match.group(0).strip(" ,").split()) for match in _SCOPE.finditer(prompt)]


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
