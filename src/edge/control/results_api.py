"""``GET /v1/experiments/{id}/results``, ``/metrics``, ``/timeline`` and ``/devices``.

Each takes a workspace API key (``Authorization: Bearer sk_live_...``) and answers
``{"data": ..., "meta": {...}}``. An unknown id and another workspace's experiment are the
same 404. ``/results`` is a superset of ClawSplit's results (status, winner, p_value,
variants by name) with the Bayesian figures, the SRM test, the samples still needed and a
signed ``report_url`` (`edge.control.report_links`) to the human-readable page;
``/metrics`` is crewkit's shape (control and variant arms, significance). Their meta says
when the figures were computed and which config version the edge serves. ``/timeline`` is
the units that entered and first converted per UTC day (``?bucket=day``, the default), per
hour (``hour``), or per hour while the experiment is under 3 days old (``auto``);
``/devices`` the units and primary conversions of each arm per device.

The experiment comes from the store, its aggregates from ClickHouse through the worker's
`QueryRunner` (`analytics.gateway.query_runner`); the query and the statistics run on a
thread, off the event loop. ClickHouse unavailable or too slow is a 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import msgspec
from starlette.routing import Route
from starlette.types import Receive, Scope

from analytics.aggregates import (
    Bucket,
    DeviceRow,
    ExperimentSpec,
    GoalSpec,
    QueryRunner,
    TimelinePoint,
    UnitSummary,
    VariantSpec,
    Verdict,
    VersionedCache,
    fetch_devices,
    fetch_summary,
)
from analytics.frequentist import SampleRatio
from analytics.result_views import (
    ClawSplitResults,
    CrewkitMetrics,
    clawsplit_view,
    crewkit_metrics_view,
)
from analytics.results import DecisionRules, ExperimentResults, compute_results
from analytics.summaries import SummaryReader, unit_summary
from edge.control.api import (
    ApiOperation,
    Auth,
    Reply,
    api_route,
    authenticate,
    base_url,
    query_params,
)
from edge.control.flavours import CLAWSPLIT
from edge.control.records import ExperimentRecord, ExperimentVerdict
from edge.control.report_links import ReportLinks
from edge.control.services import Services
from edge.control.store import Store
from edge.errors import InvalidRequest, NotFound

if TYPE_CHECKING:
    from edge.kv import KVHolder

__all__ = [
    "YOUNG",
    "Computed",
    "DeviceArm",
    "DevicesData",
    "ExperimentDevicesEndpoint",
    "ExperimentMetricsEndpoint",
    "ExperimentResultsEndpoint",
    "ExperimentTimelineEndpoint",
    "ResultsData",
    "ResultsMeta",
    "ResultsSource",
    "TimelineData",
    "TimelineQuery",
    "auto_bucket",
    "experiment_spec",
    "keep_verdict",
    "routes",
]

YOUNG = timedelta(days=3)
"""An experiment whose run is shorter than this has an hourly timeline (``bucket=auto``):
a day or two of daily points is a flat line."""

# ExperimentRecord ids are UUIDs here; this admits any id a client could reasonably hold and
# nothing that needs escaping in a URL or a log line.
_EXPERIMENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_ENDED = ("completed", "archived")


def _check_id(experiment_id: str) -> None:
    if not _EXPERIMENT_ID.fullmatch(experiment_id):
        raise InvalidRequest(
            "that is not an experiment id: ids are 1 to 128 letters, digits, '-' or '_'; "
            "use the id that POST /v1/experiments returned"
        )


def experiment_spec(
    experiment: ExperimentRecord, kept: ExperimentVerdict | None = None
) -> ExperimentSpec:
    """What the results need of a stored experiment; an ended one's results are those of
    its run: its events from start to end, the weights it ran with and the decision it
    ended with, when ``kept``."""
    weights = kept.weights if kept is not None else {}
    window = None
    if experiment.status in _ENDED and experiment.started_at and experiment.ended_at:
        window = (
            datetime.fromisoformat(experiment.started_at),
            datetime.fromisoformat(experiment.ended_at),
        )
    verdict = None
    if kept is not None and kept.status is not None:
        verdict = Verdict(
            kept.status, kept.winner_variant_id, kept.guardrail_variant_id, kept.reason
        )
    return ExperimentSpec(
        id=experiment.id,
        workspace_id=experiment.workspace_id,
        kind=experiment.kind,
        status=experiment.status,
        variants=tuple(
            VariantSpec(v.id, v.name, v.is_control, weights.get(v.id, v.weight_bps))
            for v in experiment.variants
        ),
        goals=tuple(GoalSpec(g.id, g.name, g.type, g.guardrail) for g in experiment.goals),
        sample_size=experiment.sample_size,
        confidence=experiment.confidence,
        primary_metric=experiment.primary_metric,
        max_cost_increase=experiment.max_cost_increase,
        window=window,
        verdict=verdict,
        guardrail_metrics=experiment.guardrail_metrics,
    )


def keep_verdict(store: Store, experiment_id: str, results: ExperimentResults) -> None:
    """Keep the decision of a completed experiment's ``results`` as its verdict, unless it
    has one already (`Store.record_verdict`)."""
    status = results.status
    if status not in ("significant", "no_winner", "guardrail"):
        status = "no_winner"  # an ended experiment is decided: no winner was declared
    store.record_verdict(
        experiment_id,
        status,
        results.winner.id if results.winner else None,
        results.guardrail.id if results.guardrail else None,
        results.guardrail_reason,
    )


class Computed(msgspec.Struct, frozen=True):
    """An experiment's results and how long they took: the ClickHouse query, then the
    statistics (milliseconds)."""

    results: ExperimentResults
    computed_at: datetime
    query_ms: float
    compute_ms: float
    summary_version: int | None = None


class ResultsSource:
    """Experiments from the store and their results from ClickHouse, for one worker.
    Blocking: call it on a thread. Each call opens its own store connection (cheap), so
    any number of threads may use one source.

    A running experiment's arms and timeline come from its summary, which the server's
    `edge.control.summary_keeper` keeps up to date, through ``summaries``; without one
    (the tick CLI's source, an experiment under the reader's size, or before the keeper
    wrote its first) they are counted from every unit's state. An
    ended experiment's come from every unit's state in its window. Results and what
    they come from are kept in a `VersionedCache`: read again while no event of the
    experiment was inserted since, they cost one point query, not a computation.
    ``served`` holds the config this worker's edge serves (None for a source without
    an edge)."""

    def __init__(
        self,
        store_path: Path,
        run: QueryRunner,
        served: KVHolder | None = None,
        summaries: SummaryReader | None = None,
    ) -> None:
        self.store_path = store_path
        self.run = run
        self.served = served
        self.summaries = summaries
        self.cache = VersionedCache(run)

    def experiment(self, experiment_id: str, workspace_id: str | None) -> ExperimentRecord:
        """The experiment, of ``workspace_id`` (None: any workspace, for a caller that
        proved access otherwise); `NotFound` when there is none."""
        _check_id(experiment_id)
        store = Store(self.store_path)
        try:
            found = store.experiment_record(experiment_id, workspace_id)
        finally:
            store.close()
        if found is None:
            raise NotFound(
                f"no experiment {experiment_id!r} in the workspace of this API key; check "
                "the id, and that the key belongs to the experiment's workspace"
            )
        return found

    def compute(self, experiment: ExperimentRecord) -> Computed:
        """Query the aggregates and compute the results. An ended experiment's are those
        of its run; the first results after it completed without the decider are its
        verdict, kept from then on."""
        if experiment.status not in _ENDED:
            return self._computed(experiment_spec(experiment))
        store = Store(self.store_path)
        try:
            kept = store.experiment_verdict(experiment.id)
            computed = self._computed(experiment_spec(experiment, kept))
            if kept is not None and kept.status is None:
                keep_verdict(store, experiment.id, computed.results)
            return computed
        finally:
            store.close()

    def timeline(self, experiment: ExperimentRecord, bucket: Bucket = "day") -> list[TimelinePoint]:
        """Entries and conversions of the experiment's primary metric per ``bucket`` (over
        its run, once it ended)."""
        return list(self.summary(experiment_spec(experiment), bucket).timeline)

    def summary(self, spec: ExperimentSpec, bucket: Bucket = "day") -> UnitSummary:
        """The experiment's arms and timeline in ``bucket``s, from one query, kept while
        its data is unchanged: a results page's results and chart share it, whatever
        verdict the spec carries (the verdict does not change what is counted)."""
        counted = msgspec.structs.replace(spec, verdict=None)
        return self.cache.get(f"summary:{bucket}", counted, lambda: self._summary(counted, bucket))

    def _summary(self, spec: ExperimentSpec, bucket: Bucket) -> UnitSummary:
        if spec.window is None and self.summaries is not None:
            kept = self.summaries.read(spec)
            if kept is not None:
                return unit_summary(kept, spec, bucket)
        return fetch_summary(self.run, spec, bucket)

    def devices(self, experiment: ExperimentRecord) -> tuple[DeviceRow, ...]:
        """The experiment's units and primary conversions per arm and device (over its
        run, once it ended), kept while its data is unchanged."""
        counted = experiment_spec(experiment)
        return self.cache.get("devices", counted, lambda: fetch_devices(self.run, counted))

    def served_config_version(self) -> int | None:
        """The config version this worker's edge serves; None while it loads its first,
        or without an edge."""
        kv = None if self.served is None else self.served.kv
        return None if kv is None else kv.version

    def config_version(self) -> int:
        """The store's config version: what the edge serves once it has caught up."""
        store = Store(self.store_path)
        try:
            return store.config_version()
        finally:
            store.close()

    def _computed(self, spec: ExperimentSpec) -> Computed:
        return self.cache.get("results", spec, lambda: self._compute(spec))

    def _compute(self, spec: ExperimentSpec) -> Computed:
        started = time.perf_counter()
        summary = self.summary(spec)
        queried = time.perf_counter()
        results = compute_results(spec, list(summary.arms))
        done = time.perf_counter()
        return Computed(
            results=results,
            computed_at=datetime.now(UTC),
            query_ms=round(1000 * (queried - started), 3),
            compute_ms=round(1000 * (done - queried), 3),
            summary_version=summary.summary_version,
        )


class ResultsMeta(msgspec.Struct, frozen=True):
    """How the figures were made: when, how long the query and the statistics took, the
    Monte Carlo draws and seed, its largest standard error, and the decision rules; and
    the config: ``config_version`` is the control plane's latest, ``served_config_version``
    the one this server's edge serves (None while it loads its first): equal once the
    experiment's last change reaches visitors. ``summary_version`` is the version of the
    kept summary the figures were read from (a large running experiment's,
    `analytics.summaries`), None when they were counted from every unit."""

    computed_at: datetime
    query_ms: float
    compute_ms: float
    draws: int | None
    seed: int
    mc_error: float | None
    rules: DecisionRules
    config_version: int
    served_config_version: int | None
    summary_version: int | None = None


class ResultsData(ClawSplitResults, frozen=True):
    """``/results``: ClawSplit's shape plus the leader's expected loss and lift interval,
    the sample-ratio test, and a signed link to the results page (valid 7 days)."""

    expected_loss: float | None
    lift_interval: tuple[float, float] | None
    srm: SampleRatio | None
    report_url: str


class _ResultsAnswer(msgspec.Struct):
    data: ResultsData
    meta: ResultsMeta


class _MetricsAnswer(msgspec.Struct):
    data: CrewkitMetrics
    meta: ResultsMeta


def _meta(computed: Computed, config_version: int, served: int | None) -> ResultsMeta:
    rules = computed.results.rules
    return ResultsMeta(
        config_version=config_version,
        served_config_version=served,
        computed_at=computed.computed_at,
        query_ms=computed.query_ms,
        compute_ms=computed.compute_ms,
        draws=rules.draws,
        seed=rules.seed,
        mc_error=computed.results.mc_error,
        rules=rules,
        summary_version=computed.summary_version,
    )


class _Answered(msgspec.Struct, frozen=True):
    meta: ResultsMeta
    report_path: str | None


class _ExperimentEndpoint:
    def __init__(self, services: Services, source: ResultsSource) -> None:
        self.services = services
        self.source = source

    async def experiment(self, scope: Scope) -> tuple[Auth, ExperimentRecord]:
        """The request's key and its workspace's experiment of the path; 404 for any
        other."""
        auth = await authenticate(self.services, scope)
        experiment_id = scope["path_params"]["experiment_id"]
        found = await asyncio.to_thread(self.source.experiment, experiment_id, auth.workspace_id)
        return auth, found

    async def computed(self, scope: Scope) -> tuple[Auth, ExperimentRecord, Computed]:
        auth, experiment, computed, _ = await self.answered(scope)
        return auth, experiment, computed

    async def answered(
        self, scope: Scope, link: ReportLinks | None = None
    ) -> tuple[Auth, ExperimentRecord, Computed, _Answered]:
        """The key, its experiment and its results, with their meta and, given the report
        ``link``s, the experiment's signed report path: one trip to a thread."""
        auth = await authenticate(self.services, scope)
        experiment_id = scope["path_params"]["experiment_id"]

        def load() -> tuple[ExperimentRecord, Computed, _Answered]:
            experiment = self.source.experiment(experiment_id, auth.workspace_id)
            computed = self.source.compute(experiment)
            version = self.source.config_version()
            meta = _meta(computed, version, self.source.served_config_version())
            path = None if link is None else link.path(experiment.id)
            return experiment, computed, _Answered(meta, path)

        return auth, *await asyncio.to_thread(load)


class ExperimentResultsEndpoint(_ExperimentEndpoint):
    """``GET /v1/experiments/{experiment_id}/results``."""

    def __init__(self, services: Services, source: ResultsSource, links: ReportLinks) -> None:
        super().__init__(services, source)
        self.links = links

    async def __call__(self, scope: Scope, receive: Receive) -> Reply:
        auth, _, computed, answered = await self.answered(scope, self.links)
        results = computed.results
        view = clawsplit_view(results)
        data = ResultsData(
            **msgspec.structs.asdict(view),
            expected_loss=results.expected_loss,
            lift_interval=results.lift_interval,
            srm=results.srm,
            report_url=base_url(scope) + (answered.report_path or ""),
        )
        # ClawSplit's results are the object itself (its quickstart reads results.status).
        answer = data if auth.flavour in CLAWSPLIT else _ResultsAnswer(data, answered.meta)
        return Reply(200, msgspec.json.encode(answer))


class ExperimentMetricsEndpoint(_ExperimentEndpoint):
    """``GET /v1/experiments/{experiment_id}/metrics``."""

    async def __call__(self, scope: Scope, receive: Receive) -> Reply:
        _, _, computed, answered = await self.answered(scope)
        answer = _MetricsAnswer(crewkit_metrics_view(computed.results), answered.meta)
        return Reply(200, msgspec.json.encode(answer))


class TimelineQuery(msgspec.Struct, frozen=True):
    """The query of ``GET /v1/experiments/{experiment_id}/timeline``."""

    bucket: Annotated[
        Literal["day", "hour", "auto"],
        msgspec.Meta(
            description="day: per UTC day; hour: per UTC hour; auto: per hour while the "
            "experiment's run (from its start to its end, or now) is under 3 days, else "
            "per day."
        ),
    ] = "day"


class TimelineData(msgspec.Struct, frozen=True):
    """``/timeline``: per bucket (a UTC day, or with ``hour`` an hour of it) and variant,
    the units that entered and those that first converted on the primary goal (or first
    succeeded) in it, by bucket then variant id; ``bucket`` is the granularity used."""

    bucket: Bucket
    points: tuple[TimelinePoint, ...]


class _AnsweredMeta(msgspec.Struct, frozen=True):
    """When the answer was made; its figures are kept while the experiment's data is
    unchanged, like the results'."""

    answered_at: datetime


class _TimelineAnswer(msgspec.Struct):
    data: TimelineData
    meta: _AnsweredMeta


def auto_bucket(experiment: ExperimentRecord, now: datetime) -> Bucket:
    """Hours while the experiment's run (start to end, or to ``now``) is shorter than
    `YOUNG`, and before it started; days after."""
    if experiment.started_at is None:
        return "hour"
    start = datetime.fromisoformat(experiment.started_at)
    end = datetime.fromisoformat(experiment.ended_at) if experiment.ended_at else now
    return "hour" if end - start < YOUNG else "day"


class ExperimentTimelineEndpoint(_ExperimentEndpoint):
    """``GET /v1/experiments/{experiment_id}/timeline?bucket=day|hour|auto``."""

    async def __call__(self, scope: Scope, receive: Receive) -> Reply:
        bucket_text = query_params(scope).get("bucket", "day")
        if bucket_text not in ("day", "hour", "auto"):
            raise InvalidRequest(
                f"bucket must be day, hour or auto, not {bucket_text[:40]!r}; day is the default"
            )
        _, experiment = await self.experiment(scope)
        now = datetime.now(UTC)
        bucket: Bucket
        if bucket_text == "auto":
            bucket = auto_bucket(experiment, now)
        else:
            bucket = "hour" if bucket_text == "hour" else "day"
        points = await asyncio.to_thread(self.source.timeline, experiment, bucket)
        answer = _TimelineAnswer(TimelineData(bucket, tuple(points)), _AnsweredMeta(now))
        return Reply(200, msgspec.json.encode(answer))


class DeviceArm(msgspec.Struct, frozen=True):
    """One device of one arm: its units (by the device of their first exposure or task;
    ``""`` when the client sent none), those that converted on the primary goal (or had a
    successful task), and their rate."""

    variant_id: str
    name: str
    device: str
    units: int
    conversions: int
    rate: float | None


class DevicesData(msgspec.Struct, frozen=True):
    """``/devices``: each arm's units and primary conversions per device, in the
    experiment's variant order then by device; ``primary_metric`` is the goal's id (web,
    '' without goals) or ``task_completion`` (agent) the conversions are of."""

    primary_metric: str
    devices: tuple[DeviceArm, ...]


class _DevicesAnswer(msgspec.Struct):
    data: DevicesData
    meta: _AnsweredMeta


class ExperimentDevicesEndpoint(_ExperimentEndpoint):
    """``GET /v1/experiments/{experiment_id}/devices``."""

    async def __call__(self, scope: Scope, receive: Receive) -> Reply:
        _, experiment = await self.experiment(scope)
        rows = await asyncio.to_thread(self.source.devices, experiment)
        order = {v.id: i for i, v in enumerate(experiment.variants)}
        names = {v.id: v.name for v in experiment.variants}
        # Units of variants the experiment no longer has are left out, as in its results.
        known = sorted(
            (r for r in rows if r.variant_id in order), key=lambda r: order[r.variant_id]
        )
        if experiment.kind == "agent":
            primary = "task_completion"
        else:
            primary = experiment.goals[0].id if experiment.goals else ""
        data = DevicesData(
            primary,
            tuple(
                DeviceArm(
                    r.variant_id,
                    names[r.variant_id],
                    r.device,
                    r.units,
                    r.conversions,
                    r.conversions / r.units if r.units else None,
                )
                for r in known
            ),
        )
        answer = _DevicesAnswer(data, _AnsweredMeta(datetime.now(UTC)))
        return Reply(200, msgspec.json.encode(answer))


def routes(services: Services, source: ResultsSource, links: ReportLinks) -> list[Route]:
    """The ``/results``, ``/metrics``, ``/timeline`` and ``/devices`` routes of an
    experiment, over the worker's ``services``, its results ``source`` and its report
    ``links``."""
    one = "/v1/experiments/{experiment_id}"
    # An id that cannot be one is a 400; ClickHouse unavailable or too slow, a 503.
    errors = (400, 404, 503)
    results = ApiOperation(
        handler=ExperimentResultsEndpoint(services, source, links),
        summary="An experiment's results: per variant, Bayesian and frequentist, with SRM",
        data=ResultsData,
        meta=ResultsMeta,
        errors=errors,
    )
    metrics = ApiOperation(
        handler=ExperimentMetricsEndpoint(services, source),
        summary="crewkit's metrics of an experiment: control and variant arms, significance",
        data=CrewkitMetrics,
        meta=ResultsMeta,
        errors=errors,
    )
    timeline = ApiOperation(
        handler=ExperimentTimelineEndpoint(services, source),
        summary="An experiment's units entered and converted per day or hour, per variant",
        data=TimelineData,
        meta=_AnsweredMeta,
        query=TimelineQuery,
        errors=errors,
    )
    devices = ApiOperation(
        handler=ExperimentDevicesEndpoint(services, source),
        summary="An experiment's units and primary conversions per variant and device",
        data=DevicesData,
        meta=_AnsweredMeta,
        errors=errors,
    )
    return [
        api_route(f"{one}/results", {"GET": results}),
        api_route(f"{one}/metrics", {"GET": metrics}),
        api_route(f"{one}/timeline", {"GET": timeline}),
        api_route(f"{one}/devices", {"GET": devices}),
    ]
