"""The aggregate and timeline SQL against real chDB (what counts, once, for whom), and one
experiment's results fetched from chDB end to end."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec
import numpy as np
import pytest

from analytics import sequential, warehouse
from analytics.aggregates import (
    ArmAggregates,
    DeviceRow,
    ExperimentSpec,
    GoalAggregates,
    VariantSpec,
    fetch_aggregates,
    fetch_devices,
    fetch_summary,
    fetch_timeline,
)
from analytics.result_views import crewkit_metrics_view
from analytics.results import compute_results, fetch_results
from tests.support import BUY, EventWarehouse, agent_spec, web_spec

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

# --- chDB: one warehouse for the module (a process owns one chDB directory at a time) ----


@pytest.fixture(scope="module")
def wh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EventWarehouse]:
    client = warehouse.connect(f"chdb://{tmp_path_factory.mktemp('results') / 'clickhouse'}")
    warehouse.migrate(client)
    yield EventWarehouse(client, {"received_at": T0})
    client.close()


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def exposure(exp: str, unit: str, variant: str, minutes: float = 0, **kw: Any) -> dict[str, Any]:
    return dict(kind="exposure", experiment_id=exp, variant_id=variant, unit_id=unit,
                received_at=at(minutes), **kw)  # fmt: skip


def goal(exp: str, unit: str, variant: str, goal_id: str, value: float | None = None,
         minutes: float = 1, **kw: Any) -> dict[str, Any]:  # fmt: skip
    return dict(kind="goal", experiment_id=exp, variant_id=variant, unit_id=unit,
                goal_id=goal_id, value=value, received_at=at(minutes), **kw)  # fmt: skip


def task(exp: str, unit: str, variant: str, outcome: str, cost: float | None = None,
         duration_ms: float | None = None, turns: int | None = None,
         minutes: float = 0) -> dict[str, Any]:  # fmt: skip
    return dict(kind="task", experiment_id=exp, variant_id=variant, unit_id=unit,
                session_id=unit, agent_id="agent-1", outcome=outcome, cost=cost,
                duration_ms=duration_ms, turns=turns, received_at=at(minutes))  # fmt: skip


def arms_by_id(wh: EventWarehouse, spec: ExperimentSpec) -> dict[str, ArmAggregates]:
    return {a.variant_id: a for a in fetch_aggregates(wh.run, spec)}


def goals_of(arm: ArmAggregates) -> dict[str, GoalAggregates]:
    return {g.goal_id: g for g in arm.goals}


def test_a_unit_counts_with_its_goals_in_the_variant_of_its_first_exposure(
    wh: EventWarehouse,
) -> None:
    exp = "exp_first"
    # u1 is first exposed to control; a later exposure (inserted first) says Bold, and its
    # goal row carries Bold's id: it all counts for control.
    wh.insert(
        [exposure(exp, "u1", "v_b", minutes=30), goal(exp, "u1", "v_b", "g_signup", minutes=31)]
    )
    wh.insert([exposure(exp, "u1", "v_a", minutes=5), exposure(exp, "u2", "v_b", minutes=1)])
    arms = arms_by_id(wh, web_spec(exp))
    assert (arms["v_a"].units, arms["v_b"].units) == (1, 1)
    assert goals_of(arms["v_a"])["g_signup"].converted == 1
    assert goals_of(arms["v_b"]) == {}


def test_goals_of_units_never_exposed_do_not_count(wh: EventWarehouse) -> None:
    exp = "exp_unexposed"
    wh.insert(
        [
            exposure(exp, "seen", "v_a"),
            goal(exp, "seen", "v_a", "g_signup"),
            goal(exp, "ghost", "v_a", "g_signup", value=100.0),  # no exposure anywhere
            exposure("exp_other", "elsewhere", "v_a"),  # exposed to another experiment only
            goal(exp, "elsewhere", "v_a", "g_signup", value=50.0),
        ]
    )
    arms = arms_by_id(wh, web_spec(exp))
    assert list(arms) == ["v_a"] and arms["v_a"].units == 1
    signup = goals_of(arms["v_a"])["g_signup"]
    assert (signup.converted, signup.value_sum) == (1, 0.0)


def test_a_unit_converting_twice_counts_once_and_its_values_add_up(wh: EventWarehouse) -> None:
    exp = "exp_twice"
    wh.insert(
        [
            exposure(exp, "u1", "v_b"),
            exposure(exp, "u1", "v_b", minutes=60),  # a second session: still one unit
            goal(exp, "u1", "v_b", "g_buy", value=10.0),
            goal(exp, "u1", "v_b", "g_buy", value=2.5, minutes=61),
            goal(exp, "u1", "v_b", "g_buy", value=None, minutes=62),  # no value: adds 0
            goal(exp, "u1", "v_b", "g_signup"),
            exposure(exp, "u2", "v_b"),
        ]
    )
    arm = arms_by_id(wh, web_spec(exp))["v_b"]
    assert arm.units == 2
    buy, signup = goals_of(arm)["g_buy"], goals_of(arm)["g_signup"]
    assert (buy.converted, buy.value_sum, buy.value_sumsq, buy.value_p95) == (1, 12.5, 156.25, 12.5)
    assert (signup.converted, signup.value_sum) == (1, 0.0)


def test_goal_value_sums_and_p95_match_numpy(wh: EventWarehouse) -> None:
    exp = "exp_values"
    rng = np.random.default_rng(7)
    rows = []
    per_unit: dict[str, list[float]] = {"v_a": [], "v_b": []}  # converted units only
    per_unit_all: dict[str, list[float]] = {"v_a": [], "v_b": []}
    for n in range(300):
        variant = ("v_a", "v_b")[n % 2]
        rows.append(exposure(exp, f"u{n}", variant, minutes=n))
        fires = int(rng.integers(0, 4)) if rng.random() < 0.4 else 0
        values = [round(float(rng.lognormal(3, 1)), 2) for _ in range(fires)]
        rows += [goal(exp, f"u{n}", variant, "g_buy", value=v, minutes=n + 1) for v in values]
        per_unit_all[variant].append(sum(values))
        if fires:
            per_unit[variant].append(sum(values))
    wh.insert(rows)
    arms = arms_by_id(wh, web_spec(exp))
    for variant, arm in arms.items():
        buy = goals_of(arm)["g_buy"]
        every = np.array(per_unit_all[variant])
        assert arm.units == len(every) == 150
        assert buy.converted == len(per_unit[variant])
        assert buy.value_sum == pytest.approx(every.sum(), rel=1e-12)
        assert buy.value_sumsq == pytest.approx((every**2).sum(), rel=1e-12)
        assert buy.value_p95 == pytest.approx(np.quantile(per_unit[variant], 0.95), rel=1e-12)
    # The results report the mean and std_dev per exposed unit (non-converters are 0).
    results = compute_results(web_spec(exp, goals=(BUY,)), list(arms.values()))
    value = results.variants[1].goals[0].value
    every = np.array(per_unit_all["v_b"])
    assert value.mean == pytest.approx(every.mean(), rel=1e-12)
    assert value.std_dev == pytest.approx(every.std(ddof=1), rel=1e-9)


def test_rows_of_other_workspaces_and_experiments_are_never_counted(wh: EventWarehouse) -> None:
    exp = "exp_scoped"
    wh.insert(
        [exposure(exp, "mine", "v_a"), goal(exp, "mine", "v_a", "g_signup")]
        + [exposure(exp, f"theirs{n}", "v_a", workspace_id="ws_other") for n in range(5)]
        + [goal(exp, f"theirs{n}", "v_a", "g_signup", workspace_id="ws_other") for n in range(5)]
        + [goal(exp, "mine", "v_a", "g_buy", value=9.0, workspace_id="ws_other")]
        + [exposure("exp_scoped_2", "mine", "v_a"), goal("exp_scoped_2", "mine", "v_a", "g_buy")]
    )
    arms = arms_by_id(wh, web_spec(exp))
    assert arms["v_a"].units == 1
    assert list(goals_of(arms["v_a"])) == ["g_signup"]
    nobody = msgspec.structs.replace(web_spec(exp), workspace_id="ws_nobody")
    assert fetch_aggregates(wh.run, nobody) == []


def test_agent_units_succeed_once_and_their_sums_and_p95_match_numpy(wh: EventWarehouse) -> None:
    exp = "exp_agent"
    rng = np.random.default_rng(11)
    rows = []
    per_unit: dict[str, list[tuple[float, float, float, bool, int, int]]] = {"v_a": [], "v_b": []}
    for n in range(120):
        variant = ("v_a", "v_b")[n % 2]
        k = int(rng.integers(1, 5))
        outcomes = [str(o) for o in rng.choice(["success", "failure", "partial"], k)]
        costs = [round(float(rng.gamma(2, 0.01)), 5) for _ in range(k)]
        turns = [int(t) for t in rng.integers(1, 9, k)]
        rows += [
            task(exp, f"run{n}", variant, o, cost=c, duration_ms=100.0 * t, turns=t, minutes=i)
            for i, (o, c, t) in enumerate(zip(outcomes, costs, turns, strict=True))
        ]
        wins = outcomes.count("success")
        per_unit[variant].append((sum(costs), 100.0 * sum(turns), sum(turns), wins > 0, k, wins))
    # A unit whose first task ran in control and a later one in Bold stays in control; a task
    # without cost, duration or turns adds 0.
    rows += [task(exp, "mover", "v_a", "failure", minutes=-1), task(exp, "mover", "v_b", "success")]
    per_unit["v_a"].append((0.0, 0.0, 0, True, 2, 1))
    wh.insert(rows)
    arms = arms_by_id(wh, agent_spec(exp))
    for variant, arm in arms.items():
        units = np.array(per_unit[variant], dtype=float)
        assert arm.units == len(units)
        assert arm.converted == int(units[:, 3].sum())
        assert (arm.tasks, arm.successful_tasks) == (int(units[:, 4].sum()), int(units[:, 5].sum()))
        for col, name in enumerate(("cost", "duration_ms", "turns")):
            assert arm.sums[name] == pytest.approx(units[:, col].sum(), rel=1e-12)
            assert arm.sumsqs[name] == pytest.approx((units[:, col] ** 2).sum(), rel=1e-12)
            assert arm.p95s[name] == pytest.approx(np.quantile(units[:, col], 0.95), rel=1e-12)
    results = compute_results(agent_spec(exp, primary_metric="avg_cost"), list(arms.values()))
    metrics = results.variants[0].agent
    assert metrics is not None
    assert metrics.cost.p95 == arms["v_a"].p95s["cost"]
    assert metrics.success_rate == arms["v_a"].converted / arms["v_a"].units
    assert metrics.task_success_rate == arms["v_a"].successful_tasks / arms["v_a"].tasks


def test_timeline_dates_entries_and_first_conversions(wh: EventWarehouse) -> None:
    exp = "exp_timeline"
    day = 24 * 60
    wh.insert(
        [
            exposure(exp, "u1", "v_a", minutes=0),
            goal(exp, "u1", "v_a", "g_signup", minutes=day + 5),  # converts the next day
            goal(exp, "u1", "v_a", "g_signup", minutes=2 * day),  # again: not counted
            exposure(exp, "u2", "v_b", minutes=10),
            goal(exp, "u2", "v_b", "g_buy", minutes=20),  # not the primary goal
            goal(exp, "u3", "v_b", "g_signup", minutes=20),  # never exposed
            # a goal delivered before its exposure counts on the exposure's day
            goal(exp, "u4", "v_b", "g_signup", minutes=day - 1),
            exposure(exp, "u4", "v_b", minutes=day + 1),
        ]
    )
    points = [
        (p.day, p.variant_id, p.entered, p.converted) for p in fetch_timeline(wh.run, web_spec(exp))
    ]
    d0, d1 = date(2025, 6, 1), date(2025, 6, 2)
    assert points == [(d0, "v_a", 1, 0), (d0, "v_b", 1, 0), (d1, "v_a", 0, 1), (d1, "v_b", 1, 1)]
    wh.insert([task("exp_agent_tl", "r1", "v_a", "failure"),
               task("exp_agent_tl", "r1", "v_a", "success", minutes=day),
               task("exp_agent_tl", "r2", "v_b", "partial")])  # fmt: skip
    agent = [(p.day, p.variant_id, p.entered, p.converted)
             for p in fetch_timeline(wh.run, agent_spec("exp_agent_tl"))]  # fmt: skip
    assert agent == [(d0, "v_a", 1, 0), (d0, "v_b", 1, 0), (d1, "v_a", 0, 1)]


def test_an_hourly_timeline_comes_from_the_same_query_with_the_same_arms(
    wh: EventWarehouse,
) -> None:
    exp = "exp_hourly"
    wh.insert(
        [
            exposure(exp, "u1", "v_a", minutes=0),  # 12:00
            goal(exp, "u1", "v_a", "g_signup", minutes=70),  # 13:10
            exposure(exp, "u2", "v_b", minutes=61),  # 13:01
            goal(exp, "u2", "v_b", "g_signup", minutes=62),
            exposure(exp, "u3", "v_b", minutes=24 * 60 + 125),  # the next day, 14:05
        ]
    )
    spec = web_spec(exp)
    hourly = fetch_summary(wh.run, spec, "hour")
    daily = fetch_summary(wh.run, spec)
    assert hourly.bucket == "hour" and daily.bucket == "day"
    assert hourly.arms == daily.arms
    d0, d1 = date(2025, 6, 1), date(2025, 6, 2)
    points = [(p.day, p.hour, p.variant_id, p.entered, p.converted) for p in hourly.timeline]
    assert points == [
        (d0, 12, "v_a", 1, 0),
        (d0, 13, "v_a", 0, 1),
        (d0, 13, "v_b", 1, 1),
        (d1, 14, "v_b", 1, 0),
    ]
    assert hourly.timeline[-1].start == datetime(2025, 6, 2, 14, tzinfo=UTC)
    assert [p.hour for p in daily.timeline] == [None, None, None]
    wh.insert([task("exp_agent_hr", "r1", "v_a", "failure"),
               task("exp_agent_hr", "r1", "v_a", "success", minutes=90)])  # fmt: skip
    agent = fetch_timeline(wh.run, agent_spec("exp_agent_hr"), "hour")
    assert [(p.hour, p.entered, p.converted) for p in agent] == [(12, 1, 0), (13, 0, 1)]


def test_devices_count_each_unit_once_on_the_device_it_entered_on(wh: EventWarehouse) -> None:
    exp = "exp_devices"
    wh.insert(
        [
            exposure(exp, "u1", "v_a", minutes=0, device="mobile"),
            exposure(exp, "u1", "v_a", minutes=5, device="desktop"),  # still mobile
            goal(exp, "u1", "v_a", "g_signup", minutes=6, device="desktop"),
            goal(exp, "u1", "v_a", "g_signup", minutes=7),  # converts once
            exposure(exp, "u2", "v_a", minutes=1, device="desktop"),
            goal(exp, "u2", "v_a", "g_buy", minutes=2),  # not the primary goal
            exposure(exp, "u3", "v_b", minutes=2, device="mobile"),
            exposure(exp, "u3", "v_a", minutes=3, device="desktop"),  # counted in v_b
            goal(exp, "u3", "v_b", "g_signup", minutes=4),
            exposure(exp, "u4", "v_b", minutes=2),  # no device
            goal(exp, "u5", "v_b", "g_signup", minutes=2, device="mobile"),  # never exposed
        ]
    )
    rows = fetch_devices(wh.run, web_spec(exp))
    assert rows == (
        DeviceRow("v_a", "desktop", 1, 0),
        DeviceRow("v_a", "mobile", 1, 1),
        DeviceRow("v_b", "", 1, 0),
        DeviceRow("v_b", "mobile", 1, 1),
    )
    # Per arm, the units and primary conversions are those of the results.
    arms = arms_by_id(wh, web_spec(exp))
    for arm in arms.values():
        mine = [r for r in rows if r.variant_id == arm.variant_id]
        assert sum(r.units for r in mine) == arm.units
        signup = goals_of(arm).get("g_signup")
        assert sum(r.conversions for r in mine) == (signup.converted if signup else 0)
    wh.insert([task("exp_agent_dev", "r1", "v_a", "failure"),
               task("exp_agent_dev", "r1", "v_a", "success", minutes=1),
               task("exp_agent_dev", "r2", "v_b", "partial")])  # fmt: skip
    assert fetch_devices(wh.run, agent_spec("exp_agent_dev")) == (
        DeviceRow("v_a", "", 1, 1),
        DeviceRow("v_b", "", 1, 0),
    )


def test_fetch_results_of_three_arms_from_chdb(wh: EventWarehouse) -> None:
    exp = "exp_three"
    variants = (
        VariantSpec("v_a", "Control", True, 3334),
        VariantSpec("v_b", "Bold", False, 3333),
        VariantSpec("v_c", "Calm", False, 3333),
    )
    rows = []
    # 600 units per arm; signup rates 10% (control), 20% (Bold), 10% (Calm).
    for arm, every in (("v_a", 10), ("v_b", 5), ("v_c", 10)):
        for n in range(600):
            rows.append(exposure(exp, f"{arm}-{n}", arm, minutes=n))
            if n % every == 0:
                rows.append(goal(exp, f"{arm}-{n}", arm, "g_signup", minutes=n + 1))
    wh.insert(rows)
    results = fetch_results(wh.run, web_spec(exp, variants))
    assert [v.units for v in results.variants] == [600, 600, 600]
    assert [v.conversions for v in results.variants] == [60, 120, 60]
    assert results.status == "significant" and results.winner is not None
    assert results.winner.name == "Bold"
    assert results.rules.comparisons == 2 and results.rules.alpha == pytest.approx(0.025)
    expected = float(sequential.proportions_p_value(60, 600, 120, 600))  # no sample_size
    assert results.p_value == results.variants[1].p_value == pytest.approx(expected)
    assert sum(v.prob_to_win or 0 for v in results.variants) == pytest.approx(1, abs=1e-3)
    view = crewkit_metrics_view(results)
    assert view.variants is not None and set(view.variants) == {"Control", "Bold", "Calm"}
    assert view.variant is not None and view.variant.name == "Bold"
    assert view.variant.success_rate == pytest.approx(20.0)
