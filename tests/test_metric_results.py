"""Every goal and metric of an experiment (`analytics.metric_results`), on aggregates: one
entry per goal (and its value per unit) or agent metric, the primary first and equal to
the verdict's figures, and guardrails that stop an experiment or block a winner."""

from __future__ import annotations

import pytest

from analytics import frequentist, sequential
from analytics.aggregates import ArmAggregates, GoalAggregates, GoalSpec, Verdict
from analytics.metric_results import agent_metric_key, primary_metric_key
from analytics.results import ExperimentResults, compute_results
from tests.support import agent_spec, web_spec

CLICK = GoalSpec("g_click", "Buy click", "click")
VIEW = GoalSpec("g_view", "Pricing view", "pageview")
ORDER = GoalSpec("g_order", "Order", "custom")


def web_results(
    per_arm: list[tuple[int, int, int, int, float]], *goals: GoalSpec, **spec: object
) -> ExperimentResults:
    """(units, clicks, views, orders, order value sum) per arm."""
    goals = goals or (CLICK, VIEW, ORDER)
    arms = [
        ArmAggregates(
            variant_id,
            units,
            (
                GoalAggregates(goals[0].id, clicks, 0.0, 0.0, None),
                GoalAggregates(goals[1].id, views, 0.0, 0.0, None),
                GoalAggregates(goals[2].id, orders, value, value * value / max(orders, 1), None),
            ),
        )
        for variant_id, (units, clicks, views, orders, value) in zip(("v_a", "v_b"), per_arm)
    ]
    return compute_results(web_spec("exp_metrics", goals=goals, **spec), arms)


def agent_arm(variant_id: str, units: int, converted: int, per_unit: dict[str, float],
              sd: float = 0.2) -> ArmAggregates:  # fmt: skip
    """An agent arm whose per-unit cost, duration and turns have these means and a
    relative standard deviation ``sd``."""
    sums = {c: m * units for c, m in per_unit.items()}
    sumsqs = {c: units * m * m + (units - 1) * (sd * m) ** 2 for c, m in per_unit.items()}
    return ArmAggregates(variant_id, units, converted=converted, tasks=2 * units,
                         successful_tasks=converted, sums=sums, sumsqs=sumsqs,
                         p95s={c: 1.3 * m for c, m in per_unit.items()})  # fmt: skip


SAME = {"cost": 0.02, "duration_ms": 1500.0, "turns": 6.0}


def test_a_web_experiment_has_an_entry_per_goal_and_for_values() -> None:
    results = web_results([(1000, 100, 400, 50, 2500.0), (1000, 130, 420, 60, 3300.0)])
    keys = [m.key for m in results.metrics]
    assert keys == ["g_click", "g_view", "g_order", "g_order.value"]
    assert [m.role for m in results.metrics] == ["primary", "secondary", "secondary", "secondary"]
    assert [m.type for m in results.metrics] == ["click", "pageview", "custom", "custom"]
    click, view, order, value = results.metrics
    assert [a.conversions for a in view.arms] == [400, 420]
    assert [a.units for a in view.arms] == [1000, 1000]
    assert view.arms[1].value == pytest.approx(0.42)
    assert view.arms[1].lift == pytest.approx(0.05)
    assert view.arms[0].p_value is None and view.arms[0].lift is None
    # Without a sample size every p-value is always valid, as the primary metric's.
    p = float(sequential.proportions_p_value(400, 1000, 420, 1000))
    assert view.arms[1].p_value == pytest.approx(p)
    fixed = web_results([(1000, 100, 400, 50, 2500.0), (1000, 130, 420, 60, 3300.0)],
                        sample_size=1000).metrics[1]  # fmt: skip
    p = frequentist.two_proportion_p_value(400, 1000, 420, 1000)
    assert fixed.arms[1].p_value == pytest.approx(p)
    assert order.is_rate and [a.conversions for a in order.arms] == [50, 60]
    assert not value.is_rate and value.goal_id == "g_order" and value.higher_is_better
    assert [a.value for a in value.arms] == [pytest.approx(2.5), pytest.approx(3.3)]
    assert value.arms[1].interval is not None and value.arms[1].p_value is not None
    assert value.arms[1].conversions is None
    # The primary entry is the verdict's own figures.
    bold = results.variants[1]
    assert click.arms[1].p_value == bold.p_value and click.arms[1].lift == bold.lift
    assert click.arms[1].lift_interval == bold.lift_interval
    assert click.arms[1].prob_beat_control == bold.prob_beat_control
    assert results.metrics_note is not None and "not corrected" in results.metrics_note
    # A goal without values has no value entry; one goal alone needs no note.
    alone = compute_results(
        web_spec("exp_one", goals=(CLICK,)),
        [ArmAggregates(v, 100, (GoalAggregates("g_click", 10, 0.0, 0.0, None),))
         for v in ("v_a", "v_b")],
    )  # fmt: skip
    assert [m.key for m in alone.metrics] == ["g_click"] and alone.metrics_note is None


def test_an_agent_experiment_has_completion_cost_duration_and_turns() -> None:
    arms = [agent_arm("v_a", 400, 300, SAME), agent_arm("v_b", 400, 320, SAME | {"cost": 0.03})]
    results = compute_results(agent_spec("exp_agent"), arms)
    assert [m.key for m in results.metrics] == ["task_completion", "cost", "duration", "turns"]
    completion, cost, duration, turns = results.metrics
    assert completion.role == "primary" and completion.is_rate
    assert [a.conversions for a in completion.arms] == [300, 320]
    for metric in (cost, duration, turns):
        assert metric.role == "secondary" and not metric.is_rate and not metric.higher_is_better
        for arm in metric.arms:
            assert arm.value is not None and arm.interval is not None
            assert arm.interval[0] < arm.value < arm.interval[1]
    assert cost.arms[1].value == pytest.approx(0.03) and cost.arms[1].lift == pytest.approx(0.5)
    assert cost.arms[1].p_value is not None and cost.arms[1].p_value < 1e-6
    # Lower is better: a dearer challenger is unlikely to beat the control on cost.
    assert cost.arms[1].prob_beat_control is not None and cost.arms[1].prob_beat_control < 0.01
    assert duration.arms[1].value == pytest.approx(1500.0)
    # A mean primary metric comes first; success_rate is task completion.
    by_cost = compute_results(agent_spec("exp_agent", primary_metric="avg_cost"), arms)
    assert [m.key for m in by_cost.metrics][0] == "cost"
    assert by_cost.metrics[0].arms[1].p_value == by_cost.variants[1].p_value
    assert primary_metric_key("success_rate") == "task_completion"
    assert agent_metric_key("avg_turns") == "turns" and agent_metric_key("tokens") is None


def test_a_guardrail_goal_significantly_worse_stops_the_experiment() -> None:
    plan = [(1000, 100, 400, 50, 2500.0), (1000, 105, 330, 50, 2500.0)]
    # Secondary: shown, not acted on.
    assert web_results(plan).status == "running"
    guarded = (CLICK, GoalSpec("g_view", "Pricing view", "pageview", guardrail=True), ORDER)
    results = web_results(plan, *guarded)
    assert results.metrics[1].role == "guardrail"
    assert results.status == "guardrail" and results.guardrail is not None
    assert results.guardrail.id == "v_b" and results.winner is None
    assert results.guardrail_reason is not None
    assert "guardrail metric Pricing view" in results.guardrail_reason
    # Better on the guardrail: nothing stops.
    better = [(1000, 100, 400, 50, 2500.0), (1000, 105, 470, 50, 2500.0)]
    assert web_results(better, *guarded).status == "running"


def test_a_guardrail_blocks_a_winner_that_is_worse_on_it() -> None:
    guarded = (CLICK, GoalSpec("g_view", "Pricing view", "pageview", guardrail=True), ORDER)
    plan = [(1000, 100, 400, 50, 2500.0), (1000, 150, 330, 50, 2500.0)]
    assert web_results(plan).status == "significant"  # the primary alone has a winner
    blocked = web_results(plan, *guarded)
    assert blocked.status == "guardrail" and blocked.winner is None
    assert blocked.guardrail is not None and blocked.guardrail.id == "v_b"
    # A winner no worse on the guardrail stands.
    fine = [(1000, 100, 400, 50, 2500.0), (1000, 150, 400, 50, 2500.0)]
    assert web_results(fine, *guarded).status == "significant"


def test_agent_guardrail_metrics_and_the_cost_bound() -> None:
    slow = SAME | {"duration_ms": 2500.0}
    arms = [agent_arm("v_a", 600, 420, SAME), agent_arm("v_b", 600, 425, slow)]
    assert compute_results(agent_spec("exp_g"), arms).status == "running"
    results = compute_results(agent_spec("exp_g", guardrail_metrics=("duration",)), arms)
    roles = {m.key: m.role for m in results.metrics}
    assert roles == {"task_completion": "primary", "cost": "secondary",
                     "duration": "guardrail", "turns": "secondary"}  # fmt: skip
    assert results.status == "guardrail" and results.guardrail is not None
    assert results.guardrail_reason is not None and "duration" in results.guardrail_reason
    # The stop's p-value is the guardrail metric's, the one the reason quotes.
    assert results.guardrail_p_value is not None
    assert f"(p = {results.guardrail_p_value:.3g}," in results.guardrail_reason
    # The cost bound makes cost a guardrail, checked by its own test only.
    bound = compute_results(agent_spec("exp_g", max_cost_increase=0.5), arms)
    assert {m.key: m.role for m in bound.metrics}["cost"] == "guardrail"
    assert bound.status == "running"


def test_an_early_look_reads_an_always_valid_p_value() -> None:
    guarded = (CLICK, GoalSpec("g_view", "Pricing view", "pageview", guardrail=True), ORDER)
    # 200 units per arm: below the minimum of 500, above the early minimum of 100.
    moderate = [(200, 20, 80, 10, 500.0), (200, 21, 60, 10, 500.0)]
    # At a fixed horizon this would be significant (p = 0.036), but an early look reads
    # the always-valid p-value (0.47), which looking often does not inflate.
    fixed = web_results(moderate, *guarded, sample_size=500)
    p = fixed.metrics[1].arms[1].p_value
    assert p is not None and 0.005 < p < 0.05 and fixed.status == "collecting"
    p = web_results(moderate, *guarded).metrics[1].arms[1].p_value
    assert p is not None and p > 0.4
    assert web_results(moderate, *guarded).status == "collecting"
    strong = [(200, 20, 80, 10, 500.0), (200, 21, 35, 10, 500.0)]
    assert web_results(strong, *guarded).status == "guardrail"
    assert web_results(strong, *guarded, sample_size=500).status == "guardrail"
    # Too few units for any early stop.
    assert web_results([(60, 6, 40, 3, 150.0), (60, 6, 5, 3, 150.0)], *guarded).status == (
        "collecting"
    )


def test_a_kept_verdict_is_not_decided_again() -> None:
    guarded = (CLICK, GoalSpec("g_view", "Pricing view", "pageview", guardrail=True), ORDER)
    plan = [(1000, 100, 400, 50, 2500.0), (1000, 150, 330, 50, 2500.0)]
    kept = web_results(
        plan, *guarded, status="completed", verdict=Verdict("significant", winner_id="v_b")
    )
    assert kept.status == "significant" and kept.winner is not None and kept.winner.id == "v_b"
    assert len(kept.metrics) == 4  # the metrics are still shown


def test_metrics_without_data_have_no_statistics() -> None:
    results = web_results([(0, 0, 0, 0, 0.0), (0, 0, 0, 0, 0.0)])
    assert [m.key for m in results.metrics] == ["g_click", "g_view", "g_order"]
    for metric in results.metrics:
        for arm in metric.arms:
            assert arm.value is None and arm.interval is None and arm.p_value is None
