"""Rewrites of a page's headline, subhead and call to action, without an LLM.

Each `Strategy` is a conversion-copy pattern (lead with the outcome, ask a question, add
social proof, add a number, reverse the risk...) applied to the element's current text
with facts read from the same page (`PageFacts`: the brand, a proof line such as
"Trusted by 2,400 product teams", a specific number, the subhead's promise). Strategies
are pure functions of the page, so the same page always gives the same rewrites; a
strategy that has nothing to work with gives None and is skipped.

`numbered` makes as many further rewrites as a long-running loop needs, each different.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final, Literal, NamedTuple

from bs4 import Tag

from edge.authoring.drafts import ElementType
from edge.authoring.page import Page, normalize_text

__all__ = [
    "CTA_STRATEGIES",
    "COPY_STRATEGIES",
    "HEADLINE_STRATEGIES",
    "PageFacts",
    "Strategy",
    "numbered",
    "page_facts",
]

Level = Literal["high", "medium", "low"]

_PROOF: Final = re.compile(
    r"\b(?:(?:trusted|used|loved|chosen|backed)\s+by|join(?:ed by)?)\s+(?:over\s+|more\s+than\s+)?"
    r"[\d][\d,.]*\+?k?\s+(?:[A-Za-z-]+\s+){0,2}[A-Za-z-]+",
    re.I,
)
_NUMBER: Final = (
    re.compile(r"\b\d[\d,]*-(?:day|minute|hour|week|month)\s+[a-z]+(?:\s+[a-z]+)?", re.I),
    re.compile(r"\b(?:in|within|under)\s+\d[\d,]*\s+(?:seconds|minutes|hours|days)\b", re.I),
    re.compile(r"\b\d[\d,.]*%\s+(?:more|less|fewer|faster|higher|lower)\b", re.I),
)
_REASSURED: Final = re.compile(
    r"no credit card(?: required| needed)?|cancel any ?time|\d+-day money-back guarantee", re.I
)
# Nouns a call to action offers: "Start free trial" reads "Start my free trial"; "Get
# started" or "Start free" have no noun to own and are left alone.
_CTA_NOUNS: Final = frozenset(
    "trial account demo plan copy guide report quote subscription discount access spot seat "
    "ebook audit consultation workspace dashboard".split()
)
_IMPERATIVE: Final = frozenset(
    "see get start ship build grow make find turn try join discover create launch save meet "
    "know learn sell run track stop boost cut win go take give keep do".split()
)
_CTA_VERBS: Final = frozenset("start get choose try buy join claim book begin".split())


class PageFacts(NamedTuple):
    """What the rewrites may quote from the page."""

    brand: str | None
    proof: str | None
    number: str | None
    promise: str | None
    reassurance: str | None


class Strategy(NamedTuple):
    """One rewrite pattern for one kind of element."""

    key: str
    title: str
    category: str
    priority: Level
    impact: Level
    why: str
    rewrite: Callable[[str, PageFacts], str | None]


def _first_clause(text: str, minimum: int = 20, maximum: int = 90) -> str | None:
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        clause = sentence.rstrip(".!?")
        if len(clause) > maximum:
            clause = clause.split(",")[0]
        if minimum <= len(clause) <= maximum:
            return clause
    return None


def _brand(page: Page) -> str | None:
    root = page.url.split("/", 3)
    home = {"/", "./", "/".join(root[:3]) + "/", "/".join(root[:3])}
    for anchor in page.elements("a"):
        if anchor.get("href") in home and len(page.text(anchor)) <= 40:
            return page.text(anchor)
    title = page.title or ""
    parts = [part.strip() for part in re.split(r"\s[|\u2013\u2014-]\s|:\s", title) if part.strip()]
    return min(parts, key=len) if parts else None


def page_facts(page: Page, subhead: Tag | None) -> PageFacts:
    """The facts of ``page`` the rewrites use; ``subhead`` gives its promise."""
    # Searched text node by text node, so a match never runs on into the next element.
    strings = page.strings()
    proof = next((m for m in map(_PROOF.search, strings) if m), None)
    number = next(
        (m.group(0) for pattern in _NUMBER for m in map(pattern.search, strings) if m), None
    )
    promise = _first_clause(page.text(subhead), maximum=70) if subhead is not None else None
    return PageFacts(
        brand=_brand(page),
        proof=proof.group(0)[0].upper() + proof.group(0)[1:] if proof else None,
        number=number,
        promise=promise,
        reassurance=next((m.group(0) for m in map(_REASSURED.search, strings) if m), None),
    )


def _lower_first(text: str) -> str:
    # Keep "A/B" or "SaaS" as written: only a capital followed by a lower-case letter.
    return text[0].lower() + text[1:] if re.match(r"[A-Z][a-z]", text) else text


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else f"{text}."


def _outcome(text: str, facts: PageFacts) -> str | None:
    return facts.promise if facts.promise and facts.promise.lower() != text.lower() else None


def _question(text: str, facts: PageFacts) -> str | None:
    core = text.rstrip(".!?")
    first = core.split(" ", 1)[0].lower()
    lead = "Ready to" if first in _IMPERATIVE else "Looking for"
    return f"{lead} {_lower_first(core)}?"


def _headline_proof(text: str, facts: PageFacts) -> str | None:
    if not facts.proof or facts.proof.lower() in text.lower():
        return None
    return f"{facts.proof}: {_lower_first(text.rstrip('.!'))}"


def _headline_number(text: str, facts: PageFacts) -> str | None:
    core = text.rstrip(".!")
    if facts.number and facts.number.lower() not in text.lower():
        return f"{core}, {_lower_first(facts.number)}"
    return None  # a number the page does not state would be a claim nobody made


def _headline_brand(text: str, facts: PageFacts) -> str | None:
    if not facts.brand or facts.brand.lower() in text.lower():
        return None
    return f"{facts.brand}: {_lower_first(text)}"


def _copy_shorter(text: str, facts: PageFacts) -> str | None:
    short = _first_clause(text, minimum=15, maximum=60)
    return _sentence(short) if short and len(short) + 5 < len(text) else None


def _copy_risk(text: str, facts: PageFacts) -> str | None:
    # Only a promise the page already makes: "no credit card" is a claim about billing.
    reversal = facts.reassurance
    if reversal is None or reversal.lower() in text.lower():
        return None
    return f"{_sentence(text)} {_sentence(reversal[0].upper() + reversal[1:])}"


def _copy_proof(text: str, facts: PageFacts) -> str | None:
    if not facts.proof or facts.proof.lower() in text.lower():
        return None
    return f"{_sentence(facts.proof)} {_sentence(text)}"


def _cta_first_person(text: str, facts: PageFacts) -> str | None:
    if re.search(r"\bmy\b", text, re.I):
        return None
    if re.search(r"\byour\b", text, re.I):
        return re.sub(r"\byour\b", "my", text, count=1, flags=re.I)
    verb, _, rest = text.partition(" ")
    owned = rest.split()[-1].lower() in _CTA_NOUNS if rest else False
    return f"{verb} my {rest}" if verb.lower() in _CTA_VERBS and owned else None


def _cta_urgency(text: str, facts: PageFacts) -> str | None:
    return None if re.search(r"\b(?:today|now)\b", text, re.I) else f"{text} today"


HEADLINE_STRATEGIES: Final = (
    Strategy(
        "outcome",
        "Lead with the outcome, not the feature",
        "headline",
        "high",
        "high",
        "tells visitors what they get in the first second",
        _outcome,
    ),
    Strategy(
        "social_proof",
        "Add quantified social proof to the headline",
        "social_proof",
        "high",
        "high",
        "borrows the trust of the customers the page already names",
        _headline_proof,
    ),
    Strategy(
        "question",
        "Ask the headline as a question",
        "headline",
        "medium",
        "medium",
        "makes visitors answer yes to the problem before they read on",
        _question,
    ),
    Strategy(
        "number",
        "Make the headline specific with a number",
        "headline",
        "medium",
        "medium",
        "is concrete, and specific claims are believed more than general ones",
        _headline_number,
    ),
    Strategy(
        "brand",
        "Put the brand in the headline",
        "headline",
        "low",
        "low",
        "ties the promise to the name visitors will remember",
        _headline_brand,
    ),
)
"""Headline rewrites, best bets first."""

COPY_STRATEGIES: Final = (
    Strategy(
        "social_proof",
        "Open the subhead with social proof",
        "social_proof",
        "high",
        "high",
        "answers 'who else uses this?' before the visitor asks",
        _copy_proof,
    ),
    Strategy(
        "risk_reversal",
        "Add risk reversal to the subhead",
        "copy",
        "high",
        "medium",
        "removes the fear of commitment at the moment of decision",
        _copy_risk,
    ),
    Strategy(
        "shorter",
        "Cut the subhead to one sentence",
        "copy",
        "medium",
        "medium",
        "is read in full, where a longer one is skimmed",
        _copy_shorter,
    ),
)
"""Subhead (copy) rewrites, best bets first."""

CTA_STRATEGIES: Final = (
    Strategy(
        "first_person",
        "Write the CTA in the first person",
        "cta",
        "high",
        "medium",
        "lets the visitor say what they want ('my') rather than be told",
        _cta_first_person,
    ),
    Strategy(
        "urgency",
        "Add urgency to the CTA",
        "cta",
        "medium",
        "medium",
        "gives a reason to act now rather than later",
        _cta_urgency,
    ),
)
"""Call-to-action text rewrites."""


def numbered(element_type: ElementType, text: str, n: int) -> tuple[Strategy, str]:
    """The ``n``-th (1, 2, ...) of an endless series of specific rewrites of ``text``, each
    different: for a loop that has tried every named strategy."""
    core = normalize_text(text).rstrip(".!?")
    if element_type == "headline":
        rewrite = f"{core}: results in {n + 1} days"
        title = f"Promise results in {n + 1} days"
    else:
        rewrite = f"{core}. Set up in under {n + 1} minutes."
        title = f"Promise set-up in under {n + 1} minutes"
    strategy = Strategy(
        f"numbered_{n}",
        title,
        element_type,
        "medium",
        "medium",
        "makes the promise concrete with a time frame",
        lambda _text, _facts: rewrite,
    )
    return strategy, rewrite
