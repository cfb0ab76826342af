"""The human-readable results page of an experiment: ``GET /reports/{experiment_id}``.

Server-rendered HTML (``templates/report.html``) with inline SVG and no script: the
per-variant table, a row group per goal or metric (the primary first; each arm's rate or
mean and lift with their intervals and a plot of the lift's, P(beats control) and
p-value), the posterior density of every arm's primary metric on one shared axis, the
cumulative conversion rate per day, or per hour while the experiment is young
(`edge.control.report_charts`), and a banner when the split is broken (sample ratio
mismatch). It is reached by a signed link only (`edge.control.report_links`); a wrong,
altered or expired link is a 404 page.

The metrics table and the charts are the console's results page's own
(``templates/results_parts.html``, ``static/results.css``, `results_helpers`): one
rendering for both. At 390 px every table stacks into labelled rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from markupsafe import Markup
from starlette.types import Receive, Scope, Send

from edge.control.records import ExperimentRecord
from edge.control.report_charts import (
    FRAME,
    LIFT_FRAME,
    color,
    lift_plot,
    number,
    percent,
    posterior_chart,
    timeline_chart,
)
from edge.control.report_links import ReportLinks
from edge.control.results_api import auto_bucket
from edge.control.templating import render
from edge.errors import NotFound, ServiceUnavailable, SplitedgeError
from edge.http import send_response

if TYPE_CHECKING:
    from analytics.aggregates import Bucket, TimelinePoint
    from analytics.metric_results import MetricResult
    from analytics.results import ExperimentResults
    from edge.control.results_api import ResultsSource

__all__ = ["ReportPage", "render_report", "results_helpers"]

# The shared results styles, inlined: the report is one self-contained page. Our own
# file, not user data, so it is marked safe to keep its quotes and '>'.
_RESULTS_CSS = Markup(
    resources.files("edge.control").joinpath("static/results.css").read_text("utf-8")
)

_HTML_HEADERS = [
    (b"content-type", b"text/html; charset=utf-8"),
    (b"cache-control", b"no-store"),
    # The URL carries the link's signature: keep it out of Referer headers and indexes.
    (b"referrer-policy", b"no-referrer"),
    (b"x-robots-tag", b"noindex"),
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'"),
]


def _signed_percent(value: float) -> str:
    return f"{100 * value:+.1f}%"


def _metric_value(metric: MetricResult, value: float | None) -> str:
    """A metric's value: a rate as a percentage, a mean in four significant digits."""
    return percent(value) if metric.is_rate else number(value)


def _p_value(value: float | None) -> str:
    if value is None:
        return "—"
    return "< 0.0001" if value < 0.0001 else f"{value:.4f}"


def results_helpers() -> dict[str, Any]:
    """What ``templates/results_parts.html`` needs in its context: the charts' frames and
    the figures' formats."""
    return {
        "frame": FRAME,
        "lift_frame": LIFT_FRAME,
        "lift_plot": lift_plot,
        "color": color,
        "percent": percent,
        "number": number,
        "signed_percent": _signed_percent,
        "metric_value": _metric_value,
        "p_value": _p_value,
    }


def render_report(
    experiment: ExperimentRecord,
    results: ExperimentResults,
    timeline: Sequence[TimelinePoint],
    *,
    computed_at: datetime,
    expires: int,
    bucket: Bucket = "day",
) -> str:
    """The whole page, its timeline in ``bucket``s. Every string that a user chose
    (names, hypothesis) is escaped."""
    decision = {
        "collecting": "Collecting data",
        "running": "Running: no decision yet",
        "significant": f"Winner: {results.winner.name if results.winner else ''}",
        "no_winner": "No winner",
        "guardrail": f"Guardrail: {results.guardrail.name if results.guardrail else ''} "
        "is doing worse than control",
    }[results.status]
    return render(
        "report.html",
        experiment=experiment,
        results=results,
        decision=decision,
        srm=results.srm if results.srm_flagged else None,
        warnings=[w for w in results.warnings if not w.startswith("sample ratio mismatch")],
        metric=results.primary_metric_name or "no primary metric",
        rate=results.primary_metric == ""
        or any(v.conversions is not None for v in results.variants),
        posterior=posterior_chart(results),
        timeline=timeline_chart([(v.id, v.name) for v in results.variants], timeline, bucket),
        bucket=bucket,
        results_css=_RESULTS_CSS,
        computed_at=computed_at,
        until=datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d %H:%M UTC"),
        **results_helpers(),
    )


def _message_page(title: str, message: str) -> bytes:
    return render("report_message.html", title=title, message=message).encode()


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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
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
        bucket = auto_bucket(experiment, datetime.now(UTC))
        timeline = self.source.timeline(experiment, bucket)
        return render_report(
            experiment,
            computed.results,
            timeline,
            computed_at=computed.computed_at,
            expires=int(expires),
            bucket=bucket,
        )
