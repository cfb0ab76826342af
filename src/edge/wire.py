"""Wire shapes of the edge's own JSON routes (assignment), decoded and encoded by msgspec.

The assignment answer is joined from bytes made once per config version
(`assignment_fragment`); `UnitAssignments`, `AssignBatch` and `AssignMeta` are the shape
of what is joined, for the OpenAPI document.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from edge.config import ExperimentConfig, MutationConfig, VariantConfig

__all__ = [
    "MAX_UNITS_PER_BATCH",
    "OutsideReason",
    "AssignBatch",
    "AssignMeta",
    "AssignRequest",
    "AssignUnit",
    "Assignment",
    "UnitAssignments",
    "WebPayload",
    "assignment_fragment",
]

MAX_UNITS_PER_BATCH = 1000

UnitId = Annotated[str, Meta(min_length=1, max_length=1024)]
Url = Annotated[str, Meta(max_length=8192)]
AttributeName = Annotated[str, Meta(min_length=1, max_length=128)]
AttributeValue = str | int | float | bool | None
Attributes = Annotated[dict[AttributeName, AttributeValue], Meta(max_length=64)]


class AssignUnit(msgspec.Struct, forbid_unknown_fields=True):
    """One unit to assign: a visitor, an agent session or a run.

    ``url`` (a full URL or a path) limits the answer to experiments whose url_pattern
    matches it; without it every running experiment of the site answers. ``attributes``
    are accepted and validated for audience targeting; no experiment targets on them yet.
    """

    unit_id: UnitId
    url: Url | None = None
    attributes: Attributes = {}


class AssignRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/assign``: what to assign in (exactly one of ``experiment_id``,
    ``public_key`` or ``site_id``), and one unit inline or many in ``units``.

    ``experiment_id`` names one experiment of the API key's workspace, running or deployed
    (an agent experiment, whose id is the key of its assignment hash); ``public_key`` or
    ``site_id`` a site, whose running experiments all answer.
    """

    experiment_id: Annotated[str, Meta(max_length=128)] | None = None
    public_key: Annotated[str, Meta(max_length=64)] | None = None
    site_id: Annotated[str, Meta(max_length=64)] | None = None
    unit_id: UnitId | None = None
    url: Url | None = None
    attributes: Attributes = {}
    units: (
        Annotated[list[AssignUnit], Meta(min_length=1, max_length=MAX_UNITS_PER_BATCH)] | None
    ) = None


OutsideReason = Literal[
    "winner_deployed", "experiment_paused", "experiment_completed", "experiment_archived"
]
"""Why a unit is not counted in an experiment that answers it (`Assignment.reason`)."""


class WebPayload(msgspec.Struct, frozen=True):
    """What a web variant does to the page."""

    changes: tuple[MutationConfig, ...]
    redirect_url: str | None


class Assignment(msgspec.Struct, frozen=True):
    """One experiment's answer for a unit. ``payload`` is what the variant does: a web
    variant's `WebPayload`, an agent variant's config (any JSON: a soul_md, a model
    setting, a config version hash).

    ``deployed``: the experiment is over and this is its promoted winner, which every unit
    gets. It counts nothing: events naming it are refused, so an agent reports its tasks
    without the experiment's ids.

    ``in_experiment``: the unit is counted in the experiment (it is running). When false,
    ``reason`` says why not (``winner_deployed``, ``experiment_paused``,
    ``experiment_completed`` or ``experiment_archived``) and every unit gets this same
    variant (the deployed winner, else the control): use its payload, and report the
    unit's tasks without the experiment's ids.
    """

    experiment_id: str
    variant_id: str
    variant_name: str
    is_control: bool
    payload: Any
    deployed: bool
    # Defaults, so that an SDK reads the answers of a server from before these fields.
    in_experiment: bool = True
    reason: OutsideReason | None = None


class UnitAssignments(msgspec.Struct, frozen=True):
    """A unit's answer: one `Assignment` per experiment named that it takes part in (of
    those whose url_pattern matches its ``url``, when it sent one). For an experiment_id,
    that is one assignment, or none when the unit is outside the experiment's coverage."""

    unit_id: str
    assignments: list[Assignment]


class AssignBatch(msgspec.Struct, frozen=True):
    """The answer to a batch (``units``): each unit's answer, in the order sent."""

    units: list[UnitAssignments]


class AssignMeta(msgspec.Struct, frozen=True):
    """The config version the answer was made from."""

    config_version: int


def assignment_fragment(experiment: ExperimentConfig, variant: VariantConfig) -> bytes:
    """The encoded `Assignment` of a variant, made once per config version so that an
    assign response is a join of ready bytes."""
    payload: Any = (
        WebPayload(changes=variant.changes, redirect_url=variant.redirect_url)
        if experiment.kind == "web"
        else variant.config
    )
    running = experiment.status == "running"
    return msgspec.json.encode(
        Assignment(
            experiment_id=experiment.id,
            variant_id=variant.id,
            variant_name=variant.name,
            is_control=variant.control,
            payload=payload,
            deployed=experiment.deployed,
            in_experiment=running,
            reason=None if running else _outside_reason(experiment),
        )
    )


_STOPPED: dict[str, OutsideReason] = {
    "paused": "experiment_paused",
    "completed": "experiment_completed",
    "archived": "experiment_archived",
}


def _outside_reason(experiment: ExperimentConfig) -> OutsideReason:
    """Why no unit of an experiment that is not running is counted."""
    return "winner_deployed" if experiment.deployed else _STOPPED[experiment.status]
