"""The flusher: moves finished spool segments into ClickHouse and deletes each one only
after ClickHouse accepted it.

One flusher runs per spool directory, in the server's parent process, on a daemon
thread. On start it finishes the orphaned ``.open`` segments of dead writers (and keeps
doing so every second, for workers killed later), then loops: connect if needed (and
run the ``prepare`` hook, e.g. the warehouse migrations), take the finished segments
oldest first, insert each with ``insert_arrow`` and delete it.

Sinks
    The loop (`SpoolDrain`) does not know where segments go; its sink does
    (`edge.ingest.sinks`). The flusher is the loop with a `ClickHouseSink`; an edge node
    without ClickHouse runs the same loop with a sink that relays each segment to the
    control plane (`edge.ingest.relay.SegmentRelay`). A segment its sink refuses for good
    (`SegmentRejected`) is moved aside as ``<name>.rejected`` and logged as an error,
    neither retried forever nor dropped silently.

Exactly once
    Every segment is one insert whose ``insert_deduplication_token`` is the segment's
    name (settings from `analytics.warehouse.insert_settings`). A segment inserted before
    a crash but not yet deleted is inserted again on the next start, with the same bytes
    and the same token, and ClickHouse drops it as a duplicate. This needs a table that
    deduplicates inserts by token (the warehouse's events table does: see its
    ``DEDUPLICATION_WINDOW``). Every sink delivers idempotently by that token.
    `ClickHouseSink` also drops the events whose id is stored already (a client's retry
    of a batch whose answer it lost, which arrives in another segment); they are counted
    in ``rows_duplicate``, not in ``rows_flushed``.

Failures
    Any error (unreachable server, a chDB directory locked by another process, a failed
    insert) is recorded, the client is dropped, and the same segment is retried after a
    capped exponential backoff with jitter (0.2 s doubling up to 10 s by default; at
    least a `SinkBusy`'s delay, up to a minute). Nothing leaves the spool meanwhile; the
    workers refuse new events once the spool is over its disk cap
    (`edge.ingest.spool.SpoolFull`).

Status
    Workers, which are other processes, learn the flusher's state from a small JSON file,
    ``<spool>/flusher.status.json`` (`edge.ingest.status`), replaced
    atomically every 0.5 s while the drain runs (whatever its thread is busy with) and at
    once on every change of the sink's state; an older one means the server process is
    gone, and its workers then answer /readyz 503. Its ``clickhouse`` field is the state
    of the sink, whichever it is (on a relaying edge node: the control plane), so /readyz
    and /metrics read it alike.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypedDict, Unpack

from clickhouse_connect.driver.client import Client

from analytics import warehouse
from edge.ingest.segments import read_segment, ready_segments, recover_orphans, segment_token
from edge.ingest.sinks import ClickHouseSink, SegmentRejected, SegmentSink, SinkBusy
from edge.ingest.spool import spool_usage
from edge.ingest.status import ClickHouseState, FlusherStatus, write_status

__all__ = ["REJECTED_SUFFIX", "DrainTimings", "Flusher", "SpoolDrain"]

log = logging.getLogger("splitedge.flusher")

REJECTED_SUFFIX = ".rejected"
"""A segment its sink refused for good: kept, out of the spool's way, for an operator."""

# The longest wait a sink's SinkBusy may impose (a broken Retry-After must not stall it).
RETRY_AFTER_CAP = 60.0


class DrainTimings(TypedDict, total=False):
    """The timing options of a `SpoolDrain`, in seconds (defaults in its signature)."""

    backoff_initial: float
    backoff_cap: float
    poll_interval: float
    status_interval: float
    orphan_interval: float
    health_interval: float


class SpoolDrain:
    """Delivers the spool's finished segments to a `SegmentSink`, oldest first, and
    deletes each one only after the sink took it; see the module docstring. ``name``
    names its thread and its logs. Counters for metrics are plain attributes:
    ``segments_flushed``, ``rows_flushed``, ``rows_duplicate``, ``segments_rejected``,
    ``errors``, ``last_flush_seconds``, ``state``, ``last_error``.
    """

    def __init__(
        self,
        spool_dir: Path | str,
        sink: SegmentSink,
        *,
        name: str = "flusher",
        backoff_initial: float = 0.2,
        backoff_cap: float = 10.0,
        poll_interval: float = 0.1,
        status_interval: float = 0.5,
        orphan_interval: float = 1.0,
        health_interval: float = 5.0,
    ) -> None:
        self.spool_dir = Path(spool_dir).absolute()
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.sink = sink
        self.name = name
        self.backoff_initial = backoff_initial
        self.backoff_cap = backoff_cap
        self.poll_interval = poll_interval
        self.status_interval = status_interval
        self.orphan_interval = orphan_interval
        self.health_interval = health_interval
        self.state: ClickHouseState = "starting"
        self.last_error = ""
        self.last_error_at: float | None = None
        self.segments_flushed = 0
        self.rows_flushed = 0
        self.rows_duplicate = 0
        self.segments_rejected = 0
        self.errors = 0
        self.last_flush_seconds: float | None = None
        self._connected = False
        self._pass_lock = threading.Lock()  # one pass at a time; guards the sink
        self._status_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._heartbeat_thread: threading.Thread | None = None
        self._last_publish = 0.0
        self._last_health = 0.0
        self._failures_in_a_row = 0

    # -- control ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the thread: replay what is left in the spool, then keep flushing."""
        if self._thread is not None:
            raise RuntimeError(f"the {self.name} is already started")
        self._publish(force=True)
        self._thread = threading.Thread(
            target=self._run, name=f"splitedge-{self.name}", daemon=True
        )
        self._thread.start()
        self._heartbeat_thread = threading.Thread(
            target=self._heartbeat, name=f"splitedge-{self.name}-status", daemon=True
        )
        self._heartbeat_thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the thread after one last pass over the finished segments (one attempt, no
        backoff), then close the sink (which releases a chDB directory). Returns False
        if the thread did not end within ``timeout`` seconds."""
        self._stop.set()
        if self._heartbeat_thread is not None:
            self._heartbeat_thread.join()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("%s did not stop within %.1fs", self.name, timeout)
                return False
            return True
        with self._pass_lock:
            self._disconnect()
        self._set_state("stopped")
        return True

    def flush_once(self) -> int:
        """One synchronous pass: recover orphans, deliver every finished segment, oldest
        first. Returns the rows delivered. Stops at the first error, which is recorded
        (state, status file, log) rather than raised; the failed segment stays. The sink
        stays open for the next pass, unless the drain was stopped: then it is closed
        again."""
        with self._pass_lock:
            before = self.rows_flushed
            try:
                recover_orphans(self.spool_dir)
                self._pass(final=True)
            except Exception as exc:
                self._failed(exc, None)
            if self._stop.is_set():
                self._disconnect()
                self.state = "stopped"
            self._publish(force=True)
            return self.rows_flushed - before

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        next_orphan_check = 0.0
        try:
            while not self._stop.is_set():
                if time.monotonic() >= next_orphan_check:
                    self._recover_orphans()
                    next_orphan_check = time.monotonic() + self.orphan_interval
                retry_in: float | None = None
                with self._pass_lock:
                    try:
                        flushed = self._pass(final=False)
                    except Exception as exc:
                        flushed = 0
                        retry_in = self._backoff()
                        if isinstance(exc, SinkBusy):
                            retry_in = max(retry_in, min(exc.delay, RETRY_AFTER_CAP))
                        self._failed(exc, retry_in)
                    self._publish()
                if retry_in is not None:
                    self._stop.wait(retry_in)
                elif flushed == 0:
                    self._stop.wait(self.poll_interval)
            self._last_pass()
        except Exception:
            log.exception("%s thread failed; its segments stay in the spool", self.name)
        finally:
            with self._pass_lock:
                self._disconnect()
            self._set_state("stopped")

    def _last_pass(self) -> None:
        self._recover_orphans()
        with self._pass_lock:
            try:
                self._pass(final=True)
            except Exception as exc:
                self._failed(exc, None)
        left = len(ready_segments(self.spool_dir))
        if left:
            log.warning(
                "%s stopped with segments=%d left in the spool; they are replayed at the "
                "next start",
                self.name,
                left,
                extra={"segments": left},
            )

    def _recover_orphans(self) -> None:
        try:
            recover_orphans(self.spool_dir)
        except OSError:
            log.exception("%s: cannot recover orphaned segments; retrying later", self.name)

    def _pass(self, *, final: bool) -> int:
        """Deliver the finished segments, oldest first; returns how many. Caller holds the
        pass lock. Raises on the first failure, leaving that segment in place."""
        self._ensure_connected()
        flushed = 0
        for path in ready_segments(self.spool_dir):
            if self._stop.is_set() and not final:
                break
            self._flush_segment(path)
            flushed += 1
            self._publish()
        now = time.monotonic()
        if flushed:
            self._last_health = now
        elif now - self._last_health >= self.health_interval:
            self._last_health = now
            self.sink.check()
        self._failures_in_a_row = 0
        return flushed

    def _ensure_connected(self) -> None:
        if not self._connected:
            self.sink.open()
            self._connected = True
            self._last_health = time.monotonic()
            log.info("%s connected to %s", self.name, self.sink.describe())
            self._set_state("ok")

    def _flush_segment(self, path: Path) -> None:
        started = time.monotonic()
        try:
            table = read_segment(path)
        except FileNotFoundError:  # removed behind our back: nothing to deliver
            return
        token = segment_token(path)
        duplicates = 0
        if table.num_rows:
            try:
                duplicates = self.sink.deliver(table, token)
            except SegmentRejected as exc:
                self._reject(path, token, exc)
                return
        path.unlink(missing_ok=True)  # only now: the sink has accepted it
        seconds = time.monotonic() - started
        rows = table.num_rows - duplicates
        self.segments_flushed += 1
        self.rows_flushed += rows
        self.rows_duplicate += duplicates
        self.last_flush_seconds = seconds
        self._set_state("ok")
        log.info(
            "flushed segment=%s rows=%d duplicates=%d seconds=%.3f",
            token,
            rows,
            duplicates,
            seconds,
            extra={
                "segment": token,
                "rows": rows,
                "duplicates": duplicates,
                "seconds": seconds,
            },
        )

    def _reject(self, path: Path, token: str, exc: SegmentRejected) -> None:
        aside = path.with_suffix(REJECTED_SUFFIX)
        os.replace(path, aside)
        self.segments_rejected += 1
        log.error(
            "%s REJECTED segment=%s for good, moved aside to %s (its events are not "
            "delivered; inspect the file, fix the cause, rename it back to .arrow to "
            "retry): %s",
            self.sink.describe(),
            token,
            aside,
            exc,
            extra={"segment": token, "error": str(exc)},
        )
        self._publish(force=True)

    def _backoff(self) -> float:
        """Capped exponential backoff with jitter, for the next retry."""
        exponent = min(self._failures_in_a_row, 30)
        delay = min(self.backoff_cap, self.backoff_initial * 2.0**exponent)
        return delay * random.uniform(0.5, 1.0)

    def _failed(self, exc: Exception, retry_in: float | None) -> None:
        self._failures_in_a_row += 1
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}".strip()[:2000]
        self.last_error_at = time.time()
        self._disconnect()
        retry = f"; retrying in {retry_in:.2f}s" if retry_in is not None else ""
        log.warning(
            "%s unavailable (failure %d in a row)%s: %s",
            self.sink.describe(),
            self._failures_in_a_row,
            retry,
            self.last_error,
            exc_info=self._failures_in_a_row == 1,
            extra={"error": self.last_error, "retry_in": retry_in},
        )
        self.state = "unavailable"
        self._publish(force=True)  # every failure: its error text may be new

    def _disconnect(self) -> None:
        self._connected = False
        try:
            self.sink.close()
        except Exception:
            log.debug("closing %s failed", self.sink.describe(), exc_info=True)

    # -- status ---------------------------------------------------------------------------

    def _set_state(self, state: ClickHouseState) -> None:
        if state != self.state:
            self.state = state
            self._publish(force=True)

    def status(self) -> FlusherStatus:
        """The status now (what `edge.ingest.status.read_status` returns in other
        processes)."""
        usage = spool_usage(self.spool_dir)
        return FlusherStatus(
            clickhouse=self.state,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
            segments_flushed=self.segments_flushed,
            rows_flushed=self.rows_flushed,
            rows_duplicate=self.rows_duplicate,
            segments_rejected=self.segments_rejected,
            errors=self.errors,
            last_flush_seconds=self.last_flush_seconds,
            pending_segments=usage.segments,
            pending_bytes=usage.bytes,
            pid=os.getpid(),
            updated_at=time.time(),
        )

    def _heartbeat(self) -> None:
        # Workers take a status older than a few seconds for a dead server (edge.health):
        # a long insert or a backoff of the drain thread must not make it look so.
        while not self._stop.wait(self.status_interval):
            self._publish()

    def _publish(self, *, force: bool = False) -> None:
        """Write the status file atomically (tmp + rename), at most every status_interval
        unless forced."""
        if not force and time.monotonic() - self._last_publish < self.status_interval:
            return
        with self._status_lock:
            self._last_publish = time.monotonic()
            try:
                write_status(self.spool_dir, self.status())
            except OSError:
                log.exception("%s: cannot write its status file in %s", self.name, self.spool_dir)


class Flusher(SpoolDrain):
    """Inserts the spool's finished segments into ClickHouse: the loop with a
    `ClickHouseSink` (its options ``table``, ``prepare``, ``insert_settings`` and
    ``connect`` are that sink's); see the module docstring."""

    def __init__(
        self,
        spool_dir: Path | str,
        dsn: str,
        *,
        table: str = warehouse.EVENTS_TABLE,
        prepare: Callable[[Client], object] | None = None,
        insert_settings: Callable[[str], Mapping[str, object]] = warehouse.insert_settings,
        connect: Callable[[str], Client] = warehouse.connect,
        **timings: Unpack[DrainTimings],
    ) -> None:
        sink = ClickHouseSink(
            dsn, table=table, prepare=prepare, insert_settings=insert_settings, connect=connect
        )
        super().__init__(spool_dir, sink, name="flusher", **timings)
        self.dsn = dsn
