"""Site intelligence read from the homepage alone: title, description, headings,
keywords and tech stack.

Keywords are ranked by where a word appears, weighted as a search engine would read the
page: the meta keywords (each phrase whole), the title, the headings (h1 above h2 above
h3), the description, then the body text; English stop words never count. Two-word
phrases that recur in the weighted text rank with the single words. The top five are
``primary``, the rest ``secondary``; scores are relative to the best (1.0).

Industry, audience, value propositions and competitors need judgement, not counting:
the LLM author is where they would come from (docs/authoring.md).
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Final

from edge.authoring.drafts import Keyword, SiteIntelligence
from edge.authoring.page import Page

__all__ = ["MAX_HEADINGS", "MAX_KEYWORDS", "site_intelligence_of"]

MAX_KEYWORDS: Final = 15
MAX_HEADINGS: Final = 30
_PRIMARY: Final = 5

_STOPWORDS: Final = frozenset(
    """a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each
    every few for from further get gets got had has have having he her here hers him his how
    i if in into is it its itself just let like me more most my no nor not now of off on once
    only or other our ours out over own per same she should so some such than that the their
    them then there these they this those through to too under until up us very was we were
    what when where which while who whom why will with within without would you your yours
    yourself one two new use using used way ways make makes made see start free back top
    every day days month months year years page pages home click here read learn""".split()
)
_WORD: Final = re.compile(r"[a-z][a-z0-9'-]*[a-z0-9]|[a-z]")


def _words(text: str) -> list[str]:
    return [word for word in _WORD.findall(text.lower()) if word not in _STOPWORDS]


def _ranked(page: Page) -> tuple[Keyword, ...]:
    weighted: list[tuple[str, float]] = [
        (page.title or "", 3.0),
        (page.meta("description") or "", 2.0),
        *((text, 3.0) for text in page.headings("h1")),
        *((text, 2.0) for text in page.headings("h2")),
        *((text, 1.5) for text in page.headings("h3")),
    ]
    scores: defaultdict[str, float] = defaultdict(float)
    pairs: defaultdict[str, float] = defaultdict(float)
    for text, weight in weighted:
        for sentence in re.split(r"[.,:;|!?()\u2013\u2014]", text):
            found = _WORD.findall(sentence.lower())
            for word in found:
                if word not in _STOPWORDS:
                    scores[word] += weight
            for first, second in zip(found, found[1:], strict=False):
                if first not in _STOPWORDS and second not in _STOPWORDS:
                    pairs[f"{first} {second}"] += weight
    for word in _words(page.text(page.body)):
        scores[word] += 0.25
    for phrase, weight in pairs.items():
        if weight >= 4.0:  # recurs, or sits in the title
            scores[phrase] += weight
    for phrase in (page.meta("keywords") or "").split(","):
        cleaned = " ".join(phrase.lower().split())
        if cleaned:
            scores[cleaned] += 6.0
    ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:MAX_KEYWORDS]
    if not ranked:
        return ()
    best = ranked[0][1]
    return tuple(
        Keyword(
            keyword=word,
            tier="primary" if index < _PRIMARY else "secondary",
            relevance_score=round(score / best, 2),
        )
        for index, (word, score) in enumerate(ranked)
    )


def site_intelligence_of(page: Page) -> SiteIntelligence:
    """What ``page`` (the homepage) says about the site."""
    headings = list(dict.fromkeys(page.headings("h1", "h2", "h3")))[:MAX_HEADINGS]
    return SiteIntelligence(
        url=page.url,
        title=page.title,
        description=page.meta("description") or page.meta("og:description"),
        headings=tuple(headings),
        keywords=_ranked(page),
        tech_stack=page.tech_stack,
        fetched_at=page.fetched_at,
    )
