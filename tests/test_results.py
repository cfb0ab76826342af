"""Experiment results: the aggregate SQL against real chDB (what counts, once, for whom),
then the decision rules of docs/statistics.md on aggregates, and the API shapes."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pytest

from analytics import frequentist, warehouse
from analytics.results import (
    ArmAggregates,
    ExperimentResults,
    ExperimentSpec,
    GoalAggregates,
    GoalSpec,
    VariantSpec,
    clawsplit_view,
    compute_results,
    crewkit_metrics_view,
    fetch_aggregates,
    fetch_results,
    fetch_timeline,
    monte_carlo_seed,
)
from edge.ingest.schema import EVENT_SCHEMA

WS = "ws_results"
T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
CONTROL, B = VariantSpec("v_a", "Control", True, 5000), VariantSpec("v_b", "Bold", False, 5000)
SIGNUP, BUY = GoalSpec("g_signup", "Signup", "click"), GoalSpec("g_buy", "Buy", "custom")


def web_spec(
    exp: str, variants: tuple[VariantSpec, ...] = (CONTROL, B), **kw: Any
) -> ExperimentSpec:
    options: dict[str, Any] = {"status": "running", "goals": (SIGNUP, BUY), **kw}
    return ExperimentSpec(id=exp, workspace_id=WS, kind="web", variants=variants, **options)


def agent_spec(exp: str, **kw: Any) -> ExperimentSpec:
    options: dict[str, Any] = {"status": "running", **kw}
    return ExperimentSpec(id=exp, workspace_id=WS, kind="agent", variants=(CONTROL, B), **options)


# --- chDB: one warehouse for the module (a process owns one chDB directory at a time) ----

_ids = itertools.count()


class Warehouse:
    def __init__(self, client: Any) -> None:
        self.client = client

    def run(self, sql: str, parameters: dict[str, Any]) -> pa.Table:
        return self.client.query_arrow(sql, parameters=parameters)

    def insert(self, rows: list[dict[str, Any]]) -> None:
        """Insert rows given as column -> value; '' / null for the columns not given."""
        full = []
        for row in rows:
            base: dict[str, Any] = {
                f.name: None if f.nullable else "" for f in EVENT_SCHEMA if f.name != "client_ts"
            }
            base.update(event_id=f"e{next(_ids)}", workspace_id=WS, received_at=T0)
            base.update(row)
            base["client_ts"] = base["received_at"]
            full.append(base)
        table = pa.Table.from_pylist(full, schema=EVENT_SCHEMA)
        token = warehouse.insert_settings(uuid.uuid4().hex)
        self.client.insert_arrow(warehouse.EVENTS_TABLE, table, settings=token)


@pytest.fixture(scope="module")
def wh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    client = warehouse.connect(f"chdb://{tmp_path_factory.mktemp('results') / 'clickhouse'}")
    warehouse.migrate(client)
    yield Warehouse(client)
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


def arms_by_id(wh: Warehouse, spec: ExperimentSpec) -> dict[str, ArmAggregates]:
    return {a.variant_id: a for a in fetch_aggregates(wh.run, spec)}


def goals_of(arm: ArmAggregates) -> dict[str, GoalAggregates]:
    return {g.goal_id: g for g in arm.goals}


def test_a_unit_counts_with_its_goals_in_the_variant_of_its_first_exposure(wh: Warehouse) -> None:
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


def test_goals_of_units_never_exposed_do_not_count(wh: Warehouse) -> None:
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


def test_a_unit_converting_twice_counts_once_and_its_values_add_up(wh: Warehouse) -> None:
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


def test_goal_value_sums_and_p95_match_numpy(wh: Warehouse) -> None:
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


def test_rows_of_other_workspaces_and_experiments_are_never_counted(wh: Warehouse) -> None:
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


def test_agent_units_succeed_once_and_their_sums_and_p95_match_numpy(wh: Warehouse) -> None:
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


def test_timeline_dates_entries_and_first_conversions(wh: Warehouse) -> None:
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


def test_fetch_results_of_three_arms_from_chdb(wh: Warehouse) -> None:
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
    expected = frequentist.two_proportion_p_value(60, 600, 120, 600)
    assert results.p_value == results.variants[1].p_value == pytest.approx(expected)
    assert sum(v.prob_to_win or 0 for v in results.variants) == pytest.approx(1, abs=1e-3)
    view = crewkit_metrics_view(results)
    assert view.variants is not None and set(view.variants) == {"Control", "Bold", "Calm"}
    assert view.variant is not None and view.variant.name == "Bold"
    assert view.variant.success_rate == pytest.approx(20.0)


# --- the decision rules, on aggregates ----------------------------------------------------


def web_arms(*arms: tuple[int, int]) -> list[ArmAggregates]:
    """(units, signups) per arm, in the order of the spec's variants."""
    ids = ("v_a", "v_b", "v_c")
    return [
        ArmAggregates(ids[i], units, (GoalAggregates("g_signup", conv, 0.0, 0.0, None),))
        for i, (units, conv) in enumerate(arms)
    ]


def decide(*arms: tuple[int, int], **spec: Any) -> ExperimentResults:
    return compute_results(web_spec("exp_rules", **spec), web_arms(*arms))


def test_collecting_until_every_arm_has_the_minimum_units() -> None:
    results = decide((499, 40), (2000, 400))
    assert results.status == "collecting" and results.winner is None
    assert results.rules.min_units_per_arm == 500
    assert [v.samples_needed for v in results.variants][0] >= 1
    assert decide((10, 1), (10, 1), sample_size=1000).variants[0].samples_needed >= 990
    # No data at all: nothing to compare yet.
    empty = decide((0, 0), (0, 0))
    assert empty.status == "collecting" and empty.variants[0].prob_to_win is None
    assert empty.srm is None and empty.samples_needed == 500


def test_running_while_no_arm_is_significantly_different() -> None:
    results = decide((1000, 100), (1000, 105))
    assert results.status == "running" and results.winner is None and results.guardrail is None
    assert results.leader is not None and results.leader.id == "v_b"
    assert results.p_value is not None and results.p_value > 0.05
    # The observed lift would need many more units to be detected at alpha 0.05, power 0.8.
    rate_b = 105 / 1000
    need = frequentist.units_per_arm_for_proportions(rate_b, (0.1 - rate_b) / rate_b, 0.05, 0.8)
    assert need > 1000
    assert [v.samples_needed for v in results.variants] == [need - 1000, need - 1000]


def test_significant_needs_both_the_probability_and_the_p_value() -> None:
    results = decide((1000, 100), (1000, 150))
    assert results.status == "significant"
    assert results.winner is not None and results.winner.id == "v_b"
    assert results.prob_to_win is not None and results.prob_to_win >= 0.95
    assert results.samples_needed == 0
    assert results.lift == pytest.approx(0.5)
    assert results.lift_interval is not None and results.lift_interval[0] > 0
    # A stricter confidence on the same data: P = 0.99964 passes 0.9995, p = 0.00072 does not.
    strict = decide((1000, 100), (1000, 150), confidence=0.9995)
    assert strict.variants[1].prob_to_win is not None
    assert strict.variants[1].prob_to_win >= 0.9995
    assert strict.status == "running" and strict.rules.alpha == pytest.approx(0.0005)


def test_guardrail_names_a_challenger_significantly_worse_than_control() -> None:
    results = decide((1000, 150), (1000, 100))
    assert results.status == "guardrail" and results.winner is None
    assert results.guardrail is not None and results.guardrail.id == "v_b"
    assert results.variants[1].prob_beat_control is not None
    assert results.variants[1].prob_beat_control <= 0.05


def test_no_winner_once_completed_or_the_sample_size_is_reached() -> None:
    assert decide((1000, 100), (1000, 105), status="completed").status == "no_winner"
    assert decide((1000, 100), (1000, 105), status="archived").status == "no_winner"
    reached = decide((1000, 100), (1000, 105), sample_size=1000)
    assert reached.status == "no_winner" and reached.rules.min_units_per_arm == 1000
    assert decide((999, 100), (1000, 105), sample_size=1000).status == "collecting"
    ended_early = decide((100, 10), (100, 30), status="completed")
    assert ended_early.status == "no_winner" and "ended before" in ended_early.warnings[0]


def test_sample_ratio_mismatch_blocks_a_winner() -> None:
    # 1000 vs 1200 units on a 50/50 split: chi2 = 18.2, p = 2e-5.
    results = decide((1000, 100), (1200, 200))
    assert results.srm is not None and results.srm_flagged
    assert results.srm.p_value < 0.001
    assert results.status == "running" and results.winner is None
    assert any("sample ratio mismatch" in w for w in results.warnings)
    assert results.variants[1].prob_to_win is not None and results.variants[1].prob_to_win > 0.95
    assert decide((1000, 100), (1200, 200), sample_size=1000).status == "no_winner"
    # The same effect on a matching split (45/55) is declared.
    split = (VariantSpec("v_a", "Control", True, 4545), VariantSpec("v_b", "Bold", False, 5455))
    assert decide((1000, 100), (1200, 200), variants=split).status == "significant"


def test_lower_cost_wins_an_agent_experiment_on_avg_cost() -> None:
    def arm(variant: str, units: int, mean: float, sd: float) -> ArmAggregates:
        total, sumsq = units * mean, (units - 1) * sd**2 + units * mean**2
        return ArmAggregates(variant, units, converted=units // 2, tasks=2 * units,
                             successful_tasks=units, sums={"cost": total},
                             sumsqs={"cost": sumsq}, p95s={"cost": 2 * mean})  # fmt: skip

    spec = agent_spec("exp_cost", primary_metric="avg_cost")
    cheaper = compute_results(spec, [arm("v_a", 600, 0.030, 0.01), arm("v_b", 600, 0.025, 0.01)])
    assert not cheaper.higher_is_better and cheaper.primary_metric == "avg_cost"
    assert cheaper.status == "significant"
    assert cheaper.winner is not None and cheaper.winner.id == "v_b"
    assert cheaper.variants[1].value == pytest.approx(0.025)
    assert cheaper.lift == pytest.approx(-1 / 6)
    welch = frequentist.welch_t_test(0.030, 0.01**2, 600, 0.025, 0.01**2, 600)
    assert cheaper.p_value == pytest.approx(welch.p_value)
    dearer = compute_results(spec, [arm("v_a", 600, 0.025, 0.01), arm("v_b", 600, 0.030, 0.01)])
    assert dearer.status == "guardrail"
    # On the success rate (the default metric), the same arms are indistinguishable.
    assert compute_results(agent_spec("exp_cost"), [arm("v_a", 600, 0.03, 0.01),
                           arm("v_b", 600, 0.025, 0.01)]).status == "running"  # fmt: skip


def test_the_same_data_gives_the_same_numbers() -> None:
    arms = web_arms((800, 90), (800, 100), (800, 95))
    spec = web_spec("exp_stable", (CONTROL, B, VariantSpec("v_c", "Calm", False, 5000)))
    first, again = compute_results(spec, arms), compute_results(spec, arms)
    assert first == again
    assert first.rules.seed == monte_carlo_seed("exp_stable") == monte_carlo_seed("exp_stable")
    assert monte_carlo_seed("exp_stable") != monte_carlo_seed("exp_stable2")
    assert first.mc_error is not None and 0 < first.mc_error < 0.01
    other = compute_results(msgspec.structs.replace(spec, id="exp_stable2"), arms)
    assert other.rules.seed != first.rules.seed
    assert other.variants[1].prob_to_win != first.variants[1].prob_to_win


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


def test_what_the_results_cannot_judge_is_said_not_guessed() -> None:
    with pytest.raises(ValueError, match="2"):
        compute_results(web_spec("exp_one", (CONTROL,)), [])
    no_goal = compute_results(web_spec("exp_no_goal", goals=()), web_arms((900, 0), (900, 0)))
    assert no_goal.status == "collecting" and "no goal" in no_goal.warnings[0]
    # Units of a variant the experiment no longer has are left out, and said so.
    stray = web_arms((600, 60), (600, 60), (50, 5))
    results = compute_results(web_spec("exp_stray"), stray)
    assert results.units == 1200 and "50 units" in results.warnings[0]
    # Without a control flag the first variant is the control.
    flagless = (VariantSpec("v_a", "A", False, 5000), VariantSpec("v_b", "B", False, 5000))
    results = decide((1000, 100), (1000, 150), variants=flagless)
    assert results.variants[0].is_control and results.winner == results.leader
    assert any("control" in w for w in results.warnings)
