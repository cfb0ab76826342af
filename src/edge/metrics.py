"""Ingest counters and ``GET /metrics`` in the Prometheus text format.

Each worker process counts what it received, accepted and rejected, and writes its
counters to ``<data-dir>/run/metrics-<pid>.json`` every second (and at shutdown); the
flusher, in the server's parent process, writes its status next to the spool. Any worker
answering ``/metrics`` sums every worker's file, so the figures do not depend on which
worker a scrape reaches. A worker that died keeps its file, so counters never go down.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from starlette.types import Receive, Send

from edge.http import send_response
from edge.ingest.flusher import read_status

__all__ = ["IngestCounters", "MetricsEndpoint", "flusher_families", "render_metrics"]


class IngestCounters(msgspec.Struct):
    """One worker's event counters, by source (browser, agent) and rejection reason."""

    received: dict[str, int] = {}
    accepted: dict[str, int] = {}
    rejected: dict[str, int] = {}

    def receive(self, source: str, count: int) -> None:
        """Count events that arrived in a well-formed request."""
        self.received[source] = self.received.get(source, 0) + count

    def accept(self, source: str, count: int) -> None:
        """Count events now in the spool."""
        self.accepted[source] = self.accepted.get(source, 0) + count

    def reject(self, reason: str, count: int = 1) -> None:
        """Count events (or whole requests, reason ``request_<code>``) turned away."""
        self.rejected[reason] = self.rejected.get(reason, 0) + count

    def save(self, run_dir: Path) -> None:
        """Write this worker's counters where `/metrics` reads them (atomically)."""
        path = run_dir / f"metrics-{os.getpid()}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(msgspec.json.encode(self))
        os.replace(tmp, path)


_counters_decoder = msgspec.json.Decoder(IngestCounters)


def _summed(run_dir: Path) -> IngestCounters:
    total = IngestCounters()
    for path in run_dir.glob("metrics-*.json"):
        try:
            part = _counters_decoder.decode(path.read_bytes())
        except (OSError, msgspec.DecodeError):
            continue  # a file being replaced right now; the next scrape reads it
        for mine, theirs in (
            (total.received, part.received),
            (total.accepted, part.accepted),
            (total.rejected, part.rejected),
        ):
            for key, value in theirs.items():
                mine[key] = mine.get(key, 0) + value
    return total


def _family(lines: list[str], name: str, kind: str, help_text: str) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} {kind}")


def render_metrics(run_dir: Path, extra: Callable[[list[str]], None] | None = None) -> bytes:
    """The Prometheus exposition of every worker's counters, plus ``extra`` families."""
    total = _summed(run_dir)
    lines: list[str] = []
    for name, values, label, help_text in (
        ("splitedge_events_received_total", total.received, "source", "Events received."),
        ("splitedge_events_accepted_total", total.accepted, "source", "Events spooled (2xx)."),
        ("splitedge_events_rejected_total", total.rejected, "reason", "Events turned away."),
    ):
        _family(lines, name, "counter", help_text)
        for key, value in sorted(values.items()):
            lines.append(f'{name}{{{label}="{key}"}} {value}')
    if extra is not None:
        extra(lines)
    return ("\n".join(lines) + "\n").encode()


def flusher_families(spool_dir: Path) -> Callable[[list[str]], None]:
    """The metric families of the flusher, read from the status it publishes."""

    def add(lines: list[str]) -> None:
        status = read_status(spool_dir)
        if status is None:
            return
        for name, kind, value, help_text in (
            ("splitedge_events_flushed_total", "counter", status.rows_flushed,
             "Events inserted into ClickHouse."),
            ("splitedge_segments_flushed_total", "counter", status.segments_flushed,
             "Spool segments inserted into ClickHouse."),
            ("splitedge_clickhouse_errors_total", "counter", status.errors,
             "Failed ClickHouse connections and inserts."),
            ("splitedge_clickhouse_up", "gauge", int(status.clickhouse == "ok"),
             "1 while ClickHouse accepts inserts."),
            ("splitedge_spool_segments", "gauge", status.pending_segments,
             "Segments in the spool, open and finished."),
            ("splitedge_spool_bytes", "gauge", status.pending_bytes, "Bytes in the spool."),
            ("splitedge_flush_seconds", "gauge", status.last_flush_seconds or 0.0,
             "Duration of the last segment flush (read, insert, delete)."),
        ):  # fmt: skip
            _family(lines, name, kind, help_text)
            lines.append(f"{name} {value}")

    return add


class MetricsEndpoint:
    """``GET /metrics``."""

    def __init__(self, run_dir: Path, extra: Callable[[list[str]], None] | None = None):
        self.run_dir = run_dir
        self.extra = extra

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        body = render_metrics(self.run_dir, self.extra)
        headers = [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]
        await send_response(send, 200, headers, body)
