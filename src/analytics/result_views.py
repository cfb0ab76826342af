"""The results in the reference products' API shapes: ClawSplit's
``GET /v1/experiments/:id/results`` and crewkit's ``GET /:org_id/experiments/:id/metrics``,
each a superset of the original built from `analytics.results.ExperimentResults`. Both
carry every goal or metric (``metrics``, `analytics.metric_results`), the primary first,
with the note on how to read the others' p-values (``metrics_note``).
"""

from __future__ import annotations

import msgspec

from analytics.metric_results import MetricResult
from analytics.results import ExperimentResults, Status, VariantResult

__all__ = [
    "ClawSplitResults",
    "ClawSplitVariant",
    "CrewkitArm",
    "CrewkitMetrics",
    "CrewkitSignificance",
    "clawsplit_view",
    "crewkit_metrics_view",
]


class ClawSplitVariant(msgspec.Struct, frozen=True):
    """One arm in ClawSplit's results shape, plus our figures. ``completion`` is the rate of
    the primary metric (the primary goal's conversion rate, or the agent success rate);
    agent experiments also carry ``task_completion`` (the same rate, as ClawSplit's
    webhook names it) and ``avg_cost`` (per unit)."""

    id: str
    is_control: bool
    units: int
    completion: float | None
    task_completion: float | None
    avg_cost: float | None
    prob_to_win: float | None
    prob_beat_control: float | None
    expected_loss: float | None
    lift: float | None
    lift_interval: tuple[float, float] | None
    p_value: float | None


class ClawSplitResults(msgspec.Struct, frozen=True):
    """A superset of ClawSplit's ``GET /v1/experiments/:id/results``: status, the winner's
    name, the p-value, and the variants by name; every goal or metric in ``metrics``, and
    the guardrail's reason when one stopped the experiment."""

    experiment_id: str
    status: Status
    winner: str | None
    guardrail: str | None
    p_value: float | None
    prob_to_win: float | None
    lift: float | None
    confidence: float
    srm_flagged: bool
    samples_needed: int
    variants: dict[str, ClawSplitVariant]
    warnings: tuple[str, ...]
    guardrail_reason: str | None
    metrics: tuple[MetricResult, ...]
    metrics_note: str | None


class CrewkitArm(msgspec.Struct, frozen=True):
    """One arm in crewkit's metrics shape: ``success_rate`` in percent; cost, turns and
    duration (milliseconds) per unit, and their 95th percentiles (None for web
    experiments)."""

    variant_id: str
    name: str
    total_sessions: int
    success_rate: float | None
    avg_cost: float | None
    avg_turns: float | None
    p95_cost: float | None
    avg_duration_ms: float | None
    p95_duration_ms: float | None
    p95_turns: float | None


class CrewkitSignificance(msgspec.Struct, frozen=True):
    """Whether a winner is declared, and the p-value and confidence behind it."""

    p_value: float | None
    significant: bool
    confidence: float


class CrewkitMetrics(msgspec.Struct, frozen=True, omit_defaults=True):
    """crewkit's ``GET /:org_id/experiments/:id/metrics``: ``control`` and ``variant`` (the
    winner, else the leading challenger), and with more than two arms every arm by name
    in ``variants``; every goal or metric, with lift, interval and p-value per arm, in
    ``metrics``."""

    control: CrewkitArm
    variant: CrewkitArm | None
    significance: CrewkitSignificance
    variants: dict[str, CrewkitArm] | None = None
    metrics: tuple[MetricResult, ...] = ()
    metrics_note: str | None = None


def _names(results: ExperimentResults) -> list[str]:
    """Each arm's key in a by-name map: its name, or ``name (id)`` where names repeat."""
    names = [v.name for v in results.variants]
    return [n if names.count(n) == 1 else f"{n} ({v.id})" for n, v in zip(names, results.variants)]


def _success_rate(variant: VariantResult) -> float | None:
    if variant.agent is not None:
        return variant.agent.success_rate
    return variant.goals[0].rate if variant.goals else None


def clawsplit_view(results: ExperimentResults) -> ClawSplitResults:
    """The results in ClawSplit's shape (``GET /v1/experiments/{id}/results``)."""
    agent = results.kind == "agent"
    variants = {
        name: ClawSplitVariant(
            id=v.id,
            is_control=v.is_control,
            units=v.units,
            completion=_success_rate(v),
            task_completion=_success_rate(v) if agent else None,
            avg_cost=v.agent.cost.mean if v.agent else None,
            prob_to_win=v.prob_to_win,
            prob_beat_control=v.prob_beat_control,
            expected_loss=v.expected_loss,
            lift=v.lift,
            lift_interval=v.lift_interval,
            p_value=v.p_value,
        )
        for name, v in zip(_names(results), results.variants, strict=True)
    }
    return ClawSplitResults(
        experiment_id=results.experiment_id,
        status=results.status,
        winner=results.winner.name if results.winner else None,
        guardrail=results.guardrail.name if results.guardrail else None,
        p_value=results.p_value,
        prob_to_win=results.prob_to_win,
        lift=results.lift,
        confidence=results.rules.confidence,
        srm_flagged=results.srm_flagged,
        samples_needed=results.samples_needed,
        variants=variants,
        warnings=results.warnings,
        guardrail_reason=results.guardrail_reason,
        metrics=results.metrics,
        metrics_note=results.metrics_note,
    )


def _crewkit_arm(v: VariantResult) -> CrewkitArm:
    rate = _success_rate(v)
    return CrewkitArm(
        variant_id=v.id,
        name=v.name,
        total_sessions=v.units,
        success_rate=None if rate is None else 100 * rate,
        avg_cost=v.agent.cost.mean if v.agent else None,
        avg_turns=v.agent.turns.mean if v.agent else None,
        p95_cost=v.agent.cost.p95 if v.agent else None,
        avg_duration_ms=v.agent.duration_ms.mean if v.agent else None,
        p95_duration_ms=v.agent.duration_ms.p95 if v.agent else None,
        p95_turns=v.agent.turns.p95 if v.agent else None,
    )


def crewkit_metrics_view(results: ExperimentResults) -> CrewkitMetrics:
    """The results in crewkit's metrics shape (``GET /v1/experiments/{id}/metrics``)."""
    arms = [_crewkit_arm(v) for v in results.variants]
    control = next(i for i, v in enumerate(results.variants) if v.is_control)
    lead = results.winner or results.leader
    variant = next((a for a in arms if lead and a.variant_id == lead.id), None)
    if variant is None:  # before there is a leader: the first challenger
        variant = next((a for i, a in enumerate(arms) if i != control), None)
    return CrewkitMetrics(
        control=arms[control],
        variant=variant,
        significance=CrewkitSignificance(
            p_value=results.p_value,
            significant=results.status == "significant",
            confidence=results.rules.confidence,
        ),
        variants=dict(zip(_names(results), arms, strict=True)) if len(arms) > 2 else None,
        metrics=results.metrics,
        metrics_note=results.metrics_note,
    )
