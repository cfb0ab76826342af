"""What counting costs a hot request (`edge.metrics`), in nanoseconds per request.

Three ways to count one ``POST /v1/collect`` (events received and accepted, and its
latency in the route group's histogram), each in prometheus_client's multiprocess mode
as the server runs it:

- ``before``: the ingest counters in plain ints, no latency (the edge before /metrics
  moved to prometheus_client);
- ``buffered``: the same counters plus the request timer's plain-int histogram, both
  handed to prometheus_client once a second (what the edge does);
- ``direct``: prometheus_client's counter and histogram on every request (each increment
  takes a lock, a getpid and an mmap write).

The best of several repeats is shown: the machine is shared, so read ratios.

    .venv/bin/python bench/metrics_hot_path.py [--requests 200000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import timeit
from collections.abc import Callable

# Python puts bench/ first on sys.path when it runs a script from it, and there "edge"
# names bench/edge.py, not the splitedge package; this script needs nothing from bench/.
_BENCH_DIR = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != _BENCH_DIR]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        # Before prometheus_client is imported, as the server sets it for its workers.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = scratch
        from prometheus_client import Counter, Histogram

        from edge.ingest.counters import IngestCounters
        from edge.metrics import LATENCY_BUCKETS, RequestLatency, route_group

        counters, latency = IngestCounters(None), RequestLatency(None)
        received = Counter("bench_received", "", ["source"], registry=None).labels("browser")
        accepted = Counter("bench_accepted", "", ["source"], registry=None).labels("browser")
        histogram = Histogram(
            "bench_seconds", "", ["route"], buckets=LATENCY_BUCKETS, registry=None
        )

        def before() -> None:
            counters.receive("browser", 20)
            counters.accept("browser", 20)

        def buffered() -> None:
            started = time.perf_counter()
            counters.receive("browser", 20)
            counters.accept("browser", 20)
            latency.observe(route_group("/v1/collect"), time.perf_counter() - started)

        def direct() -> None:
            started = time.perf_counter()
            received.inc(20)
            accepted.inc(20)
            histogram.labels(route_group("/v1/collect")).observe(time.perf_counter() - started)

        ways: list[tuple[str, Callable[[], None]]] = [
            ("before", before),
            ("buffered", buffered),
            ("direct", direct),
        ]
        for name, count in ways:
            best = min(timeit.repeat(count, number=args.requests, repeat=args.repeat))
            print(f"{name:10} {best / args.requests * 1e9:8.0f} ns/request")

        def publish() -> None:
            buffered()  # something new to hand over, as after a second of traffic
            counters.publish()
            latency.publish()

        best = min(timeit.repeat(publish, number=1000, repeat=args.repeat)) / 1000
        print(f"{'publish':10} {best * 1e6:8.1f} µs, once a second per worker")


if __name__ == "__main__":
    main()
