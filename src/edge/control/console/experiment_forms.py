"""The experiment forms of the console (`edge.control.console.experiments`): what each
form's fields become as the body of a REST request, and what a lifecycle button will do,
in words, before it is pressed.

A form is turned into the API's own body and nothing more: the API validates it and its
400 message is what the person reads next to the form. Blank rows (a change or goal row
whose text fields are all empty) are left out, since a form always shows a few; a number
field that is not a number is passed on as typed, so the API's message names it. The one
check made here is that an agent variant's config is JSON, which the API cannot see in a
form's text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, get_args

import msgspec

from analytics.metric_results import AGENT_METRIC_KEYS
from edge.config import MutationAction
from edge.control.experiment_input import GOAL_TYPES
from edge.control.lifecycle import PROMOTABLE, TRANSITIONS
from edge.errors import InvalidRequest

__all__ = [
    "AGENT_METRIC_CHOICES",
    "AGENT_ROWS",
    "CHANGE_ACTIONS",
    "CHANGE_ROWS",
    "GOAL_ROWS",
    "GOAL_TYPE_CHOICES",
    "FormError",
    "LIFECYCLE_WORDS",
    "agent_body",
    "blank_body",
    "changes_body",
    "confirmation",
    "content_edit",
    "draft_values",
    "lifecycle_actions",
    "prompt_body",
    "rows_shown",
]

CHANGE_ACTIONS: tuple[str, ...] = get_args(MutationAction)
"""The change actions the API accepts, in its order (the form's select)."""
GOAL_TYPE_CHOICES: tuple[str, ...] = GOAL_TYPES
AGENT_METRIC_CHOICES: tuple[str, ...] = AGENT_METRIC_KEYS

CHANGE_ROWS = 3
GOAL_ROWS = 2
AGENT_ROWS = 3
"""How many blank rows of each kind a new form shows; blank ones are left out of the
body, and a form shows one more than it has filled."""

_MAX_ROWS = 100
"""More rows than any form shows (the API's bounds are lower): where reading stops."""

LIFECYCLE_WORDS = {
    "launch": "Launch",
    "pause": "Pause",
    "resume": "Resume",
    "complete": "Complete",
    "deploy": "Deploy a variant",
    "archive": "Archive",
}
"""The lifecycle buttons of an experiment's page, in the order they are shown."""

Form = Mapping[str, Any]
"""A submitted form's fields (Starlette's ``FormData`` or any mapping of names to text)."""


class FormError(InvalidRequest):
    """A form field the console cannot put into a request body (an agent config that is
    not JSON); shown next to the form like the API's own 400s."""

    code = "invalid_form"


def _text(form: Form, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _optional(form: Form, name: str) -> str | None:
    return _text(form, name) or None


def _number(text: str) -> int | float | str:
    """A form's number as JSON's: a number field the browser let through unparsed (or a
    client without one) is passed as typed, so the API's 400 names the field."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def _put(body: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key`` only when the form gave it (an empty field is the API's default)."""
    if value not in (None, "", [], ()):
        body[key] = value


def _rows(form: Form, prefix: str, field: str) -> range:
    """The indexes of the rows ``prefix-N-`` the form has, numbered from 0 on."""
    count = 0
    while count < _MAX_ROWS and f"{prefix}-{count}-{field}" in form:
        count += 1
    return range(count)


def rows_shown(values: Form, prefix: str, field: str, blank: int) -> int:
    """How many rows ``prefix-N-`` a form shows: as many as ``values`` has (a form sent
    back), one more than it fills (a draft's), and at least ``blank``."""
    present = _rows(values, prefix, field)
    filled = [i for i in present if _text(values, f"{prefix}-{i}-{field}")]
    return max(blank, len(present), (filled[-1] + 2) if filled else 0)


def _changes(form: Form) -> list[dict[str, Any]]:
    changes = []
    for i in _rows(form, "change", "selector"):
        row = f"change-{i}-"
        selector, payload = _text(form, row + "selector"), form.get(row + "value")
        attribute = _text(form, row + "attribute")
        value = payload if isinstance(payload, str) else ""
        if not (selector or value.strip() or attribute):
            continue
        change: dict[str, Any] = {
            "selector": selector,
            "action": _text(form, row + "action"),
            "payload": value,
        }
        _put(change, "attribute_name", attribute)
        changes.append(change)
    return changes


def _goals(form: Form) -> list[dict[str, Any]]:
    goals = []
    for i in _rows(form, "goal", "name"):
        row = f"goal-{i}-"
        name, selector = _text(form, row + "name"), _text(form, row + "selector")
        pattern = _text(form, row + "url_pattern")
        if not (name or selector or pattern):
            continue
        goal: dict[str, Any] = {"name": name, "type": _text(form, row + "type")}
        _put(goal, "selector", selector)
        _put(goal, "url_pattern", pattern)
        if _text(form, row + "guardrail"):
            goal["guardrail"] = True
        goals.append(goal)
    return goals


def _web_variant(form: Form) -> dict[str, Any] | None:
    """The variant of the explicit-changes form: its changes, or its redirect URL."""
    changes = _changes(form)
    redirect = _optional(form, "redirect_url")
    if not changes and redirect is None:
        return None
    variant: dict[str, Any] = {"name": _text(form, "variant_name") or "Variant B"}
    _put(variant, "changes", changes)
    _put(variant, "redirect_url", redirect)
    return variant


def _agent_variants(form: Form) -> list[dict[str, Any]]:
    variants = []
    for i in _rows(form, "agent", "name"):
        row = f"agent-{i}-"
        name, soul, config = (_text(form, row + f) for f in ("name", "soul_md", "config"))
        if not (name or soul or config):
            continue
        variant: dict[str, Any] = {"name": name}
        _put(variant, "soul_md", soul)
        if config:
            try:
                variant["config"] = msgspec.json.decode(config)
            except msgspec.DecodeError as exc:
                raise FormError(
                    f"the config of variant {i + 1} ({name or 'unnamed'}) is not JSON ({exc}); "
                    'write it as JSON, e.g. {"model": "small", "temperature": 0.2}, or use '
                    "its soul_md field for a system prompt"
                ) from None
        variants.append(variant)
    return variants


def _common(form: Form) -> dict[str, Any]:
    """The fields every create form may carry."""
    body: dict[str, Any] = {"name": _text(form, "name")}
    for key in ("site_id", "hypothesis", "target_url", "url_pattern"):
        _put(body, key, _optional(form, key))
    return body


def prompt_body(form: Form) -> dict[str, Any]:
    """``POST /v1/experiments`` with ``prompt``: the author writes the variant, or asks."""
    body = _common(form)
    body["prompt"] = _text(form, "prompt")
    _put(body, "goals", _goals(form))
    return body


def changes_body(form: Form) -> dict[str, Any]:
    """``POST /v1/experiments`` from explicit changes (or a redirect), goals and split."""
    body = _common(form)
    variant = _web_variant(form)
    if variant is not None:
        body["variants"] = [variant]
    _put(body, "goals", _goals(form))
    _put(body, "traffic_split", _split(form))
    return body


def agent_body(form: Form) -> dict[str, Any]:
    """``POST /v1/experiments`` of an agent experiment: every variant with its config."""
    body = _common(form)
    body["kind"] = "agent"
    _put(body, "variants", _agent_variants(form))
    _put(body, "traffic_split", _split(form))
    sample = _text(form, "sample_size")
    _put(body, "sample_size", _number(sample) if sample else None)
    cost = _text(form, "max_cost_increase")
    _put(body, "max_cost_increase", _number(cost) if cost else None)
    metrics = [m for m in AGENT_METRIC_KEYS if _text(form, f"guardrail-{m}")]
    _put(body, "guardrail_metrics", metrics)
    return body


def blank_body(form: Form) -> dict[str, Any]:
    """``POST /v1/experiments`` with a site and a name only: a blank draft."""
    return {"site_id": _text(form, "site_id"), "name": _text(form, "name")}


def _split(form: Form) -> int | float | str | None:
    text = _text(form, "traffic_split")
    return _number(text) if text else None


def content_edit(form: Form, kind: str) -> dict[str, Any]:
    """``PATCH /v1/experiments/{id}`` filling in a draft: the form shows every content
    field, so each is sent (variants and goals replace the draft's)."""
    body: dict[str, Any] = {"name": _text(form, "name")}
    for key in ("hypothesis", "target_url", "url_pattern"):
        _put(body, key, _optional(form, key))
    if kind == "agent":
        body["variants"] = _agent_variants(form)
    else:
        variant = _web_variant(form)
        body["variants"] = [] if variant is None else [variant]
        body["goals"] = _goals(form)
    _put(body, "traffic_split", _split(form))
    return body


def draft_values(experiment: Mapping[str, Any]) -> dict[str, str]:
    """The fill-in form's fields as the draft (the API's answer) has them now."""
    values = {
        key: str(experiment.get(key) or "")
        for key in ("name", "hypothesis", "target_url", "url_pattern")
    }
    others = [v for v in experiment["variants"] if not v["is_control"]]
    if others and experiment["variants"][0]["is_control"]:
        values["traffic_split"] = str(experiment["traffic_split"])
    if experiment["kind"] == "agent":
        for i, variant in enumerate(experiment["variants"]):
            row = f"agent-{i}-"
            values[row + "name"] = variant["name"]
            config = variant["config"]
            if isinstance(config, dict) and set(config) == {"soul_md"}:
                values[row + "soul_md"] = str(config["soul_md"])
            else:
                values[row + "config"] = msgspec.json.encode(config).decode()
        return values
    if others:
        variant = others[0]
        values["variant_name"] = variant["name"]
        values["redirect_url"] = variant["redirect_url"] or ""
        for i, change in enumerate(variant["changes"]):
            row = f"change-{i}-"
            values[row + "selector"] = change["selector"]
            values[row + "action"] = change["action"]
            values[row + "value"] = change.get("payload", "")
            values[row + "attribute"] = change.get("attribute_name") or ""
    for i, goal in enumerate(experiment["goals"]):
        row = f"goal-{i}-"
        values[row + "name"] = goal["name"]
        values[row + "type"] = goal["type"]
        values[row + "selector"] = goal["selector"] or ""
        values[row + "url_pattern"] = goal["url_pattern"] or ""
        if goal["guardrail"]:
            values[row + "guardrail"] = "on"
    return values


def lifecycle_actions(experiment: Mapping[str, Any]) -> tuple[str, ...]:
    """The lifecycle buttons the experiment's status allows, by the API's own rules
    (`edge.control.lifecycle`), in `LIFECYCLE_WORDS` order."""
    status = experiment["status"]
    actions: list[str] = [a for a, rule in TRANSITIONS.items() if status in rule.sources]
    if status in PROMOTABLE and experiment.get("winner_variant_id") is None:
        actions.append("deploy")
    return tuple(a for a in LIFECYCLE_WORDS if a in actions)


def _share(variant: Mapping[str, Any]) -> str:
    return f"{variant['weight_bps'] / 100:g}%"


def _audience(experiment: Mapping[str, Any]) -> str:
    """Who the experiment is shown to: the visitors of its site's pages, or its agents."""
    if experiment["kind"] == "agent":
        return "the units your agents assign"
    site = experiment.get("sites")
    where = site["url"] if site else (experiment.get("target_url") or "its site")
    pattern = experiment.get("url_pattern")
    pages = f" on pages matching {pattern}" if pattern else ""
    return f"visitors of {where}{pages}"


def _arms(experiment: Mapping[str, Any]) -> str:
    others = [v for v in experiment["variants"] if not v["is_control"]]
    return ", ".join(f"{v['name']} to {_share(v)}" for v in others) or "no variant"


def confirmation(
    experiment: Mapping[str, Any], action: str, variant: Mapping[str, Any] | None = None
) -> str:
    """What pressing ``action`` will do to ``experiment`` (the API's answer, as a dict),
    in one paragraph; ``variant``: the one a deploy promotes."""
    audience = _audience(experiment)
    counted = "their tasks" if experiment["kind"] == "agent" else "them"
    control = next((v for v in experiment["variants"] if v["is_control"]), None)
    rest = f" The control keeps {_share(control)}." if control else ""
    if action == "launch":
        return (
            f"Launching starts serving {_arms(experiment)} of {audience} and counting "
            f"{counted}.{rest} Launching cannot be undone: a launched experiment can be "
            "paused or completed, not returned to a draft."
        )
    if action == "pause":
        return (
            f"Pausing serves the control to all {audience} and stops counting {counted}; "
            "the units counted so far stay. Resume to continue the experiment."
        )
    if action == "resume":
        return (
            f"Resuming serves {_arms(experiment)} of {audience} again and counts {counted} "
            f"again.{rest}"
        )
    if action == "complete":
        return (
            f"Completing ends the experiment: all {audience} get the control, nothing more "
            "is counted, and the results stay as they are. A completed experiment cannot "
            "run again; you can still deploy one of its variants."
        )
    if action == "deploy":
        name = variant["name"] if variant else "the variant you choose"
        return (
            f"Deploying {name} serves it to all {audience}, uncounted, and completes the "
            "experiment with it as the winner. A deployment is final: it stays served, "
            "archived too, until the experiment is deleted."
        )
    if action == "archive":
        if experiment["status"] == "draft":
            return "Archiving this draft puts it away: it can no longer be launched."
        return (
            "Archiving puts the completed experiment away: its preview links stop working; "
            "a deployed variant stays served and the results stay readable."
        )
    raise ValueError(f"no lifecycle action {action!r}")
