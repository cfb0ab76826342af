"""The finished side of the spool (`edge.ingest.spool`): listing, reading and recovering
segments, for the drain that delivers them (`edge.ingest.flusher`).

`ready_segments` lists the finished (``.arrow``) segments oldest first; `read_segment`
reads one as a table, ignoring a torn tail; `segment_token` is its name, the token that
makes its delivery idempotent. `recover_orphans` finishes the ``.open`` segments of dead
writers as they are: a segment whose ``flock`` is free has no writer left, whatever its
PID now names, so the sweep is safe while workers write.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from edge.ingest.schema import EVENT_SCHEMA
from edge.ingest.spool import (
    NEW_SUFFIX,
    PARTIAL_SUFFIX,
    READY_SUFFIX,
    SEGMENT_SUFFIXES,
    STALE_NEW_SECONDS,
    fsync_directory,
)

__all__ = ["read_segment", "ready_segments", "recover_orphans", "segment_token"]

log = logging.getLogger("splitedge.spool")


def segment_token(path: Path) -> str:
    """A segment's name without its suffix: unique, and stable across renames and retries
    (the flusher's ClickHouse deduplication token)."""
    return path.name.split(".", 1)[0]


def ready_segments(directory: Path | str) -> list[Path]:
    """The finished segments of a spool directory, oldest first."""
    try:
        names = [e.name for e in os.scandir(directory) if e.name.endswith(READY_SUFFIX)]
    except FileNotFoundError:
        return []
    return [Path(directory) / name for name in sorted(names)]


def _writer_pid(name: str) -> int | None:
    parts = name.split("-")
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def _pid_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def recover_orphans(directory: Path | str) -> list[Path]:
    """Finish, as they are, the ``.open`` segments whose writer process is gone; remove
    ``.new`` files of gone writers, or older than a minute (they never hold a batch), and
    ``.partial`` files older than a minute. Returns the recovered segments (now
    ``.arrow``). A segment counts as orphaned when its lock is free, so this is safe to
    call while workers are writing."""
    directory = Path(directory)
    recovered: list[Path] = []
    try:
        names = sorted(
            e.name
            for e in os.scandir(directory)
            if e.name.endswith((*SEGMENT_SUFFIXES, PARTIAL_SUFFIX))
        )
    except FileNotFoundError:
        return recovered
    for name in names:
        if name.endswith(READY_SUFFIX):
            continue
        path = directory / name
        if name.endswith(PARTIAL_SUFFIX):
            # Unlocked and written by another process: only its age tells it is stale.
            try:
                if time.time() - path.stat().st_mtime > STALE_NEW_SECONDS:
                    path.unlink(missing_ok=True)
            except FileNotFoundError:  # linked and removed by its writer meanwhile
                pass
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # finished by its writer meanwhile
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its writer is alive
            try:
                if os.stat(path).st_ino != os.fstat(fd).st_ino:
                    continue
            except FileNotFoundError:
                continue
            pid = _writer_pid(name)
            alive = _pid_alive(pid)
            if name.endswith(NEW_SUFFIX):
                # A live writer holds its .new file unlocked between creating and locking
                # it, so a free lock proves nothing here: only a gone writer, or an age no
                # creation takes, makes it stale.
                if not alive or time.time() - os.fstat(fd).st_mtime > STALE_NEW_SECONDS:
                    path.unlink(missing_ok=True)
                continue
            why = "its pid now runs another process" if alive else "writer gone"
            os.fsync(fd)
            ready = path.with_suffix(READY_SUFFIX)
            try:
                os.rename(path, ready)
            except FileNotFoundError:
                continue
            fsync_directory(directory)
            size = os.fstat(fd).st_size
            log.warning(
                "spool: recovered orphaned segment=%s bytes=%d pid=%s (%s)",
                ready.name,
                size,
                pid,
                why,
                extra={"segment": ready.name, "segment_bytes": size, "writer_pid": pid},
            )
            recovered.append(ready)
        finally:
            os.close(fd)
    return recovered


def read_segment(path: Path | str) -> pa.Table:
    """Every complete batch of a segment, as one table whose dictionary columns share one
    dictionary per column (so it can be written as an Arrow *file*, which is what
    ``insert_arrow`` sends). A torn tail (a message cut by a killed writer) is ignored and
    logged; a truncated or empty file never raises: with no complete batch, the result is
    an empty table with `EVENT_SCHEMA`."""
    path = Path(path)
    data = pa.py_buffer(path.read_bytes())
    source = pa.BufferReader(data)
    batches: list[pa.RecordBatch] = []
    schema: pa.Schema = EVENT_SCHEMA
    good = 0
    problem = ""
    try:
        reader = pa.ipc.open_stream(source)
        schema = reader.schema
        good = source.tell()
        while True:
            try:
                batches.append(reader.read_next_batch())
            except StopIteration:
                break
            good = source.tell()
    except (pa.ArrowException, OSError, ValueError) as exc:  # truncated or damaged
        problem = str(exc)
    if problem and data.size > good:
        ignored = data.size - good
        log.warning(
            "spool: ignored torn tail segment=%s bytes_ignored=%d batches_read=%d: %s",
            path.name,
            ignored,
            len(batches),
            problem,
            extra={"segment": path.name, "bytes_ignored": ignored, "batches": len(batches)},
        )
    if not batches:
        return EVENT_SCHEMA.empty_table()
    return _one_dictionary_per_column(pa.Table.from_batches(batches, schema=schema))


def _one_dictionary_per_column(table: pa.Table) -> pa.Table:
    """Give the chunks of each dictionary column one shared dictionary (pyarrow's
    unification refuses dictionaries that contain nulls; those columns are re-encoded)."""
    for index, field in enumerate(table.schema):
        column = table.column(index)
        if not pa.types.is_dictionary(field.type) or column.num_chunks < 2:
            continue
        try:
            unified = column.unify_dictionaries()
        except pa.ArrowInvalid:
            plain = column.cast(field.type.value_type)
            unified = pc.dictionary_encode(plain).cast(field.type)
        table = table.set_column(index, field, unified)
    return table
