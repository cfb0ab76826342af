"""Turning the intents of a prompt (`edge.authoring.prompts`) into DOM changes on a
parsed page: which element each intent means, the change, and the words that go with it
(the variant's name, its hypothesis, the goal to judge it on).

When several elements fit ("$99" is on the Pro card and in the FAQ), the one the prompt's
words and the markup agree on wins ("hero price", ``plan--pro``), then a featured or
primary one, then the first; the choice is written into the assumptions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Final
from urllib.parse import urlsplit

import msgspec
from bs4 import Tag

from edge.authoring.drafts import (
    AuthoredVariant,
    AuthoringContext,
    SuggestedGoal,
    VariantDraft,
    VariantRequest,
)
from edge.authoring.page import PRICE, Page, normalize_text, text_pattern
from edge.authoring.prompts import Hide, Intent, LinkChange, RoleText, TextChange, words
from edge.authoring.targets import domain_warning, url_pattern_for
from edge.config import MutationConfig
from edge.errors import InvalidRequest

__all__ = [
    "AuthoredChanges",
    "UnactionablePrompt",
    "author_changes",
    "click_goal",
    "variant_draft",
    "variant_name",
]

_FEATURED: Final = frozenset({"featured", "popular", "recommended", "primary", "hero", "highlight"})
_CTA_WORDS: Final = frozenset({"cta", "button", "btn", "buy", "checkout", "purchase", "signup"})
_CHROME_WORDS: Final = frozenset({"nav", "navigation", "header", "footer", "menu"})
_HEADING: Final = ("h1", "h2", "h3", "h4", "h5", "h6")
_FILLER: Final = frozenset({"section", "block", "area", "part", "element", "box", "banner"})


class UnactionablePrompt(InvalidRequest):
    """Nothing in the prompt could be made into a change of the page. The message says
    why (the text it names is not on the page, or the phrasing is not understood)."""

    code = "prompt_not_actionable"


class AuthoredChanges(msgspec.Struct):
    """What the intents made of the page."""

    mutations: list[MutationConfig] = msgspec.field(default_factory=list)
    names: list[str] = msgspec.field(default_factory=list)
    sentences: list[str] = msgspec.field(default_factory=list)
    assumptions: list[str] = msgspec.field(default_factory=list)
    warnings: list[str] = msgspec.field(default_factory=list)
    clicked: Tag | None = None


def _quote(text: str, limit: int = 60) -> str:
    short = text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"
    return f"\u201c{short}\u201d"


def _closeness(element: Tag, near: Tag | None) -> int:
    """How close ``element`` sits to ``near`` (the element changed just before): 3 when
    they share their card, less further out."""
    if near is None:
        return 0
    for depth, ancestor in enumerate(near.parents):
        if any(node is ancestor for node in element.parents):
            return max(0, 4 - depth)
    return 0


def _pick(
    page: Page,
    candidates: Sequence[Tag],
    hint: set[str],
    near: Tag | None,
    exact: str = "",
    bonus: Callable[[Tag], int] = lambda element: 0,
) -> tuple[Tag, str]:
    """The candidate the prompt most likely means, and why (for the assumptions)."""

    def score(element: Tag) -> int:
        context = page.context_words(element)
        value = 2 * len(hint & context) + (1 if context & _FEATURED else 0)
        if page.in_chrome(element) and not hint & _CHROME_WORDS:
            value -= 3
        if exact and page.text(element).lower() == exact.lower():
            value += 2
        return value + _closeness(element, near) + bonus(element)

    best = max(candidates, key=score)  # max keeps the first of equals: document order
    context = page.context_words(best)
    reasons = sorted(hint & context) + sorted(context & _FEATURED)
    why = f"its markup says {', '.join(reasons)}" if reasons else "it comes first on the page"
    if near is not None and _closeness(best, near) >= 3:
        why = "it sits with the element changed before it"
    return best, why


def _in_cta(page: Page, element: Tag) -> Tag | None:
    for node in (element, *element.parents):
        if isinstance(node, Tag) and any(node is cta for cta in page.ctas):
            return node
    return None


def _number(price: str) -> float | None:
    digits = re.sub(r"[^\d.]", "", price.replace(",", ""))
    try:
        return float(digits)
    except ValueError:
        return None


def _price_sentence(old: str, new: str) -> str:
    before, after = _number(old), _number(new)
    if before is not None and after is not None and after > before:
        return (
            f"Raising the price from {old} to {new} positions the product as premium; if the "
            "lift in revenue per sale outweighs any drop in conversions, revenue per visitor "
            "increases."
        )
    return (
        f"Lowering the price from {old} to {new} removes a purchase objection; if conversions "
        "rise by more than the price falls, revenue per visitor increases."
    )


def _text_change(
    page: Page, intent: TextChange, out: AuthoredChanges, near: Tag | None
) -> Tag | None:
    candidates = page.containing(intent.old)
    hint = words(intent.hint)
    if hint & _CTA_WORDS:
        ctas = [cta for cta in (_in_cta(page, el) for el in candidates) if cta is not None]
        candidates = ctas or candidates
    elif hint & {"headline", "heading", "title", "h1"}:
        candidates = [el for el in candidates if el.name in _HEADING] or candidates
    if not candidates:
        shown = sorted({price for price, _ in page.prices()}) if PRICE.fullmatch(intent.old) else []
        listed = f" (the prices it shows: {', '.join(shown)})" if shown else ""
        out.warnings.append(
            f"{_quote(intent.old)} is not on {page.url}{listed}; nothing was changed for "
            f"{_quote(intent.clause, 120)}."
        )
        return None
    element, why = _pick(page, candidates, hint, near, exact=intent.old)
    selector = page.selector(element)
    text = page.text(element)
    if text.lower() == normalize_text(intent.old).lower():
        payload = intent.new
    else:
        payload = text_pattern(intent.old).sub(lambda _: intent.new, text, count=1)
        if element.find(True) is not None:
            out.assumptions.append(
                f"{selector} holds more than {_quote(intent.old)}; its whole text is set, so its "
                "inline markup becomes plain text"
            )
    if len(candidates) > 1:
        out.assumptions.append(
            f"{_quote(intent.old)} appears {len(candidates)} times on the page; changed "
            f"{selector} because {why}"
        )
    is_price = bool(PRICE.fullmatch(intent.old))
    description = (
        "Replace the displayed price"
        if is_price
        else f"Replace {_quote(intent.old)} with {_quote(intent.new)}"
    )
    out.mutations.append(MutationConfig(selector, "set_content", payload, None, description))
    if is_price:
        out.names.append(f"Price {intent.new}")
        out.sentences.append(_price_sentence(intent.old, intent.new))
    else:
        out.names.append(f"{_quote(intent.new, 40)} instead of {_quote(intent.old, 40)}")
        out.sentences.append(
            f"Saying {_quote(intent.new)} instead of {_quote(intent.old)} makes the offer "
            "clearer, so more visitors act on it."
        )
    cta = _in_cta(page, element)
    if cta is not None:
        out.clicked = cta
    return element


def _link_change(
    page: Page, intent: LinkChange, out: AuthoredChanges, near: Tag | None
) -> Tag | None:
    anchors = [el for el in page.elements("a") if el.has_attr("href")]
    hint = words(intent.hint)
    ctas = [el for el in page.ctas if el.name == "a" and el.has_attr("href")]
    candidates = ctas if (hint & _CTA_WORDS or not hint) and ctas else anchors
    if not candidates:
        out.warnings.append(
            f"{page.url} has no link to point at {intent.url}; nothing was changed for "
            f"{_quote(intent.clause, 120)}."
        )
        return None
    host = urlsplit(intent.url).hostname

    def same_host(element: Tag) -> int:
        # A link already going to the new URL's host (a Stripe link for a Stripe link)
        # is most likely the one to re-point.
        return 2 if urlsplit(str(element.get("href"))).hostname == host else 0

    element, why = _pick(page, candidates, hint, near, bonus=same_host)
    selector = page.selector(element)
    label = page.text(element)
    if element.get("href") == intent.url:
        out.warnings.append(f"{selector} already links to {intent.url}; the change does nothing.")
    out.mutations.append(
        MutationConfig(
            selector, "set_attribute", intent.url, "href", f"Point {_quote(label)} at {host}"
        )
    )
    if len(candidates) > 1:
        out.assumptions.append(f"Linked {selector} ({_quote(label)}) because {why}")
    out.names.append(f"{label} to {host}")
    out.sentences.append(
        f"Sending {_quote(label)} to {host} takes visitors straight to the offer, so more of "
        "those who click complete it."
    )
    out.clicked = element
    return element


def _role_text(page: Page, intent: RoleText, out: AuthoredChanges, near: Tag | None) -> Tag | None:
    element: Tag | None
    if intent.role == "headline":
        element = page.headline
    elif intent.role == "subhead":
        element = page.subhead
    else:
        hint = words(intent.hint) - _CTA_WORDS
        element = page.primary_cta
        if hint and page.ctas:
            element = _pick(page, page.ctas, hint, near)[0]
    if element is None:
        out.warnings.append(
            f"{page.url} has no {intent.role} to change; nothing was changed for "
            f"{_quote(intent.clause, 120)}."
        )
        return None
    selector = page.selector(element)
    old = page.text(element)
    out.mutations.append(
        MutationConfig(selector, "set_content", intent.new, None, f"Rewrite the {intent.role}")
    )
    out.names.append(f"{intent.role.capitalize()} {_quote(intent.new, 40)}")
    out.sentences.append(
        f"A {intent.role} that says {_quote(intent.new)} instead of {_quote(old)} states the "
        "value more directly, so more visitors keep reading and act."
    )
    if intent.role == "cta":
        out.clicked = element
    return element


def _hide(page: Page, intent: Hide, out: AuthoredChanges) -> Tag | None:
    if intent.quoted:
        candidates = page.containing(intent.what)
    else:
        wanted = words(intent.what) - _FILLER
        candidates = [
            el
            for el in page.body.find_all(True)
            if isinstance(el, Tag)
            and wanted
            and (wanted <= page.own_words(el) or (len(wanted) == 1 and el.name in wanted))
            and page.visible(el)
        ]
    if not candidates:
        out.warnings.append(
            f"Found nothing on {page.url} that is {_quote(intent.what)}; nothing was hidden."
        )
        return None
    element = candidates[0]  # the outermost: find_all lists ancestors first
    selector = page.selector(element)
    out.mutations.append(
        MutationConfig(selector, "set_style", "display: none", None, f"Hide {intent.what}")
    )
    out.names.append(f"Hidden {intent.what}")
    out.sentences.append(
        f"Hiding {intent.what} removes a distraction from the main call to action, so more "
        "visitors take it."
    )
    return element


def author_changes(page: Page, intents: Sequence[Intent]) -> AuthoredChanges:
    """The changes ``intents`` make to ``page``, with their names, hypothesis sentences,
    assumptions and warnings (an intent that finds no element is a warning)."""
    out = AuthoredChanges()
    near: Tag | None = None
    for intent in intents:
        if isinstance(intent, TextChange):
            changed = _text_change(page, intent, out, near)
        elif isinstance(intent, LinkChange):
            changed = _link_change(page, intent, out, near)
        elif isinstance(intent, RoleText):
            changed = _role_text(page, intent, out, near)
        else:
            changed = _hide(page, intent, out)
        near = changed or near
    return out


def click_goal(page: Page, element: Tag | None) -> tuple[SuggestedGoal, ...]:
    """A click goal on ``element`` (the CTA a variant changed), else on the page's
    primary call to action; none when the page has no call to action."""
    target = element if element is not None else page.primary_cta
    if target is None:
        return ()
    label = page.text(target)
    label = label if len(label) <= 60 else label[:59].rstrip() + "\u2026"
    return (SuggestedGoal(name=f"{label} click", type="click", selector=page.selector(target)),)


def variant_name(pieces: Sequence[str]) -> str:
    """A variant's name from the names of its changes ("Price $499 with Start Pro trial to
    buy.stripe.com"), at most 200 characters."""
    if not pieces:
        return "Variant B"
    rest = [piece[0].lower() + piece[1:] if piece[1:2].islower() else piece for piece in pieces[1:]]
    name = " with ".join([pieces[0], *rest]) if len(rest) < 2 else " + ".join([pieces[0], *rest])
    return name if len(name) <= 200 else name[:199].rstrip() + "\u2026"


def variant_draft(
    page: Page,
    request: VariantRequest,
    *,
    name: str,
    mutations: Sequence[MutationConfig],
    goals: Sequence[SuggestedGoal],
    hypothesis: str,
    assumptions: Sequence[str],
    warnings: Sequence[str],
    url_pattern: str | None = None,
) -> VariantDraft:
    """The draft both authors return: the variant, its goals and hypothesis, and the
    context (the page analyzed, its tech stack, the url_pattern, the assumptions, and
    the warnings, a target on another domain than the site's first). ``url_pattern``
    (already validated) overrides the one the prompt implies (`url_pattern_for`)."""
    pattern, scope_assumptions, scope_warnings = url_pattern_for(request.prompt, page.url)
    if url_pattern is not None:
        pattern, scope_assumptions, scope_warnings = url_pattern, [], []
    mismatch = domain_warning(request.site_url, page.url)
    context = AuthoringContext(
        page_analyzed=page.url,
        page_fetched_at=page.fetched_at,
        tech_stack=", ".join(page.tech_stack) or None,
        url_pattern=pattern,
        assumptions=(*assumptions, *scope_assumptions),
        warnings=(*([mismatch] if mismatch else []), *warnings, *scope_warnings),
    )
    return VariantDraft(
        variant=AuthoredVariant(name=name, mutations=tuple(mutations)),
        suggested_goals=tuple(goals),
        hypothesis=hypothesis[:2000],
        context=context,
    )
