"""The spool: real segment files in a temporary directory, real writer processes."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from edge.errors import ServiceUnavailable
from edge.ingest.schema import EVENT_SCHEMA
from edge.ingest.segments import read_segment, ready_segments, recover_orphans, segment_token
from edge.ingest.spool import (
    OPEN_SUFFIX,
    READY_SUFFIX,
    SpoolFull,
    SpoolWriter,
    spool_usage,
)

_DICT = pa.dictionary(pa.int32(), pa.string())
_TS = pa.timestamp("ms", tz="UTC")


def event_batch(n: int, tag: str, start: int = 0) -> pa.RecordBatch:
    """``n`` events with ids ``{tag}-{start + i}``; every dictionary column gets a
    dictionary of its own (made from ``tag``); the nullable columns hold some nulls."""
    columns: list[pa.Array] = []
    for field in EVENT_SCHEMA:
        if field.name == "event_id":
            columns.append(pa.array([f"{tag}-{start + i}" for i in range(n)], pa.string()))
        elif field.type == _DICT:
            words = pa.array([f"{field.name}:{tag}:{k}" for k in range(4)], pa.string())
            indices = pa.array([i % 4 for i in range(n)], pa.int32())
            columns.append(pa.DictionaryArray.from_arrays(indices, words))
        elif field.type == pa.string():
            columns.append(pa.array([f"{tag}/{i}" for i in range(n)], pa.string()))
        elif field.type == _TS:
            base = int(datetime(2025, 3, 1, tzinfo=UTC).timestamp() * 1000)
            columns.append(pa.array([base + 1000 * (start + i) for i in range(n)], _TS))
        elif field.type == pa.int32():
            columns.append(pa.array([None if i % 2 else i for i in range(n)], pa.int32()))
        else:
            columns.append(
                pa.array([None if i % 3 == 0 else i / 4 for i in range(n)], pa.float64())
            )
    return pa.record_batch(columns, schema=EVENT_SCHEMA)


def rows(table: pa.Table | pa.RecordBatch) -> list[dict[str, object]]:
    return table.to_pylist()  # type: ignore[no-any-return]


@pytest.fixture
def writer(spool_dir: Path) -> Iterator[SpoolWriter]:
    w = SpoolWriter(spool_dir, max_segment_age=60)
    yield w
    w.close()


def read_all(directory: Path) -> pa.Table:
    tables = [read_segment(path) for path in ready_segments(directory)]
    return pa.concat_tables(tables) if tables else EVENT_SCHEMA.empty_table()


def test_round_trip_with_a_new_dictionary_in_every_batch(
    spool_dir: Path, writer: SpoolWriter
) -> None:
    batches = [event_batch(7, "a"), event_batch(1, "b", 7), event_batch(12, "c", 8)]
    batches.append(event_batch(3, "c", 20))  # the same dictionary again
    for batch in batches:
        writer.append(batch)
    writer.append(batches[0].slice(0, 0))  # an empty batch writes nothing
    assert list(spool_dir.glob("*" + OPEN_SUFFIX))  # written before it is finished
    writer.close()

    [segment] = ready_segments(spool_dir)
    assert not list(spool_dir.glob("*" + OPEN_SUFFIX))
    table = read_segment(segment)
    assert table.schema.equals(EVENT_SCHEMA)
    assert rows(table) == [row for batch in batches for row in rows(batch)]
    assert rows(table)[0]["client_ts"] == datetime(2025, 3, 1, tzinfo=UTC)
    assert rows(table)[3]["site_id"] == "site_id:a:3" and rows(table)[7]["site_id"] == "site_id:b:0"
    assert rows(table)[0]["value"] is None and rows(table)[1]["turns"] is None
    # One dictionary per column, so the table can be written as an Arrow file.
    for column in table.columns:
        if column.type == _DICT:
            first = column.chunks[0].dictionary
            assert all(chunk.dictionary.equals(first) for chunk in column.chunks)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as file_writer:
        file_writer.write_table(table)

    assert writer.batches_written == 4
    assert writer.rows_written == 23
    assert writer.bytes_written == segment.stat().st_size - 8  # + end-of-stream marker
    assert writer.segments_finished == 1
    assert segment_token(segment) == segment.name.removesuffix(READY_SUFFIX)


def test_dictionaries_holding_nulls_are_unified_too(spool_dir: Path) -> None:
    schema = pa.schema([pa.field("k", _DICT)])

    def batch(words: list[str | None], indices: list[int | None]) -> pa.RecordBatch:
        array = pa.DictionaryArray.from_arrays(pa.array(indices, pa.int32()), pa.array(words))
        return pa.record_batch([array], schema=schema)

    with SpoolWriter(spool_dir) as writer:
        writer.append(batch(["a", None], [0, 1, None]))
        writer.append(batch(["b", "a"], [1, 0, 0]))
    table = read_segment(ready_segments(spool_dir)[0])
    assert table.column("k").to_pylist() == ["a", None, None, "a", "b", "b"]
    first = table.column("k").chunks[0].dictionary
    assert all(chunk.dictionary.equals(first) for chunk in table.column("k").chunks)


def test_rotates_by_size_into_ordered_segments(spool_dir: Path) -> None:
    with SpoolWriter(spool_dir, max_segment_bytes=20_000, max_segment_age=60) as writer:
        for i in range(30):
            writer.append(event_batch(10, f"t{i}", 10 * i))
    segments = ready_segments(spool_dir)
    assert len(segments) > 3
    assert segments == sorted(segments)
    assert [r["event_id"] for r in rows(read_all(spool_dir))] == [
        f"t{i}-{10 * i + j}" for i in range(30) for j in range(10)
    ]
    assert writer.segments_finished == len(segments)
    assert spool_usage(spool_dir).segments == len(segments)


def test_a_different_schema_starts_a_new_segment(spool_dir: Path) -> None:
    other = pa.record_batch([pa.array([1, 2])], names=["x"])
    with SpoolWriter(spool_dir, max_segment_age=60) as writer:
        writer.append(event_batch(2, "a"))
        writer.append(other)
        writer.append(event_batch(2, "b"))
    tables = [read_segment(path) for path in ready_segments(spool_dir)]
    assert [t.num_rows for t in tables] == [2, 2, 2]
    assert tables[1].column_names == ["x"]


_CHILD = """
import os, sys
from edge.ingest.spool import SpoolWriter
from tests.test_spool import event_batch
writer = SpoolWriter(sys.argv[1], max_segment_age=60, fsync_interval=60)
i = 0
while True:
    writer.append(event_batch(50, "k", 50 * i))
    i += 1
    print(i, flush=True)
    if sys.argv[2] == "exit" and i == 3:
        os._exit(0)
"""


def spawn_writer(spool_dir: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(spool_dir), mode],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
    )


def test_sigkill_after_append_loses_nothing_acknowledged(spool_dir: Path) -> None:
    with spawn_writer(spool_dir, "forever") as child:
        assert child.stdout is not None
        acknowledged = 0
        while acknowledged < 40:
            acknowledged = int(child.stdout.readline())
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert [p.suffix for p in spool_dir.iterdir()] == [OPEN_SUFFIX]

    [recovered] = recover_orphans(spool_dir)
    assert ready_segments(spool_dir) == [recovered]
    ids = {r["event_id"] for r in rows(read_segment(recovered))}
    assert {f"k-{i}" for i in range(50 * acknowledged)} <= ids
    assert len(ids) % 50 == 0  # whole batches only


_FAILING_CHILD = """
import json, resource, signal, sys
from edge.errors import ServiceUnavailable
from edge.ingest.spool import SpoolWriter
from tests.test_spool import event_batch
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the limit, write() fails with EFBIG
writer = SpoolWriter(sys.argv[1], max_segment_age=60)
resource.setrlimit(resource.RLIMIT_FSIZE, (30_000, 30_000))
outcomes = []
for i in range(12):
    try:
        writer.append(event_batch(50, f"b{i}"))
        outcomes.append("ok")
    except ServiceUnavailable as exc:
        outcomes.append(type(exc).__name__)
writer.close()
print(json.dumps(outcomes))
"""


def test_a_failed_write_is_cut_off_and_the_next_goes_to_a_new_segment(
    spool_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    child = subprocess.run(
        [sys.executable, "-c", _FAILING_CHILD, str(spool_dir)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    )
    outcomes = json.loads(child.stdout)
    failed = outcomes.index("ServiceUnavailable")  # a segment reached the size limit
    assert "ok" in outcomes[failed:]  # and the next batch went into a new segment
    caplog.set_level(logging.WARNING, "splitedge.spool")
    ids = [r["event_id"] for r in rows(read_all(spool_dir))]
    acknowledged = [i for i, outcome in enumerate(outcomes) if outcome == "ok"]
    assert ids == [f"b{i}-{j}" for i in acknowledged for j in range(50)]
    assert "bytes_ignored" not in caplog.text  # the torn message was truncated away
    assert not list(spool_dir.glob("*" + OPEN_SUFFIX))


def test_disk_cap_refuses_appends_with_503(spool_dir: Path) -> None:
    spool_dir.mkdir()
    other = spool_dir / f"{1:020d}-1-000001{READY_SUFFIX}"  # another process's backlog
    other.write_bytes(b"x" * 50_000)
    with SpoolWriter(spool_dir, disk_cap_bytes=40_000, max_segment_age=60) as writer:
        with pytest.raises(SpoolFull) as refused:
            writer.append(event_batch(5, "a"))
        assert refused.value.status == 503 and refused.value.retry_after > 0
        assert "cap" in refused.value.message and "Retry" in refused.value.message
        assert str(spool_dir) not in refused.value.message
        assert isinstance(refused.value, ServiceUnavailable)
        assert writer.appends_refused == 1 and writer.rows_written == 0

        other.unlink()  # the flusher drained it: accepted again after the next rescan
        deadline = time.monotonic() + 3
        while True:
            try:
                writer.append(event_batch(5, "a"))
                break
            except SpoolFull:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        # Own writes count at once, without waiting for a rescan.
        with pytest.raises(SpoolFull):
            for i in range(1000):
                writer.append(event_batch(50, "b", 50 * i))
        written = writer.rows_written
    assert read_all(spool_dir).num_rows == written


def test_segments_are_finished_by_age(spool_dir: Path) -> None:
    with SpoolWriter(spool_dir, max_segment_age=0.2, fsync_interval=0.02) as writer:
        writer.append(event_batch(3, "a"))
        deadline = time.monotonic() + 3
        while not ready_segments(spool_dir):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert not list(spool_dir.glob("*" + OPEN_SUFFIX))
        assert read_all(spool_dir).num_rows == 3
        writer.append(event_batch(2, "b"))  # a new segment
    assert len(ready_segments(spool_dir)) == 2


def test_close_is_idempotent_and_final(spool_dir: Path) -> None:
    writer = SpoolWriter(spool_dir)
    writer.close()  # nothing written: no file
    writer.close()
    assert list(spool_dir.iterdir()) == []
    with pytest.raises(ServiceUnavailable, match="closed"):
        writer.append(event_batch(1, "late"))
