"""Finished segments (edge.ingest.segments): reading torn and damaged files, and orphan
recovery against real writer processes and real locks."""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path

import pytest

from edge.ingest.schema import EVENT_SCHEMA
from edge.ingest.segments import read_segment, ready_segments, recover_orphans
from edge.ingest.spool import OPEN_SUFFIX, READY_SUFFIX, SpoolWriter
from tests.test_spool import event_batch, rows, spawn_writer


def test_torn_tail_is_ignored_at_every_offset(
    spool_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    batches = [event_batch(5, "a"), event_batch(3, "b", 5), event_batch(4, "c", 8)]
    ends = []
    with SpoolWriter(spool_dir, max_segment_age=60) as writer:
        for batch in batches:
            writer.append(batch)
            ends.append(writer.bytes_written)
    [segment] = ready_segments(spool_dir)
    data = segment.read_bytes()
    expected = [row for batch in batches for row in rows(batch)]
    cut_file = tmp_path / "cut.arrow"
    offsets = {
        *range(0, len(data), 97),
        *ends,
        *(e + 1 for e in ends),
        *(e - 1 for e in ends),
        1,
        4,
    }
    caplog.set_level(logging.WARNING, "splitedge.spool")
    for offset in sorted(offsets):
        cut_file.write_bytes(data[:offset])
        table = read_segment(cut_file)
        complete = sum(1 for end in ends if end <= offset)
        assert table.num_rows == sum(b.num_rows for b in batches[:complete]), offset
        assert rows(table) == expected[: table.num_rows]
        if complete == 0:
            assert table.schema.equals(EVENT_SCHEMA)
    assert "bytes_ignored" in caplog.text


def test_empty_and_garbage_files_read_as_empty(tmp_path: Path) -> None:
    empty = tmp_path / "empty.arrow"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.arrow"
    garbage.write_bytes(os.urandom(300))
    for path in (empty, garbage):
        table = read_segment(path)
        assert table.num_rows == 0 and table.schema.equals(EVENT_SCHEMA)


def test_orphans_are_recovered_and_live_segments_left_alone(spool_dir: Path) -> None:
    with SpoolWriter(spool_dir, max_segment_age=60) as writer:
        with spawn_writer(spool_dir, "exit") as child:  # exits without closing its writer
            assert child.wait() == 0
        writer.append(event_batch(2, "live"))  # open and locked in this process
        # A file named after a running process (ours), but nobody holds its lock: a reused pid.
        reused = spool_dir / f"{1:020d}-{os.getpid()}-000001{OPEN_SUFFIX}"
        reused.write_bytes(b"")
        # .new files: a live writer's fresh one is mid-creation (not yet locked) and stays; an
        # old one, or one of a gone writer, is stale.
        creating = spool_dir / f"{2:020d}-{os.getpid()}-000002.new"
        creating.write_bytes(b"")
        stale_new = spool_dir / f"{2:020d}-{os.getpid()}-000001.new"
        stale_new.write_bytes(b"")
        old = time.time() - 120
        os.utime(stale_new, (old, old))
        gone_new = spool_dir / f"{2:020d}-999999999-000001.new"
        gone_new.write_bytes(b"")

        recovered = recover_orphans(spool_dir)
        assert len(recovered) == 2
        assert recovered[0].name == reused.name.replace(OPEN_SUFFIX, READY_SUFFIX)
        assert not stale_new.exists() and not gone_new.exists()
        assert creating.exists()
        creating.unlink()
        [live] = spool_dir.glob("*" + OPEN_SUFFIX)
        assert f"-{os.getpid()}-" in live.name
        assert read_segment(recovered[1]).num_rows == 150
        assert recover_orphans(spool_dir) == []

        writer.close()
        assert sorted(ready_segments(spool_dir)) == sorted([*recovered, live.with_suffix(".arrow")])


def test_a_locked_open_file_is_not_an_orphan(spool_dir: Path) -> None:
    spool_dir.mkdir()
    path = spool_dir / f"{1:020d}-999999999-000001{OPEN_SUFFIX}"  # pid cannot exist
    with path.open("wb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        assert recover_orphans(spool_dir) == []
    assert len(recover_orphans(spool_dir)) == 1
