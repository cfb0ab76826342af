"""One worker's counts of the events it received, spooled and turned away, and of the
unknown event fields it ignored.

The routes count in plain ints, and `edge.metrics.WorkerMetrics` hands the increments to
prometheus_client once a second: a multiprocess increment on every request would cost
about ten times as much (bench/metrics_hot_path.py).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

__all__ = ["IngestCounters"]


class IngestCounters:
    """One worker's event counters, by source (browser, agent) and rejection reason,
    counted in plain ints and published to prometheus_client by `publish`."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.received: dict[str, int] = {}
        self.accepted: dict[str, int] = {}
        self.rejected: dict[str, int] = {}
        self.unknown_fields: dict[str, int] = {}
        self._families = (
            (self.received, Counter("splitedge_events_received", "Events received.",
                                    ["source"], registry=registry)),
            (self.accepted, Counter("splitedge_events_accepted", "Events spooled (2xx).",
                                    ["source"], registry=registry)),
            (self.rejected, Counter("splitedge_events_rejected", "Events turned away.",
                                    ["reason"], registry=registry)),
            (self.unknown_fields, Counter("splitedge_events_unknown_fields",
                                          "Event fields this server does not know, ignored.",
                                          ["source"], registry=registry)),
        )  # fmt: skip
        self._published: dict[tuple[int, str], int] = {}

    def receive(self, source: str, count: int) -> None:
        """Count events that arrived in a well-formed request."""
        self.received[source] = self.received.get(source, 0) + count

    def accept(self, source: str, count: int) -> None:
        """Count events now in the spool."""
        self.accepted[source] = self.accepted.get(source, 0) + count

    def reject(self, reason: str, count: int = 1) -> None:
        """Count events (or whole requests, reason ``request_<code>``) turned away."""
        self.rejected[reason] = self.rejected.get(reason, 0) + count

    def ignore_unknown(self, source: str, count: int) -> None:
        """Count fields of accepted events that the server does not know and ignored."""
        self.unknown_fields[source] = self.unknown_fields.get(source, 0) + count

    def publish(self) -> None:
        """Add what was counted since the last call to the prometheus counters."""
        for index, (counts, counter) in enumerate(self._families):
            for label, total in list(counts.items()):
                done = self._published.get((index, label), 0)
                if total > done:
                    counter.labels(label).inc(total - done)
                    self._published[index, label] = total
