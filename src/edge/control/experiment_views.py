"""The answers of ``/v1/experiments`` (`edge.control.experiments_api`): an experiment's
wire shapes, built from its `edge.control.records.ExperimentRecord`, with the preview URLs
and the next-step hint the reference gives beside a draft."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import msgspec

from edge.config import MutationConfig
from edge.control import lifecycle
from edge.control.previews import PreviewTokens
from edge.control.records import ExperimentRecord, ExperimentStatus, Goal

__all__ = [
    "DeletedExperiment",
    "ExperimentDetail",
    "ExperimentOut",
    "ExperimentSummary",
    "LaunchOutcome",
    "PreviewUrl",
    "SiteSummary",
    "StatusOut",
    "VariantOut",
    "activation_hint",
    "experiment_detail",
    "experiment_out",
    "experiment_summary",
    "preview_urls",
    "status_out",
]


class SiteSummary(msgspec.Struct, frozen=True):
    """The parent site of an experiment (the reference's nested ``sites``)."""

    id: str
    name: str
    url: str


class VariantOut(msgspec.Struct, frozen=True):
    """A variant: its share of the traffic in basis points (10000 = 100 %), and its DOM
    changes or redirect (web) or its config (agent)."""

    id: str
    name: str
    is_control: bool
    weight_bps: int
    changes: tuple[MutationConfig, ...]
    redirect_url: str | None
    config: Any


class ExperimentSummary(msgspec.Struct, frozen=True):
    """An experiment in a list. ``traffic_split``: the percent of traffic on the
    non-control variants."""

    id: str
    name: str
    status: ExperimentStatus
    kind: Literal["web", "agent"]
    traffic_split: int
    site_id: str | None
    sites: SiteSummary | None
    created_at: str
    started_at: str | None
    ended_at: str | None


class ExperimentOut(msgspec.Struct, frozen=True):
    """An experiment in full: variants (control first), goals (primary first), parent
    site, and the winner once one was promoted."""

    id: str
    name: str
    status: ExperimentStatus
    kind: Literal["web", "agent"]
    site_id: str | None
    sites: SiteSummary | None
    hypothesis: str | None
    target_url: str | None
    url_pattern: str | None
    traffic_split: int
    sample_size: int | None
    primary_metric: str | None
    confidence: float | None
    max_cost_increase: float | None
    guardrail_metrics: tuple[str, ...]
    winner_variant_id: str | None
    created_at: str
    updated_at: str
    started_at: str | None
    ended_at: str | None
    variants: tuple[VariantOut, ...]
    goals: tuple[Goal, ...]


class PreviewUrl(msgspec.Struct, frozen=True):
    """``<target_url>?sk_preview=<token>``: the page with that variant applied, in any
    status but archived (a draft too), nothing sent and nothing counted
    (`edge.control.previews`)."""

    variant_id: str
    variant_name: str
    url: str


class LaunchOutcome(msgspec.Struct, frozen=True, omit_defaults=True):
    """What ``auto_launch`` did: ``running``, or ``draft`` with the reason."""

    status: ExperimentStatus
    error: str | None = None


class ExperimentDetail(msgspec.Struct, frozen=True, omit_defaults=True):
    """An experiment as ``POST /v1/experiments`` answers it (the reference's shape) and so
    as every route answering one experiment does (``GET``, and ``PATCH`` but an action's):
    the experiment, its preview URLs and what to do next; ``launch`` is only a create's
    with ``auto_launch``."""

    experiment: ExperimentOut
    preview_urls: tuple[PreviewUrl, ...]
    activation_hint: str
    launch: LaunchOutcome | None = None


class StatusOut(msgspec.Struct, frozen=True, omit_defaults=True):
    """The answer to a lifecycle change: the experiment's id and new status (and, after a
    promotion, its winner)."""

    id: str
    status: ExperimentStatus
    winner_variant_id: str | None = None


class DeletedExperiment(msgspec.Struct, frozen=True):
    """The answer to ``DELETE /v1/experiments/{id}``."""

    id: str
    deleted: bool


def _traffic_split(record: ExperimentRecord) -> int:
    control = next((v.weight_bps for v in record.variants if v.is_control), 10_000)
    return round((10_000 - control) / 100)


def _site(record: ExperimentRecord) -> SiteSummary | None:
    if record.site_id is None or record.site_name is None or record.site_url is None:
        return None
    return SiteSummary(record.site_id, record.site_name, record.site_url)


def experiment_summary(record: ExperimentRecord) -> ExperimentSummary:
    return ExperimentSummary(
        id=record.id,
        name=record.name,
        status=record.status,
        kind=record.kind,
        traffic_split=_traffic_split(record),
        site_id=record.site_id,
        sites=_site(record),
        created_at=record.created_at,
        started_at=record.started_at,
        ended_at=record.ended_at,
    )


def experiment_out(record: ExperimentRecord) -> ExperimentOut:
    variants = tuple(
        VariantOut(v.id, v.name, v.is_control, v.weight_bps, v.changes, v.redirect_url, v.config)
        for v in record.variants
    )
    return ExperimentOut(
        **msgspec.structs.asdict(experiment_summary(record)),
        hypothesis=record.hypothesis,
        target_url=record.target_url,
        url_pattern=record.url_pattern,
        sample_size=record.sample_size,
        primary_metric=record.primary_metric,
        confidence=record.confidence,
        max_cost_increase=record.max_cost_increase,
        guardrail_metrics=record.guardrail_metrics,
        winner_variant_id=record.winner_variant_id,
        updated_at=record.updated_at,
        variants=variants,
        goals=record.goals,
    )


def _preview_url(target_url: str, token: str) -> str:
    parts = urlsplit(target_url)
    query = f"{parts.query}&" if parts.query else ""
    return urlunsplit(parts._replace(query=f"{query}sk_preview={token}"))


def preview_urls(record: ExperimentRecord, tokens: PreviewTokens) -> tuple[PreviewUrl, ...]:
    """The target URL with each non-control variant's preview token: it works in any
    status but archived (`edge.control.previews`), so an archived experiment has none."""
    if record.kind != "web" or record.target_url is None or record.status == "archived":
        return ()
    return tuple(
        PreviewUrl(v.id, v.name, _preview_url(record.target_url, tokens.token(record.id, v.id)))
        for v in record.variants
        if not v.is_control
    )


def activation_hint(record: ExperimentRecord, tools: bool = False) -> str:
    """What to do next with the experiment, in the reference's words: naming the REST
    routes, or with ``tools`` the MCP tools (which have no pause, complete or promote)."""
    path = f"/v1/experiments/{record.id}"
    if record.status == "draft":
        launch = f'launch_experiment({{ experiment_id: "{record.id}" }})'
        if not tools:
            launch += f' / PATCH {path} {{ "action": "launch" }}'
        hint = (
            f"To launch: pass `auto_launch: true` on create, OR call {launch} after reviewing "
            "the preview URLs below. Requires at least 1 non-control variant and 1 goal."
        )
        blocker = lifecycle.launch_blocker(record)
        return hint if blocker is None else f"{hint} Now: {blocker}"
    if tools:
        return _tool_hint(record)
    if record.status == "running":
        return (
            f'Running. PATCH {path} {{ "action": "pause" }} or {{ "action": "complete" }}; '
            f"GET {path}/results for the results; POST {path}/deploy "
            '{ "variant": "<name or id>" } to promote a winner.'
        )
    if record.status == "paused":
        return f'Paused. PATCH {path} {{ "action": "resume" }} or {{ "action": "complete" }}.'
    if record.status == "completed":
        done = (
            f"Completed; variant {record.winner_variant_id} was promoted."
            if record.winner_variant_id
            else f'Completed. POST {path}/deploy {{ "variant": "<name or id>" }} to promote '
            "a winner;"
        )
        return f'{done} PATCH {path} {{ "action": "archive" }} to archive it.'
    return f"Archived. DELETE {path} to delete it."


def _tool_hint(record: ExperimentRecord) -> str:
    results = f'call get_experiment({{ experiment_id: "{record.id}" }}) for its results'
    if record.status == "running":
        return f"Running: the snippet splits traffic; {results}."
    if record.status == "paused":
        return f"Paused: the snippet serves the control; {results}."
    if record.status == "completed":
        winner = (
            f" and variant {record.winner_variant_id} was promoted"
            if record.winner_variant_id
            else ""
        )
        return f"Completed{winner}; {results}."
    return "Archived."


def experiment_detail(
    record: ExperimentRecord,
    tokens: PreviewTokens,
    tools: bool = False,
    launch: LaunchOutcome | None = None,
) -> ExperimentDetail:
    """The answer about one experiment (`ExperimentDetail`); ``tools``: its hint names
    the MCP tools."""
    return ExperimentDetail(
        experiment_out(record),
        preview_urls(record, tokens),
        activation_hint(record, tools),
        launch,
    )


def status_out(record: ExperimentRecord) -> StatusOut:
    return StatusOut(record.id, record.status, record.winner_variant_id)
