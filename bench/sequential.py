"""Always-valid verdicts under peeking (issue 21): simulated experiments read at every look,
through the results' own decision code (`analytics.results.compute_results`).

For each metric, 1,500 two-arm agent experiments (by default) are generated and their
results read:

- **every 100 units per arm** up to 5,000 per arm (50 looks), and
- **as the decider does**: a look every 30 s (`SPLITEDGE_DECISION_INTERVAL`) at a traffic
  of 1 unit per second (Poisson arrivals, each unit to either arm with probability 1/2,
  so the arms are unequal at most looks), until an arm passes 5,000 units (about 330
  looks).

Metrics: ``rate`` (primary ``task_completion``, success rate 0.25) and ``cost`` (primary
``avg_cost``, lower is better; log-normal cost per unit with mean 0.01 and a coefficient
of variation of 1.8). Both have a cost bound of 30% (``max_cost_increase``) on that
cost, so the cost guardrail takes part in every verdict too.

Each row gives the share of A/A experiments (equal arms) that **ever** show a verdict
(``significant`` or ``guardrail``) at any look, with its binomial standard error, against
1 - confidence; and, with a true 10% relative improvement of the challenger (rate 0.25 to
0.275; cost 10% lower), the share that ever shows that winner (power), against the
fixed-horizon test at 5,000 units per arm (the same experiments with ``sample_size``
5,000, read at the horizon).

Speed: the statistics are vectorised over every experiment and look (the same functions
of `analytics.sequential` that the results call). A verdict needs a p-value below alpha,
so only the looks where one is (with a margin) go through `compute_results`, in order,
until the first verdict: the verdicts are those of the real code, and `check` (run with
``--check``, and by tests/test_sequential.py) confirms on random looks that no verdict is
ever missed and that the p-values agree.

    .venv/bin/python bench/sequential.py [--runs 1500] [--check 300] [--write]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy import special  # type: ignore[import-untyped]  # no stubs shipped

from analytics import sequential
from analytics.aggregates import ArmAggregates, ExperimentSpec, VariantSpec
from analytics.guardrails import EARLY_ALPHA_SHARE
from analytics.results import ExperimentResults, compute_results

Metric = Literal["rate", "cost"]
Cadence = Literal["every 100", "decider"]
IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]

MAX_UNITS = 5000
STEP = 100
DECIDER_INTERVAL_S = 30.0
TRAFFIC_PER_S = 1.0
RATE = 0.25
COST_MEAN = 0.01
COST_CV = 1.8
BOUND = 0.3
LIFT = 0.10
CHUNK = 250
# A look goes through compute_results when a p-value is below alpha times this: the
# vectorised p-values equal the results' up to rounding, far inside this margin.
SCREEN_MARGIN = 1.05
# Status of a run that never showed a verdict.
NONE = "none"

SECTION = """\
## Always-valid verdicts (issue 21)

Without a `sample_size`, every verdict (winner, primary-metric guardrail, cost guardrail,
and so the decider's automatic stop) reads always-valid p-values: a mixture SPRT
(`analytics.sequential`, docs/statistics.md section 5). Simulated agent experiments are
read at every look through `analytics.results.compute_results`; "ever a verdict" is the
share of A/A experiments that show `significant` or `guardrail` at any look, which must
stay within binomial error of 1 - confidence. Power: a true 10% relative improvement,
against the fixed-horizon test at the same 5,000 units per arm.

    .venv/bin/python bench/sequential.py --check 300 --write"""


@dataclass
class Streams:
    """Cumulative per-arm sums of a batch of experiments, indexed [run, arm, units]
    (index 0 is the empty prefix): successes, cost, cost squared."""

    successes: FloatArray
    cost: FloatArray
    cost_sq: FloatArray

    def arms(self, run: int, units: tuple[int, int]) -> list[ArmAggregates]:
        """The aggregates of one run when its arms have these units."""
        return [
            ArmAggregates(
                variant, n, converted=int(self.successes[run, arm, n]), tasks=n,
                successful_tasks=int(self.successes[run, arm, n]),
                sums={"cost": float(self.cost[run, arm, n])},
                sumsqs={"cost": float(self.cost_sq[run, arm, n])},
            )
            for arm, (variant, n) in enumerate(zip(("a", "b"), units, strict=True))
        ]  # fmt: skip


def simulate(rng: np.random.Generator, metric: Metric, lift: float, runs: int) -> Streams:
    """``runs`` experiments of ``MAX_UNITS`` units per arm; the challenger (arm 1) is
    better by ``lift`` (relative) on the primary metric."""
    rates = np.array([RATE, RATE * (1 + lift) if metric == "rate" else RATE])
    means = np.array([COST_MEAN, COST_MEAN * (1 - lift) if metric == "cost" else COST_MEAN])
    sigma = math.sqrt(math.log1p(COST_CV**2))
    success = rng.random((runs, 2, MAX_UNITS)) < rates[None, :, None]
    cost = np.exp(rng.normal(-0.5 * sigma**2, sigma, (runs, 2, MAX_UNITS)))
    cost *= means[None, :, None]

    def cumulative(values: NDArray[np.float64] | NDArray[np.bool_]) -> FloatArray:
        out = np.zeros((runs, 2, MAX_UNITS + 1))
        np.cumsum(values, axis=2, out=out[:, :, 1:])
        return out

    return Streams(cumulative(success), cumulative(cost), cumulative(cost * cost))


def looks(rng: np.random.Generator, cadence: Cadence, runs: int) -> IntArray:
    """Units per arm at each look, [run, look, arm]; looks past the end are (0, 0)."""
    if cadence == "every 100":
        per_arm = np.arange(STEP, MAX_UNITS + 1, STEP)
        return np.broadcast_to(per_arm[None, :, None], (runs, len(per_arm), 2)).copy()
    expected = TRAFFIC_PER_S * DECIDER_INTERVAL_S / 2
    count = int(MAX_UNITS / expected * 1.2) + 20
    units = np.cumsum(rng.poisson(expected, (runs, count, 2)), axis=1)
    # The looks end before an arm passes the maximum (about 330 at this traffic).
    return np.where((units.max(axis=2) <= MAX_UNITS)[:, :, None], units, 0)


class _Moments(NamedTuple):
    """Per look [run, look]: units, successes, cost means and sample variances."""

    na: FloatArray
    nb: FloatArray
    sa: FloatArray
    sb: FloatArray
    mean_a: FloatArray
    var_a: FloatArray
    mean_b: FloatArray
    var_b: FloatArray


def _moments(streams: Streams, units: IntArray) -> _Moments:
    runs = np.arange(units.shape[0])[:, None]
    na, nb = units[:, :, 0].astype(np.float64), units[:, :, 1].astype(np.float64)

    def at(values: FloatArray, arm: int) -> FloatArray:
        picked: FloatArray = values[runs, arm, units[:, :, arm]]
        return picked

    with np.errstate(divide="ignore", invalid="ignore"):
        mean_a, mean_b = at(streams.cost, 0) / na, at(streams.cost, 1) / nb
        var_a = np.maximum(0.0, (at(streams.cost_sq, 0) - at(streams.cost, 0) * mean_a) / (na - 1))
        var_b = np.maximum(0.0, (at(streams.cost_sq, 1) - at(streams.cost, 1) * mean_b) / (nb - 1))
    sa, sb = at(streams.successes, 0), at(streams.successes, 1)
    return _Moments(na, nb, sa, sb, mean_a, var_a, mean_b, var_b)


def screen_p_values(
    streams: Streams, units: IntArray, metric: Metric
) -> tuple[FloatArray, FloatArray]:
    """The always-valid p-values of the primary metric and of the cost bound at every
    look, [run, look], as `compute_results` computes them (`analytics.sequential`)."""
    m = _moments(streams, units)
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == "rate":
            primary = sequential.proportions_p_value(m.sa, m.na, m.sb, m.nb)
        else:
            primary = sequential.means_p_value(m.mean_a, m.var_a, m.na, m.mean_b, m.var_b, m.nb)
        cost = sequential.excess_p_value(m.mean_a, m.var_a, m.na, m.mean_b, m.var_b, m.nb, BOUND)
    empty = (units < 2).any(axis=2)
    return np.where(empty, 1.0, primary), np.where(empty, 1.0, cost)


def fixed_screen_p_values(
    streams: Streams, units: IntArray, metric: Metric
) -> tuple[FloatArray, FloatArray]:
    """The fixed-horizon p-values of the primary metric and of the cost bound at every
    look, by the normal approximation: exact for the z-test of rates, never above the
    Welch t-tests' (a t tail is heavier than the normal's)."""
    m = _moments(streams, units)
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == "rate":
            pooled = (m.sa + m.sb) / (m.na + m.nb)
            z = (m.sb / m.nb - m.sa / m.na) / np.sqrt(pooled * (1 - pooled) * (1 / m.na + 1 / m.nb))
        else:
            z = (m.mean_b - m.mean_a) / np.sqrt(m.var_a / m.na + m.var_b / m.nb)
        primary = 2 * special.ndtr(-np.abs(z))
        scale = 1 + BOUND
        excess = (m.mean_b - scale * m.mean_a) / np.sqrt(
            scale * scale * m.var_a / m.na + m.var_b / m.nb
        )
        cost = special.ndtr(-excess)
    empty = (units < 2).any(axis=2)
    return np.where(empty | np.isnan(primary), 1.0, primary), np.where(empty, 1.0, cost)


def spec(metric: Metric, run: int, confidence: float, sample_size: int | None) -> ExperimentSpec:
    return ExperimentSpec(
        id=f"sim-{metric}-{run}", workspace_id="w", kind="agent", status="running",
        variants=(VariantSpec("a", "control", True, 5000),
                  VariantSpec("b", "challenger", False, 5000)),
        sample_size=sample_size, confidence=confidence,
        primary_metric="task_completion" if metric == "rate" else "avg_cost",
        max_cost_increase=BOUND,
    )  # fmt: skip


@dataclass
class Outcome:
    """Per run: the first verdict (``significant``/``guardrail``, or `NONE`), the arm it
    names (1 is the challenger), and the larger arm's units at that look."""

    status: list[str]
    arm: list[int | None]
    units: list[int]

    def share(self, status: str, arm: int | None = None) -> float:
        hits = sum(
            1 for s, a in zip(self.status, self.arm, strict=True)
            if s == status and (arm is None or a == arm)
        )  # fmt: skip
        return hits / len(self.status)


def _verdict(results: ExperimentResults) -> tuple[str, int | None] | None:
    if results.status not in ("significant", "guardrail"):
        return None
    ref = results.winner if results.status == "significant" else results.guardrail
    ids = [v.id for v in results.variants]
    return results.status, ids.index(ref.id) if ref else None


def first_verdicts(
    streams: Streams,
    units: IntArray,
    metric: Metric,
    confidence: float,
    sample_size: int | None,
    peeking: bool = False,
) -> Outcome:
    """Each run's first verdict over its looks, by `compute_results` at every look that
    could give one. ``sample_size``: the fixed-horizon method, whose early looks are
    guardrails at alpha * EARLY_ALPHA_SHARE and whose horizon look is always computed.
    ``peeking``: every look read as a fixed-horizon test whose horizon it is (a
    ``sample_size`` of the units so far), what acting on fixed-horizon p-values at every
    look amounts to."""
    alpha = 1 - confidence
    screen = fixed_screen_p_values if peeking else screen_p_values
    primary, cost = screen(streams, units, metric)
    level = alpha * (EARLY_ALPHA_SHARE if sample_size else 1.0) * SCREEN_MARGIN
    candidate = (np.minimum(primary, cost) < level) & (units.min(axis=2) > 0)
    if sample_size is not None:
        candidate |= units.min(axis=2) >= sample_size
    outcome = Outcome([NONE] * len(units), [None] * len(units), [0] * len(units))
    for run, look in zip(*np.nonzero(candidate), strict=True):
        if outcome.status[run] != NONE:
            continue
        if sample_size is not None and look > 0 and units[run, look - 1].min() >= sample_size:
            continue  # the horizon look was the last: the decider completes it there
        n = (int(units[run, look, 0]), int(units[run, look, 1]))
        horizon = min(n) if peeking else sample_size
        found = _verdict(compute_results(spec(metric, run, confidence, horizon),
                                         streams.arms(run, n)))  # fmt: skip
        if found is not None:
            outcome.status[run], outcome.arm[run] = found
            outcome.units[run] = max(n)
    return outcome


def check(streams: Streams, units: IntArray, metric: Metric, samples: int, seed: int) -> int:
    """On ``samples`` random looks, `compute_results` against the screen: a verdict only
    where the screen lets the look through, and the same p-values. The looks with a
    verdict among them."""
    rng = np.random.default_rng(seed)
    primary, cost = screen_p_values(streams, units, metric)
    valid = np.argwhere(units.min(axis=2) >= 2)
    verdicts = 0
    for run, look in valid[rng.choice(len(valid), size=min(samples, len(valid)), replace=False)]:
        n = (int(units[run, look, 0]), int(units[run, look, 1]))
        for confidence in (0.95, 0.9):
            results = compute_results(spec(metric, run, confidence, None), streams.arms(run, n))
            shown = results.variants[1].p_value
            assert shown is not None and math.isclose(shown, primary[run, look], rel_tol=1e-9)
            if _verdict(results) is not None:
                verdicts += 1
                assert min(primary[run, look], cost[run, look]) < (1 - confidence) * SCREEN_MARGIN
    return verdicts


@dataclass
class Row:
    metric: Metric
    cadence: Cadence
    confidence: float
    aa: Outcome
    lift: Outcome
    fixed_aa: Outcome | None
    fixed_lift: Outcome | None
    peeking: Outcome | None


def run_scenarios(runs: int, seed: int, metrics: tuple[Metric, ...], checks: int) -> Iterator[Row]:
    """Every metric, cadence and confidence; the same experiments for every confidence
    and method (common random numbers: the comparisons are paired)."""
    for metric in metrics:
        for cadence in ("every 100", "decider"):
            results: dict[tuple[float, str], list[Outcome]] = {}
            for chunk, start in enumerate(range(0, runs, CHUNK)):
                size = min(CHUNK, runs - start)
                rng = np.random.default_rng([seed, chunk, metrics.index(metric)])
                units = looks(rng, cadence, size)
                for lift in (0.0, LIFT):
                    streams = simulate(rng, metric, lift, size)
                    if checks and lift == 0.0 and chunk == 0:
                        found = check(streams, units, metric, checks, seed)
                        print(f"check {metric}/{cadence}: {checks} looks, {found} verdicts, "
                              "screen and p-values agree", flush=True)  # fmt: skip
                    for confidence in (0.95, 0.9):
                        key = f"{lift}"
                        results.setdefault((confidence, key), []).append(
                            first_verdicts(streams, units, metric, confidence, None)
                        )
                        if cadence == "every 100":
                            results.setdefault((confidence, "fixed " + key), []).append(
                                first_verdicts(streams, units, metric, confidence, MAX_UNITS)
                            )
                            if lift == 0.0:
                                results.setdefault((confidence, "peeking"), []).append(
                                    first_verdicts(
                                        streams, units, metric, confidence, None, peeking=True
                                    )  # fmt: skip
                                )
            for confidence in (0.95, 0.9):

                def merged(key: str, c: float = confidence) -> Outcome | None:
                    parts = results.get((c, key))
                    if parts is None:
                        return None
                    return Outcome(
                        [s for p in parts for s in p.status],
                        [a for p in parts for a in p.arm],
                        [u for p in parts for u in p.units],
                    )

                aa, lifted = merged("0.0"), merged(f"{LIFT}")
                assert aa is not None and lifted is not None
                yield Row(metric, cadence, confidence, aa, lifted, merged("fixed 0.0"),
                          merged(f"fixed {LIFT}"), merged("peeking"))  # fmt: skip


def binomial_se(share: float, runs: int) -> float:
    return math.sqrt(max(share * (1 - share), 1e-12) / runs)


def within(share: float, target: float, runs: int) -> bool:
    """At most ``target`` up to twice its binomial standard error."""
    return share <= target + 2 * binomial_se(target, runs)


def table(rows: list[Row], runs: int) -> list[str]:
    lines = [
        "| metric | looks | c | A/A ever a verdict (winner + guardrail) | 1 − c | ratio | "
        "within | power, sequential | power, fixed at 5,000 | ratio | median units/arm at "
        "the winner |",
        "|---|---|---:|---|---:|---:|:---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        alpha = 1 - row.confidence
        verdict = 1 - row.aa.share(NONE)
        winners, guards = row.aa.share("significant"), row.aa.share("guardrail")
        power = row.lift.share("significant", 1)
        fixed = row.fixed_lift.share("significant", 1) if row.fixed_lift else None
        at = [u for s, a, u in zip(row.lift.status, row.lift.arm, row.lift.units, strict=True)
              if s == "significant" and a == 1]  # fmt: skip
        lines.append(
            f"| {row.metric} | {row.cadence} | {row.confidence} | {verdict:.2%} ± "
            f"{binomial_se(verdict, runs):.2%} ({winners:.2%} + {guards:.2%}) | {alpha:.0%} | "
            f"{verdict / alpha:.2f} | {'yes' if within(verdict, alpha, runs) else 'NO'} | "
            f"{power:.1%} | {f'{fixed:.1%}' if fixed is not None else '—'} | "
            f"{f'{power / fixed:.2f}' if fixed else '—'} | "
            f"{int(np.median(at)) if at else '—'} |"
        )
    fixed_rows = [r for r in rows if r.fixed_aa is not None]
    lines += [
        "",
        "The fixed-horizon method (`sample_size` 5,000) on the same A/A experiments, read "
        "every 100 units per arm (early guardrail looks at alpha / 10, always valid; the "
        "fixed test at the horizon):",
        "",
        "| metric | c | ever a verdict | 1 − c | within | for reference: fixed-horizon "
        "p-values acted on at every look |",
        "|---|---:|---|---:|:---:|---:|",
    ]
    for row in fixed_rows:
        assert row.fixed_aa is not None and row.peeking is not None
        share, alpha = 1 - row.fixed_aa.share(NONE), 1 - row.confidence
        ok = "yes" if within(share, alpha, runs) else "NO"
        peeked = 1 - row.peeking.share(NONE)
        lines.append(
            f"| {row.metric} | {row.confidence} | {share:.2%} ± {binomial_se(share, runs):.2%} "
            f"| {alpha:.0%} | {ok} | {peeked:.1%} ± {binomial_se(peeked, runs):.1%} |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=20261205)
    parser.add_argument("--check", type=int, default=0, help="looks to cross-check per batch")
    parser.add_argument("--metric", choices=("rate", "cost"), action="append")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args()
    from report import command_line, date_line, machine, publish

    metrics: tuple[Metric, ...] = tuple(args.metric or ("rate", "cost"))
    started = time.perf_counter()
    rows = list(run_scenarios(args.runs, args.seed, metrics, args.check))
    elapsed = time.perf_counter() - started
    report = [
        command_line("sequential.py", sys.argv[1:]),
        date_line(),
        f"- machine: {machine()}; {args.runs:,} experiments per row, {elapsed:.0f} s in all",
        f"- rate: success 0.25 (lift: 0.275); cost: log-normal, mean {COST_MEAN}, CV "
        f"{COST_CV} (lift: 10% cheaper); cost bound {BOUND:.0%} in both; decider: a look "
        f"every {DECIDER_INTERVAL_S:.0f} s at {TRAFFIC_PER_S:g} unit/s; ± is one binomial "
        "standard error; `within`: at most 1 − c plus two standard errors of it",
        "",
        *table(rows, args.runs),
    ]
    figures = {
        f"{r.metric}/{r.cadence}/{r.confidence}": {
            "aa_verdict": 1 - r.aa.share(NONE),
            "power_sequential": r.lift.share("significant", 1),
            "power_fixed": r.fixed_lift.share("significant", 1) if r.fixed_lift else None,
        }
        for r in rows
    }
    publish("sequential.py", report, SECTION, args.write, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
