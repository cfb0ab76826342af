"""Turning the intents of a prompt (`edge.authoring.prompts`) into DOM changes on a
parsed page: which element each intent means, the change, and the words that go with it
(the variant's name, its hypothesis, the goal to judge it on).

When several elements fit ("$99" is on the Pro card and in the FAQ), the one the prompt's
words and the page agree on wins: the markup ("hero price", ``plan--pro``), the card the
element sits in (its heading "Pro"), then a featured or primary one, then the first; the
choice is written into the assumptions. When the prompt names something the page does
not show ("the Gold plan button"), or text that is not there, the intent is not acted on
and the reason goes into ``unsure``: the author then asks (`targets.unsure`) instead of
changing something else.
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
from edge.authoring.page import PRICE, Page, normalize_text, text_pattern, tight_text
from edge.authoring.prompts import (
    Hide,
    Intent,
    LinkChange,
    PlanPrice,
    RoleText,
    Show,
    Style,
    TextChange,
    words,
)
from edge.authoring.targets import domain_warning, url_pattern_for
from edge.config import MutationConfig

__all__ = [
    "AuthoredChanges",
    "author_changes",
    "click_goal",
    "examples",
    "variant_draft",
    "variant_name",
]

_FEATURED: Final = frozenset({"featured", "popular", "recommended", "primary", "hero", "highlight"})
_CTA_WORDS: Final = frozenset({"cta", "button", "btn", "buy", "checkout", "purchase", "signup"})
_CHROME_WORDS: Final = frozenset({"nav", "navigation", "header", "footer", "menu"})
_HEADING: Final = ("h1", "h2", "h3", "h4", "h5", "h6")
_FILLER: Final = frozenset({"section", "block", "area", "part", "element", "box", "banner"})
# Words of a hint that say what kind of thing it is, not which one: "the Pro plan button"
# must match "pro" on the page; "plan" and "button" do not tell the buttons apart.
_GENERIC: Final = (
    _CTA_WORDS
    | _FILLER
    | frozenset(
        {"plan", "tier", "main", "primary", "call", "action", "form", "price", "pricing", "card"}
    )
)
_HEADLINE_WORDS: Final = frozenset({"headline", "heading", "title", "h1"})
_SUBHEAD_WORDS: Final = frozenset(
    {"subheadline", "subhead", "subheading", "subtitle", "tagline", "intro"}
)
_INLINE: Final = frozenset({"a", "span", "strong", "em", "b", "i", "small", "label", "button"})


class AuthoredChanges(msgspec.Struct):
    """What the intents made of the page. ``unsure`` says, per intent, why it was not
    acted on; any entry there means the author should ask rather than answer."""

    mutations: list[MutationConfig] = msgspec.field(default_factory=list)
    names: list[str] = msgspec.field(default_factory=list)
    sentences: list[str] = msgspec.field(default_factory=list)
    assumptions: list[str] = msgspec.field(default_factory=list)
    warnings: list[str] = msgspec.field(default_factory=list)
    unsure: list[str] = msgspec.field(default_factory=list)
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


def _card_score(page: Page, element: Tag, group: list[Tag], hint: set[str]) -> int:
    """How well the card ``element`` sits in (among ``group``) matches ``hint``: its
    heading counts most ("Pro" on the Pro card), then its markup, then its text."""
    if not hint:
        return 0
    card = page.card(element, group)
    heading = card.find(_HEADING) if card.name not in _HEADING else card
    heading_words = words(page.text(heading)) if isinstance(heading, Tag) else set()
    return (
        3 * len(hint & heading_words)
        + 2 * len(hint & page.context_words(card))
        + len(hint & words(page.text(card)))
    )


def _pick(
    page: Page,
    candidates: Sequence[Tag],
    hint: set[str],
    near: Tag | None,
    exact: str = "",
    bonus: Callable[[Tag], int] = lambda element: 0,
) -> tuple[Tag, str, int]:
    """The candidate the prompt most likely means, why (for the assumptions), and how
    many of the hint's specific words (not `_GENERIC`) it matched."""
    group = list(candidates)
    specific = hint - _GENERIC

    def matched(element: Tag) -> int:
        return 2 * len(hint & page.context_words(element)) + _card_score(
            page, element, group, specific
        )

    def score(element: Tag) -> int:
        context = page.context_words(element)
        value = matched(element) + (1 if context & _FEATURED else 0)
        if page.in_chrome(element) and not hint & _CHROME_WORDS:
            value -= 3
        if exact and tight_text(page.text(element)).lower() == exact.lower():
            value += 2
        return value + _closeness(element, near) + bonus(element)

    best = max(group, key=score)  # max keeps the first of equals: document order
    context = page.context_words(best)
    reasons = sorted(hint & context) + sorted(context & _FEATURED)
    why = f"its markup says {', '.join(reasons)}" if reasons else "it comes first on the page"
    card = page.card(best, group)
    shared = specific & (context | page.context_words(card) | words(page.text(card)))
    if shared:
        why = f"it sits with {', '.join(sorted(shared))}"
    if near is not None and _closeness(best, near) >= 3:
        why = "it sits with the element changed before it"
    return best, why, len(shared)


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


def _no_match(page: Page, hint: str, specific: set[str], kind: str) -> str:
    return (
        f"Nothing on {page.url} that is {kind} shows {', '.join(sorted(specific))} (from "
        f"{_quote(hint)}); which one is meant?"
    )


def _text_change(
    page: Page, intent: TextChange, out: AuthoredChanges, near: Tag | None
) -> Tag | None:
    candidates = page.containing(intent.old)
    hint = words(intent.hint)
    if hint & _CTA_WORDS:
        ctas = [cta for cta in (_in_cta(page, el) for el in candidates) if cta is not None]
        candidates = ctas or candidates
    elif hint & _HEADLINE_WORDS:
        candidates = [el for el in candidates if el.name in _HEADING] or candidates
    if not candidates:
        shown = sorted({price for price, _ in page.prices()}) if PRICE.fullmatch(intent.old) else []
        listed = f" (the prices it shows: {', '.join(shown)})" if shown else ""
        out.unsure.append(
            f"{_quote(intent.old)} is not on {page.url}{listed}, so "
            f"{_quote(intent.clause, 120)} changes nothing."
        )
        return None
    element, why, _ = _pick(page, candidates, hint, near, exact=intent.old)
    selector = page.selector(element)
    text = page.shown_text(element)
    if text.lower() == normalize_text(intent.old).lower():
        payload = intent.new
    else:
        payload = text_pattern(intent.old).sub(lambda _: intent.new, text, count=1)
    if element.find(True) is not None and payload != intent.new:
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


def _plan_price(
    page: Page, intent: PlanPrice, out: AuthoredChanges, near: Tag | None
) -> Tag | None:
    plan = words(intent.plan) - _GENERIC
    shown = page.prices()
    elements = list({id(element): element for _, element in shown}.values())
    if not elements or not plan:
        out.unsure.append(
            f"{page.url} shows no price for a plan called {_quote(intent.plan)}; which price "
            "should change?"
        )
        return None
    element, why, found = _pick(page, elements, plan, None)
    ranked = sorted((_card_score(page, other, elements, plan) for other in elements), reverse=True)
    if not found or (len(ranked) > 1 and ranked[0] == ranked[1]):
        listed = ", ".join(sorted({price for price, _ in shown}))
        out.unsure.append(
            f"Could not tell which price on {page.url} is the {intent.plan} plan's (it shows "
            f'{listed}); name the price to change ("change $99 to {intent.new}").'
        )
        return None
    text = page.shown_text(element)
    old = next(price for price, tag in shown if tag is element)
    new_price = PRICE.search(intent.new)
    replacement = new_price.group(0) if new_price else intent.new
    payload = text_pattern(old).sub(lambda _: replacement, text, count=1)
    selector = page.selector(element)
    out.assumptions.append(f"The {intent.plan} plan's price is {selector} ({old}) because {why}")
    out.mutations.append(
        MutationConfig(selector, "set_content", payload, None, f"Price the {intent.plan} plan")
    )
    out.names.append(f"{intent.plan.capitalize()} plan at {replacement}")
    out.sentences.append(_price_sentence(old, replacement))
    return element


def _link_change(
    page: Page, intent: LinkChange, out: AuthoredChanges, near: Tag | None
) -> Tag | None:
    hint = words(intent.hint)
    attribute = "href"
    if "form" in hint:
        candidates = [el for el in page.body.find_all("form") if isinstance(el, Tag)]
        attribute = "action"
    else:
        anchors = [el for el in page.elements("a") if el.has_attr("href")]
        ctas = [el for el in page.ctas if el.name == "a" and el.has_attr("href")]
        candidates = ctas if (hint & _CTA_WORDS or not hint - _GENERIC) and ctas else anchors
    if not candidates:
        what = "form" if attribute == "action" else "link"
        out.unsure.append(f"{page.url} has no {what} to point at {intent.url}; which one?")
        return None
    host = urlsplit(intent.url).hostname

    def same_host(element: Tag) -> int:
        # A link already going to the new URL's host (a Stripe link for a Stripe link)
        # is most likely the one to re-point.
        return 2 if urlsplit(str(element.get(attribute))).hostname == host else 0

    element, why, found = _pick(page, candidates, hint, near, bonus=same_host)
    specific = hint - _GENERIC - {"stripe", "url", "checkout", "link"}
    if specific and not found and _closeness(element, near) < 3:
        out.unsure.append(_no_match(page, intent.hint, specific, "a link"))
        return None
    selector = page.selector(element)
    label = page.text(element) or selector
    if element.get(attribute) == intent.url:
        out.warnings.append(f"{selector} already goes to {intent.url}; the change does nothing.")
    out.mutations.append(
        MutationConfig(
            selector, "set_attribute", intent.url, attribute, f"Point {_quote(label)} at {host}"
        )
    )
    if len(candidates) > 1:
        out.assumptions.append(f"Pointed {selector} ({_quote(label)}) at {host} because {why}")
    out.names.append(f"{label} to {host}")
    out.sentences.append(
        f"Sending {_quote(label)} to {host} takes visitors straight to the offer, so more of "
        "those who click complete it."
    )
    out.clicked = element if element.name != "form" else out.clicked
    return element


def _named(page: Page, hint: str, near: Tag | None, out: AuthoredChanges) -> Tag | None:
    """The element a description names ("the CTA button", "the Pro plan button", "the
    headline", "the annual note"), or None with the reason in ``out.unsure``."""
    said = words(hint) - _FILLER
    if said & _SUBHEAD_WORDS:
        element = page.subhead
    elif said & _HEADLINE_WORDS:
        element = page.headline
    elif said & _CTA_WORDS or not said - _GENERIC:
        specific = said - _GENERIC
        element = page.primary_cta
        if specific and page.ctas:
            element, _, found = _pick(page, page.ctas, said, near)
            if not found:
                out.unsure.append(_no_match(page, hint, specific, "a call to action"))
                return None
    else:
        named = [
            el
            for el in page.body.find_all(True)
            if isinstance(el, Tag) and said <= page.own_words(el) and page.visible(el)
        ]
        element = named[0] if named else None
    if element is None:
        out.unsure.append(f"Found nothing on {page.url} that is {_quote(hint)}; which element?")
    return element


def _role_text(page: Page, intent: RoleText, out: AuthoredChanges, near: Tag | None) -> Tag | None:
    element: Tag | None
    if intent.role == "headline":
        element = page.headline
    elif intent.role == "subhead":
        element = page.subhead
    else:
        element = _named(page, intent.hint, near, out)
        if element is None:
            return None
    if element is None:
        out.unsure.append(
            f"{page.url} has no {intent.role}, so {_quote(intent.clause, 120)} changes nothing."
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


def _style(page: Page, intent: Style, out: AuthoredChanges, near: Tag | None) -> Tag | None:
    element = _named(page, intent.hint, near, out)
    if element is None:
        return None
    is_button = any(element is cta for cta in page.ctas)
    on_text = bool(re.search(r"\b(?:text|font|label|words?)\b", intent.hint, re.I))
    declarations: list[str] = []
    said: list[str] = []
    if intent.color is not None:
        if is_button and not on_text:
            declarations.append(f"background-color: {intent.color}")
            declarations.append(f"border-color: {intent.color}")
        else:
            declarations.append(f"color: {intent.color}")
        said.append(intent.color)
    if intent.scale is not None:
        # zoom scales the element with its padding and border and reflows around it,
        # whatever unit its font size was set in.
        declarations.append(f"zoom: {intent.scale:g}")
        said.append("larger" if intent.scale > 1 else "smaller")
    selector = page.selector(element)
    label = page.text(element)
    out.mutations.append(
        MutationConfig(
            selector, "set_style", "; ".join(declarations), None, f"Make it {' and '.join(said)}"
        )
    )
    out.names.append(f"{_quote(label, 40)} {' and '.join(said)}")
    out.sentences.append(
        f"A {' and '.join(said)} {_quote(label, 40)} stands out more, so more visitors see "
        "it and act on it."
    )
    if is_button:
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
        out.unsure.append(
            f"Found nothing on {page.url} that is {_quote(intent.what)}, so nothing would be "
            "hidden; which element?"
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


def _show(page: Page, intent: Show, out: AuthoredChanges) -> Tag | None:
    wanted = words(intent.what) - _FILLER
    candidates = [
        el
        for el in page.body.find_all(True)
        if isinstance(el, Tag)
        and wanted
        and page.hidden_by(el) is not None
        and (wanted <= page.own_words(el) or wanted <= words(page.text(el)))
    ]
    if not candidates:
        out.unsure.append(
            f"Found nothing hidden on {page.url} that is {_quote(intent.what)}; which element "
            "should be shown?"
        )
        return None
    element = candidates[0]
    selector = page.selector(element)
    how = page.hidden_by(element) or ""
    if how.startswith("class:"):
        change = MutationConfig(
            selector, "remove_class", how[len("class:") :], None, f"Show {intent.what}"
        )
    else:
        display = "inline" if element.name in _INLINE else "block"
        change = MutationConfig(
            selector, "set_style", f"display: {display}", None, f"Show {intent.what}"
        )
    out.mutations.append(change)
    out.names.append(f"Shown {intent.what}")
    out.sentences.append(
        f"Showing {_quote(page.text(element), 60)} answers a question visitors have before "
        "they act, so more of them do."
    )
    return element


def author_changes(page: Page, intents: Sequence[Intent]) -> AuthoredChanges:
    """The changes ``intents`` make to ``page``, with their names, hypothesis sentences,
    assumptions and warnings; an intent that finds no element, or cannot tell which one
    is meant, is a reason in ``unsure``."""
    out = AuthoredChanges()
    near: Tag | None = None
    for intent in intents:
        changed: Tag | None
        if isinstance(intent, TextChange):
            changed = _text_change(page, intent, out, near)
        elif isinstance(intent, PlanPrice):
            changed = _plan_price(page, intent, out, near)
        elif isinstance(intent, LinkChange):
            changed = _link_change(page, intent, out, near)
        elif isinstance(intent, RoleText):
            changed = _role_text(page, intent, out, near)
        elif isinstance(intent, Style):
            changed = _style(page, intent, out, near)
        elif isinstance(intent, Show):
            changed = _show(page, intent, out)
        else:
            changed = _hide(page, intent, out)
        near = changed or near
    return out


def examples(page: Page) -> list[str]:
    """Prompts this author acts on that name what ``page`` shows: the suggestions of a
    clarification."""
    found: list[str] = []
    if page.headline is not None:
        found.append(f'Change the headline to "{page.text(page.headline)[:60]} (new wording)"')
    prices = page.prices()
    if prices:
        found.append(f"Change {prices[0][0]} to (the new price)")
    cta = page.primary_cta
    if cta is not None:
        found.append(f'Rename the "{page.text(cta)[:40]}" button to (new text)')
        found.append(f'Make the "{page.text(cta)[:40]}" button green and larger')
        found.append("Link the CTA to https://(the new destination)")
    return found


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
