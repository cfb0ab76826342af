"""The human-readable results page of an experiment: ``GET /reports/{experiment_id}``.

Server-rendered HTML with inline SVG and no script: the per-variant table, the posterior
density of every arm's primary metric on one shared axis, the cumulative conversion rate
per day, and a banner when the split is broken (sample ratio mismatch).

A browser cannot send an API key, so the page is reached by a signed link that
``GET /v1/experiments/{id}/results`` hands out as ``report_url``:
``/reports/{experiment_id}?expires=UNIX&sig=HEX``, where ``sig`` is HMAC-SHA256 of the
experiment id and the expiry under a secret of this server (kept in the store's ``meta``
table, made on first use). Anyone holding a valid link can read that one report until it
expires (`REPORT_LINK_SECONDS`); a wrong, altered or expired link is a 404 page.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import math
import secrets
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import msgspec
from starlette.types import Receive, Send

from analytics.special import log_beta, norm_ppf
from edge.control.records import ExperimentRecord
from edge.control.store import Store
from edge.errors import NotFound, ServiceUnavailable, SplitedgeError
from edge.http import send_response

if TYPE_CHECKING:
    from analytics.aggregates import TimelinePoint
    from analytics.results import ExperimentResults
    from edge.control.results_api import ResultsSource

__all__ = [
    "REPORT_LINK_SECONDS",
    "REPORT_SECRET_META_KEY",
    "ReportLinks",
    "ReportPage",
    "render_report",
]

REPORT_SECRET_META_KEY = "report_link_secret"
REPORT_LINK_SECONDS = 7 * 24 * 3600

_HTML_HEADERS = [
    (b"content-type", b"text/html; charset=utf-8"),
    (b"cache-control", b"no-store"),
    # The URL carries the link's signature: keep it out of Referer headers and indexes.
    (b"referrer-policy", b"no-referrer"),
    (b"x-robots-tag", b"noindex"),
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'"),
]


# --- signed links ------------------------------------------------------------------------


class ReportLinks:
    """Signs and checks report links with the server's secret (read once per process)."""

    def __init__(self, store_path: Path) -> None:
        self.store_path = store_path
        self._secret: bytes | None = None

    def _key(self) -> bytes:
        if self._secret is None:
            store = Store(self.store_path)
            try:
                # One transaction: two workers starting at once agree on one secret.
                with store.transaction():
                    secret = store.get_meta(REPORT_SECRET_META_KEY)
                    if secret is None:
                        secret = secrets.token_hex(32)
                        store.set_meta(REPORT_SECRET_META_KEY, secret)
            finally:
                store.close()
            self._secret = bytes.fromhex(secret)
        return self._secret

    def signature(self, experiment_id: str, expires: int) -> str:
        """HMAC-SHA256 (hex) of the experiment id and the expiry (Unix seconds)."""
        message = f"{experiment_id}\n{expires}".encode()
        return hmac.new(self._key(), message, hashlib.sha256).hexdigest()

    def path(self, experiment_id: str, now: float | None = None) -> str:
        """The signed path of an experiment's report, valid for `REPORT_LINK_SECONDS`."""
        expires = int(time.time() if now is None else now) + REPORT_LINK_SECONDS
        sig = self.signature(experiment_id, expires)
        return f"/reports/{experiment_id}?expires={expires}&sig={sig}"

    def valid(self, experiment_id: str, expires: str, sig: str, now: float | None = None) -> bool:
        """Whether a link's expiry and signature are this server's and still good."""
        if not expires.isdigit() or len(expires) > 12:
            return False
        if int(expires) < (time.time() if now is None else now):
            return False
        return hmac.compare_digest(self.signature(experiment_id, int(expires)), sig)


# --- the page --------------------------------------------------------------------------

_PALETTE = (
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
    "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22",
)  # fmt: skip
_WIDTH, _HEIGHT = 680, 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 16, 12, 36
_POINTS = 241

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; color: #1b1f24; max-width: 60rem;
       margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; }
.sub { color: #57606a; margin-top: 0; }
.status { display: inline-block; padding: .1rem .5rem; border-radius: .3rem;
          background: #eaeef2; font-weight: 600; }
.status.significant { background: #dafbe1; } .status.guardrail { background: #ffebe9; }
.srm-warning { border: 2px solid #cf222e; background: #ffebe9; padding: .75rem 1rem;
               border-radius: .4rem; margin: 1rem 0; }
.warnings { color: #57606a; }
table { border-collapse: collapse; width: 100%; margin: 1rem 0; }
th, td { padding: .4rem .6rem; border-bottom: 1px solid #d0d7de; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.swatch { display: inline-block; width: .8rem; height: .8rem; border-radius: 2px;
          margin-right: .4rem; vertical-align: -1px; }
svg { width: 100%; height: auto; max-width: 680px; display: block; }
svg text { font: 11px system-ui, sans-serif; fill: #57606a; }
.axis { stroke: #8c959f; stroke-width: 1; }
footer { color: #57606a; font-size: .85rem; margin-top: 2rem; }
"""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _percent(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}%"


def _signed_percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:+.1f}%"


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _p_value(value: float | None) -> str:
    if value is None:
        return "—"
    return "< 0.0001" if value < 0.0001 else f"{value:.4f}"


def _lift(value: float | None, interval: tuple[float, float] | None) -> str:
    if value is None:
        return "—"
    if interval is None:
        return _signed_percent(value)
    return (
        f"{_signed_percent(value)} <small>({_signed_percent(interval[0])} to "
        f"{_signed_percent(interval[1])})</small>"
    )


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


def _frame(x_labels: Sequence[tuple[float, str]], y_labels: Sequence[tuple[float, str]]) -> str:
    """Axes and tick labels; positions are already in pixels."""
    bottom = _HEIGHT - _BOTTOM
    parts = [
        f'<line class="axis" x1="{_LEFT}" y1="{bottom}" x2="{_WIDTH - _RIGHT}" y2="{bottom}"/>',
        f'<line class="axis" x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{bottom}"/>',
    ]
    for x, label in x_labels:
        parts.append(
            f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{_esc(label)}</text>'
        )
    for y, label in y_labels:
        parts.append(
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_esc(label)}</text>'
        )
    return "".join(parts)


def _density_svg(results: ExperimentResults) -> str:
    densities = _densities(results)
    if not densities:
        return '<p class="empty">No posterior yet: the arms need data first.</p>'
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
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM

    def px(x: float) -> float:
        return _LEFT + (x - lo) / (hi - lo) * plot_w

    paths = []
    for d, ys in zip(densities, curves, strict=True):
        v = results.variants[d.index]
        points = " L".join(
            f"{px(x):.1f},{_TOP + plot_h * (1 - y / peak):.1f}" for x, y in zip(xs, ys, strict=True)
        )
        paths.append(
            f'<path class="density" data-variant-id="{_esc(v.id)}" fill="none" '
            f'stroke="{_PALETTE[d.index % len(_PALETTE)]}" stroke-width="2" d="M{points}">'
            f"<title>{_esc(v.name)}</title></path>"
        )
    x_labels = [(px(t), _percent(t, 1) if rate else _number(t)) for t in _ticks(lo, hi)]
    return (
        f'<svg id="posterior" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" '
        f'aria-label="Posterior densities of each variant">'
        f"{_frame(x_labels, [])}{''.join(paths)}</svg>"
    )


def _timeline_svg(results: ExperimentResults, timeline: Sequence[TimelinePoint]) -> str:
    if not timeline:
        return '<p class="empty">No conversions over time yet.</p>'
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
        return '<p class="empty">No conversions over time yet.</p>'
    top = max(rate for series in steps.values() for _, rate in series) or 0.01
    ticks = _ticks(0.0, top, 4)
    if ticks[-1] < top:  # the axis ends on the first tick above the highest rate
        ticks.append(2 * ticks[-1] - ticks[-2] if len(ticks) > 1 else top)
    top = ticks[-1]
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM

    def px(day: float) -> float:
        return _LEFT + day / days * plot_w

    def py(rate: float) -> float:
        return _TOP + plot_h * (1 - rate / top)

    lines = []
    for variant_id, series in steps.items():
        i = index[variant_id]
        points: list[str] = []
        # A step per day: the cumulative rate at the end of a day holds across that day.
        for n, (day, rate) in enumerate(series):
            end = series[n + 1][0] if n + 1 < len(series) else days
            points += [f"{px(day):.1f},{py(rate):.1f}", f"{px(end):.1f},{py(rate):.1f}"]
        lines.append(
            f'<polyline class="timeline" data-variant-id="{_esc(variant_id)}" fill="none" '
            f'stroke="{_PALETTE[i % len(_PALETTE)]}" stroke-width="2" points="{" ".join(points)}">'
            f"<title>{_esc(results.variants[i].name)}</title></polyline>"
        )
    x_labels = [
        (px(d + 0.5), (first + timedelta(days=d)).isoformat())
        for d in range(0, days, max(1, math.ceil(days / 6)))
    ]
    y_labels = [(py(t), _percent(t, 1)) for t in ticks]
    return (
        f'<svg id="timeline" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" '
        f'aria-label="Cumulative conversion rate per day">'
        f"{_frame(x_labels, y_labels)}{''.join(lines)}</svg>"
    )


def _table(results: ExperimentResults) -> str:
    rate = results.primary_metric == "" or any(v.conversions is not None for v in results.variants)
    value_head = "Rate" if rate else f"Mean {_esc(results.primary_metric_name)}"
    loss_head = "Expected loss" + (" (pp)" if rate else "")
    rows = []
    for i, v in enumerate(results.variants):
        loss = v.expected_loss
        loss_text = "—" if loss is None else (f"{100 * loss:.3f}" if rate else _number(loss))
        role = " <small>(control)</small>" if v.is_control else ""
        rows.append(
            f'<tr data-variant-id="{_esc(v.id)}">'
            f'<td class="name"><span class="swatch" style="background:'
            f'{_PALETTE[i % len(_PALETTE)]}"></span>{_esc(v.name)}{role}</td>'
            f'<td class="units">{v.units}</td>'
            f'<td class="conversions">{"—" if v.conversions is None else v.conversions}</td>'
            f'<td class="value">{_percent(v.value) if rate else _number(v.value)}</td>'
            f'<td class="lift">{_lift(v.lift, v.lift_interval)}</td>'
            f'<td class="prob-to-win">{_percent(v.prob_to_win, 1)}</td>'
            f'<td class="expected-loss">{loss_text}</td>'
            f'<td class="p-value">{_p_value(v.p_value)}</td></tr>'
        )
    return (
        '<table id="variants"><thead><tr><th>Variant</th><th>Units</th><th>Conversions</th>'
        f"<th>{value_head}</th><th>Lift vs control (95% interval)</th><th>P(best)</th>"
        f"<th>{loss_head}</th><th>p-value</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def render_report(
    experiment: ExperimentRecord,
    results: ExperimentResults,
    timeline: Sequence[TimelinePoint],
    *,
    computed_at: datetime,
    expires: int,
) -> str:
    """The whole page. Every string that a user chose (names, hypothesis) is escaped."""
    decision = {
        "collecting": "Collecting data",
        "running": "Running: no decision yet",
        "significant": f"Winner: {results.winner.name if results.winner else ''}",
        "no_winner": "No winner",
        "guardrail": f"Guardrail: {results.guardrail.name if results.guardrail else ''} "
        "is doing worse than control",
    }[results.status]
    srm = ""
    if results.srm_flagged and results.srm is not None:
        srm = (
            '<div class="srm-warning" role="alert"><strong>Sample ratio mismatch.</strong> '
            f"The arms' units do not match the configured split (p = {results.srm.p_value:.2g}); "
            "the comparison is not trustworthy and no winner is declared until the cause is "
            "found and fixed.</div>"
        )
    others = [w for w in results.warnings if not w.startswith("sample ratio mismatch")]
    warnings = (
        '<ul class="warnings">' + "".join(f"<li>{_esc(w)}</li>" for w in others) + "</ul>"
        if others
        else ""
    )
    hypothesis = (
        f'<p class="hypothesis">{_esc(experiment.hypothesis)}</p>' if experiment.hypothesis else ""
    )
    metric = results.primary_metric_name or "no primary metric"
    mc = "" if results.mc_error is None else f", Monte Carlo error ≤ {results.mc_error:.1e}"
    draws = "" if results.rules.draws is None else f"{results.rules.draws} draws, "
    until = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(experiment.name)} · results · splitedge</title>
<style>{_STYLE}</style></head>
<body>
<h1>{_esc(experiment.name)}</h1>
<p class="sub">{_esc(experiment.kind)} experiment · {_esc(experiment.status)} ·
primary metric: {_esc(metric)} · {results.units} units</p>
{hypothesis}
<p><span class="status {results.status}" id="decision">{_esc(decision)}</span></p>
{srm}{warnings}
{_table(results)}
<h2>Posterior of each variant's {_esc(metric)}</h2>
{_density_svg(results)}
<h2>Cumulative conversion rate per day</h2>
{_timeline_svg(results, timeline)}
<footer>Computed {computed_at.strftime("%Y-%m-%d %H:%M:%S UTC")}: {draws}seed
{results.rules.seed}{mc}; confidence {results.rules.confidence:g}, at least
{results.rules.min_units_per_arm} units per arm. This link is valid until {until}.</footer>
</body></html>
"""


def _message_page(title: str, message: str) -> bytes:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}'
        f"</title><style>{_STYLE}</style></head><body><h1>{_esc(title)}</h1>"
        f"<p>{_esc(message)}</p></body></html>"
    ).encode()


_NOT_FOUND = _message_page(
    "Report not found",
    "This report link is invalid or has expired. Ask for a fresh one: "
    "GET /v1/experiments/{id}/results returns it as report_url.",
)


class ReportPage:
    """``GET /reports/{experiment_id}?expires=&sig=``: the page, for a valid link only."""

    def __init__(self, links: ReportLinks, source: ResultsSource) -> None:
        self.links = links
        self.source = source

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        experiment_id = scope["path_params"]["experiment_id"]
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        expires = query.get("expires", [""])[0]
        sig = query.get("sig", [""])[0]
        try:
            page = await asyncio.to_thread(self._render, experiment_id, expires, sig)
        except SplitedgeError as exc:
            headers = list(_HTML_HEADERS)
            if isinstance(exc, ServiceUnavailable):
                headers.append((b"retry-after", str(exc.retry_after).encode()))
            if exc.status == 404:
                body = _NOT_FOUND
            else:
                body = _message_page("Report unavailable", exc.message)
            await send_response(send, exc.status, headers, body)
            return
        await send_response(send, 200, _HTML_HEADERS, page.encode())

    def _render(self, experiment_id: str, expires: str, sig: str) -> str:
        if not self.links.valid(experiment_id, expires, sig):
            raise NotFound("invalid or expired report link")
        experiment = self.source.experiment(experiment_id, None)
        computed = self.source.compute(experiment)
        timeline = self.source.timeline(experiment)
        return render_report(
            experiment,
            computed.results,
            timeline,
            computed_at=computed.computed_at,
            expires=int(expires),
        )
