"""The two charts of the results page (`edge.control.report_page`), as geometry for its
SVG template: the posterior density of every arm's primary metric on one shared axis
(a Beta for a rate, a normal for a mean), and the cumulative conversion rate per day.

Everything here is numbers and the labels' text; the template draws and escapes them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, timedelta
from typing import TYPE_CHECKING

import msgspec

from analytics.special import log_beta, norm_ppf

if TYPE_CHECKING:
    from analytics.aggregates import TimelinePoint
    from analytics.results import ExperimentResults

__all__ = [
    "FRAME",
    "Chart",
    "Curve",
    "Frame",
    "Label",
    "color",
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


def timeline_chart(results: ExperimentResults, timeline: Sequence[TimelinePoint]) -> Chart | None:
    """Each arm's cumulative conversion rate, a step per day; None without conversions."""
    if not timeline:
        return None
    first: date = min(p.day for p in timeline)
    last: date = max(p.day for p in timeline)
    days = (last - first).days + 1
    index = {v.id: i for i, v in enumerate(results.variants)}
    steps: dict[str, list[tuple[int, float]]] = {}
    totals: dict[str, tuple[int, int]] = {}
    for p in sorted(timeline, key=lambda p: (p.day, p.variant_id)):
        if p.variant_id not in index:
            continue
        entered, converted = totals.get(p.variant_id, (0, 0))
        entered, converted = entered + p.entered, converted + p.converted
        totals[p.variant_id] = (entered, converted)
        if entered:
            steps.setdefault(p.variant_id, []).append(((p.day - first).days, converted / entered))
    if not steps:
        return None
    top = max(rate for series in steps.values() for _, rate in series) or 0.01
    ticks = _ticks(0.0, top, 4)
    if ticks[-1] < top:  # the axis ends on the first tick above the highest rate
        ticks.append(2 * ticks[-1] - ticks[-2] if len(ticks) > 1 else top)
    top = ticks[-1]

    def px(day: float) -> float:
        return FRAME.left + day / days * FRAME.plot_width

    def py(rate: float) -> float:
        return FRAME.top + FRAME.plot_height * (1 - rate / top)

    drawn = []
    for variant_id, series in steps.items():
        i = index[variant_id]
        points: list[str] = []
        # A step per day: the cumulative rate at the end of a day holds across that day.
        for n, (day, rate) in enumerate(series):
            end = series[n + 1][0] if n + 1 < len(series) else days
            points += [f"{px(day):.1f},{py(rate):.1f}", f"{px(end):.1f},{py(rate):.1f}"]
        drawn.append(Curve(variant_id, results.variants[i].name, color(i), " ".join(points)))
    x_labels = [
        Label(px(d + 0.5), (first + timedelta(days=d)).isoformat())
        for d in range(0, days, max(1, math.ceil(days / 6)))
    ]
    return Chart(x_labels, [Label(py(t), percent(t, 1)) for t in ticks], drawn)
