"""``GET /console/experiments/{experiment_id}/results``: an experiment's results, read in
ten seconds.

The verdict first (winner, no winner, still collecting and how many units are left, or
the guardrail that stopped it and why), then every goal or metric as a row with a plot of
its lift interval, the primary first (`templates/results_parts.html`, the signed report's
own rendering), the cumulative timeline (hourly while the experiment is young), a health
panel (units per day per arm, the sample-ratio check, the config version the edge
serves), the units and primary conversions per device, and how long ago the figures were
computed.

Every figure is the REST API's, called in this process as the session's key
(``/v1/experiments/{id}``, ``/results``, ``/timeline?bucket=auto`` and ``/devices``):
the page computes no statistic of its own, and another workspace's experiment is the
API's 404, so the console's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from analytics.aggregates import TimelinePoint
from edge.control.console.frame import Console, Session, page
from edge.control.report_charts import percent, timeline_chart
from edge.control.report_page import results_helpers
from edge.control.results_api import DevicesData, ResultsData, ResultsMeta, TimelineData

__all__ = ["DayUnits", "Verdict", "daily_units", "routes", "verdict"]


class Verdict(msgspec.Struct, frozen=True):
    """What the results say, in words: a headline, a sentence, and its tone (the
    results' status, which styles it)."""

    title: str
    detail: str
    tone: Literal["collecting", "running", "significant", "no_winner", "guardrail"]


def _units(n: int) -> str:
    return f"{n:,} more unit{'' if n == 1 else 's'}"


def verdict(results: ResultsData, primary: str) -> Verdict:
    """The verdict of the API's ``results``, whose primary metric is named ``primary``."""
    status = results.status
    if status == "significant":
        lift = "" if results.lift is None else f"{100 * results.lift:+.1f}% on {primary}"
        chance = percent(results.prob_to_win, 1)
        return Verdict(
            f"Winner: {results.winner}",
            f"{lift}, with a {chance} chance of being the best variant."
            if lift
            else f"{chance} chance of being the best variant.",
            status,
        )
    if status == "guardrail":
        reason = results.guardrail_reason or "a guardrail metric is significantly worse"
        return Verdict(f"Stopped by a guardrail: {results.guardrail}", reason, status)
    if status == "no_winner":
        return Verdict(
            "No winner",
            f"No variant did significantly better than the control on {primary}.",
            status,
        )
    left = results.samples_needed
    if status == "collecting":
        detail = (
            f"{_units(left)} per arm before a decision on {primary}."
            if left
            else f"Waiting for data on {primary}."
        )
        return Verdict("Still collecting", detail, status)
    detail = (
        f"About {_units(left)} per arm to tell the current difference on {primary} apart."
        if left
        else f"No significant difference on {primary} yet."
    )
    return Verdict("Running: no winner yet", detail, status)


class DayUnits(msgspec.Struct, frozen=True):
    """The units that entered each arm on one UTC day (by variant id)."""

    day: date
    units: dict[str, int]


def daily_units(points: Sequence[TimelinePoint]) -> list[DayUnits]:
    """The timeline's entries added up per day (an hourly timeline's hours too), newest
    first."""
    days: dict[date, dict[str, int]] = {}
    for p in points:
        arms = days.setdefault(p.day, {})
        arms[p.variant_id] = arms.get(p.variant_id, 0) + p.entered
    return [DayUnits(day, days[day]) for day in sorted(days, reverse=True)]


def _ago(computed_at: datetime, now: datetime) -> int:
    return max(0, round((now - computed_at).total_seconds()))


def routes(console: Console) -> list[BaseRoute]:
    """The results page of an experiment."""

    async def results_page(request: Request, session: Session) -> Response:
        experiment_id = request.path_params["experiment_id"]
        one = f"/v1/experiments/{experiment_id}"
        # At once: another workspace's id is a 404 of each, which the first raises.
        detail, answer, timeline_data, devices_data = await asyncio.gather(
            session.api("GET", one),
            session.api.answer("GET", f"{one}/results"),
            session.api("GET", f"{one}/timeline", query={"bucket": "auto"}),
            session.api("GET", f"{one}/devices"),
        )
        results = msgspec.convert(answer.data, ResultsData, strict=False)
        meta = msgspec.convert(answer.meta, ResultsMeta, strict=False)
        timeline = msgspec.convert(timeline_data, TimelineData, strict=False)
        devices = msgspec.convert(devices_data, DevicesData, strict=False)
        experiment: dict[str, Any] = detail["experiment"]
        # The arms in the experiment's order, as the results name them.
        arms = [(v.id, name) for name, v in results.variants.items()]
        primary = results.metrics[0].name if results.metrics else "the primary metric"
        now = datetime.now(UTC)
        return page(
            request,
            session,
            "console/results.html",
            experiment=experiment,
            results=results,
            meta=meta,
            verdict=verdict(results, primary),
            primary=primary,
            arms=arms,
            bucket=timeline.bucket,
            timeline=timeline_chart(arms, timeline.points, timeline.bucket),
            days=daily_units(timeline.points),
            devices=devices.devices,
            units=sum(v.units for v in results.variants.values()),
            updated=_ago(meta.computed_at, now),
            **results_helpers(),
        )

    return [console.route("/console/experiments/{experiment_id}/results", results_page)]
