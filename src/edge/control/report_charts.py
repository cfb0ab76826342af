"""The charts of the results pages (the signed report, `edge.control.report_page`, and
the console's, `edge.control.console.results`), as geometry for their shared SVG
templates (``templates/results_parts.html``): the posterior density of every arm's
primary metric on one shared axis (a Beta for a rate, a normal for a mean), the
cumulative conversion rate per day or per hour, and each metric's lift intervals.

Everything here is numbers and the labels' text; the templates draw and escape them, with
presentation attributes only (the console's CSP allows no inline style).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

import msgspec

from analytics.special import log_beta, norm_ppf

if TYPE_CHECKING:
    from analytics.aggregates import Bucket, TimelinePoint
    from analytics.metric_results import MetricResult
    from analytics.results import ExperimentResults

__all__ = [
    "FRAME",
    "LIFT_FRAME",
    "Chart",
    "Curve",
    "Frame",
    "Label",
    "LiftBar",
    "LiftPlot",
    "color",
    "lift_plot",
    "number",
    "percent",
    "posterior_chart",
    "timeline_chart",
]

_PALETTE = (
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
    "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22",
)  # fmt: skip
_POINTS = 241


class Frame(msgspec.Struct, frozen=True):
    """A chart's size and its plot area's margins, in pixels."""

    width: int = 680
    height: int = 260
    left: int = 56
    right: int = 16
    top: int = 12
    bottom: int = 36

    @property
    def plot_width(self) -> int:
        """The width of the plot area."""
        return self.width - self.left - self.right

    @property
    def plot_height(self) -> int:
        """The height of the plot area."""
        return self.height - self.top - self.bottom

    @property
    def baseline(self) -> int:
        """The y of the x axis."""
        return self.height - self.bottom


FRAME = Frame()


class Label(msgspec.Struct, frozen=True):
    """A tick label: its position along its axis (pixels) and its text."""

    position: float
    text: str


class Curve(msgspec.Struct, frozen=True):
    """One arm's line: its variant, its colour and its points (``x,y`` pixel pairs,
    separated as the SVG element of its chart wants them)."""

    variant_id: str
    name: str
    color: str
    points: str


class Chart(msgspec.Struct, frozen=True):
    """The tick labels and the curves of one chart."""

    x_labels: list[Label]
    y_labels: list[Label]
    curves: list[Curve]


def color(index: int) -> str:
    """The colour of the arm at ``index``, the same in the table and both charts."""
    return _PALETTE[index % len(_PALETTE)]


def percent(value: float | None, digits: int = 2) -> str:
    """A fraction as a percentage, "—" for none."""
    return "—" if value is None else f"{100 * value:.{digits}f}%"


def number(value: float | None) -> str:
    """A value in four significant digits, "—" for none."""
    return "—" if value is None else f"{value:.4g}"


class _Density(msgspec.Struct):
    """One arm's posterior of its primary metric: a Beta for a rate, else a normal."""

    index: int
    beta: tuple[float, float] | None
    normal: tuple[float, float] | None

    def mean_sd(self) -> tuple[float, float]:
        if self.beta is not None:
            a, b = self.beta
            return a / (a + b), math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
        assert self.normal is not None
        return self.normal

    def pdf(self, x: float) -> float:
        if self.beta is not None:
            a, b = self.beta
            x = min(max(x, 1e-300), 1 - 1e-16)
            return math.exp((a - 1) * math.log(x) + (b - 1) * math.log1p(-x) - log_beta(a, b))
        assert self.normal is not None
        mean, sd = self.normal
        return math.exp(-0.5 * ((x - mean) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))


def _densities(results: ExperimentResults) -> list[_Density]:
    """The posterior of every arm that has one: Beta(1 + conversions, 1 + failures) for a
    rate (the results' Beta(1, 1) prior); for a mean, the normal whose central interval
    at the results' credibility is the arm's credible interval."""
    z = norm_ppf(0.5 + results.rules.confidence / 2)
    out = []
    for i, v in enumerate(results.variants):
        if v.conversions is not None:
            out.append(_Density(i, (1.0 + v.conversions, 1.0 + v.units - v.conversions), None))
        elif v.interval is not None and v.interval[1] > v.interval[0]:
            low, high = v.interval
            out.append(_Density(i, None, ((low + high) / 2, (high - low) / (2 * z))))
    return out


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values spanning [lo, hi]."""
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def posterior_chart(results: ExperimentResults) -> Chart | None:
    """The posterior densities (a path each), scaled to the highest peak; None while no
    arm has one."""
    densities = _densities(results)
    if not densities:
        return None
    rate = densities[0].beta is not None
    spans = [d.mean_sd() for d in densities]
    lo = min(m - 5 * s for m, s in spans)
    hi = max(m + 5 * s for m, s in spans)
    if rate:
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    xs = [lo + (hi - lo) * i / (_POINTS - 1) for i in range(_POINTS)]
    curves = [[d.pdf(x) for x in xs] for d in densities]
    peak = max(max(c) for c in curves) or 1.0

    def px(x: float) -> float:
        return FRAME.left + (x - lo) / (hi - lo) * FRAME.plot_width

    drawn = []
    for d, ys in zip(densities, curves, strict=True):
        v = results.variants[d.index]
        points = " L".join(
            f"{px(x):.1f},{FRAME.top + FRAME.plot_height * (1 - y / peak):.1f}"
            for x, y in zip(xs, ys, strict=True)
        )
        drawn.append(Curve(v.id, v.name, color(d.index), points))
    x_labels = [Label(px(t), percent(t, 1) if rate else number(t)) for t in _ticks(lo, hi)]
    return Chart(x_labels, [], drawn)


_BUCKET_LENGTH = {"day": timedelta(days=1), "hour": timedelta(hours=1)}


def _bucket_label(start: datetime, bucket: Bucket) -> str:
    return start.date().isoformat() if bucket == "day" else start.strftime("%m-%d %H:00")


def timeline_chart(
    arms: Sequence[tuple[str, str]],
    timeline: Sequence[TimelinePoint],
    bucket: Bucket = "day",
) -> Chart | None:
    """Each arm's cumulative conversion rate, a step per day (or hour); None without
    conversions. ``arms`` are the experiment's (variant id, name) in variant order, which
    gives each its colour; points of other variants are left out."""
    if not timeline:
        return None
    length = _BUCKET_LENGTH[bucket]
    first = min(p.start for p in timeline)
    buckets = (max(p.start for p in timeline) - first) // length + 1
    index = {variant_id: i for i, (variant_id, _) in enumerate(arms)}
    steps: dict[str, list[tuple[int, float]]] = {}
    totals: dict[str, tuple[int, int]] = {}
    for p in sorted(timeline, key=lambda p: (p.start, p.variant_id)):
        if p.variant_id not in index:
            continue
        entered, converted = totals.get(p.variant_id, (0, 0))
        entered, converted = entered + p.entered, converted + p.converted
        totals[p.variant_id] = (entered, converted)
        if entered:
            at = (p.start - first) // length
            steps.setdefault(p.variant_id, []).append((at, converted / entered))
    if not steps:
        return None
    top = max(rate for series in steps.values() for _, rate in series) or 0.01
    ticks = _ticks(0.0, top, 4)
    if ticks[-1] < top:  # the axis ends on the first tick above the highest rate
        ticks.append(2 * ticks[-1] - ticks[-2] if len(ticks) > 1 else top)
    top = ticks[-1]

    def px(at: float) -> float:
        return FRAME.left + at / buckets * FRAME.plot_width

    def py(rate: float) -> float:
        return FRAME.top + FRAME.plot_height * (1 - rate / top)

    drawn = []
    for variant_id, series in sorted(steps.items(), key=lambda item: index[item[0]]):
        i = index[variant_id]
        points: list[str] = []
        # A step per bucket: the cumulative rate at the end of a bucket holds across it.
        for n, (at, rate) in enumerate(series):
            end = series[n + 1][0] if n + 1 < len(series) else buckets
            points += [f"{px(at):.1f},{py(rate):.1f}", f"{px(end):.1f},{py(rate):.1f}"]
        drawn.append(Curve(variant_id, arms[i][1], color(i), " ".join(points)))
    x_labels = [
        Label(px(at + 0.5), _bucket_label(first + at * length, bucket))
        for at in range(0, buckets, max(1, math.ceil(buckets / 6)))
    ]
    return Chart(x_labels, [Label(py(t), percent(t, 1)) for t in ticks], drawn)


# --- lift intervals ----------------------------------------------------------------------

LIFT_FRAME = Frame(width=240, height=26, left=8, right=8, top=4, bottom=8)
"""The size of one arm's lift plot: a row of a metric's table."""


class LiftBar(msgspec.Struct, frozen=True):
    """One challenger's lift on a metric: its interval (``low`` to ``high``) and point
    (``point``, None without one), in pixels of its plot, and whether the interval lies
    wholly on the metric's good side (``better``), its bad side (``worse``) or across
    zero (``unclear``)."""

    low: float
    high: float
    point: float | None
    verdict: Literal["better", "worse", "unclear"]


class LiftPlot(msgspec.Struct, frozen=True):
    """One metric's lift plots, on one axis for all its arms: where zero lies, the axis'
    ends' labels, and the bar of each challenger that has an interval, by variant id."""

    zero: float
    low_label: str
    high_label: str
    bars: dict[str, LiftBar]


def lift_plot(metric: MetricResult) -> LiftPlot | None:
    """The lift intervals of a metric's challengers on one shared axis that includes zero
    (no lift); None while no arm has an interval."""
    found = [(a, a.lift_interval) for a in metric.arms if a.lift_interval is not None]
    if not found:
        return None
    ends = [x for _, interval in found for x in interval]
    lo, hi = min(0.0, *ends), max(0.0, *ends)
    pad = (hi - lo) * 0.05 or 0.05
    lo, hi = lo - pad, hi + pad
    frame = LIFT_FRAME

    def px(x: float) -> float:
        return round(frame.left + (x - lo) / (hi - lo) * frame.plot_width, 1)

    bars = {}
    for a, (low, high) in found:
        good_low, good_high = (low, high) if metric.higher_is_better else (-high, -low)
        verdict: Literal["better", "worse", "unclear"] = (
            "better" if good_low > 0 else "worse" if good_high < 0 else "unclear"
        )
        point = None if a.lift is None else px(a.lift)
        bars[a.variant_id] = LiftBar(px(low), px(high), point, verdict)
    return LiftPlot(px(0.0), f"{100 * lo:+.0f}%", f"{100 * hi:+.0f}%", bars)
