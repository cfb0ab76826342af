"""The optional LLM author: an OpenAI-compatible chat-completions endpoint writes the
variant, the ideas and the challengers; this module checks what it wrote.

Off unless ``SPLITEDGE_LLM_URL`` is set (`LlmSettings.from_environ`). The endpoint gets
a condensed summary of the fetched page (title, headings, the candidate elements with
their stable selectors, links) and the prompt, and answers JSON (``response_format``
``json_object``). The answer is decoded into typed shapes and validated exactly like the
deterministic author's output (`edge.authoring.validation`): a selector that matches
nothing on the page is dropped with a warning, an action the snippet does not know is
dropped, ``set_attribute`` needs its attribute name, payloads are bounded, and no text
payload may show a URL of the prompt or its scope words. Target resolution and
``needs_clarification`` are the shared ones (`edge.authoring.targets`); when the model
says it is not sure (``clarify``), proposes nothing, or any of its changes is dropped,
the answer is ``needs_clarification`` with the reasons, never a partial variant.

Ideas and challengers fall back to the deterministic author when the endpoint's answer
leaves nothing usable; site intelligence is the deterministic one (docs/authoring.md).
An endpoint that fails or answers malformed JSON is `AuthorUnavailable` (502).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import httpx
import msgspec

from edge.authoring.deterministic import DeterministicAuthor
from edge.authoring.drafts import (
    ElementType,
    IdeaDraft,
    NeedsClarification,
    SiteIntelligence,
    SuggestedGoal,
    VariantDraft,
    VariantRequest,
)
from edge.authoring.fetch import PageFetcher
from edge.authoring.page import Page
from edge.authoring.prompts import scope_phrases
from edge.authoring.targets import clarification, resolve_target, site_root, unsure, urls_in
from edge.authoring.validation import ACTIONS, validate_mutations
from edge.authoring.variants import click_goal, examples, variant_draft
from edge.config import MutationConfig
from edge.errors import InvalidUrlPattern, SplitedgeError
from edge.urlglob import validate_pattern

__all__ = ["AuthorUnavailable", "LlmAuthor", "LlmSettings"]

_GOAL_TYPES: Final = ("click", "pageview", "custom")
_ELEMENT_TYPES: Final = ("headline", "copy", "image", "layout")
_LEVELS: Final = ("high", "medium", "low")

_SYSTEM: Final = (
    "You write A/B test variants for web pages. You get a JSON summary of one page (its "
    "elements with CSS selectors) and a task. Answer one JSON object only. Use only "
    "selectors from the summary. A mutation is {selector, action, payload, attribute_name?, "
    "description?}; action is one of set_content, set_style, set_attribute, insert_before, "
    "insert_after, add_class, remove_class; set_attribute needs attribute_name (e.g. href)."
)
_VARIANT_TASK: Final = (
    "Author the variant the prompt asks for. Answer {name, mutations: [mutation], "
    "hypothesis, suggested_goals: [{name, type: click|pageview|custom, selector?, "
    "url_pattern?}], url_pattern: glob or null (only when the prompt names a class of "
    "pages), assumptions: [string], clarify: [string]}. A URL in the prompt is where a link "
    "goes: set_attribute href on the link (or action on a form), never text. Words saying "
    "where the test runs ('on every /report/* page', 'site-wide') go in url_pattern, never "
    "in a payload. When you are not sure which element or which change is meant, answer "
    "no mutations and put your questions in clarify."
)
_IDEAS_TASK: Final = (
    "Suggest conversion-rate A/B test ideas for this page. Answer {ideas: [{title, "
    "hypothesis, category, priority: high|medium|low, estimated_impact: high|medium|low, "
    "element_type: headline|copy|null, mutations: [mutation]}]}."
)
_CHALLENGER_TASK: Final = (
    "Write the next challenger of a champion-challenger loop: rewrite only the element "
    "types given, with texts different from the champion's and every loser's. Answer "
    "{title, hypothesis, category, priority, estimated_impact, element_type, mutations}."
)


class AuthorUnavailable(SplitedgeError):
    """The LLM endpoint failed or answered something other than the JSON asked for."""

    code = "author_unavailable"
    status = 502


class LlmSettings(msgspec.Struct, frozen=True):
    """Where the LLM author's endpoint is: ``url`` is the API base (``.../v1``), to which
    ``/chat/completions`` is appended."""

    url: str
    model: str = "gpt-4o-mini"
    api_key: str | None = None
    timeout: float = 60.0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> LlmSettings | None:
        """``SPLITEDGE_LLM_URL`` (None when unset or blank: no LLM author),
        ``SPLITEDGE_LLM_MODEL``, ``SPLITEDGE_LLM_API_KEY``, ``SPLITEDGE_LLM_TIMEOUT``."""
        url = environ.get("SPLITEDGE_LLM_URL", "").strip()
        if not url:
            return None
        timeout = environ.get("SPLITEDGE_LLM_TIMEOUT", "").strip()
        try:
            seconds = float(timeout) if timeout else 60.0
        except ValueError:
            seconds = 60.0
        return cls(
            url=url.rstrip("/"),
            model=environ.get("SPLITEDGE_LLM_MODEL", "").strip() or "gpt-4o-mini",
            api_key=environ.get("SPLITEDGE_LLM_API_KEY", "").strip() or None,
            timeout=seconds if seconds > 0 else 60.0,
        )


# What the endpoint answers. Fields are plain strings where the model may be wrong, so
# one bad value drops one change (with a warning) instead of the whole answer.


class _Mutation(msgspec.Struct):
    selector: str
    action: str
    payload: str = ""
    attribute_name: str | None = None
    description: str | None = None


class _Goal(msgspec.Struct):
    name: str
    type: str
    selector: str | None = None
    url_pattern: str | None = None


class _Variant(msgspec.Struct):
    mutations: list[_Mutation] = msgspec.field(default_factory=list)
    name: str = ""
    hypothesis: str = ""
    suggested_goals: list[_Goal] = msgspec.field(default_factory=list)
    url_pattern: str | None = None
    assumptions: list[str] = msgspec.field(default_factory=list)
    clarify: list[str] = msgspec.field(default_factory=list)


class _Idea(msgspec.Struct):
    title: str
    mutations: list[_Mutation]
    hypothesis: str = ""
    category: str = "copy"
    priority: str = "medium"
    estimated_impact: str = "medium"
    element_type: str | None = None


class _Ideas(msgspec.Struct):
    ideas: list[_Idea]


class _Message(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    message: _Message


class _Completion(msgspec.Struct):
    choices: list[_Choice]


def _summary(page: Page) -> dict[str, Any]:
    """The page as the model sees it: what it may change, each with its selector."""

    def element(tag: Any, limit: int = 200) -> dict[str, str]:
        return {"selector": page.selector(tag), "text": page.text(tag)[:limit]}

    return {
        "url": page.url,
        "title": page.title,
        "description": page.meta("description"),
        "tech_stack": list(page.tech_stack),
        "headline": element(page.headline) if page.headline is not None else None,
        "subhead": element(page.subhead) if page.subhead is not None else None,
        "headings": [element(tag) for tag in page.elements("h1", "h2", "h3")[:20]],
        "copy": [element(tag) for tag in page.copy_blocks[:10]],
        "ctas": [
            {**element(tag, 80), "href": str(tag.get("href") or "")} for tag in page.ctas[:15]
        ],
        "prices": [
            {"text": text, "selector": page.selector(tag)} for text, tag in page.prices()[:15]
        ],
        "links": page.links()[:30],
    }


def _mutations(
    page: Page, answered: Sequence[_Mutation], forbidden: Sequence[str] = ()
) -> tuple[tuple[MutationConfig, ...], list[str], tuple[str, ...]]:
    """The answered changes that pass `validate_mutations`, what was dropped, and the
    notes on those kept."""
    known: list[MutationConfig] = []
    warnings: list[str] = []
    for change in answered:
        if change.action not in ACTIONS:
            warnings.append(
                f"Dropped a change with the unknown action {change.action[:40]!r} (the "
                f"actions are {', '.join(sorted(ACTIONS))})."
            )
            continue
        known.append(
            msgspec.convert(
                {
                    "selector": change.selector,
                    "action": change.action,
                    "payload": change.payload,
                    "attribute_name": change.attribute_name,
                    "description": (change.description or "")[:300] or None,
                },
                MutationConfig,
            )
        )
    kept, dropped, notes = validate_mutations(page, known, forbidden)
    return kept, [*warnings, *dropped], notes


def _level(value: str) -> Any:
    return value if value in _LEVELS else "medium"


class LlmAuthor:
    """The `edge.authoring.author.Author` backed by an OpenAI-compatible endpoint."""

    def __init__(self, settings: LlmSettings, fetcher: PageFetcher | None = None) -> None:
        self.settings = settings
        self.fallback = DeterministicAuthor(fetcher)
        self.fetcher = self.fallback.fetcher

    def _ask(self, task: str, payload: dict[str, Any]) -> bytes:
        """The JSON the endpoint answers to ``task`` about ``payload``."""
        headers = {"content-type": "application/json"}
        if self.settings.api_key:
            headers["authorization"] = f"Bearer {self.settings.api_key}"
        body = {
            "model": self.settings.model,
            "messages": [
                {"role": "system", "content": f"{_SYSTEM} {task}"},
                {"role": "user", "content": msgspec.json.encode(payload).decode()},
            ],
            "response_format": {"type": "json_object"},
            "temperature": 0,
        }
        endpoint = f"{self.settings.url}/chat/completions"
        advice = "retry, or unset SPLITEDGE_LLM_URL to use the deterministic author"
        try:
            response = httpx.post(
                endpoint,
                content=msgspec.json.encode(body),
                headers=headers,
                timeout=self.settings.timeout,
            )
        except httpx.HTTPError as exc:
            raise AuthorUnavailable(
                f"The LLM endpoint {endpoint} could not be reached ({type(exc).__name__}); {advice}"
            ) from None
        if response.status_code != 200:
            raise AuthorUnavailable(
                f"The LLM endpoint {endpoint} answered HTTP {response.status_code}; {advice}"
            )
        try:
            completion = msgspec.json.decode(response.content, type=_Completion)
            content = completion.choices[0].message.content if completion.choices else None
        except msgspec.DecodeError as exc:
            raise AuthorUnavailable(
                f"The LLM endpoint {endpoint} answered no chat completion ({exc}); {advice}"
            ) from None
        if not content:
            raise AuthorUnavailable(f"The LLM endpoint {endpoint} answered no content; {advice}")
        return content.encode()

    def _decode(self, content: bytes, shape: type[Any]) -> Any:
        try:
            return msgspec.json.decode(content, type=shape)
        except msgspec.DecodeError as exc:
            raise AuthorUnavailable(
                f"The LLM author answered content that is not the JSON asked for ({exc}); "
                "retry, or unset SPLITEDGE_LLM_URL to use the deterministic author"
            ) from None

    def generate_variant(self, request: VariantRequest) -> VariantDraft | NeedsClarification:
        """The endpoint's variant for the prompt, validated against the page."""
        target = resolve_target(request)
        if target is None:
            return clarification(request.site_url, self.fetcher.fetch)
        page = self.fallback.page(target)
        content = self._ask(_VARIANT_TASK, {"page": _summary(page), "prompt": request.prompt})
        answer: _Variant = self._decode(content, _Variant)
        forbidden = (*urls_in(request.prompt), *scope_phrases(request.prompt))
        mutations, dropped, notes = _mutations(page, answer.mutations, forbidden)
        reasons = [text[:300] for text in answer.clarify[:5]] + dropped
        if reasons or not mutations:
            return unsure(
                page.url, reasons or ["The LLM author proposed no change."], examples(page)
            )
        warnings = list(notes)
        pattern = None
        if answer.url_pattern:
            try:
                pattern = validate_pattern(answer.url_pattern)
            except InvalidUrlPattern as exc:
                warnings.append(f"Ignored the LLM's url_pattern: {exc.message}")
        goals = tuple(
            SuggestedGoal(goal.name[:200], goal.type, goal.selector, goal.url_pattern)
            for goal in answer.suggested_goals
            if goal.type in _GOAL_TYPES
            and (goal.type != "click" or (goal.selector and page.count(goal.selector) >= 1))
        )
        return variant_draft(
            page,
            request,
            name=answer.name[:200] or "Variant B",
            mutations=mutations,
            goals=goals or click_goal(page, None),
            hypothesis=answer.hypothesis,
            assumptions=[text[:300] for text in answer.assumptions[:10]],
            warnings=warnings,
            url_pattern=pattern,
        )

    def _idea(self, page: Page, idea: _Idea) -> IdeaDraft | None:
        mutations, _, _ = _mutations(page, idea.mutations)
        if not mutations:
            return None
        element_type = idea.element_type if idea.element_type in _ELEMENT_TYPES else None
        return IdeaDraft(
            title=idea.title[:200],
            hypothesis=idea.hypothesis[:2000],
            category=idea.category[:40] or "copy",
            priority=_level(idea.priority),
            estimated_impact=_level(idea.estimated_impact),
            mutations=mutations,
            element_type=msgspec.convert(element_type, ElementType | None),
            source_url=page.url,
        )

    def generate_ideas(
        self,
        site_url: str,
        count: int,
        element_types: Sequence[ElementType] | None = None,
        target_url: str | None = None,
    ) -> list[IdeaDraft]:
        """The endpoint's ideas whose changes fit the page; the deterministic ones when
        none do."""
        page = self.fallback.page(target_url or site_root(site_url))
        task = {"page": _summary(page), "count": count, "element_types": element_types}
        answer: _Ideas = self._decode(self._ask(_IDEAS_TASK, task), _Ideas)
        ideas = [idea for idea in (self._idea(page, raw) for raw in answer.ideas) if idea]
        if element_types is not None:
            ideas = [idea for idea in ideas if idea.element_type in element_types]
        if not ideas:
            return self.fallback.generate_ideas(site_url, count, element_types, target_url)
        return ideas[: max(0, count)]

    def challenger(
        self,
        target_url: str,
        element_types: Sequence[ElementType],
        champion: Sequence[MutationConfig],
        losers: Sequence[Sequence[MutationConfig]],
        selector_hints: dict[str, str] | None = None,
    ) -> IdeaDraft:
        """The endpoint's challenger when it fits the page and repeats no text shown
        before; else the deterministic one."""
        page = self.fallback.page(target_url)
        shown = {change.payload for change in champion}
        shown |= {change.payload for loser in losers for change in loser}
        task = {
            "page": _summary(page),
            "element_types": list(element_types),
            "selector_hints": selector_hints or {},
            "champion": [change.payload for change in champion],
            "losers": [[change.payload for change in loser] for loser in losers],
        }
        idea = self._idea(page, self._decode(self._ask(_CHALLENGER_TASK, task), _Idea))
        repeats = idea is not None and any(change.payload in shown for change in idea.mutations)
        if idea is None or repeats or idea.element_type not in element_types:
            return self.fallback.challenger(
                target_url, element_types, champion, losers, selector_hints
            )
        return idea

    def site_intelligence(self, site_url: str) -> SiteIntelligence:
        """The deterministic site intelligence (see docs/authoring.md for what an LLM
        would add)."""
        return self.fallback.site_intelligence(site_url)
