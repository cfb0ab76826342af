"""The flusher against real embedded ClickHouse (chDB) in temporary directories."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client

from analytics import warehouse
from edge.ingest.flusher import Flusher
from edge.ingest.segments import ready_segments
from edge.ingest.spool import SpoolWriter
from edge.ingest.status import STATUS_FILE, FlusherStatus, read_status
from tests.test_spool import event_batch, spawn_writer

_DDL = """
CREATE TABLE IF NOT EXISTS splitedge.events (
    event_id String,
    kind LowCardinality(String),
    workspace_id LowCardinality(String),
    site_id LowCardinality(String),
    experiment_id LowCardinality(String),
    variant_id LowCardinality(String),
    unit_id String,
    session_id String,
    goal_id LowCardinality(String),
    name LowCardinality(String),
    value Nullable(Float64),
    pathname LowCardinality(String),
    device LowCardinality(String),
    agent_id LowCardinality(String),
    outcome LowCardinality(String),
    cost Nullable(Float64),
    duration_ms Nullable(Float64),
    turns Nullable(Int32),
    metadata String,
    client_ts DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = MergeTree ORDER BY event_id
SETTINGS non_replicated_deduplication_window = 10000
"""


def create_table(client: Client) -> None:
    client.command("CREATE DATABASE IF NOT EXISTS splitedge")
    client.command(_DDL)
    warehouse.migrate(client)  # the tables beside the events table, which is this one


@pytest.fixture
def fast_flusher(spool_dir: Path, dsn: str) -> Iterator[Callable[..., Flusher]]:
    made: list[Flusher] = []

    def make(dsn: str = dsn, **options: object) -> Flusher:
        options = {"backoff_initial": 0.05, "backoff_cap": 0.2, "poll_interval": 0.02, **options}
        flusher = Flusher(spool_dir, dsn, prepare=create_table, **options)  # type: ignore[arg-type]
        made.append(flusher)
        return flusher

    yield make
    for flusher in made:
        flusher.stop(10)  # releases the chDB directory for the next test


def spool(spool_dir: Path, *batches: tuple[int, str, int]) -> int:
    """Write batches (rows, tag, first id) into finished segments; returns the rows."""
    with SpoolWriter(spool_dir, max_segment_bytes=8_000, max_segment_age=60) as writer:
        for n, tag, start in batches:
            writer.append(event_batch(n, tag, start))
    return sum(n for n, _, _ in batches)


def query(dsn: str, sql: str) -> list[tuple[object, ...]]:
    client = clickhouse_connect.get_client(dsn=dsn)
    try:
        return [tuple(row) for row in client.query(sql).result_rows]
    finally:
        client.close()


def counts(dsn: str) -> tuple[object, ...]:
    """(rows, distinct event ids) in the events table."""
    return query(dsn, "SELECT count(), uniqExact(event_id) FROM splitedge.events")[0]


def wait_for(condition: Callable[[], object], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def status(spool_dir: Path) -> FlusherStatus:
    found = read_status(spool_dir)
    assert found is not None
    return found


def test_inserts_segments_then_deletes_them(
    spool_dir: Path, dsn: str, fast_flusher: Callable[..., Flusher]
) -> None:
    with spawn_writer(spool_dir, "exit") as child:  # a dead worker's .open segment: 150 rows
        assert child.wait() == 0
    rows = 150 + spool(spool_dir, (40, "a", 0), (30, "b", 40), (25, "c", 70))
    assert len(ready_segments(spool_dir)) > 1
    assert read_status(spool_dir) is None

    flusher = fast_flusher()
    assert flusher.flush_once() == rows
    assert list(spool_dir.iterdir()) == [spool_dir / STATUS_FILE]
    flusher.stop()
    assert counts(dsn) == (rows, rows)
    sql = "SELECT site_id, value, turns, toUnixTimestamp64Milli(client_ts) FROM splitedge.events"
    expected = event_batch(30, "b", 40).slice(2, 1).to_pylist()[0]
    assert query(dsn, sql + " WHERE event_id = 'b-42'") == [
        ("site_id:b:2", 0.5, 2, int(expected["client_ts"].timestamp() * 1000))
    ]
    final = status(spool_dir)
    assert final.clickhouse == "stopped" and final.rows_flushed == rows
    assert final.pending_segments == 0 and final.errors == 0
    assert final.last_flush_seconds is not None and final.age() < 5


def test_a_segment_retried_after_a_crash_is_not_counted_twice(
    spool_dir: Path, dsn: str, fast_flusher: Callable[..., Flusher], tmp_path: Path
) -> None:
    rows = spool(spool_dir, (30, "a", 0), (30, "b", 30))
    saved = tmp_path / "saved"
    shutil.copytree(spool_dir, saved)
    flusher = fast_flusher()
    assert flusher.flush_once() == rows
    # Crashed after the insert, before the delete: the same segments are back. Their
    # event ids are recorded, so they are duplicates now, inserted no more.
    for path in saved.iterdir():
        shutil.copy(path, spool_dir / path.name)
    assert flusher.flush_once() == 0
    assert (flusher.rows_flushed, flusher.rows_duplicate) == (rows, rows)
    assert status(spool_dir).rows_duplicate == rows
    assert ready_segments(spool_dir) == []
    flusher.stop()
    assert counts(dsn) == (rows, rows)


_HOLDER = """
import sys, clickhouse_connect
client = clickhouse_connect.get_client(dsn=sys.argv[1])
print("holding", flush=True)
sys.stdin.read()
client.close()
"""


@pytest.mark.server
def test_outage_while_another_process_holds_chdb(
    spool_dir: Path, dsn: str, fast_flusher: Callable[..., Flusher]
) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _HOLDER, dsn],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as holder:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline() == "holding\n"
        flusher = fast_flusher()
        flusher.start()
        rows = spool(spool_dir, (50, "a", 0), (50, "b", 50))
        segments = len(ready_segments(spool_dir))
        # Three more failures after the spool is written, so the status read is newer.
        before = read_status(spool_dir)
        seen = before.errors if before is not None else 0
        wait_for(lambda: status(spool_dir).errors >= seen + 3)  # and still retrying
        current = status(spool_dir)
        assert current.clickhouse == "unavailable" and "chdb" in current.last_error
        assert current.pending_segments == segments and current.rows_flushed == 0
        rows += spool(spool_dir, (20, "c", 100))  # still accepted during the outage
        segments = len(ready_segments(spool_dir))
        with spawn_writer(spool_dir, "exit") as child:  # and a worker dies: 150 rows
            assert child.wait() == 0
        rows += 150
        wait_for(lambda: len(ready_segments(spool_dir)) == segments + 1)  # recovered
        holder.stdin.close()
        holder.wait()

    wait_for(lambda: not ready_segments(spool_dir) and status(spool_dir).clickhouse == "ok")
    # Read the counters once the thread is joined: it unlinks a segment before counting it.
    assert flusher.stop()
    assert flusher.rows_flushed == rows
    assert counts(dsn) == (rows, rows)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_server_keeps_every_segment(
    spool_dir: Path, dsn: str, fast_flusher: Callable[..., Flusher]
) -> None:
    rows = spool(spool_dir, (40, "a", 0), (40, "b", 40))
    segments = ready_segments(spool_dir)
    unreachable = fast_flusher(f"http://127.0.0.1:{free_port()}")
    unreachable.start()
    wait_for(lambda: unreachable.errors >= 3)
    current = status(spool_dir)
    assert current.clickhouse == "unavailable" and "127.0.0.1" in current.last_error
    assert unreachable.stop()  # its last pass fails too: nothing is deleted
    assert ready_segments(spool_dir) == segments
    assert status(spool_dir).clickhouse == "stopped"

    restored = fast_flusher(dsn)
    assert restored.flush_once() == rows
    restored.stop()
    assert counts(dsn) == (rows, rows)


def test_stop_makes_a_last_flush_and_releases_chdb(
    spool_dir: Path, dsn: str, fast_flusher: Callable[..., Flusher]
) -> None:
    flusher = fast_flusher(poll_interval=60)  # asleep unless woken by stop()
    flusher.start()
    wait_for(lambda: status(spool_dir).clickhouse == "ok")
    time.sleep(0.1)  # let it find nothing and go to sleep
    rows = spool(spool_dir, (25, "late", 0))
    assert flusher.stop(10)
    assert not flusher.running and ready_segments(spool_dir) == []
    # A pass after stop() (e.g. at shutdown) closes its client again.
    rows += spool(spool_dir, (5, "later", 0))
    assert flusher.flush_once() == 5
    assert status(spool_dir).clickhouse == "stopped"
    # Another process can open the chDB directory now.
    count = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, clickhouse_connect; c = clickhouse_connect.get_client(dsn=sys.argv[1]);"
            "print(c.command('SELECT count() FROM splitedge.events')); c.close()",
            dsn,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert int(count) == rows
    assert flusher.stop()  # idempotent


def test_status_file_is_replaced_atomically(spool_dir: Path) -> None:
    spool_dir.mkdir()
    assert read_status(spool_dir) is None
    (spool_dir / STATUS_FILE).write_text("{not json")
    assert read_status(spool_dir) is None
    flusher = Flusher(spool_dir, "http://127.0.0.1:9")
    flusher.stop()
    assert status(spool_dir).clickhouse == "stopped"
    assert sorted(p.name for p in spool_dir.iterdir()) == [STATUS_FILE]


def test_the_status_stays_fresh_while_the_flusher_backs_off(spool_dir: Path) -> None:
    """Workers take an old status for a dead server (edge.health): a flusher waiting
    seconds before its next retry is alive, and its status must say so."""
    spool(spool_dir, (5, "a", 0))
    flusher = Flusher(
        spool_dir,
        f"http://127.0.0.1:{free_port()}",
        backoff_initial=3,
        backoff_cap=3,
        status_interval=0.1,
    )
    flusher.start()
    try:
        wait_for(lambda: flusher.errors >= 1)
        deadline = time.monotonic() + 2  # within the first backoff
        while time.monotonic() < deadline:
            assert status(spool_dir).age() < 1
            time.sleep(0.1)
    finally:
        assert flusher.stop()
