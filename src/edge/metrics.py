"""``GET /metrics`` in the Prometheus text format, on prometheus_client.

Granian's workers are processes, so the figures go through prometheus_client's
multiprocess mode: each worker's counters and histograms live in memory-mapped files
under one directory per server (`prepare_multiprocess_dir`, ``<data-dir>/run/prometheus``,
emptied at every start), and the worker a scrape reaches sums every worker's files. A
worker that died keeps its files, so counters never go down. The parent sets
``PROMETHEUS_MULTIPROC_DIR`` before it spawns the workers: prometheus_client picks its
mode when a process first imports it.

The hot path counts in plain ints (`IngestCounters`, `RequestLatency`) and hands the
increments to prometheus_client once a second (`WorkerMetrics.publish`): an increment of
a multiprocess value takes a lock, a getpid and an mmap write, and counting a request that
way costs about ten times as much (bench/metrics_hot_path.py). The flusher's figures and
the config snapshot's age are read when scraped.
"""

from __future__ import annotations

import bisect
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Receive, Scope, Send

from edge.http import send_response
from edge.ingest.counters import IngestCounters
from edge.ingest.status import read_status

__all__ = [
    "MULTIPROC_DIR_ENV",
    "IngestCounters",
    "RequestLatency",
    "RequestTimer",
    "WorkerMetrics",
    "prepare_multiprocess_dir",
    "route_group",
]

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

_CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
"""Upper bounds (seconds) of the request-latency histogram; +Inf is added."""

_EXACT_GROUPS = {"/v1/assign": "assign", "/v1/collect": "collect", "/v1/events": "events"}


def route_group(path: str) -> str:
    """The few route groups requests are timed by: ``snippet``, ``assign``, ``collect``,
    ``events``, ``api`` (the rest of ``/v1``), ``mcp``, ``reports`` and ``other``."""
    group = _EXACT_GROUPS.get(path)
    if group is not None:
        return group
    if path.startswith("/s/"):
        return "snippet"
    if path.startswith("/v1/"):
        return "api"
    if path == "/mcp":
        return "mcp"
    if path.startswith("/reports/"):
        return "reports"
    return "other"


def prepare_multiprocess_dir(run_dir: Path) -> Path:
    """The directory of a server's metric files under its ``run_dir`` (which the server
    empties at every start, so no dead worker's files are summed); set it as
    ``PROMETHEUS_MULTIPROC_DIR`` for the workers."""
    path = run_dir / "prometheus"
    path.mkdir(parents=True, exist_ok=True)
    return path


class RequestLatency:
    """Request durations by route group, bucketed in plain ints and published to the
    ``splitedge_request_duration_seconds`` histogram by `publish`."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.histogram = Histogram(
            "splitedge_request_duration_seconds",
            "Time to answer a request, by route group.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        # Per group: a count per bucket (the last one +Inf) and the sum of durations.
        self._counts: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}

    def observe(self, group: str, seconds: float) -> None:
        """Count one request of ``group`` that took ``seconds``."""
        counts = self._counts.get(group)
        if counts is None:
            counts = self._counts[group] = [0] * (len(LATENCY_BUCKETS) + 1)
            self._sums[group] = 0.0
        counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._sums[group] += seconds

    def publish(self) -> None:
        """Add the requests counted since the last call to the histogram."""
        for group, counts in list(self._counts.items()):
            if not any(counts):
                continue
            child = self.histogram.labels(group)
            # prometheus_client has no public way to add many observations at once: its
            # per-bucket values and sum are what `Histogram.observe` increments.
            for value, count in zip(child._buckets, counts, strict=True):
                if count:
                    value.inc(count)
            child._sum.inc(self._sums[group])
            self._counts[group] = [0] * len(counts)
            self._sums[group] = 0.0


class RequestTimer:
    """An ASGI app: ``app``, each HTTP request timed into ``latency`` by route group."""

    def __init__(self, app: ASGIApp, latency: RequestLatency) -> None:
        self.app = app
        self.latency = latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.latency.observe(route_group(scope["path"]), time.perf_counter() - started)


class _FlusherCollector(Collector):
    """The flusher's families, from the status it publishes in the spool directory."""

    def __init__(self, spool_dir: Path) -> None:
        self.spool_dir = spool_dir

    def collect(self) -> Iterable[Metric]:
        status = read_status(self.spool_dir)
        if status is None:
            return  # no flusher has written one yet
        yield CounterMetricFamily(
            "splitedge_events_flushed", "Events inserted into ClickHouse.", status.rows_flushed
        )
        yield CounterMetricFamily(
            "splitedge_events_duplicate",
            "Events not inserted because an event with their id was stored already.",
            status.rows_duplicate,
        )
        yield CounterMetricFamily(
            "splitedge_segments_flushed",
            "Spool segments inserted into ClickHouse.",
            status.segments_flushed,
        )
        yield CounterMetricFamily(
            "splitedge_clickhouse_errors",
            "Failed ClickHouse connections and inserts.",
            status.errors,
        )
        for name, value, help_text in (
            ("splitedge_clickhouse_up", int(status.clickhouse == "ok"),
             "1 while ClickHouse accepts inserts."),
            ("splitedge_spool_segments", status.pending_segments,
             "Segments in the spool, open and finished."),
            ("splitedge_spool_bytes", status.pending_bytes, "Bytes in the spool."),
            ("splitedge_flush_seconds", status.last_flush_seconds or 0.0,
             "Duration of the last segment flush (read, insert, delete)."),
        ):  # fmt: skip
            yield GaugeMetricFamily(name, help_text, value)


class _SnapshotAgeCollector(Collector):
    """The age of the config snapshot the scraped worker serves."""

    def __init__(self, loaded_at: Callable[[], float | None]) -> None:
        self.loaded_at = loaded_at

    def collect(self) -> Iterable[Metric]:
        loaded_at = self.loaded_at()
        if loaded_at is not None:
            yield GaugeMetricFamily(
                "splitedge_config_snapshot_age_seconds",
                "Seconds since the worker answering loaded the config it serves "
                "(its version last changed).",
                time.time() - loaded_at,
            )


class WorkerMetrics:
    """The metrics of one worker: its ingest counters, its request latencies, and (called
    as an ASGI app) the ``GET /metrics`` endpoint, which shows every worker's
    (multiprocess mode, when ``PROMETHEUS_MULTIPROC_DIR`` is set) or this process's alone
    (when it is not, e.g. an app built in a test). ``config_loaded_at`` is when the
    served config was loaded (Unix seconds), None before it is."""

    def __init__(self, spool_dir: Path, config_loaded_at: Callable[[], float | None]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        multiprocess_dir = os.environ.get(MULTIPROC_DIR_ENV)
        # In multiprocess mode the metric objects write files and the collector reads
        # every worker's; registering the objects too would count this worker twice.
        own = None if multiprocess_dir else self.registry
        self.counters = IngestCounters(own)
        self.latency = RequestLatency(own)
        # Rare by design (edge.serving.KVCatchUp.after_miss): counted as they happen.
        self.kv_miss_checks = Counter(
            "splitedge_kv_miss_version_checks",
            "Times a KV miss (unknown site key or experiment) asked the store's version.",
            registry=own,
        )
        if multiprocess_dir:
            MultiProcessCollector(self.registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]
        self.registry.register(_FlusherCollector(spool_dir))
        self.registry.register(_SnapshotAgeCollector(config_loaded_at))

    def publish(self) -> None:
        """Hand what the hot path counted since the last call to prometheus_client."""
        self.counters.publish()
        self.latency.publish()

    def timed(self, app: ASGIApp) -> RequestTimer:
        """``app`` with its requests timed by route group."""
        return RequestTimer(app, self.latency)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.publish()  # this worker's own figures as of now; the others' within a second
        body = generate_latest(self.registry)
        await send_response(send, 200, [(b"content-type", _CONTENT_TYPE)], body)
