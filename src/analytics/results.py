"""Experiment results: the statistics on an experiment's per-variant aggregates
(`analytics.aggregates`) and the decision (collecting, running, significant, no_winner,
guardrail) that `analytics.decision_rules` takes on them.

The rules, and why each is what it is, are written for users in docs/statistics.md; this
module and `analytics.decision_rules` implement them. The API shapes of the reference
products are `analytics.result_views`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import msgspec
import xxhash

from analytics import bayes, frequentist, sequential
from analytics.aggregates import (
    ArmAggregates,
    ExperimentSpec,
    ExperimentStatus,
    GoalAggregates,
    MetricSummary,
    QueryRunner,
    Verdict,
    fetch_aggregates,
)
from analytics.decision_rules import (
    POWER,
    Decision,
    DecisionRules,
    Method,
    Statistics,
    Status,
    decide,
    method_of,
    sample_ratio,
    samples_needed,
)
from analytics.guardrails import ArmCost
from analytics.metric_results import (
    MetricInput,
    MetricResult,
    guardrail_decision,
    metric_inputs,
    metric_results,
    multiple_comparisons_note,
)

# `Status` and `DecisionRules` are fields of `ExperimentResults`, exported here so that the
# whole result shape comes from one module.
__all__ = [
    "AGENT_METRICS",
    "DEFAULT_CONFIDENCE",
    "DEFAULT_MIN_UNITS",
    "AgentMetrics",
    "DecisionRules",
    "ExperimentResults",
    "GoalResult",
    "Status",
    "VariantRef",
    "VariantResult",
    "compute_results",
    "fetch_results",
    "monte_carlo_seed",
]

AgentMetric = Literal["task_completion", "success_rate", "avg_cost", "avg_duration", "avg_turns"]

DEFAULT_CONFIDENCE = 0.95
# The reference's minimum before a winner is declared: ">= 500 samples/arm".
DEFAULT_MIN_UNITS = 500
AGENT_METRICS: tuple[AgentMetric, ...] = (
    "task_completion", "success_rate", "avg_cost", "avg_duration", "avg_turns",
)  # fmt: skip
# The per-unit column of each lower-is-better agent metric.
_AGENT_MEANS = {"avg_cost": "cost", "avg_duration": "duration_ms", "avg_turns": "turns"}


class VariantRef(msgspec.Struct, frozen=True):
    """A variant named in a decision (winner, guardrail, leader)."""

    id: str
    name: str


class GoalResult(msgspec.Struct, frozen=True):
    """One goal in one arm: units converted (once each), their rate among exposed units,
    and the per-unit value (mean and std_dev per exposed unit, p95 over converted units)."""

    goal_id: str
    name: str
    type: str
    conversions: int
    rate: float | None
    value: MetricSummary


class AgentMetrics(msgspec.Struct, frozen=True):
    """One arm of an agent experiment: tasks, units with a successful task, and the per-unit
    (summed over the unit's tasks) cost, duration and turns."""

    tasks: int
    successful_tasks: int
    success_units: int
    success_rate: float | None
    task_success_rate: float | None
    cost: MetricSummary
    duration_ms: MetricSummary
    turns: MetricSummary


class VariantResult(msgspec.Struct, frozen=True):
    """One arm. ``value`` is its primary metric (a rate, or a mean per unit) with the
    credible ``interval``; the comparisons with control (``prob_beat_control``, ``lift``
    with its credible interval, ``p_value``) are None for the control arm; the Bayesian
    figures are None until every arm has data. ``samples_needed`` are units still to add
    to this arm (docs/statistics.md)."""

    id: str
    name: str
    is_control: bool
    weight_bps: int
    units: int
    value: float | None
    conversions: int | None
    interval: tuple[float, float] | None
    prob_to_win: float | None
    prob_to_win_se: float | None
    prob_beat_control: float | None
    prob_beat_control_se: float | None
    expected_loss: float | None
    expected_loss_se: float | None
    lift: float | None
    lift_interval: tuple[float, float] | None
    p_value: float | None
    samples_needed: int
    goals: tuple[GoalResult, ...] = ()
    agent: AgentMetrics | None = None


class ExperimentResults(msgspec.Struct, frozen=True):
    """An experiment's results and decision. The top-level ``prob_to_win``,
    ``expected_loss``, ``lift``, ``lift_interval`` and ``p_value`` are those of ``leader``:
    the winner, else the guardrail arm, else the challenger most likely to be best.
    ``mc_error`` is the largest Monte Carlo standard error of the reported probabilities.
    ``metrics`` are every goal or metric, the primary first (`analytics.metric_results`);
    ``metrics_note`` says how to read the others' p-values. ``guardrail_p_value`` is the
    p-value of the guardrail test that tripped (the cost bound's, a guardrail metric's
    or the primary metric's; always valid at an early look), the one ``guardrail_reason``
    quotes; None for a verdict kept from before, whose reason alone is kept."""

    experiment_id: str
    kind: Literal["web", "agent"]
    experiment_status: ExperimentStatus
    status: Status
    primary_metric: str
    primary_metric_name: str
    higher_is_better: bool
    winner: VariantRef | None
    guardrail: VariantRef | None
    leader: VariantRef | None
    prob_to_win: float | None
    expected_loss: float | None
    lift: float | None
    lift_interval: tuple[float, float] | None
    p_value: float | None
    units: int
    variants: tuple[VariantResult, ...]
    srm: frequentist.SampleRatio | None
    srm_flagged: bool
    samples_needed: int
    mc_error: float | None
    rules: DecisionRules
    warnings: tuple[str, ...]
    guardrail_reason: str | None = None
    guardrail_p_value: float | None = None
    metrics: tuple[MetricResult, ...] = ()
    metrics_note: str | None = None


def monte_carlo_seed(experiment_id: str) -> int:
    """The Monte Carlo seed of an experiment: fixed by its id, so the same data always gives
    the same probabilities."""
    return int(xxhash.xxh32_intdigest(experiment_id.encode()))


def _summary(units: int, total: float, sumsq: float, p95: float | None) -> MetricSummary:
    return MetricSummary(
        mean=total / units if units else None,
        sum=total,
        std_dev=math.sqrt(_variance(units, total, sumsq)) if units > 1 else None,
        p95=p95,
    )


def _variance(units: int, total: float, sumsq: float) -> float:
    """Sample variance from a sum and a sum of squares (clamped: rounding can make a
    zero variance slightly negative)."""
    return max(0.0, (sumsq - total * total / units) / (units - 1))


def _rate(count: int, units: int) -> float | None:
    return count / units if units else None


def _goal_results(spec: ExperimentSpec, arm: ArmAggregates) -> tuple[GoalResult, ...]:
    found = {g.goal_id: g for g in arm.goals}
    results = []
    for goal in spec.goals:
        g = found.get(goal.id, GoalAggregates(goal.id, 0, 0.0, 0.0, None))
        value = _summary(arm.units, g.value_sum, g.value_sumsq, g.value_p95)
        results.append(
            GoalResult(
                goal.id, goal.name, goal.type, g.converted, _rate(g.converted, arm.units), value
            )
        )
    return tuple(results)


def _agent_metrics(arm: ArmAggregates) -> AgentMetrics:
    def summary(column: str) -> MetricSummary:
        total = arm.sums.get(column, 0.0)
        return _summary(arm.units, total, arm.sumsqs.get(column, 0.0), arm.p95s.get(column))

    return AgentMetrics(
        tasks=arm.tasks,
        successful_tasks=arm.successful_tasks,
        success_units=arm.converted,
        success_rate=_rate(arm.converted, arm.units),
        task_success_rate=_rate(arm.successful_tasks, arm.tasks),
        cost=summary("cost"),
        duration_ms=summary("duration_ms"),
        turns=summary("turns"),
    )


def _primary(spec: ExperimentSpec, arms: list[ArmAggregates], warnings: list[str]) -> MetricInput:
    """The primary metric of every arm: conversions (a rate) or sums (a mean). Its key is
    the goal's id or the primary metric's name (`AGENT_METRICS`) as the results show it."""
    if spec.kind == "web":
        if not spec.goals:
            warnings.append("the experiment has no goal: add one to measure conversions")
            return MetricInput("", "", "", "primary", True, True, [0] * len(arms), [], [])
        goal = spec.goals[0]
        conversions = [
            next((g.converted for g in arm.goals if g.goal_id == goal.id), 0) for arm in arms
        ]
        return MetricInput(
            goal.id, goal.name, goal.type, "primary", True, True, conversions, [], [], goal.id
        )
    metric = spec.primary_metric or "task_completion"
    if metric not in AGENT_METRICS:
        warnings.append(f"unknown primary metric {metric!r}: task_completion is used instead")
        metric = "task_completion"
    column = _AGENT_MEANS.get(metric)
    if column is None:
        conversions = [a.converted for a in arms]
        return MetricInput(metric, metric, "agent", "primary", True, True, conversions, [], [])
    sums = [a.sums.get(column, 0.0) for a in arms]
    sumsqs = [a.sumsqs.get(column, 0.0) for a in arms]
    return MetricInput(metric, metric, "agent", "primary", False, False, [], sums, sumsqs)


def _statistics(
    primary: MetricInput,
    units: list[int],
    control: int,
    seed: int,
    confidence: float,
    *,
    method: Method,
) -> Statistics | None:
    """One metric's comparisons, once every arm has enough units to compare (1 for a
    rate, 2 for a mean); None before. The p-values are always valid (`analytics.sequential`)
    and, under the ``fixed_horizon`` method, also those of the fixed-horizon tests, which
    are then the ones shown."""
    c = control
    challengers = [i for i in range(len(units)) if i != c]
    fixed: list[float | None]
    if primary.is_rate:
        if not primary.key or min(units) < 1:
            return None
        conv = primary.conversions
        posterior = bayes.beta_binomial(conv, units, control=c, seed=seed, credibility=confidence)
        values = [x / n for x, n in zip(conv, units, strict=True)]
        variances = [r * (1 - r) for r in values]
        always_valid: list[float | None] = [None] * len(units)
        fixed = [None] * len(units)
        for i in challengers:
            always_valid[i] = float(
                sequential.proportions_p_value(conv[c], units[c], conv[i], units[i])
            )
            if method == "fixed_horizon":
                fixed[i] = frequentist.two_proportion_p_value(conv[c], units[c], conv[i], units[i])
    else:
        if min(units) < 2:
            return None
        values = [s / n for s, n in zip(primary.sums, units, strict=True)]
        variances = [
            _variance(n, s, ss)
            for n, s, ss in zip(units, primary.sums, primary.sumsqs, strict=True)
        ]
        posterior = bayes.normal_means(
            values, variances, units, control=c, higher_is_better=primary.higher_is_better,
            seed=seed, credibility=confidence,
        )  # fmt: skip
        always_valid = [None] * len(units)
        fixed = [None] * len(units)
        for i in challengers:
            pair = (values[c], variances[c], units[c], values[i], variances[i], units[i])
            always_valid[i] = float(sequential.means_p_value(*pair))
            if method == "fixed_horizon":
                fixed[i] = frequentist.welch_t_test(*pair).p_value
    shown = fixed if method == "fixed_horizon" else always_valid
    return Statistics(posterior, values, variances, shown, always_valid)


def _costs(spec: ExperimentSpec, arms: list[ArmAggregates]) -> list[ArmCost] | None:
    """The arms' cost per unit, when the experiment has a cost bound to check."""
    if spec.kind != "agent" or spec.max_cost_increase is None:
        return None
    # Below 2 units an arm has no sample variance; the cost test skips such an arm.
    return [
        ArmCost(
            a.units,
            a.sums.get("cost", 0.0) / a.units if a.units else 0.0,
            _variance(a.units, a.sums.get("cost", 0.0), a.sumsqs.get("cost", 0.0))
            if a.units >= 2
            else 0.0,
        )
        for a in arms
    ]


def compute_results(spec: ExperimentSpec, found: Sequence[ArmAggregates]) -> ExperimentResults:
    """The results and decision of an experiment from its per-variant aggregates.

    Raises ValueError for an experiment with fewer than 2 variants (the store refuses to
    create one)."""
    if len(spec.variants) < 2:
        raise ValueError(f"experiment {spec.id} has {len(spec.variants)} variants: results need 2")
    warnings: list[str] = []
    known = {v.id for v in spec.variants}
    strays = [a for a in found if a.variant_id not in known]
    if strays:
        names = ", ".join(sorted(a.variant_id for a in strays))
        warnings.append(
            f"{sum(a.units for a in strays)} units are in variants the experiment no longer "
            f"has ({names}); they are left out"
        )
    by_id = {a.variant_id: a for a in found}
    arms = [by_id.get(v.id, ArmAggregates(v.id, 0)) for v in spec.variants]
    units = [a.units for a in arms]
    k = len(arms)
    control = next((i for i, v in enumerate(spec.variants) if v.is_control), 0)
    if not spec.variants[control].is_control:
        warnings.append("no variant is marked as control: the first one is used")
    confidence = spec.confidence or DEFAULT_CONFIDENCE
    comparisons = k - 1
    seed = monte_carlo_seed(spec.id)
    primary = _primary(spec, arms, warnings)
    method = method_of(spec)
    stats = _statistics(primary, units, control, seed, confidence, method=method)
    rules = DecisionRules(
        confidence=confidence,
        min_units_per_arm=spec.sample_size or DEFAULT_MIN_UNITS,
        comparisons=comparisons,
        alpha=(1 - confidence) / comparisons,
        power=POWER,
        srm_threshold=frequentist.DEFAULT_SRM_THRESHOLD,
        draws=stats.bayes.draws if stats else None,
        seed=seed,
        method=method,
    )
    srm = sample_ratio(spec, units, warnings)
    srm_flagged = srm is not None and srm.flagged
    inputs = metric_inputs(spec, arms)

    # The primary's statistics are the ones the verdict used.
    measured = [
        stats
        if m.role == "primary"
        else _statistics(m, units, control, seed, confidence, method=method)
        for m in inputs
    ]
    metrics = metric_results(spec, inputs, units, control, measured)
    if spec.verdict is not None:
        decision = _kept(spec, spec.verdict, warnings)
    else:
        costs = _costs(spec, arms)
        decision = decide(spec, units, control, rules, stats, costs, srm_flagged, warnings)
        decision = guardrail_decision(
            spec, inputs, metrics, measured, decision, units, control, rules
        )
    status, winner, guardrail = decision.status, decision.winner, decision.guardrail
    needed = samples_needed(primary.is_rate, units, control, rules, stats)

    variants = []
    for i, (v, arm) in enumerate(zip(spec.variants, arms, strict=True)):
        post = stats.bayes.arms[i] if stats else None
        value: float | None
        if primary.is_rate:
            value = _rate(primary.conversions[i], arm.units) if primary.key else None
        else:
            value = primary.sums[i] / arm.units if arm.units else None
        base = stats.values[control] if stats else None
        variants.append(
            VariantResult(
                id=v.id,
                name=v.name,
                is_control=i == control,
                weight_bps=v.weight_bps,
                units=arm.units,
                value=value,
                conversions=primary.conversions[i] if primary.is_rate and primary.key else None,
                interval=post.interval if post else None,
                prob_to_win=post.prob_best if post else None,
                prob_to_win_se=post.prob_best_se if post else None,
                prob_beat_control=post.prob_beat_control if post else None,
                prob_beat_control_se=post.prob_beat_control_se if post else None,
                expected_loss=post.expected_loss if post else None,
                expected_loss_se=post.expected_loss_se if post else None,
                lift=(value - base) / base if i != control and value is not None and base else None,
                lift_interval=post.lift_interval if post else None,
                p_value=stats.p_values[i] if stats else None,
                samples_needed=needed[i],
                goals=_goal_results(spec, arm) if spec.kind == "web" else (),
                agent=_agent_metrics(arm) if spec.kind == "agent" else None,
            )
        )

    leader = winner if winner is not None else guardrail
    if leader is None and stats is not None:
        leader = max(
            (i for i in range(k) if i != control), key=lambda i: stats.bayes.arms[i].prob_best
        )
    lead = variants[leader] if leader is not None else None
    errors = [
        se for v in variants for se in (v.prob_to_win_se, v.prob_beat_control_se) if se is not None
    ]
    return ExperimentResults(
        experiment_id=spec.id,
        kind=spec.kind,
        experiment_status=spec.status,
        status=status,
        primary_metric=primary.key,
        primary_metric_name=primary.name,
        higher_is_better=primary.higher_is_better,
        winner=_ref(variants, winner),
        guardrail=_ref(variants, guardrail),
        leader=_ref(variants, leader),
        prob_to_win=lead.prob_to_win if lead else None,
        expected_loss=lead.expected_loss if lead else None,
        lift=lead.lift if lead else None,
        lift_interval=lead.lift_interval if lead else None,
        p_value=lead.p_value if lead else None,
        units=sum(units),
        variants=tuple(variants),
        srm=srm,
        srm_flagged=srm_flagged,
        samples_needed=max(needed, default=0),
        mc_error=max(errors) if errors else None,
        rules=rules,
        warnings=tuple(warnings),
        guardrail_reason=decision.reason,
        guardrail_p_value=decision.p_value,
        metrics=metrics,
        metrics_note=multiple_comparisons_note(metrics, rules),
    )


def _kept(spec: ExperimentSpec, verdict: Verdict, warnings: list[str]) -> Decision:
    """The decision an ended experiment was taken with. Deciding again at the end could
    differ: a guardrail stops at an early look, which the end-of-run rules do not take."""
    ids = [v.id for v in spec.variants]

    def index(variant_id: str | None) -> int | None:
        return ids.index(variant_id) if variant_id in ids else None

    if verdict.status == "guardrail" and verdict.reason:
        warnings.append(f"stopped by its guardrail: {verdict.reason}")
    return Decision(
        verdict.status,
        winner=index(verdict.winner_id),
        guardrail=index(verdict.guardrail_id),
        reason=verdict.reason,
    )


def _ref(variants: list[VariantResult], index: int | None) -> VariantRef | None:
    return None if index is None else VariantRef(variants[index].id, variants[index].name)


def fetch_results(run: QueryRunner, spec: ExperimentSpec) -> ExperimentResults:
    """Query an experiment's aggregates and compute its results (one round trip)."""
    return compute_results(spec, fetch_aggregates(run, spec))
