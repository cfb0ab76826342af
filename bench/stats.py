"""The Bayesian engine's speed at equal error, against numpy sampling and the closed form,
and its agreement with GrowthBook's engine (gbstats 0.8).

1. **Speed at a Monte Carlo error <= 1e-4.** For 2, 5 and 10 arms, `beta_binomial` (prob
   to win, P(beat control), expected loss, intervals) at `DEFAULT_DRAWS`, doubled until
   every reported standard error is <= 1e-4. The baseline is plain Monte Carlo with numpy's
   ``Generator.beta``: a pilot run of 200k draws per arm gives the probabilities, the
   hardest one (largest p(1 - p)) sets the draws it needs, N = p(1 - p) / 1e-8, for a
   standard error of 1e-4 on every probability. numpy is timed at min(N, 1M) draws per arm
   and scaled linearly to N when N is larger (the table says so). The exact closed form
   (`prob_beats_exact`, P(beat control) of every arm) is timed alongside.
2. **gbstats.** Chance to win of B over A from `EffectBayesianABTest` with
   ``difference_type="absolute"`` (and "relative"), beside ours and the closed form.
3. **JIT.** `warm_up()` in a fresh process with an empty Numba cache (compile), then again
   with that cache (load), as at a server restart.

    .venv/bin/python bench/stats.py [--repeats 30] [--write]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numba
import numpy as np
from gbstats.bayesian.tests import EffectBayesianABTest, EffectBayesianConfig
from gbstats.models.statistics import ProportionStatistic

from analytics.bayes import DEFAULT_DRAWS, BayesResult, beta_binomial, prob_beats_exact, warm_up
from report import command_line, date_line, machine, publish

BENCH_DIR = Path(__file__).resolve().parent
TARGET_SE = 1e-4
PILOT_DRAWS = 200_000
NUMPY_TIMED_MAX = 1_000_000
RESULTS_INTRO = """\
## bench/stats.py: Bayesian prob-to-win at equal Monte Carlo error, against numpy

`analytics.bayes.beta_binomial` (conditional Monte Carlo over stratified, antithetic
points: every arm's CDF is evaluated exactly at each point instead of being sampled) and
plain Monte Carlo with numpy's `Generator.beta`, each drawing what it needs for a standard
error <= 1e-4 on every probability (prob to win and P(beat control)), in one run. The
closed form (`prob_beats_exact`) is timed beside them, and the chance to win is compared
with GrowthBook's gbstats 0.8 (`EffectBayesianABTest`, `difference_type="absolute"`),
whose normal approximation holds for moderate n and rates away from 0 and 1.

    .venv/bin/python bench/stats.py --write

Targets: >= 10x faster than numpy at equal error; <= 5 ms for 5 arms. Met."""

SCENARIOS: dict[int, tuple[list[int], list[int]]] = {
    2: ([480, 530], [5000, 5000]),
    5: ([480, 530, 500, 520, 490], [5000] * 5),
    10: ([480 + 7 * i for i in range(10)], [5000] * 10),
}

# Shared with tests/test_bayes_gbstats.py: the cases within gbstats' domain, then those
# outside it (the table's note speaks of these last rows).
_GBSTATS_VECTORS = json.loads((BENCH_DIR.parent / "tests" / "vectors" / "gbstats.json").read_text())
GBSTATS_CASES = [*_GBSTATS_VECTORS["within"], *_GBSTATS_VECTORS["outside"]]


def median_ms(call: Callable[[], object], repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def max_se(result: BayesResult) -> float:
    errors = [arm.prob_best_se for arm in result.arms]
    errors += [arm.prob_beat_control_se or 0.0 for arm in result.arms]
    return max(errors)


def numpy_estimate(
    rng: np.random.Generator, conversions: list[int], units: list[int], draws: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plain Monte Carlo: P(best), P(beat control 0), expected loss, from ``draws`` per arm."""
    samples = np.stack([rng.beta(1 + c, 1 + n - c, draws) for c, n in zip(conversions, units)])
    best = np.bincount(samples.argmax(axis=0), minlength=len(units)) / draws
    beat = (samples > samples[0]).mean(axis=1)
    loss = samples.max(axis=0).mean() - samples.mean(axis=1)
    return best, beat, loss


def speed_table(repeats: int) -> tuple[list[str], dict[str, dict[str, float]]]:
    """The table's lines, and its figures by number of arms."""
    figures: dict[str, dict[str, float]] = {}
    rows = [
        "| arms | ours: draws | ours: max se | ours ms | numpy draws for se 1e-4 | numpy ms "
        "| numpy / ours | exact P(beat) ms | max abs(ours - exact) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rng = np.random.default_rng(1)
    for arms, (conversions, units) in SCENARIOS.items():
        draws = DEFAULT_DRAWS
        result = beta_binomial(conversions, units, draws=draws)
        while max_se(result) > TARGET_SE:
            draws *= 2
            result = beta_binomial(conversions, units, draws=draws)
        ours = median_ms(lambda: beta_binomial(conversions, units, draws=draws), repeats)
        best, beat, _ = numpy_estimate(rng, conversions, units, PILOT_DRAWS)
        hardest = max(float(np.max(best * (1 - best))), float(np.max(beat[1:] * (1 - beat[1:]))))
        needed = math.ceil(hardest / TARGET_SE**2)
        timed = min(needed, NUMPY_TIMED_MAX)
        numpy_ms = median_ms(
            lambda: numpy_estimate(rng, conversions, units, timed), max(3, repeats // 10)
        )
        numpy_ms *= needed / timed
        scaled = "" if timed == needed else f" (timed at {timed:,}, scaled)"

        def exact() -> list[float]:
            return [
                prob_beats_exact(conversions[0], units[0], c, n)
                for c, n in zip(conversions[1:], units[1:], strict=True)
            ]

        exact_ms = median_ms(exact, repeats)
        gaps = [
            abs((arm.prob_beat_control or 0.0) - value)
            for arm, value in zip(result.arms[1:], exact(), strict=True)
        ]
        rows.append(
            f"| {arms} | {result.draws:,} | {max_se(result):.1e} | {ours:.2f} | "
            f"{needed:,}{scaled} | {numpy_ms:,.0f} | {numpy_ms / ours:,.0f}x | "
            f"{exact_ms:.3f} | {max(gaps):.1e} |"
        )
        print(rows[-1], flush=True)
        figures[str(arms)] = {
            "ours_ms": ours,
            "numpy_ms": numpy_ms,
            "exact_ms": exact_ms,
            "max_abs_gap_exact": max(gaps),
        }
    return rows, figures


def gbstats_chance(ca: int, na: int, cb: int, nb: int, difference_type: str) -> float:
    test = EffectBayesianABTest(
        ProportionStatistic(n=na, sum=ca),
        ProportionStatistic(n=nb, sum=cb),
        EffectBayesianConfig(difference_type=difference_type),
    )
    return float(test.compute_result().chance_to_win)


def gbstats_table(repeats: int) -> tuple[list[str], dict[str, float]]:
    """The table's lines, and the agreement and time per call within gbstats' domain."""
    within = len(_GBSTATS_VECTORS["within"])
    worst = 0.0
    rows = [
        "| A | B | ours (se) | exact | gbstats absolute | gbstats relative "
        "| abs(ours - gbstats abs) | within 0.01 |",
        "|---|---|---:|---:|---:|---:|---:|:---:|",
    ]
    for ca, na, cb, nb in GBSTATS_CASES:
        arm = beta_binomial([ca, cb], [na, nb]).arms[1]
        assert arm.prob_beat_control is not None
        absolute = gbstats_chance(ca, na, cb, nb, "absolute")
        gap = abs(arm.prob_beat_control - absolute)
        if len(rows) - 2 < within:
            worst = max(worst, gap)
        rows.append(
            f"| {ca:,}/{na:,} | {cb:,}/{nb:,} | {arm.prob_beat_control:.6f} "
            f"({arm.prob_beat_control_se:.0e}) | {prob_beats_exact(ca, na, cb, nb):.6f} | "
            f"{absolute:.6f} | {gbstats_chance(ca, na, cb, nb, 'relative'):.6f} | "
            f"{gap:.6f} | {'yes' if gap < 0.01 else 'no'} |"
        )
    rows += [
        "",
        "The last two rows are outside gbstats' domain: with 50 conversions the posterior "
        "is skewed and gbstats' normal approximation is off by 0.02; for 0/10 it returns "
        "its uninformative 0.5 (an arm with zero variance). The closed form agrees with "
        "ours on every row.",
    ]
    ca, na, cb, nb = GBSTATS_CASES[0]
    ours_ms = median_ms(lambda: beta_binomial([ca, cb], [na, nb]), repeats)
    gbstats_ms = median_ms(lambda: gbstats_chance(ca, na, cb, nb, "absolute"), repeats)
    rows += [
        "",
        f"Time per call, {ca:,}/{na:,} against {cb:,}/{nb:,} (medians of {repeats}): ours "
        f"(the whole `beta_binomial`) {ours_ms:.3f} ms, gbstats `compute_result` "
        f"{gbstats_ms:.3f} ms.",
    ]
    figures = {
        "cases_within": within,
        "max_abs_gap_within": worst,
        "ours_ms": ours_ms,
        "gbstats_ms": gbstats_ms,
    }
    return rows, figures


def jit_times() -> list[str]:
    code = (
        "import time\n"
        "start = time.perf_counter()\n"
        "from analytics import bayes\n"
        "bayes.warm_up()\n"
        "print(time.perf_counter() - start)\n"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        figures = []
        for _ in range(2):
            out = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            )
            figures.append(float(out.stdout.strip()))
    compile_s, load_s = figures
    return [
        f"- JIT: import + `warm_up()` in a fresh process: {compile_s:.1f} s with an empty Numba "
        f"cache (compiling), {load_s:.2f} s with the cache (a restart)."
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args()
    warm_up()
    report = [
        command_line("stats.py", sys.argv[1:]),
        date_line(),
        f"- machine: {machine()}; Python {platform.python_version()}, numpy "
        f"{np.__version__}, numba {numba.__version__} ({numba.get_num_threads()} threads)",
        f"- medians of {args.repeats} calls (numpy: of {max(3, args.repeats // 10)}); "
        "`ours ms` is the whole `beta_binomial` call (probabilities, loss, rate and lift "
        "intervals)",
        "",
    ]
    print("speed at equal error", flush=True)
    speed, speed_figures = speed_table(args.repeats)
    report += speed
    report += ["", "Chance to win of B over A, against gbstats 0.8:", ""]
    chance, chance_figures = gbstats_table(args.repeats)
    report += chance
    report += [""]
    report += jit_times()
    figures = {"speed": speed_figures, "gbstats": chance_figures}
    publish("stats.py", report, RESULTS_INTRO, args.write, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
