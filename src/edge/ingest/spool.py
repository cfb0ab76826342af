"""The event spool: append-only Arrow IPC segments on local disk, between the HTTP workers
and the flusher.

Every worker process owns one `SpoolWriter`; several may write into the same directory at
once. A worker appends each RecordBatch of accepted events to its open segment *before*
the request is answered 2xx. The one flusher (`edge.ingest.flusher`) reads the finished
segments, inserts them into ClickHouse and deletes each one only after it was accepted.

Segment files
    ``{time_ns:020d}-{pid}-{seq:06d}`` plus a suffix: lexical order is creation order, and
    names are unique across processes. A segment an edge node relayed to the control
    plane (`edge.ingest.relay`) arrives finished, named ``...-{seq:06d}-{node id}``.
    ``.new`` exists only for the instant between creating a file and locking it;
    ``.open`` is being written; ``.arrow`` is finished. ``.partial`` is a file another
    writer (the control plane's relay endpoint) fills before linking it as a finished
    segment; one left by a killed writer is removed once stale.
    Each file is an Arrow IPC *stream* (schema, then one message per batch; dictionary
    columns may carry a different dictionary in every batch, which the stream format
    writes as a dictionary replacement). The writer holds an exclusive ``flock`` on its
    ``.open`` file until it has renamed it, so an ``.open`` file whose lock is free belongs
    to a dead process: `edge.ingest.segments.recover_orphans` finishes it as it is. The
    lock, rather than the PID alone, decides, so a reused PID never makes a live segment
    look orphaned or a dead one look alive.

Durability
    When `SpoolWriter.append` returns, the batch has been handed to the OS with write():
    a killed process (SIGKILL, OOM, crash) loses nothing it acknowledged. A background
    thread fsyncs the open segment every ``fsync_interval``; a power cut or kernel crash
    can therefore lose the acknowledged events of the last ``fsync_interval`` (default
    50 ms), plus the time one fsync takes, which were still only in the page cache.
    Finishing a segment fsyncs the file, renames it and fsyncs the directory. A message
    torn by a kill (or a power cut) in the middle of a write() is the tail of its
    segment, and `edge.ingest.segments.read_segment` returns every complete batch before
    it. A segment the flusher deleted may reappear after a power cut; inserting it again
    is a no-op (see `edge.ingest.flusher`).

Defaults
    segments rotate at 16 MiB (``max_segment_bytes``) or 0.5 s after their first batch
    (``max_segment_age``, so the flusher sees events within half a second at low
    traffic); fsync every 50 ms; the disk cap is 1 GiB (``disk_cap_bytes``) over all
    segments of all processes. Over the cap, `append` raises `SpoolFull` (HTTP 503 with
    Retry-After): events are refused, never dropped silently. The cap is soft: the
    directory is rescanned every 0.5 s and each writer adds its own writes in between, so
    it can be passed by about one batch per worker.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import threading
import time
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa

from edge.errors import ServiceUnavailable

__all__ = [
    "DEFAULT_DISK_CAP_BYTES",
    "DEFAULT_FSYNC_INTERVAL",
    "DEFAULT_MAX_SEGMENT_AGE",
    "DEFAULT_MAX_SEGMENT_BYTES",
    "OPEN_SUFFIX",
    "NEW_SUFFIX",
    "PARTIAL_SUFFIX",
    "READY_SUFFIX",
    "SEGMENT_SUFFIXES",
    "STALE_NEW_SECONDS",
    "SpoolFull",
    "SpoolUsage",
    "SpoolWriter",
    "fsync_directory",
    "spool_usage",
]

log = logging.getLogger("splitedge.spool")

DEFAULT_MAX_SEGMENT_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_SEGMENT_AGE = 0.5
DEFAULT_FSYNC_INTERVAL = 0.05
DEFAULT_DISK_CAP_BYTES = 1024 * 1024 * 1024
RESCAN_INTERVAL = 0.5
_WRITE_BUFFER_BYTES = 1024 * 1024

NEW_SUFFIX = ".new"
STALE_NEW_SECONDS = 60.0
"""A ``.new`` or ``.partial`` file this old was left by a killed writer: no creation, and
no write of one segment, takes that long."""
OPEN_SUFFIX = ".open"
READY_SUFFIX = ".arrow"
PARTIAL_SUFFIX = ".partial"
SEGMENT_SUFFIXES = (NEW_SUFFIX, OPEN_SUFFIX, READY_SUFFIX)


class SpoolFull(ServiceUnavailable):
    """The spool directory is over its disk cap (or the disk is full): ClickHouse is not
    taking events as fast as they come. Events are refused with 503, never dropped."""

    code = "spool_full"
    retry_after = 5


class SpoolUsage(NamedTuple):
    """What a spool directory holds: segment files (open and finished) and their bytes."""

    segments: int
    bytes: int


def spool_usage(directory: Path | str) -> SpoolUsage:
    """Count the segment files in a spool directory and their bytes (every process's)."""
    segments = size = 0
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.endswith(SEGMENT_SUFFIXES):
                    try:
                        size += entry.stat().st_size
                    except FileNotFoundError:  # finished or flushed meanwhile
                        continue
                    segments += 1
    except FileNotFoundError:
        pass
    return SpoolUsage(segments, size)


def fsync_directory(directory: Path) -> None:
    """Make the renames and creations in ``directory`` durable (they live in the directory
    itself, which fsyncing a file does not write)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Segment:
    """The open segment of a writer: its file, its IPC stream and what was written.

    ``fd`` holds the segment's lock and serves fsync, ftruncate and the lock's release;
    the IPC stream writes through a second descriptor, behind a buffer flushed once per
    batch, so that a batch reaches the OS in one write()."""

    __slots__ = (
        "abandoned",
        "dir_synced",
        "dirty",
        "fd",
        "opened",
        "path",
        "schema",
        "sink",
        "size",
        "stream",
    )

    def __init__(self, path: Path, fd: int, schema: pa.Schema) -> None:
        self.path = path
        self.fd = fd
        self.sink = pa.BufferedOutputStream(pa.OSFile(str(path), mode="w"), _WRITE_BUFFER_BYTES)
        self.stream = pa.ipc.new_stream(self.sink, schema)
        self.schema = schema
        self.opened = time.monotonic()
        self.size = 0  # bytes of complete messages
        self.abandoned = False
        self.dirty = False
        self.dir_synced = False


class SpoolWriter:
    """Appends event batches to spool segments for one process; see the module docstring.

    ``append`` and the background thread (fsync, age-based finishing, disk rescans) share
    one lock, held only while a batch is written or a segment is swapped; fsyncs and
    renames run outside it. Counters (plain ints; ``bytes_written`` also feeds the disk
    cap between rescans): ``batches_written``, ``rows_written``, ``bytes_written``,
    ``segments_finished``, ``appends_refused``. /metrics reports the spool from the
    flusher's status, which sees every process's segments.
    """

    def __init__(
        self,
        directory: Path | str,
        *,
        max_segment_bytes: int = DEFAULT_MAX_SEGMENT_BYTES,
        max_segment_age: float = DEFAULT_MAX_SEGMENT_AGE,
        fsync_interval: float = DEFAULT_FSYNC_INTERVAL,
        disk_cap_bytes: int = DEFAULT_DISK_CAP_BYTES,
    ) -> None:
        self.directory = Path(directory).absolute()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_segment_bytes = max_segment_bytes
        self.max_segment_age = max_segment_age
        self.fsync_interval = fsync_interval
        self.disk_cap_bytes = disk_cap_bytes
        self.batches_written = 0
        self.rows_written = 0
        self.bytes_written = 0
        self.segments_finished = 0
        self.appends_refused = 0
        self._pid = os.getpid()
        self._seq = 0
        self._lock = threading.Lock()
        self._segment: _Segment | None = None
        self._to_finish: list[_Segment] = []
        self._closed = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._scanned_bytes = 0
        self._scan_base = 0  # bytes_written when the last scan started
        self._last_scan = 0.0
        self._rescan()
        self._thread = threading.Thread(
            target=self._run, name=f"splitedge-spool-{self._pid}", daemon=True
        )
        self._thread.start()

    # -- the request path ---------------------------------------------------------------

    def append(self, batch: pa.RecordBatch) -> None:
        """Write ``batch`` as one IPC message of the open segment; on return it is in the
        OS (a process kill loses nothing). Raises `SpoolFull` over the disk cap."""
        if batch.num_rows == 0:
            return
        if self._pid != os.getpid():
            raise RuntimeError("a SpoolWriter belongs to the process that created it")
        used = self._scanned_bytes + self.bytes_written - self._scan_base
        if used > self.disk_cap_bytes:
            self.appends_refused += 1
            # The path is for the operator's log: the answer goes to anonymous callers.
            log.warning(
                "spool %s is full: %d bytes, cap %d", self.directory, used, self.disk_cap_bytes
            )
            raise SpoolFull(
                "the event spool is over its disk cap: ClickHouse is not taking events as "
                "fast as they come (see /readyz). Retry later; operators: restore ClickHouse "
                "or raise --spool-cap-mb."
            )
        with self._lock:
            if self._closed:
                raise ServiceUnavailable("the event spool is closed (shutting down); retry")
            segment = self._segment
            if segment is not None and not batch.schema.equals(segment.schema):
                self._detach()
                segment = None
            if segment is None:
                segment = self._segment = self._open_segment(batch.schema)
            before = segment.size
            try:
                segment.stream.write_batch(batch)
                segment.sink.flush()
                segment.size = segment.sink.tell()
            except BaseException as exc:
                self._abandon(segment)
                if isinstance(exc, OSError):
                    raise self._write_error(exc) from exc
                raise
            segment.dirty = True
            self.batches_written += 1
            self.rows_written += batch.num_rows
            self.bytes_written += segment.size - before
            if segment.size >= self.max_segment_bytes:
                self._detach()
                self._wake.set()

    def close(self) -> None:
        """Finish the open segment (fsync, rename) and stop the thread. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._segment is not None:
                self._detach()
        self._stop.set()
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self._finish_detached()

    def __enter__(self) -> SpoolWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- segments (callers hold the lock) -------------------------------------------------

    def _open_segment(self, schema: pa.Schema) -> _Segment:
        self._seq += 1
        name = f"{time.time_ns():020d}-{self._pid}-{self._seq:06d}"
        new = self.directory / (name + NEW_SUFFIX)
        path = self.directory / (name + OPEN_SUFFIX)
        try:
            fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                # Locked before it is visible as .open: an unlocked .open file is an orphan.
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.rename(new, path)
                return _Segment(path, fd, schema)
            except BaseException:
                os.close(fd)
                new.unlink(missing_ok=True)
                path.unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise self._write_error(exc) from exc

    def _detach(self) -> None:
        """Hand the open segment to the thread to finish; the next append opens another."""
        if self._segment is not None:
            self._to_finish.append(self._segment)
            self._segment = None

    def _abandon(self, segment: _Segment) -> None:
        """A write failed midway: finish the segment with its complete messages only (the
        thread cuts the torn one off, see `_finish`); the next append opens another."""
        segment.abandoned = True
        if self._segment is segment:
            self._detach()
        self._wake.set()

    def _write_error(self, exc: OSError) -> ServiceUnavailable:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(exc):
            self.appends_refused += 1
            return SpoolFull(
                f"the disk of the event spool {self.directory} is full: events are refused "
                "until the flusher has drained it or space is freed. Retry later."
            )
        return ServiceUnavailable(f"the event spool {self.directory} cannot write: {exc}; retry")

    # -- the background thread --------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.fsync_interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self._tick()
            except Exception:
                log.exception("spool: background maintenance failed; retrying")

    def _tick(self) -> None:
        sync_fd = -1
        sync_dir = False
        with self._lock:
            segment = self._segment
            if segment is not None and time.monotonic() - segment.opened >= self.max_segment_age:
                self._detach()
            elif segment is not None and segment.dirty:
                sync_fd = os.dup(segment.fd)  # survives the segment being closed
                segment.dirty = False
                sync_dir, segment.dir_synced = not segment.dir_synced, True
        self._finish_detached()
        if sync_fd >= 0:
            try:
                os.fsync(sync_fd)
            finally:
                os.close(sync_fd)
            if sync_dir:
                fsync_directory(self.directory)
        if time.monotonic() - self._last_scan >= RESCAN_INTERVAL:
            self._rescan()

    def _finish_detached(self) -> None:
        with self._lock:
            segments, self._to_finish = self._to_finish, []
        for segment in segments:
            self._finish(segment)

    def _finish(self, segment: _Segment) -> None:
        """End of stream, fsync, rename to .arrow, fsync the directory, release the lock."""
        try:
            if not segment.abandoned:
                try:
                    segment.stream.close()  # the end-of-stream marker
                    segment.sink.close()
                except OSError:
                    segment.abandoned = True
            if segment.abandoned:
                # A write failed: drop what the buffer still holds and cut off the torn
                # message; the complete ones before it are the segment.
                try:
                    segment.sink.close()
                except OSError:
                    pass
                os.ftruncate(segment.fd, segment.size)
            os.fsync(segment.fd)
            os.rename(segment.path, segment.path.with_suffix(READY_SUFFIX))
            fsync_directory(self.directory)
            self.segments_finished += 1
        except Exception:
            # Closing fd below frees the lock, so the flusher recovers it as an orphan.
            log.exception("spool: cannot finish segment %s; left for recovery", segment.path)
        finally:
            os.close(segment.fd)

    def _rescan(self) -> None:
        base = self.bytes_written
        usage = spool_usage(self.directory)
        self._scanned_bytes, self._scan_base = usage.bytes, base
        self._last_scan = time.monotonic()
