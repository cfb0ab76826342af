"""The decision rules of docs/statistics.md, on aggregates."""

from __future__ import annotations

import msgspec
import pytest

from analytics import frequentist, sequential
from analytics.aggregates import ArmAggregates, VariantSpec
from analytics.results import compute_results, monte_carlo_seed
from tests.support import BOLD, CONTROL, agent_spec, decide, web_arms, web_spec


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
    assert results.rules.method == "sequential"
    assert results.leader is not None and results.leader.id == "v_b"
    assert results.p_value is not None and results.p_value > 0.05
    # The observed lift would need many more units to be detected by the sequential test
    # at alpha 0.05, power 0.8: more than a fixed-horizon test would.
    std_dev = ((0.1 * 0.9 + 0.105 * 0.895) / 2) ** 0.5
    need = sequential.units_per_arm(std_dev, 0.005, 0.05, 0.8)
    assert [v.samples_needed for v in results.variants] == [need - 1000, need - 1000]
    fixed = decide((1000, 100), (1000, 105), sample_size=1000)
    assert fixed.rules.method == "fixed_horizon" and fixed.status == "no_winner"
    rate_b = 105 / 1000
    fixed_need = frequentist.units_per_arm_for_proportions(
        rate_b, (0.1 - rate_b) / rate_b, 0.05, 0.8
    )
    assert 1000 < fixed_need < need
    assert [v.samples_needed for v in fixed.variants] == [fixed_need - 1000] * 2


def test_significant_needs_both_the_probability_and_the_p_value() -> None:
    results = decide((1000, 100), (1000, 150))
    assert results.status == "significant"
    assert results.winner is not None and results.winner.id == "v_b"
    assert results.prob_to_win is not None and results.prob_to_win >= 0.95
    assert results.samples_needed == 0
    assert results.lift == pytest.approx(0.5)
    assert results.lift_interval is not None and results.lift_interval[0] > 0
    # The p-value shown is the one decided on: always valid without a sample size.
    assert results.p_value == pytest.approx(
        float(sequential.proportions_p_value(100, 1000, 150, 1000))
    )
    # A stricter confidence on the same data at a fixed horizon: P = 0.99964 passes
    # 0.9995, p = 0.00072 does not.
    strict = decide((1000, 100), (1000, 150), confidence=0.9995, sample_size=1000)
    assert strict.variants[1].prob_to_win is not None
    assert strict.variants[1].prob_to_win >= 0.9995
    assert strict.p_value == pytest.approx(frequentist.two_proportion_p_value(100, 1000, 150, 1000))
    assert strict.status == "no_winner" and strict.rules.alpha == pytest.approx(0.0005)


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
    pair = (0.030, 0.01**2, 600, 0.025, 0.01**2, 600)
    assert cheaper.p_value == pytest.approx(float(sequential.means_p_value(*pair)), rel=1e-12)
    fixed = compute_results(
        msgspec.structs.replace(spec, sample_size=600),
        [arm("v_a", 600, 0.030, 0.01), arm("v_b", 600, 0.025, 0.01)],
    )
    assert fixed.status == "significant"
    assert fixed.p_value == pytest.approx(frequentist.welch_t_test(*pair).p_value, rel=1e-12)
    dearer = compute_results(spec, [arm("v_a", 600, 0.025, 0.01), arm("v_b", 600, 0.030, 0.01)])
    assert dearer.status == "guardrail"
    # On the success rate (the default metric), the same arms are indistinguishable.
    assert compute_results(agent_spec("exp_cost"), [arm("v_a", 600, 0.03, 0.01),
                           arm("v_b", 600, 0.025, 0.01)]).status == "running"  # fmt: skip


def test_the_same_data_gives_the_same_numbers() -> None:
    arms = web_arms((800, 90), (800, 100), (800, 95))
    spec = web_spec("exp_stable", (CONTROL, BOLD, VariantSpec("v_c", "Calm", False, 5000)))
    first, again = compute_results(spec, arms), compute_results(spec, arms)
    assert first == again
    assert first.rules.seed == monte_carlo_seed("exp_stable") == monte_carlo_seed("exp_stable")
    assert monte_carlo_seed("exp_stable") != monte_carlo_seed("exp_stable2")
    assert first.mc_error is not None and 0 < first.mc_error < 0.01
    other = compute_results(msgspec.structs.replace(spec, id="exp_stable2"), arms)
    assert other.rules.seed != first.rules.seed
    assert other.variants[1].prob_to_win != first.variants[1].prob_to_win


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
    flagless = (VariantSpec("v_a", "A", False, 5000), VariantSpec("v_b", "BOLD", False, 5000))
    results = decide((1000, 100), (1000, 150), variants=flagless)
    assert results.variants[0].is_control and results.winner == results.leader
    assert any("control" in w for w in results.warnings)
