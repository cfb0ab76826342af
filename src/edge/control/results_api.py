"""``GET /v1/experiments/{id}/results`` and ``GET /v1/experiments/{id}/metrics``.

Both take a workspace API key (``Authorization: Bearer sk_live_...``) and answer
``{"data": ..., "meta": {...}}``. An unknown id and another workspace's experiment are the
same 404. ``/results`` is a superset of ClawSplit's results (status, winner, p_value,
variants by name) with the Bayesian figures, the SRM test, the samples still needed and a
signed ``report_url`` (`edge.control.report_links`) to the human-readable page;
``/metrics`` is crewkit's shape (control and variant arms, significance).

The experiment comes from the store, its aggregates from ClickHouse through the worker's
`QueryRunner` (`analytics.gateway.query_runner`); the query and the statistics run on a
thread, off the event loop. ClickHouse unavailable or too slow is a 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from starlette.routing import Route
from starlette.types import Receive, Scope

from analytics.aggregates import (
    ExperimentSpec,
    GoalSpec,
    QueryRunner,
    TimelinePoint,
    UnitSummary,
    VariantSpec,
    Verdict,
    VersionedCache,
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
from edge.control.api import ApiOperation, Auth, Reply, api_route, authenticate, base_url
from edge.control.flavours import CLAWSPLIT
from edge.control.records import ExperimentRecord, ExperimentVerdict
from edge.control.report_links import ReportLinks
from edge.control.services import Services
from edge.control.store import Store
from edge.errors import InvalidRequest, NotFound

__all__ = [
    "Computed",
    "ExperimentMetricsEndpoint",
    "ExperimentResultsEndpoint",
    "ResultsData",
    "ResultsMeta",
    "ResultsSource",
    "experiment_spec",
    "keep_verdict",
    "routes",
]

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


class ResultsSource:
    """Experiments from the store and their results from ClickHouse, for one worker.
    Blocking: call it on a thread. Each call opens its own store connection (cheap), so
    any number of threads may use one source.

    Results and the query they come from (which also gives the timeline) are kept in a
    `VersionedCache`: read again while no event of the experiment was inserted since,
    they cost one point query, not a computation."""

    def __init__(self, store_path: Path, run: QueryRunner) -> None:
        self.store_path = store_path
        self.run = run
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

    def timeline(self, experiment: ExperimentRecord) -> list[TimelinePoint]:
        """Daily entries and conversions of the experiment's primary metric (over its run,
        once it ended)."""
        return list(self.summary(experiment_spec(experiment)).timeline)

    def summary(self, spec: ExperimentSpec) -> UnitSummary:
        """The experiment's arms and timeline, from one query, kept while its data is
        unchanged: a results page's results and chart share it, whatever verdict the
        spec carries (the verdict does not change what is counted)."""
        counted = msgspec.structs.replace(spec, verdict=None)
        return self.cache.get("summary", counted, lambda: fetch_summary(self.run, counted))

    def _computed(self, spec: ExperimentSpec) -> Computed:
        return self.cache.get("results", spec, lambda: self._compute(spec))

    def _compute(self, spec: ExperimentSpec) -> Computed:
        started = time.perf_counter()
        aggregates = list(self.summary(spec).arms)
        queried = time.perf_counter()
        results = compute_results(spec, aggregates)
        done = time.perf_counter()
        return Computed(
            results=results,
            computed_at=datetime.now(UTC),
            query_ms=round(1000 * (queried - started), 3),
            compute_ms=round(1000 * (done - queried), 3),
        )


class ResultsMeta(msgspec.Struct, frozen=True):
    """How the figures were made: when, how long the query and the statistics took, the
    Monte Carlo draws and seed, its largest standard error, and the decision rules."""

    computed_at: datetime
    query_ms: float
    compute_ms: float
    draws: int | None
    seed: int
    mc_error: float | None
    rules: DecisionRules


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


def _meta(computed: Computed) -> ResultsMeta:
    rules = computed.results.rules
    return ResultsMeta(
        computed_at=computed.computed_at,
        query_ms=computed.query_ms,
        compute_ms=computed.compute_ms,
        draws=rules.draws,
        seed=rules.seed,
        mc_error=computed.results.mc_error,
        rules=rules,
    )


class _ExperimentEndpoint:
    def __init__(self, services: Services, source: ResultsSource) -> None:
        self.services = services
        self.source = source

    async def computed(self, scope: Scope) -> tuple[Auth, ExperimentRecord, Computed]:
        auth = await authenticate(self.services, scope)
        experiment_id = scope["path_params"]["experiment_id"]

        def load() -> tuple[ExperimentRecord, Computed]:
            experiment = self.source.experiment(experiment_id, auth.workspace_id)
            return experiment, self.source.compute(experiment)

        return auth, *await asyncio.to_thread(load)


class ExperimentResultsEndpoint(_ExperimentEndpoint):
    """``GET /v1/experiments/{experiment_id}/results``."""

    def __init__(self, services: Services, source: ResultsSource, links: ReportLinks) -> None:
        super().__init__(services, source)
        self.links = links

    async def __call__(self, scope: Scope, receive: Receive) -> Reply:
        auth, experiment, computed = await self.computed(scope)
        results = computed.results
        view = clawsplit_view(results)
        link = await asyncio.to_thread(self.links.path, experiment.id)
        data = ResultsData(
            **msgspec.structs.asdict(view),
            expected_loss=results.expected_loss,
            lift_interval=results.lift_interval,
            srm=results.srm,
            report_url=base_url(scope) + link,
        )
        # ClawSplit's results are the object itself (its quickstart reads results.status).
        answer = data if auth.flavour in CLAWSPLIT else _ResultsAnswer(data, _meta(computed))
        return Reply(200, msgspec.json.encode(answer))


class ExperimentMetricsEndpoint(_ExperimentEndpoint):
    """``GET /v1/experiments/{experiment_id}/metrics``."""

    async def __call__(self, scope: Scope, receive: Receive) -> Reply:
        _, _, computed = await self.computed(scope)
        answer = _MetricsAnswer(crewkit_metrics_view(computed.results), _meta(computed))
        return Reply(200, msgspec.json.encode(answer))


def routes(services: Services, source: ResultsSource, links: ReportLinks) -> list[Route]:
    """The ``/results`` and ``/metrics`` routes of an experiment, over the worker's
    ``services``, its results ``source`` and its report ``links``."""
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
    return [
        api_route(f"{one}/results", {"GET": results}),
        api_route(f"{one}/metrics", {"GET": metrics}),
    ]
