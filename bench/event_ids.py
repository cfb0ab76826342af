"""What exactly once per event id costs the flusher, against a large table of recorded ids.

A temporary chDB warehouse (migrated by `analytics.warehouse.migrate`) gets event ids
recorded in ``splitedge.event_ids`` up to each of ``--sizes`` (default 10M, then 30M), spread evenly
over the 30 days of the horizon, one partition a day, filed under the second of their
time as the flusher files them. Then, for each size, ``--rounds`` times, a fresh segment
of ``--batch`` browser events (90% new ids made now, 10% retries of ids recorded in the
last 6 hours, with the ``ts`` they were first sent with) goes through:

- **baseline**: the flusher's insert without the check: ``insert_arrow`` into
  ``splitedge.events`` under a new token, what every segment cost before;
- **deliver**: `edge.ingest.sinks.ClickHouseSink.deliver`, the whole check: the
  segment's own repeats, the lookup, the events insert, the ids insert;
- **lookup**: `analytics.warehouse.recorded_event_ids` alone, and for a segment of new
  ids only (no retries: the usual segment);
- **previous lookup**: the design that was not merged, in the same run over the same
  ids: a table ordered by ``(workspace_id, event_id)`` (8,192-row granules) and the ids
  as one bound ``Array(String)`` parameter.

Every segment has new ids, so ClickHouse's caches of conditions and marks cannot answer
from an earlier round. Last, ``--dense`` more ids are recorded in the last minute (a
minute of a busy site) and the lookup is timed again: its cost grows with the ids
recorded in the seconds of its batch, not with the table. Medians of the rounds, wall
time (chDB runs in this process).

    .venv/bin/python bench/event_ids.py [--sizes 10000000,30000000] [--batch 10000]
                                        [--rounds 7] [--dense 1000000] [--write]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# Python puts bench/ first on sys.path when it runs a script from it, and there "edge"
# names bench/edge.py, not the splitedge package. Keep bench/ on the path, but last.
_BENCH_DIR = os.path.dirname(os.path.realpath(__file__))
_ROOT_DIR = os.path.dirname(_BENCH_DIR)
_AFTER = [_ROOT_DIR, _BENCH_DIR]
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") not in _AFTER] + _AFTER

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from analytics import warehouse  # noqa: E402
from edge.ingest.schema import EVENT_SCHEMA  # noqa: E402
from edge.ingest.sinks import ClickHouseSink  # noqa: E402
from report import environment, publish  # noqa: E402

RESULTS_INTRO = """\
## Exactly once per event id (issue 21): bench/event_ids.py and bench/ingest.py

The flusher inserts only events whose `(workspace_id, event_id)` is not in
`splitedge.event_ids`, then records their ids (`analytics.warehouse`, "Exactly once per
event id"). bench/event_ids.py measures that check against 10M and 30M recorded ids in one
run: per segment of 10,000 browser events (10% retries), the flusher's whole
`ClickHouseSink.deliver` and its lookup (and the lookup of a segment without retries),
beside the bare events insert of the same
segment (the baseline: what a segment cost before) and the lookup of the design that was
not merged (ids ordered by `(workspace_id, event_id)`, sent as one `Array(String)`
parameter). A lookup reads, in each part, the granules of the batch's seconds that may
hold one of its ids, so its cost grows with the ids recorded in those seconds (at most
one 1,024-row granule per id looked up), not with the 30-day horizon; the previous
lookup read every granule of the table once it held a few million ids.
"""

DAY = 86_400
# The bucket of an id recorded at a DateTime, as `warehouse.event_id_buckets` files it.
BUCKET_SQL = "toDateTime({})"
T_WORKSPACE = "ws-bench"


def timed(call: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) seconds of a call; the CPU time is the process's, chDB's threads too."""
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - wall, time.process_time() - cpu


def fill(client: Any, rows: int, days: int = 30) -> None:
    """``rows`` more recorded ids over the last ``days`` days, one insert (one partition)
    a day, each filed under the second of its time."""
    now = int(time.time())
    per_day = rows // days
    for day in range(days):
        client.command(
            f"INSERT INTO {warehouse.EVENT_IDS_TABLE} (workspace_id, bucket, event_id, "
            f"recorded_at) SELECT '{T_WORKSPACE}', {BUCKET_SQL.format('t')}, "
            "toString(generateUUIDv4()), t FROM (SELECT toDateTime("
            f"{now - day * DAY} - intDiv(number * {DAY}, {per_day}), 'UTC') AS t "
            f"FROM numbers({per_day}))"
        )


def dense(client: Any, rows: int) -> None:
    """``rows`` more ids recorded in the last minute, as a busy site records them."""
    client.command(
        f"INSERT INTO {warehouse.EVENT_IDS_TABLE} (workspace_id, bucket, event_id) "
        f"SELECT '{T_WORKSPACE}', {BUCKET_SQL.format('now() - number % 60')}, "
        f"toString(generateUUIDv4()) FROM numbers({rows})"
    )


_PREVIOUS = "splitedge.bench_previous_event_ids"


def copy_to_previous(client: Any) -> None:
    """The previous design's table, holding the same ids."""
    client.command(f"DROP TABLE IF EXISTS {_PREVIOUS}")
    client.command(
        f"CREATE TABLE {_PREVIOUS} (workspace_id LowCardinality(String), event_id String, "
        "recorded_at DateTime('UTC')) ENGINE = MergeTree PARTITION BY toYYYYMMDD(recorded_at) "
        "ORDER BY (workspace_id, event_id)"
    )
    client.command(
        f"INSERT INTO {_PREVIOUS} SELECT workspace_id, event_id, recorded_at "
        f"FROM {warehouse.EVENT_IDS_TABLE}"
    )


def previous_lookup(client: Any, ids: list[str]) -> set[str]:
    result = client.query(
        f"SELECT event_id FROM {_PREVIOUS} "
        "WHERE workspace_id = {workspace:String} AND event_id IN {ids:Array(String)}",
        parameters={"workspace": T_WORKSPACE, "ids": ids},
    )
    return {str(row[0]) for row in result.result_rows}


class Segments:
    """Fresh segments of browser events: new ids sent now, and retries of ids recorded
    in the last 6 hours with the time they were first sent at."""

    def __init__(self, client: Any, batch: int, retries: int) -> None:
        rows = client.query(
            f"SELECT event_id, toUnixTimestamp(bucket) FROM {warehouse.EVENT_IDS_TABLE} "
            "WHERE bucket >= now() - 6 * 3600 AND bucket < toStartOfMinute(now()) "
            "ORDER BY rand() LIMIT 100000"
        ).result_rows
        self.recorded = [(str(i), int(b) * 1000 + 500) for i, b in rows]
        self.batch = batch
        self.retries = retries
        self.rng = np.random.default_rng(21)

    def __call__(self) -> pa.Table:
        picked = self.rng.choice(len(self.recorded), self.retries, replace=False)
        retried = [self.recorded[i] for i in picked]
        now = int(time.time() * 1000)
        fresh = self.batch - len(retried)
        ids = [str(uuid.uuid4()) for _ in range(fresh)] + [i for i, _ in retried]
        ts = [now - int(d) for d in self.rng.integers(0, 2000, fresh)] + [t for _, t in retried]
        n = len(ids)
        columns: dict[str, pa.Array] = {}
        for field in EVENT_SCHEMA:
            if field.name == "event_id":
                columns[field.name] = pa.array(ids)
            elif field.name == "client_ts":
                columns[field.name] = pa.array(ts, field.type)
            elif field.name == "received_at":
                columns[field.name] = pa.array([now] * n, field.type)
            elif field.name in ("workspace_id", "site_id"):
                columns[field.name] = pa.array([T_WORKSPACE] * n).dictionary_encode()
            elif field.name == "kind":
                columns[field.name] = pa.array(["exposure"] * n)
            elif pa.types.is_string(field.type):
                columns[field.name] = pa.array([f"v-{i}" for i in range(n)])
            else:
                columns[field.name] = pa.nulls(n, field.type)
        return pa.Table.from_pydict(columns, schema=EVENT_SCHEMA)


def id_rows(segment: pa.Table) -> pa.Table:
    """A segment's rows of the event ids table, as the flusher looks them up."""
    return pa.table({
        "workspace_id": segment["workspace_id"].cast(pa.string()),
        "bucket": warehouse.event_id_buckets(segment["client_ts"], segment["received_at"]),
        "event_id": segment["event_id"],
    })  # fmt: skip


def measure_size(client: Any, sink: ClickHouseSink, rounds: int, batch: int) -> dict[str, Any]:
    """The round medians in ms at the table's current size."""
    segments = Segments(client, batch, batch // 10)
    no_retries = Segments(client, batch, 0)
    times: dict[str, list[tuple[float, float]]] = {
        k: [] for k in ("baseline", "deliver", "lookup", "fresh", "previous")
    }
    duplicates: list[int] = []
    for n in range(rounds):
        tag = uuid.uuid4().hex
        segment = segments()
        settings = warehouse.insert_settings(f"bench-base-{tag}")
        times["baseline"].append(
            timed(lambda: client.insert_arrow(warehouse.EVENTS_TABLE, segment, settings=settings))
        )
        ids = id_rows(segments())
        times["lookup"].append(timed(lambda: warehouse.recorded_event_ids(client, ids)))
        fresh = id_rows(no_retries())
        times["fresh"].append(timed(lambda: warehouse.recorded_event_ids(client, fresh)))
        listed = segments().column("event_id").to_pylist()
        times["previous"].append(timed(lambda: previous_lookup(client, listed)))
        segment = segments()
        token = f"bench-{n}-{tag}"
        times["deliver"].append(timed(lambda: duplicates.append(sink.deliver(segment, token))))
    rows = int(client.command(f"SELECT count() FROM {warehouse.EVENT_IDS_TABLE}"))
    return {"ids": rows, "duplicates": statistics.median(duplicates), **_medians(times)}


def _medians(times: dict[str, list[tuple[float, float]]]) -> dict[str, float]:
    """``name`` and ``name_cpu``: the medians in ms."""
    medians = {}
    for name, pairs in times.items():
        medians[name] = 1000 * statistics.median(wall for wall, _ in pairs)
        medians[f"{name}_cpu"] = 1000 * statistics.median(cpu for _, cpu in pairs)
    return medians


def dense_lookup(client: Any, rounds: int, batch: int) -> dict[str, float]:
    segments = Segments(client, batch, batch // 10)
    times: list[tuple[float, float]] = []
    for _ in range(rounds):
        ids = id_rows(segments())
        times.append(timed(lambda: warehouse.recorded_event_ids(client, ids)))
    return _medians({"lookup": times})


def report_lines(
    rows: list[dict[str, Any]], dense_rows: int, dense: dict[str, float], batch: int
) -> list[str]:
    def cell(r: dict[str, Any], name: str) -> str:
        return f"{r[name]:.1f} / {r[name + '_cpu']:.1f}"

    lines = [
        f"Per segment of {batch:,} events, medians in ms, wall / CPU; ratio = deliver / "
        "baseline, CPU; extra = what the check adds, CPU per 1,000 events.",
        "",
        "| ids recorded | baseline: events insert | deliver: check and both inserts | ratio "
        "| extra per 1k | lookup | lookup, no retries | previous lookup | duplicates found |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        extra = (r["deliver_cpu"] - r["baseline_cpu"]) * 1000 / batch
        lines.append(
            f"| {r['ids']:,} | {cell(r, 'baseline')} | {cell(r, 'deliver')} | "
            f"{r['deliver_cpu'] / r['baseline_cpu']:.1f}x | {extra:.1f} ms | "
            f"{cell(r, 'lookup')} | {cell(r, 'fresh')} | {cell(r, 'previous')} | "
            f"{r['duplicates']:,.0f} of {batch // 10:,} |"
        )
    lines += [
        "",
        f"With {dense_rows:,} more ids recorded in the last minute, the lookup takes "
        f"{cell(dense, 'lookup')} ms (against {cell(rows[-1], 'lookup')} ms without them).",
    ]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000000,30000000", help="ids recorded, per step")
    parser.add_argument("--batch", type=int, default=10_000, help="events per segment")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--dense", type=int, default=1_000_000, help="ids in the last minute")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="splitedge-bench-ids-") as tmp:
        dsn = f"chdb://{Path(tmp) / 'clickhouse'}"
        sink = ClickHouseSink(dsn, prepare=warehouse.migrate)
        sink.open()
        client = sink._client
        try:
            for size in (int(s) for s in args.sizes.split(",")):
                started = time.perf_counter()
                fill(client, size - (rows[-1]["ids"] if rows else 0))
                copy_to_previous(client)
                print(f"recorded {size:,} more ids in {time.perf_counter() - started:.0f} s",
                      flush=True)  # fmt: skip
                rows.append(measure_size(client, sink, args.rounds, args.batch))
                print(rows[-1], flush=True)
            dense(client, args.dense)
            crowded = dense_lookup(client, args.rounds, args.batch)
        finally:
            sink.close()
    import chdb

    report = [
        *environment("event_ids.py", argv, f"chDB {chdb.__version__}"),
        "",
        *report_lines(rows, args.dense, crowded, args.batch),
    ]
    figures = {"rows": rows, "dense": crowded}
    publish("event_ids.py", report, RESULTS_INTRO, args.write, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
