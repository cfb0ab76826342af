"""``GET /v1/agents/{agent_id}/stats`` and ``GET /v1/agents/{agent_id}/drift``: ClawTrait's
agent statistics and behavioural drift, from the agent's task events (``POST /v1/events``).

Both take a workspace API key and answer ``{"data": ..., "meta": {"workspace_id": ...}}``
with ClawTrait's field names (camelCase). An agent is known to a workspace by its task
events: an agent id with no task in the key's workspace, ever, is a 404, whether no one
sent it or another workspace did (the two are never told apart). An agent with tasks, but
none in the period asked for, answers its figures for no tasks.

The aggregates come from ClickHouse through the worker's `QueryRunner` (the parent's
warehouse gateway for embedded chDB), on a thread; ClickHouse unavailable or too slow is
a 503 with Retry-After. docs/agents.md documents the figures and the drift method.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated

import msgspec
from starlette.routing import Route
from starlette.types import Receive, Scope

from analytics.agent_aggregates import AgentSpan, TimeWindow, fetch_span, fetch_windows
from analytics.agents import (
    AgentStats,
    DriftChange,
    DriftDimension,
    DriftRules,
    DriftStatus,
    agent_stats,
    compare_windows,
)
from edge.control.api import (
    ApiOperation,
    Auth,
    Meta,
    Reply,
    api_route,
    authenticate,
    query_params,
)
from edge.control.flavours import CLAWTRAIT, flavoured
from edge.control.services import Services
from edge.errors import InvalidRequest, NotFound

__all__ = ["AgentDrift", "AgentsApi", "DriftQuery", "StatsQuery", "parse_period", "routes"]

# The agentId of POST /v1/events is 1 to 128 characters.
_MAX_AGENT_ID = 128
_PERIOD = re.compile(r"([1-9][0-9]{0,5})([hdw])")
_PERIOD_PATTERN = "^[1-9][0-9]{0,5}[hdw]$"
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
_MAX_PERIOD = timedelta(days=3660)
# Nothing happened before this (the ingest refuses earlier timestamps).
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MAX_VALUE = 1e12
_MAX_ALPHA = 0.5


def _wire_name(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


class StatsQuery(msgspec.Struct, frozen=True):
    """The query of ``GET /v1/agents/{agent_id}/stats``."""

    period: Annotated[
        str,
        msgspec.Meta(
            pattern=_PERIOD_PATTERN,
            description="The window, ending now: hours, days or weeks, e.g. 24h, 7d, 30d, 90d "
            "or 4w (at most 3660 days).",
        ),
    ] = "30d"
    value_per_success: (
        Annotated[
            float,
            msgspec.Meta(
                ge=0,
                le=_MAX_VALUE,
                description="What one successful task is worth, in the currency of cost, for "
                "netValue and netROI; defaults to the server's "
                "SPLITEDGE_AGENT_VALUE_PER_SUCCESS (without either, netROI is null).",
            ),
        ]
        | None
    ) = None


class DriftQuery(msgspec.Struct, frozen=True):
    """The query of ``GET /v1/agents/{agent_id}/drift``."""

    window: Annotated[
        str,
        msgspec.Meta(
            pattern=_PERIOD_PATTERN,
            description="The recent window, ending now (hours, days or weeks).",
        ),
    ] = "7d"
    baseline: Annotated[
        str,
        msgspec.Meta(
            pattern=_PERIOD_PATTERN,
            description="The length of the baseline window (hours, days or weeks).",
        ),
    ] = "30d"
    baseline_start: (
        Annotated[
            str,
            msgspec.Meta(
                description="Where the baseline starts: an ISO 8601 date or time (UTC unless "
                "it says otherwise), or 'first' for the agent's first task. Default: the "
                "baseline ends where the recent window starts.",
            ),
        ]
        | None
    ) = None
    alpha: Annotated[
        float,
        msgspec.Meta(
            gt=0,
            le=_MAX_ALPHA,
            description="The family-wise significance level, shared by the dimensions tested "
            "(Bonferroni).",
        ),
    ] = DriftRules().alpha


class DriftThresholds(msgspec.Struct, frozen=True, rename=_wire_name):
    """The drift scores at which the status becomes warning and drifting."""

    warning_at: float
    drifting_at: float


class AgentDrift(msgspec.Struct, frozen=True, rename=_wire_name):
    """ClawTrait's drift answer (``agentId``, ``driftScore`` from 0 to 1, ``status``,
    ``baselineDate``: where the baseline starts, ``topChanges``) and what it rests on: both
    windows (``start <= task time < end``) and their tasks, whether both had enough tasks to
    test anything, the family-wise ``alpha`` and the level each test was held to, the status
    thresholds, and every dimension with its test."""

    agent_id: str
    drift_score: float
    status: DriftStatus
    baseline_date: datetime
    top_changes: list[DriftChange]
    baseline_end: datetime
    recent_start: datetime
    recent_end: datetime
    baseline_tasks: int
    recent_tasks: int
    sufficient_data: bool
    alpha: float
    per_test_alpha: float | None
    thresholds: DriftThresholds
    dimensions: list[DriftDimension]


def parse_period(text: str, name: str) -> timedelta:
    """A period such as ``24h``, ``7d`` or ``4w``; `InvalidRequest` saying what to send
    for anything else."""
    found = _PERIOD.fullmatch(text.strip())
    period = None if found is None else int(found[1]) * _UNITS[found[2]]
    if period is None or period > _MAX_PERIOD:
        raise InvalidRequest(
            f"{name} must be a number of hours, days or weeks such as 24h, 7d, 30d, 90d or 4w "
            f"(at most 3660d), not {text[:40]!r}"
        )
    return period


def _number(params: Mapping[str, str], name: str, low: float, high: float) -> float | None:
    text = params.get(name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and low <= value <= high):
        raise InvalidRequest(f"{name} must be a number from {low:g} to {high:g}, not {text[:40]!r}")
    return value


def _baseline_start(text: str, span: AgentSpan, recent_start: datetime) -> datetime:
    if text == "first":
        assert span.first_at is not None  # the agent has tasks
        return span.first_at
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(
            f"baseline_start must be an ISO 8601 date or time such as 2026-02-15 or "
            f"2026-02-15T09:30:00Z, or 'first', not {text[:40]!r}"
        ) from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if not _EPOCH <= moment < recent_start:
        raise InvalidRequest(
            f"baseline_start must be after 2000-01-01 and before the recent window, which "
            f"starts at {recent_start.isoformat()}; shorten window or move baseline_start"
        )
    return moment


def _now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class AgentsApi:
    """The handlers of ``/v1/agents/{agent_id}/...``. ``value_per_success`` is the server's
    default value of a successful task (None: none)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.value_per_success = services.settings.agent_value_per_success or None

    async def _agent(self, scope: Scope) -> tuple[Auth, str]:
        """The caller and the agent id of the path."""
        auth = await authenticate(self.services, scope)
        agent_id: str = scope["path_params"]["agent_id"]
        if len(agent_id) > _MAX_AGENT_ID:
            raise InvalidRequest(
                f"agent ids are 1 to {_MAX_AGENT_ID} characters: use the agentId your task "
                "events (POST /v1/events) send"
            )
        return auth, agent_id

    def _span(self, workspace_id: str, agent_id: str) -> AgentSpan:
        span = fetch_span(self.services.run, workspace_id, agent_id)
        if span.tasks == 0:
            raise NotFound(
                f"no task events of agent {agent_id[:128]!r} in the workspace of this API "
                "key; send its tasks with POST /v1/events (agentId), or check the key"
            )
        return span

    async def stats(self, scope: Scope, receive: Receive) -> Reply:
        """``GET /v1/agents/{agent_id}/stats``."""
        auth, agent_id = await self._agent(scope)
        workspace_id = auth.workspace_id
        params = query_params(scope)
        period_text = params.get("period", "30d").strip()
        period = parse_period(period_text, "period")
        value = _number(params, "value_per_success", 0.0, _MAX_VALUE)
        value = self.value_per_success if value is None else value
        until = _now()
        since = until - period

        def compute() -> AgentStats:
            self._span(workspace_id, agent_id)
            window = TimeWindow(since, until)
            (found,) = fetch_windows(self.services.run, workspace_id, agent_id, [window], False)
            return agent_stats(agent_id, period_text, found, since, until, value)

        return flavoured(
            auth.flavour, CLAWTRAIT, await asyncio.to_thread(compute), Meta(workspace_id)
        )

    async def drift(self, scope: Scope, receive: Receive) -> Reply:
        """``GET /v1/agents/{agent_id}/drift``."""
        auth, agent_id = await self._agent(scope)
        workspace_id = auth.workspace_id
        params = query_params(scope)
        recent_length = parse_period(params.get("window", "7d"), "window")
        baseline_length = parse_period(params.get("baseline", "30d"), "baseline")
        alpha = _number(params, "alpha", 0.0, _MAX_ALPHA)
        if alpha == 0.0:
            raise InvalidRequest("alpha must be above 0, e.g. 0.01 (the default) or 0.05")
        rules = DriftRules() if alpha is None else DriftRules(alpha=alpha)
        start_text = params.get("baseline_start")
        now = _now()
        recent = TimeWindow(now - recent_length, now)

        def compute() -> AgentDrift:
            span = self._span(workspace_id, agent_id)
            if start_text is None:
                start = recent.start - baseline_length
            else:
                start = _baseline_start(start_text.strip(), span, recent.start)
            baseline = TimeWindow(start, max(start, min(start + baseline_length, recent.start)))
            before, after = fetch_windows(
                self.services.run, workspace_id, agent_id, [baseline, recent]
            )
            comparison = compare_windows(before, after, rules)
            return AgentDrift(
                agent_id=agent_id,
                drift_score=comparison.score,
                status=comparison.status,
                baseline_date=baseline.start,
                top_changes=comparison.top_changes,
                baseline_end=baseline.end,
                recent_start=recent.start,
                recent_end=recent.end,
                baseline_tasks=before.tasks,
                recent_tasks=after.tasks,
                sufficient_data=comparison.sufficient_data,
                alpha=rules.alpha,
                per_test_alpha=comparison.per_test_alpha,
                thresholds=DriftThresholds(rules.warning, rules.drifting),
                dimensions=comparison.dimensions,
            )

        return flavoured(
            auth.flavour, CLAWTRAIT, await asyncio.to_thread(compute), Meta(workspace_id)
        )


def routes(services: Services) -> list[Route]:
    """The ``stats`` and ``drift`` routes of an agent; the settings' value of a successful
    task is the default (0: netROI is null unless the request gives one)."""
    api = AgentsApi(services)
    one = "/v1/agents/{agent_id}"
    # A period that is not one is a 400; ClickHouse unavailable or too slow, a 503.
    errors = (400, 404, 503)
    stats = ApiOperation(
        handler=api.stats,
        summary="An agent's tasks, success rate, cost per task, total cost and net ROI",
        description="ClawTrait's stats, from the agent's task events in the period (by the "
        "time each task happened: its ts, or when it was received). Free.",
        data=AgentStats,
        query=StatsQuery,
        errors=errors,
    )
    drift = ApiOperation(
        handler=api.drift,
        summary="How far an agent's recent behaviour drifted from its baseline",
        description="Per dimension (success rate, cost, duration, turns, task mix, outcome "
        "mix) a two-sample test and an effect size; a dimension scores only when its change "
        "is significant (Bonferroni) and material. docs/agents.md. Free.",
        data=AgentDrift,
        query=DriftQuery,
        errors=errors,
    )
    return [
        api_route(f"{one}/stats", {"GET": stats}),
        api_route(f"{one}/drift", {"GET": drift}),
    ]
