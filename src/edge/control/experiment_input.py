"""The body of ``POST /v1/experiments`` and how it becomes a draft experiment.

Everything the snippet runtime would trip over in a visitor's browser is refused here,
at create time, as a 400 naming the field: an action it does not know, a
``set_attribute`` without an attribute name the DOM accepts, a class change without a
class, a redirect that is not an http(s) URL, a goal type it does not track (``click``,
``pageview``, ``custom``), a click goal without a selector, a url_pattern the matcher
rejects (`edge.urlglob`). See ``snippet/README.md`` for what the runtime does with them.

A web experiment is a control (created here, no changes) and one variant that changes the
page (``changes``), redirects (``redirect_url``), comes from an idea (``idea_id``: its
``mockup_data.mutations``) or is authored from a ``prompt`` (the author's `VariantDraft`:
its mutations, and its suggested goals, hypothesis, page and url_pattern where the body
gives none); with none of these it is a blank draft, the control alone (the reference's
fourth path), which cannot launch until it has a variant. An agent experiment lists every
variant with its ``config`` (any JSON), control first, in ClawSplit's style, or names
crewkit's ``control_version_hash`` and ``variant_version_hash`` of a ``resource_id``.

A draft is filled in later by ``PATCH /v1/experiments/{id}`` with the same content fields
(`ExperimentEdit`): `edited_experiment` lays them over the draft as it is and checks the
result with `new_experiment`, the create's own checks, so a draft can never be edited into
something a create would refuse.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec

from analytics.metric_results import AGENT_METRIC_KEYS, agent_metric_key
from analytics.results import AGENT_METRICS
from edge.authoring.drafts import VariantDraft
from edge.config import MutationConfig
from edge.control.idea_records import Idea
from edge.control.ideas import idea_mutations
from edge.control.lifecycle import split_weights
from edge.control.records import ExperimentRecord, NewExperiment, NewGoal, NewVariant
from edge.errors import InvalidRequest, InvalidUrlPattern
from edge.mutation_rules import script_risk
from edge.urlglob import validate_pattern

__all__ = [
    "GOAL_TYPES",
    "IDEA_VARIANT_NAME",
    "MAX_AGENT_VARIANTS",
    "CreateExperiment",
    "DraftEdit",
    "ExperimentEdit",
    "GoalIn",
    "VariantIn",
    "check_prompt_create",
    "edited_experiment",
    "guardrail_metrics",
    "http_url",
    "new_experiment",
]

GOAL_TYPES = ("click", "pageview", "custom")
"""The goal types the snippet runtime tracks."""

MAX_AGENT_VARIANTS = 10

CONTROL_NAME = "Control (A)"
IDEA_VARIANT_NAME = "Variant B"
"""The name of the variant an idea's mutations make (the reference's example's)."""

# An attribute name setAttribute accepts in every supported browser: the XML Name
# production (Chrome 86 still checks it; newer browsers accept a superset).
_NAME_START = (
    ":A-Z_a-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u02ff\u0370-\u037d\u037f-\u1fff\u200c-\u200d"
    "\u2070-\u218f\u2c00-\u2fef\u3001-\ud7ff\uf900-\ufdcf\ufdf0-\ufffd\U00010000-\U000effff"
)
_ATTRIBUTE_NAME = re.compile(
    f"[{_NAME_START}][{_NAME_START}\\-.0-9\u00b7\u0300-\u036f\u203f-\u2040]*"
)

_Text = Annotated[str, msgspec.Meta(max_length=2048)]


class VariantIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A variant: DOM ``changes`` (the reference's VariantMutation[], e.g. from
    ``POST /v1/variants/generate``), a ``redirect_url`` (split-URL test), or an agent
    ``config`` (any JSON), or ClawSplit's ``soul_md`` (the config ``{"soul_md": ...}``)."""

    name: Annotated[str, msgspec.Meta(max_length=200)]
    changes: tuple[MutationConfig, ...] = ()
    redirect_url: _Text | None = None
    config: Any = None
    soul_md: Annotated[str, msgspec.Meta(max_length=200_000)] | None = None


class GoalIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A goal (the first is the primary one): ``click`` on ``selector``, ``pageview`` of
    the pages ``url_pattern`` matches (none: every page) or ``custom`` (``__sk.track``).
    A ``guardrail`` goal stops the experiment when a variant converts significantly less
    on it than the control."""

    name: Annotated[str, msgspec.Meta(max_length=200)]
    type: str
    selector: _Text | None = None
    url_pattern: _Text | None = None
    guardrail: bool = False


class CreateExperiment(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/experiments`` (the reference's fields, ClawSplit's sample_size,
    primary_metric and confidence, crewkit's version hashes, and ``max_cost_increase``:
    the cost guardrail of an agent experiment, 0.3 = stop when a variant costs
    significantly more than 30% above the control; ``guardrail_metrics``: the agent
    metrics, of task_completion, cost, duration and turns, on which a variant
    significantly worse than the control stops it). ``traffic_split`` is the
    percent of traffic on the variant(s), 1 to 99 (default: equal shares)."""

    site_id: str | None = None
    name: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    prompt: str | None = None
    idea_id: str | None = None
    target_url: _Text | None = None
    url_pattern: _Text | None = None
    auto_launch: bool = False
    hypothesis: Annotated[str, msgspec.Meta(max_length=2000)] | None = None
    traffic_split: int | None = None
    variants: Annotated[tuple[VariantIn, ...], msgspec.Meta(max_length=MAX_AGENT_VARIANTS)] = ()
    goals: Annotated[tuple[GoalIn, ...], msgspec.Meta(max_length=20)] = ()
    kind: Literal["web", "agent"] | None = None
    # Bounded: the store keeps it as a SQLite integer, and no test needs more units per arm.
    sample_size: Annotated[int, msgspec.Meta(ge=1, le=1_000_000_000)] | None = None
    primary_metric: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    confidence: Annotated[float, msgspec.Meta(gt=0, lt=1)] | None = None
    max_cost_increase: Annotated[float, msgspec.Meta(gt=0, le=100)] | None = None
    guardrail_metrics: Annotated[tuple[str, ...], msgspec.Meta(max_length=8)] = ()
    resource_id: _Text | None = None
    control_version_hash: _Text | None = None
    variant_version_hash: _Text | None = None


class ExperimentEdit(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The content fields of ``PATCH /v1/experiments/{id}``, create's own: each one given
    replaces the draft's (``variants`` all of its non-control variants, or of an agent
    experiment all of them, the control first; ``goals`` all of its goals); one left out
    stays as it is. ``traffic_split`` alone re-splits any draft, running or paused
    experiment; the others change a draft only."""

    name: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    hypothesis: Annotated[str, msgspec.Meta(max_length=2000)] | None = None
    target_url: _Text | None = None
    url_pattern: _Text | None = None
    traffic_split: int | None = None
    variants: (
        Annotated[tuple[VariantIn, ...], msgspec.Meta(max_length=MAX_AGENT_VARIANTS)] | None
    ) = None
    goals: Annotated[tuple[GoalIn, ...], msgspec.Meta(max_length=20)] | None = None

    def draft_fields(self) -> tuple[str, ...]:
        """The fields given that only a draft's edit may change (all but traffic_split)."""
        fields = ("name", "hypothesis", "target_url", "url_pattern", "variants", "goals")
        return tuple(f for f in fields if getattr(self, f) is not None)


class DraftEdit(msgspec.Struct, frozen=True):
    """A checked edit of a draft: the draft as it becomes (`NewExperiment`, weights
    included), and whether its variants and its goals are replaced."""

    experiment: NewExperiment
    variants: bool
    goals: bool


def http_url(url: str, where: str) -> str:
    """``url`` without surrounding blanks, if it is an absolute http(s) URL; else a 400
    naming the field (``where``) and showing one that is."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        parts.port  # raises ValueError when the port is not a number from 0 to 65535
    except ValueError as exc:  # an invalid port, or an IPv6 host without its "]"
        raise InvalidRequest(
            f"{where} {url[:200]!r} is not a valid URL ({exc}); pass e.g. "
            "https://example.com/pricing-b"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidRequest(
            f"{where} {url[:200]!r} is not an absolute http(s) URL; pass e.g. "
            "https://example.com/pricing-b"
        )
    return text


def _check_change(change: MutationConfig, where: str) -> None:
    if not change.selector.strip():
        raise InvalidRequest(
            f"{where}.selector is empty; give the CSS selector of the element to change"
        )
    if change.action == "set_attribute":
        name = change.attribute_name or ""
        if not _ATTRIBUTE_NAME.fullmatch(name):
            raise InvalidRequest(
                f"{where}.attribute_name {name!r} is not an attribute name the browser "
                'accepts; set_attribute needs one, e.g. "href" or "data-plan"'
            )
        risk = script_risk(change)
        if risk is not None:
            raise InvalidRequest(
                f"{where} is refused: {risk}; a change may not run script in a visitor's "
                "browser (docs/variants.md)"
            )
    elif change.attribute_name:
        raise InvalidRequest(
            f"{where}.attribute_name is only for set_attribute; remove it, or use "
            f'"action": "set_attribute"'
        )
    if change.action in ("add_class", "remove_class") and not change.payload.split():
        raise InvalidRequest(
            f"{where}.payload names no class; {change.action} takes class names separated "
            'by spaces, e.g. "btn btn--primary"'
        )


def _web_variant(variant: VariantIn, where: str) -> NewVariant:
    if variant.config is not None or variant.soul_md is not None:
        raise InvalidRequest(
            f"{where}.config is for agent experiments, whose variants all carry one; a web "
            "variant has changes or a redirect_url"
        )
    if variant.changes and variant.redirect_url is not None:
        raise InvalidRequest(
            f"{where} has changes and a redirect_url; a variant either changes the page or "
            "sends its visitors elsewhere: pass one of them"
        )
    for j, change in enumerate(variant.changes):
        _check_change(change, f"{where}.changes[{j}]")
    redirect = None
    if variant.redirect_url is not None:
        redirect = http_url(variant.redirect_url, f"{where}.redirect_url")
    return NewVariant(variant.name, 1, changes=variant.changes, redirect_url=redirect)


def _agent_variant(variant: VariantIn, where: str) -> NewVariant:
    if variant.config is not None and variant.soul_md is not None:
        raise InvalidRequest(
            f"{where} has both config and soul_md; soul_md is the config "
            '{"soul_md": ...}: pass one of them'
        )
    if variant.soul_md is not None:
        variant = msgspec.structs.replace(variant, config={"soul_md": variant.soul_md})
    if variant.config is None:
        raise InvalidRequest(
            f"{where} has no config; in an agent experiment every variant, the control "
            'first, carries its configuration, e.g. {"name": "concise", "config": '
            '{"soul_md": "Be concise."}}'
        )
    if variant.changes or variant.redirect_url is not None:
        raise InvalidRequest(
            f"{where} has changes or a redirect_url, which are for web experiments; an "
            "agent variant carries only its config"
        )
    return NewVariant(variant.name, 1, config=variant.config)


def _goal(goal: GoalIn, where: str) -> NewGoal:
    if goal.type not in GOAL_TYPES:
        raise InvalidRequest(
            f"{where}.type {goal.type[:50]!r} is not a goal type the snippet tracks; use "
            "click (with a selector), pageview (with an optional url_pattern) or custom "
            "(sent with __sk.track(name))"
        )
    selector = (goal.selector or "").strip() or None
    if goal.type == "click" and selector is None:
        raise InvalidRequest(
            f"{where} is a click goal without a selector; add the CSS selector of the "
            'element whose clicks count, e.g. "selector": ".buy"'
        )
    try:
        pattern = validate_pattern(goal.url_pattern)
    except InvalidUrlPattern as exc:
        raise InvalidUrlPattern(f"{where}: {exc.message}") from None
    return NewGoal(goal.name, goal.type, selector, pattern, goal.guardrail)


def guardrail_metrics(body: CreateExperiment) -> tuple[str, ...]:
    """The body's guardrail metrics as metric keys, each once; a 400 for a name that is
    no agent metric."""
    keys: list[str] = []
    for name in body.guardrail_metrics:
        key = agent_metric_key(name)
        if key is None:
            raise InvalidRequest(
                f"guardrail_metrics names {name[:50]!r}, which is not an agent metric; use "
                f"{', '.join(AGENT_METRIC_KEYS)}"
            )
        if key not in keys:
            keys.append(key)
    return tuple(keys)


def _variants(body: CreateExperiment) -> tuple[Literal["web", "agent"], tuple[NewVariant, ...]]:
    crewkit = (body.resource_id, body.control_version_hash, body.variant_version_hash)
    if any(field is not None for field in crewkit):
        if body.variants:
            raise InvalidRequest(
                "pass either variants or crewkit's resource_id, control_version_hash and "
                "variant_version_hash, not both"
            )
        if not all(crewkit):
            raise InvalidRequest(
                "a crewkit experiment needs resource_id, control_version_hash and "
                "variant_version_hash"
            )
        return "agent", tuple(
            NewVariant(name, 1, config={"resource_id": body.resource_id, "version_hash": h})
            for name, h in (
                ("control", body.control_version_hash),
                ("variant", body.variant_version_hash),
            )
        )
    if not body.variants:
        if body.kind == "agent":
            raise InvalidRequest(
                "an agent experiment lists every variant with its config, the control "
                'first: pass variants [{name, config}, ...], e.g. {"name": "concise", '
                '"config": {"soul_md": "Be concise."}}'
            )
        if body.traffic_split is not None:
            raise InvalidRequest(
                "traffic_split is the share of the variant, and this blank draft has none; "
                "pass it with the variant"
            )
        # The reference's fourth path: a blank draft, its control alone; it launches once
        # it has a variant and a goal.
        return "web", (NewVariant(CONTROL_NAME, 1),)
    agent = body.kind == "agent" or any(
        v.config is not None or v.soul_md is not None for v in body.variants
    )
    if agent:
        if body.kind == "web":
            raise InvalidRequest('variants carry a config, which is for "kind": "agent"')
        if len(body.variants) < 2:
            raise InvalidRequest(
                "an agent experiment lists every variant with its config, the control "
                "first: pass at least 2"
            )
        return "agent", tuple(
            _agent_variant(v, f"variants[{i}]") for i, v in enumerate(body.variants)
        )
    if len(body.variants) > 1:
        raise InvalidRequest(
            f"variants has {len(body.variants)} entries; a web experiment takes one variant "
            "(the control is created for you, unchanged)"
        )
    return "web", (NewVariant(CONTROL_NAME, 1), _web_variant(body.variants[0], "variants[0]"))


def _idea_variants(
    body: CreateExperiment, idea: Idea
) -> tuple[Literal["web"], tuple[NewVariant, ...]]:
    if body.variants or body.kind == "agent" or body.resource_id is not None:
        raise InvalidRequest(
            "idea_id and variants are mutually exclusive: the idea's mutations are the "
            "variant; pass one of them"
        )
    changes = idea_mutations(idea)
    for j, change in enumerate(changes):
        _check_change(change, f"idea {idea.id}: mockup_data.mutations[{j}]")
    return "web", (NewVariant(CONTROL_NAME, 1), NewVariant(IDEA_VARIANT_NAME, 1, changes=changes))


def _prompt_alone(body: CreateExperiment) -> None:
    if body.idea_id is not None:
        raise InvalidRequest(
            "prompt and idea_id are mutually exclusive: the variant is authored from the "
            "prompt, or taken from the idea; pass one of them"
        )
    crewkit = (body.resource_id, body.control_version_hash, body.variant_version_hash)
    if body.variants or body.kind == "agent" or any(f is not None for f in crewkit):
        raise InvalidRequest(
            "prompt and variants are mutually exclusive: the variant is authored from the "
            "prompt; pass the prompt alone, or variants[0].changes (e.g. from POST "
            "/v1/variants/generate)"
        )


def _draft_variants(
    body: CreateExperiment, draft: VariantDraft
) -> tuple[Literal["web"], tuple[NewVariant, ...]]:
    _prompt_alone(body)
    authored = VariantIn(
        draft.variant.name, draft.variant.mutations, redirect_url=draft.variant.redirect_url
    )
    return "web", (NewVariant(CONTROL_NAME, 1), _web_variant(authored, "the authored variant"))


def _name(body: CreateExperiment) -> str:
    name = (body.name or "").strip()
    if not name:
        raise InvalidRequest("name is required; give the experiment a name")
    return name


class _Fields(msgspec.Struct, frozen=True):
    goals: tuple[NewGoal, ...]
    url_pattern: str | None
    target_url: str | None


def _fields(body: CreateExperiment, kind: Literal["web", "agent"]) -> _Fields:
    """The checks of the body's fields that depend on no variant."""
    if body.max_cost_increase is not None and kind != "agent":
        raise InvalidRequest(
            "max_cost_increase is the cost guardrail of agent experiments, whose tasks report "
            "a cost; remove it from this web experiment"
        )
    if body.guardrail_metrics and kind != "agent":
        raise InvalidRequest(
            "guardrail_metrics are the guardrails of agent experiments; mark a goal of "
            'this web experiment as one instead: "goals": [{..., "guardrail": true}]'
        )
    guardrail_metrics(body)
    if body.primary_metric is not None and body.primary_metric not in AGENT_METRICS:
        # The results would quietly judge the experiment on task_completion instead.
        raise InvalidRequest(
            f"primary_metric {body.primary_metric[:50]!r} is not a metric splitedge "
            f"measures; use one of {', '.join(AGENT_METRICS)}"
        )
    if body.traffic_split is not None and not 1 <= body.traffic_split <= 99:
        raise InvalidRequest(
            "traffic_split must be a whole number from 1 to 99 (the percent of traffic "
            f"on the variant), not {body.traffic_split}"
        )
    url_pattern = validate_pattern(body.url_pattern)
    target = None if body.target_url is None else http_url(body.target_url, "target_url")
    goals = tuple(_goal(g, f"goals[{i}]") for i, g in enumerate(body.goals))
    return _Fields(goals, url_pattern, target)


def check_prompt_create(body: CreateExperiment) -> None:
    """A 400 for what is wrong with a ``prompt`` create body before its variant is
    authored (authoring fetches a page and is paid for): the fields that are mutually
    exclusive with ``prompt``, and every field `new_experiment` checks that does not
    depend on the variant."""
    _prompt_alone(body)
    _name(body)
    _fields(body, "web")


def new_experiment(
    body: CreateExperiment,
    workspace_id: str,
    site_id: str | None,
    site_url: str | None,
    idea: Idea | None = None,
    draft: VariantDraft | None = None,
) -> NewExperiment:
    """The draft a create body describes, validated; ``site_url`` is the target URL (the
    base of preview URLs) when the body names none. A web experiment needs its site; an
    agent experiment may have none (ClawSplit's and crewkit's bodies name none). With
    ``idea`` (the body's ``idea_id``, loaded), the variant is the idea's mutations, and
    the idea's hypothesis and source page stand in for those the body leaves out. With
    ``draft`` (the variant authored from the body's ``prompt``), the variant is the
    draft's, and its suggested goals, hypothesis, analysed page and url_pattern stand in
    for those the body leaves out."""
    if body.prompt is not None and draft is None:
        raise ValueError("a prompt create needs the variant authored from its prompt (draft)")
    name = _name(body)
    kind: Literal["web", "agent"]
    if draft is not None:
        kind, variants = _draft_variants(body, draft)
    elif idea is not None:
        kind, variants = _idea_variants(body, idea)
    else:
        kind, variants = _variants(body)
    if site_id is None and kind == "web":
        raise InvalidRequest(
            "site_id is required: a web experiment runs on a site (GET /v1/sites lists "
            "them); only agent experiments may have none"
        )
    fields = _fields(body, kind)
    if body.traffic_split is not None:
        weights = split_weights(len(variants), body.traffic_split)
        variants = tuple(
            msgspec.structs.replace(v, weight=w) for v, w in zip(variants, weights, strict=True)
        )
    goals, url_pattern, hypothesis = fields.goals, fields.url_pattern, body.hypothesis
    target = site_url
    if idea is not None:
        hypothesis = hypothesis or idea.hypothesis
        target = idea.source_url or site_url
    if draft is not None:
        hypothesis = hypothesis or draft.hypothesis
        target = draft.context.page_analyzed
        if body.url_pattern is None:
            url_pattern = validate_pattern(draft.context.url_pattern)
        if not body.goals:
            goals = tuple(
                _goal(GoalIn(g.name, g.type, g.selector, g.url_pattern), f"suggested_goals[{i}]")
                for i, g in enumerate(draft.suggested_goals)
            )
    return NewExperiment(
        workspace_id=workspace_id,
        name=name,
        variants=variants,
        site_id=site_id,
        kind=kind,
        goals=goals,
        url_pattern=url_pattern,
        hypothesis=hypothesis,
        target_url=fields.target_url or target,
    )


def _kept_variants(record: ExperimentRecord) -> tuple[VariantIn, ...]:
    """The draft's variants as a create body lists them (a web control is implied)."""
    if record.kind == "agent":
        return tuple(VariantIn(v.name, config=v.config) for v in record.variants)
    return tuple(
        VariantIn(v.name, v.changes, v.redirect_url) for v in record.variants if not v.is_control
    )


def edited_experiment(record: ExperimentRecord, edit: ExperimentEdit) -> DraftEdit:
    """The draft ``record`` with ``edit`` laid over it, checked as a create body is
    (`new_experiment`: a 400 naming the field). The caller checks that it is a draft."""
    body = CreateExperiment(
        site_id=record.site_id,
        name=record.name if edit.name is None else edit.name,
        target_url=record.target_url if edit.target_url is None else edit.target_url,
        url_pattern=record.url_pattern if edit.url_pattern is None else edit.url_pattern,
        hypothesis=record.hypothesis if edit.hypothesis is None else edit.hypothesis,
        traffic_split=edit.traffic_split,
        variants=_kept_variants(record) if edit.variants is None else edit.variants,
        goals=(
            tuple(
                GoalIn(g.name, g.type, g.selector, g.url_pattern, g.guardrail) for g in record.goals
            )  # fmt: skip
            if edit.goals is None
            else edit.goals
        ),
        kind=record.kind,
    )
    new = new_experiment(body, record.workspace_id, record.site_id, record.site_url)
    return DraftEdit(new, edit.variants is not None, edit.goals is not None)
