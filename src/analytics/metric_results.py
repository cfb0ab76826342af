"""Every goal and metric of an experiment, not only the primary one: per arm its units,
rate or mean with its credible interval, lift with interval, probability to beat the
control and p-value, from the same statistics as the primary metric
(`analytics.results`).

A web experiment has one entry per goal (its conversion rate) and, for a goal whose
conversions carry values, one for its value per unit; an agent experiment has one per
metric: task completion, and cost, duration and turns per unit. The primary one decides
the verdict; the others are secondary, or guardrails: a challenger significantly worse
than the control on a guardrail stops the experiment (`guardrail_decision`), as the
primary metric and the cost bound do (`analytics.decision_rules`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import msgspec

from analytics.aggregates import ArmAggregates, ExperimentSpec, GoalAggregates
from analytics.decision_rules import Decision, DecisionRules, Statistics, metric_guardrail

__all__ = [
    "AGENT_METRIC_KEYS",
    "MetricArm",
    "MetricInput",
    "MetricResult",
    "MetricRole",
    "agent_metric_key",
    "guardrail_decision",
    "metric_inputs",
    "metric_results",
    "multiple_comparisons_note",
    "primary_metric_key",
]

MetricRole = Literal["primary", "secondary", "guardrail"]

# An agent metric's key, its name, and the per-unit column it is the mean of (None: the
# task completion rate, units with a successful task).
_AGENT = (
    ("task_completion", "task completion", None),
    ("cost", "cost per unit", "cost"),
    ("duration", "duration per unit (ms)", "duration_ms"),
    ("turns", "turns per unit", "turns"),
)
AGENT_METRIC_KEYS: tuple[str, ...] = tuple(key for key, _, _ in _AGENT)
"""The keys of an agent experiment's metrics, the names ``guardrail_metrics`` takes."""

# The metric keys, and the primary metric names of `analytics.results.AGENT_METRICS`, as
# metric keys.
_KEYS = {key: key for key in AGENT_METRIC_KEYS} | {
    "success_rate": "task_completion",
    "avg_cost": "cost",
    "avg_duration": "duration",
    "avg_turns": "turns",
}


def agent_metric_key(name: str) -> str | None:
    """The key (`AGENT_METRIC_KEYS`) of an agent metric named by its key or by its
    primary metric name (``avg_cost`` is ``cost``); None for no agent metric."""
    return _KEYS.get(name)


def primary_metric_key(primary_metric: str | None) -> str:
    """The metric key of an agent experiment's primary metric (task completion by
    default)."""
    return agent_metric_key(primary_metric or "") or "task_completion"


class MetricInput(msgspec.Struct, frozen=True):
    """One metric of every arm, as the statistics take it: conversions (a rate) or the
    per-unit sums and sums of squares (a mean), with what the results show of it."""

    key: str
    name: str
    type: str
    role: MetricRole
    is_rate: bool
    higher_is_better: bool
    conversions: list[int]
    sums: list[float]
    sumsqs: list[float]
    goal_id: str | None = None
    guarded: bool = False


class MetricArm(msgspec.Struct, frozen=True):
    """One arm on one metric: ``value`` is the rate (``conversions`` / ``units``) or the
    mean per unit, with its credible ``interval``; the comparisons with the control are
    None for the control arm, and every statistic is None until the arms have data."""

    variant_id: str
    name: str
    is_control: bool
    units: int
    conversions: int | None
    value: float | None
    interval: tuple[float, float] | None
    lift: float | None
    lift_interval: tuple[float, float] | None
    prob_beat_control: float | None
    p_value: float | None


class MetricResult(msgspec.Struct, frozen=True):
    """One goal or metric of an experiment. ``key`` is the goal's id (``<id>.value`` for
    its value per unit) or the agent metric's key (`AGENT_METRIC_KEYS`); ``type`` is the
    goal's type or ``agent``. ``role``: the ``primary`` metric decides the verdict; a
    ``guardrail`` stops the experiment when a challenger is significantly worse on it;
    a ``secondary`` one is shown only (its p-values are not corrected for the number of
    metrics)."""

    key: str
    name: str
    type: str
    role: MetricRole
    is_rate: bool
    higher_is_better: bool
    arms: tuple[MetricArm, ...]
    goal_id: str | None = None


def _role(primary: bool, guardrail: bool) -> MetricRole:
    return "primary" if primary else "guardrail" if guardrail else "secondary"


def _web_inputs(spec: ExperimentSpec, arms: Sequence[ArmAggregates]) -> list[MetricInput]:
    found = [{g.goal_id: g for g in arm.goals} for arm in arms]
    inputs = []
    for n, goal in enumerate(spec.goals):
        none = GoalAggregates(goal.id, 0, 0.0, 0.0, None)
        per_arm = [f.get(goal.id, none) for f in found]
        # The primary goal's guardrail is the primary metric's (decision_rules).
        role = _role(n == 0, goal.guardrail)
        guarded = goal.guardrail and n > 0
        inputs.append(
            MetricInput(
                goal.id,
                goal.name,
                goal.type,
                role,
                True,
                True,
                [g.converted for g in per_arm],
                [],
                [],
                goal.id,
                guarded,
            )  # fmt: skip
        )
        if any(g.value_sum or g.value_sumsq for g in per_arm):
            inputs.append(
                MetricInput(
                    f"{goal.id}.value",
                    f"{goal.name}: value per unit",
                    goal.type,
                    "secondary",
                    False,
                    True,
                    [],
                    [g.value_sum for g in per_arm],
                    [g.value_sumsq for g in per_arm],
                    goal.id,
                )  # fmt: skip
            )
    return inputs


def _agent_inputs(spec: ExperimentSpec, arms: Sequence[ArmAggregates]) -> list[MetricInput]:
    primary = primary_metric_key(spec.primary_metric)
    guarded = set(spec.guardrail_metrics)
    inputs = []
    for key, name, column in _AGENT:
        # The cost bound (max_cost_increase) makes cost a guardrail too, checked by its
        # own test (analytics.guardrails).
        bound = key == "cost" and spec.max_cost_increase is not None
        role = _role(key == primary, key in guarded or bound)
        check = key in guarded and key != primary
        if column is None:
            conversions = [a.converted for a in arms]
            inputs.append(
                MetricInput(key, name, "agent", role, True, True, conversions, [], [], None, check)
            )
            continue
        inputs.append(
            MetricInput(
                key,
                name,
                "agent",
                role,
                False,
                False,
                [],
                [a.sums.get(column, 0.0) for a in arms],
                [a.sumsqs.get(column, 0.0) for a in arms],
                guarded=check,
            )  # fmt: skip
        )
    inputs.sort(key=lambda m: m.role != "primary")  # stable: the primary first
    return inputs


def metric_inputs(spec: ExperimentSpec, arms: Sequence[ArmAggregates]) -> list[MetricInput]:
    """Every goal or metric of the experiment over ``arms`` (in the spec's variant order),
    the primary first."""
    if spec.kind == "web":
        return _web_inputs(spec, arms)
    return _agent_inputs(spec, arms)


def _result(
    metric: MetricInput,
    spec: ExperimentSpec,
    units: Sequence[int],
    control: int,
    stats: Statistics | None,
) -> MetricResult:
    arms = []
    for i, (v, n) in enumerate(zip(spec.variants, units, strict=True)):
        if metric.is_rate:
            value = metric.conversions[i] / n if n else None
        else:
            value = metric.sums[i] / n if n else None
        post = stats.bayes.arms[i] if stats else None
        base = stats.values[control] if stats else None
        challenger = i != control
        arms.append(
            MetricArm(
                variant_id=v.id,
                name=v.name,
                is_control=not challenger,
                units=n,
                conversions=metric.conversions[i] if metric.is_rate else None,
                value=value,
                interval=post.interval if post else None,
                lift=(value - base) / base if challenger and value is not None and base else None,
                lift_interval=post.lift_interval if post and challenger else None,
                prob_beat_control=post.prob_beat_control if post and challenger else None,
                p_value=stats.p_values[i] if stats and challenger else None,
            )
        )
    return MetricResult(
        key=metric.key,
        name=metric.name,
        type=metric.type,
        role=metric.role,
        is_rate=metric.is_rate,
        higher_is_better=metric.higher_is_better,
        arms=tuple(arms),
        goal_id=metric.goal_id,
    )


def metric_results(
    spec: ExperimentSpec,
    inputs: Sequence[MetricInput],
    units: Sequence[int],
    control: int,
    statistics: Sequence[Statistics | None],
) -> tuple[MetricResult, ...]:
    """The results of every metric from its ``statistics`` (in the order of ``inputs``;
    the primary's are the ones the verdict used)."""
    return tuple(
        _result(m, spec, units, control, stats) for m, stats in zip(inputs, statistics, strict=True)
    )


def guardrail_decision(
    spec: ExperimentSpec,
    inputs: Sequence[MetricInput],
    metrics: Sequence[MetricResult],
    statistics: Sequence[Statistics | None],
    decision: Decision,
    units: Sequence[int],
    control: int,
    rules: DecisionRules,
) -> Decision:
    """The decision once the guardrail metrics are checked: a challenger significantly
    worse than the control on one (by `decision_rules.metric_guardrail`, the test of the
    primary metric's guardrail: always valid at early looks and without a sample size)
    stops the experiment, the worst such arm named, unless it is already stopped or it
    ended before the minimum sample; a winner is blocked only when it is that arm."""
    ended = spec.status in ("completed", "archived")
    if decision.status == "guardrail" or (ended and min(units) < rules.min_units_per_arm):
        return decision
    harmful: list[tuple[float, int, MetricResult, float]] = []
    for metric_input, metric, stats in zip(inputs, metrics, statistics, strict=True):
        if not metric_input.guarded or stats is None:
            continue
        for i, p in metric_guardrail(stats, list(units), control, rules).items():
            beat = metric.arms[i].prob_beat_control
            assert beat is not None  # metric_guardrail reads it
            harmful.append((beat, i, metric, p))
    if decision.status == "significant":
        harmful = [h for h in harmful if h[1] == decision.winner]
    if not harmful:
        return decision
    beat, i, metric, p = min(harmful, key=lambda h: (h[0], h[3]))
    return Decision(
        "guardrail",
        guardrail=i,
        reason=f"{spec.variants[i].name} is significantly worse than the control on the "
        f"guardrail metric {metric.name} (p = {p:.3g}, P(beats control) = {beat:.3g})",
        p_value=p,
    )


def multiple_comparisons_note(metrics: Sequence[MetricResult], rules: DecisionRules) -> str | None:
    """What the secondary and guardrail metrics' p-values mean; None with the primary
    metric alone."""
    others = [m for m in metrics if m.role != "primary"]
    if not others:
        return None
    return (
        f"The primary metric alone decides the verdict. The {len(others)} other "
        f"metric{'s' if len(others) > 1 else ''} are shown for context: their p-values and "
        "intervals are not corrected for the number of metrics, so with several of them "
        "one may look significant by chance; do not pick a winner on one. A guardrail "
        f"stops the experiment when a challenger is significantly worse on it (p < "
        f"{rules.alpha:.3g} per comparison, as the primary metric's guardrail); each "
        "guardrail adds to the chance of a false stop."
    )
