"""A real outage against the SDK's task events: `splitedge_client.Client` tracks
``--rate`` events a second (default 10) while ``splitedge serve`` is up for ``--before``
seconds, down for ``--outage`` seconds (default 600: the issue's ten minutes) and up
again for ``--after``; then the client closes and the events are counted in the
server's ClickHouse by event id. Prints events sent, counted and lost, and how long the
client took to drain its queue once the server was back. The client runs its default
retry policy (backoff doubling to 8 s, no last try). Bounded: it stops itself after
about before + outage + after + 60 seconds.

    .venv/bin/python bench/sdk_outage.py [--outage 600] [--rate 10] [--before 10] [--after 30]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

# The repository root, for tests.support (seeded stores, servers); bench/ last, so that
# "edge" names the splitedge package and not bench/edge.py.
_BENCH_DIR = os.path.dirname(os.path.realpath(__file__))
_ROOT_DIR = os.path.dirname(_BENCH_DIR)
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != _BENCH_DIR] + [_ROOT_DIR]

from tests.support import (  # noqa: E402
    clickhouse_rows,
    free_port,
    running_server,
    seed_store,
    wait_flushed,
)

from splitedge_client import Client  # noqa: E402


def track_at(client: Client, rate: float, stop: threading.Event, ids: list[str]) -> None:
    """``rate`` track_task calls a second until ``stop``; their event ids in ``ids``."""
    period = 1 / rate
    next_at = time.monotonic()
    while not stop.is_set():
        ids.append(client.track_task("outage-bot", "tick", "success", cost=0.001,
                                     session_id=f"s-{len(ids)}"))  # fmt: skip
        next_at += period
        stop.wait(max(next_at - time.monotonic(), 0.0))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outage", type=float, default=600, help="seconds the server is down")
    parser.add_argument("--rate", type=float, default=10, help="track_task calls a second")
    parser.add_argument("--before", type=float, default=10, help="seconds up before")
    parser.add_argument("--after", type=float, default=30, help="seconds up after")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="splitedge-outage-") as tmp:
        data = Path(tmp) / "data"
        key = seed_store(data / "splitedge.sqlite3").key.key
        port = free_port()
        client = Client(f"http://127.0.0.1:{port}", key)
        ids: list[str] = []
        stop = threading.Event()
        ticker = threading.Thread(target=track_at, args=(client, args.rate, stop, ids))
        with running_server(data, port=port):
            ticker.start()
            time.sleep(args.before)
        print(f"server down at {len(ids)} events tracked", flush=True)
        time.sleep(args.outage)
        during = client.stats()
        print(f"server back after {args.outage:.0f} s: {during}", flush=True)
        with running_server(data, port=port) as server:
            back = time.monotonic()
            while client.stats().pending > args.rate:  # what is left is the current batch
                time.sleep(0.1)
            drained = time.monotonic() - back
            time.sleep(max(args.after - drained, 0.0))
            stop.set()
            ticker.join()
            client.close(60)
            stats = client.stats()
            wait_flushed(server, stats.sent - during.sent)
        rows = clickhouse_rows(
            data, "SELECT event_id FROM splitedge.events WHERE kind = 'task' GROUP BY event_id"
        )
    counted = {str(row[0]) for row in rows}
    lost = len(set(ids) - counted)
    print(
        f"\noutage {args.outage:.0f} s at {args.rate:g} track_task/s: events tracked "
        f"{len(ids)}, sent {stats.sent}, counted in ClickHouse {len(counted)}, lost {lost}; "
        f"retries {during.retries} during the outage; queue drained {drained:.1f} s after "
        f"the server came back; dropped {stats.dropped}, refused {stats.refused}"
    )
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
