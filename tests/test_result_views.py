"""The results in the reference products' shapes (ClawSplit's results, crewkit's metrics)."""

from __future__ import annotations

import msgspec
import pytest

from analytics.aggregates import ArmAggregates, VariantSpec
from analytics.result_views import clawsplit_view, crewkit_metrics_view
from analytics.results import compute_results
from tests.support import CONTROL, agent_spec, decide


def test_views_in_the_reference_shapes() -> None:
    web = decide((1000, 100), (1000, 150))
    claw = clawsplit_view(web)
    assert (claw.status, claw.winner, claw.p_value) == ("significant", "Bold", web.p_value)
    assert claw.variants["Control"].completion == pytest.approx(0.10)
    assert claw.variants["Bold"].completion == pytest.approx(0.15)
    assert claw.variants["Bold"].avg_cost is None
    crew = crewkit_metrics_view(web)
    assert crew.control.total_sessions == 1000 and crew.control.success_rate == pytest.approx(10.0)
    assert crew.significance.significant and crew.significance.confidence == 0.95
    assert crew.variants is None  # two arms: control and variant only

    costs = {"cost": 1.0, "duration_ms": 0.0, "turns": 700.0}
    agent = compute_results(
        agent_spec("exp_views"),
        [ArmAggregates(v, 100, converted=c, tasks=200, successful_tasks=c, sums=costs,
                       sumsqs={"cost": 0.02, "duration_ms": 0.0, "turns": 5000.0},
                       p95s={"cost": 0.02, "duration_ms": 0.0, "turns": 9.0})
         for v, c in (("v_a", 80), ("v_b", 90))],
    )  # fmt: skip
    claw = clawsplit_view(agent)
    assert claw.variants["Bold"].task_completion == claw.variants["Bold"].completion == 0.9
    assert claw.variants["Bold"].avg_cost == pytest.approx(0.01)
    crew = crewkit_metrics_view(agent)
    assert crew.variant is not None
    assert (crew.variant.success_rate, crew.variant.avg_turns, crew.variant.p95_cost) == (
        pytest.approx(90.0), pytest.approx(7.0), 0.02,
    )  # fmt: skip
    # Two variants with one name stay apart in the by-name map.
    twins = (CONTROL, VariantSpec("v_b", "Control", False, 5000))
    names = set(clawsplit_view(decide((600, 60), (600, 60), variants=twins)).variants)
    assert names == {"Control (v_a)", "Control (v_b)"}


def test_both_views_carry_every_metric_with_the_note() -> None:
    web = decide((1000, 100), (1000, 150))
    assert [m.key for m in web.metrics] == ["g_signup", "g_buy"]
    claw, crew = clawsplit_view(web), crewkit_metrics_view(web)
    assert claw.metrics == crew.metrics == web.metrics
    assert claw.metrics_note == crew.metrics_note == web.metrics_note is not None
    # crewkit's documented fields are all still there, the additions beside them.
    encoded = msgspec.json.decode(msgspec.json.encode(crew))
    assert set(encoded) == {"control", "variant", "significance", "metrics", "metrics_note"}
    assert {"total_sessions", "success_rate", "avg_cost", "avg_turns", "p95_cost"} <= set(
        encoded["control"]
    )
    agent = compute_results(
        agent_spec("exp_views"),
        [ArmAggregates(v, 100, converted=c, tasks=100, successful_tasks=c,
                       sums={"cost": 1.0, "duration_ms": 1000.0 * d, "turns": 700.0},
                       sumsqs={"cost": 0.02, "duration_ms": 12_000.0 * d * d, "turns": 5000.0},
                       p95s={"cost": 0.02, "duration_ms": 15.0 * d, "turns": 9.0})
         for v, c, d in (("v_a", 80, 1.0), ("v_b", 90, 2.0))],
    )  # fmt: skip
    crew = crewkit_metrics_view(agent)
    assert crew.variant is not None
    assert crew.variant.avg_duration_ms == pytest.approx(20.0)
    assert (crew.variant.p95_duration_ms, crew.variant.p95_turns) == (30.0, 9.0)
    assert [m.key for m in crew.metrics] == ["task_completion", "cost", "duration", "turns"]
