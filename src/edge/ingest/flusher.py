"""The flusher: moves finished spool segments into ClickHouse and deletes each one only
after ClickHouse accepted it.

One flusher runs per spool directory, in the server's parent process, on a daemon
thread. On start it finishes the orphaned ``.open`` segments of dead writers (and keeps
doing so every second, for workers killed later), then loops: connect if needed (and
run the ``prepare`` hook, e.g. the warehouse migrations), take the finished segments
oldest first, insert each with ``insert_arrow`` and delete it.

Exactly once
    Every segment is one insert whose ``insert_deduplication_token`` is the segment's
    name (settings from `analytics.warehouse.insert_settings`). A segment inserted before
    a crash but not yet deleted is inserted again on the next start, with the same bytes
    and the same token, and ClickHouse drops it as a duplicate. This needs a table that
    deduplicates inserts by token (the warehouse's events table does: see its
    ``DEDUPLICATION_WINDOW``).

Failures
    Any error (unreachable server, a chDB directory locked by another process, a failed
    insert) is recorded, the client is dropped, and the same segment is retried after a
    capped exponential backoff with jitter (0.2 s doubling up to 10 s by default).
    Nothing leaves the spool meanwhile; the workers refuse new events once the spool is
    over its disk cap (`edge.ingest.spool.SpoolFull`).

Status
    Workers, which are other processes, learn the flusher's state from a small JSON file,
    ``<spool>/flusher.status.json`` (`FlusherStatus`, read with `read_status`), replaced
    atomically at most every 0.5 s while the thread runs and at once on every change of
    the ClickHouse state.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

import clickhouse_connect
import msgspec
from clickhouse_connect.driver.client import Client

from analytics import warehouse
from edge.ingest.spool import (
    read_segment,
    ready_segments,
    recover_orphans,
    segment_token,
    spool_usage,
)

__all__ = [
    "STATUS_FILE",
    "ClickHouseState",
    "Flusher",
    "FlusherStatus",
    "read_status",
]

log = logging.getLogger("splitedge.flusher")

STATUS_FILE = "flusher.status.json"

ClickHouseState = Literal["starting", "ok", "unavailable", "stopped"]


class FlusherStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What the flusher last published (times are Unix seconds)."""

    clickhouse: ClickHouseState
    """``starting`` until the first connection, ``ok`` while inserts succeed,
    ``unavailable`` after an error until a retry succeeds, ``stopped`` after `stop`."""
    last_error: str = ""
    last_error_at: float | None = None
    segments_flushed: int = 0
    rows_flushed: int = 0
    errors: int = 0
    last_flush_seconds: float | None = None
    """How long the last segment took: read, insert and delete."""
    pending_segments: int = 0
    pending_bytes: int = 0
    """Segments (open and finished) and bytes in the spool, of every process."""
    pid: int = 0
    updated_at: float = 0.0
    """When this was written. The flusher rewrites it every 0.5 s while it runs, so an old
    value (more than a few seconds) means no flusher is running."""

    def age(self, now: float | None = None) -> float:
        """Seconds since the flusher wrote this status."""
        return (time.time() if now is None else now) - self.updated_at


def read_status(spool_dir: Path | str) -> FlusherStatus | None:
    """The flusher's last status for a spool directory; None if there is none (yet)."""
    try:
        data = (Path(spool_dir) / STATUS_FILE).read_bytes()
        return msgspec.json.decode(data, type=FlusherStatus)
    except (OSError, msgspec.DecodeError):
        return None


def _connect_clickhouse(dsn: str) -> Client:
    return clickhouse_connect.get_client(dsn=dsn)


class Flusher:
    """Inserts the spool's finished segments into ClickHouse; see the module docstring.

    ``prepare(client)`` runs after every (re)connect, before the first insert on that
    client (pass ``warehouse.migrate``). ``connect(dsn)`` makes a client
    (clickhouse-connect by default); ``insert_settings(token)`` gives the settings of the
    idempotent insert of the segment named ``token``. Counters for
    metrics are plain attributes: ``segments_flushed``, ``rows_flushed``, ``errors``,
    ``last_flush_seconds``, ``state``, ``last_error``.
    """

    def __init__(
        self,
        spool_dir: Path | str,
        dsn: str,
        *,
        table: str = warehouse.EVENTS_TABLE,
        prepare: Callable[[Client], object] | None = None,
        insert_settings: Callable[[str], Mapping[str, object]] = warehouse.insert_settings,
        backoff_initial: float = 0.2,
        backoff_cap: float = 10.0,
        poll_interval: float = 0.1,
        connect: Callable[[str], Client] = _connect_clickhouse,
        status_interval: float = 0.5,
        orphan_interval: float = 1.0,
        health_interval: float = 5.0,
    ) -> None:
        self.spool_dir = Path(spool_dir).absolute()
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.dsn = dsn
        self.table = table
        self.prepare = prepare
        self.insert_settings = insert_settings
        self.backoff_initial = backoff_initial
        self.backoff_cap = backoff_cap
        self.poll_interval = poll_interval
        self.status_interval = status_interval
        self.orphan_interval = orphan_interval
        self.health_interval = health_interval
        self._connect = connect
        self.state: ClickHouseState = "starting"
        self.last_error = ""
        self.last_error_at: float | None = None
        self.segments_flushed = 0
        self.rows_flushed = 0
        self.errors = 0
        self.last_flush_seconds: float | None = None
        self._client: Client | None = None
        self._pass_lock = threading.Lock()  # one pass at a time; guards the client
        self._status_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_publish = 0.0
        self._last_health = 0.0
        self._failures_in_a_row = 0

    # -- control ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the flusher thread: replay what is left in the spool, then keep flushing."""
        if self._thread is not None:
            raise RuntimeError("the flusher is already started")
        self._publish(force=True)
        self._thread = threading.Thread(target=self._run, name="splitedge-flusher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the thread after one last pass over the finished segments (one attempt, no
        backoff), then close the client (which releases a chDB directory). Returns False
        if the thread did not end within ``timeout`` seconds."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("flusher did not stop within %.1fs", timeout)
                return False
            return True
        with self._pass_lock:
            self._disconnect()
        self._set_state("stopped")
        return True

    def flush_once(self) -> int:
        """One synchronous pass: recover orphans, insert every finished segment, oldest
        first. Returns the rows inserted. Stops at the first error, which is recorded
        (state, status file, log) rather than raised; the failed segment stays. The client
        stays open for the next pass, unless the flusher was stopped: then it is closed
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
                        self._failed(exc, retry_in)
                    self._publish()
                if retry_in is not None:
                    self._stop.wait(retry_in)
                elif flushed == 0:
                    self._stop.wait(self.poll_interval)
            self._last_pass()
        except Exception:
            log.exception("flusher thread failed; its segments stay in the spool")
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
                "flusher stopped with segments=%d left in the spool; they are replayed at the "
                "next start",
                left,
                extra={"segments": left},
            )

    def _recover_orphans(self) -> None:
        try:
            recover_orphans(self.spool_dir)
        except OSError:
            log.exception("flusher: cannot recover orphaned segments; retrying later")

    def _pass(self, *, final: bool) -> int:
        """Insert the finished segments, oldest first; returns how many. Caller holds the
        pass lock. Raises on the first failure, leaving that segment in place."""
        client = self._ensure_client()
        flushed = 0
        for path in ready_segments(self.spool_dir):
            if self._stop.is_set() and not final:
                break
            self._flush_segment(client, path)
            flushed += 1
            self._publish()
        now = time.monotonic()
        if flushed:
            self._last_health = now
        elif now - self._last_health >= self.health_interval:
            self._last_health = now
            if not client.ping():
                raise ConnectionError(f"ClickHouse at {self._safe_dsn()} does not answer a ping")
        self._failures_in_a_row = 0
        return flushed

    def _ensure_client(self) -> Client:
        if self._client is None:
            client = self._connect(self.dsn)
            try:
                if self.prepare is not None:
                    self.prepare(client)
            except BaseException:
                _close_quietly(client)
                raise
            self._client = client
            self._last_health = time.monotonic()
            log.info("flusher connected to ClickHouse at %s", self._safe_dsn())
            self._set_state("ok")
        return self._client

    def _flush_segment(self, client: Client, path: Path) -> None:
        started = time.monotonic()
        try:
            table = read_segment(path)
        except FileNotFoundError:  # removed behind our back: nothing to insert
            return
        token = segment_token(path)
        if table.num_rows:
            client.insert_arrow(self.table, table, settings=dict(self.insert_settings(token)))
        path.unlink(missing_ok=True)  # only now: ClickHouse has accepted it
        seconds = time.monotonic() - started
        self.segments_flushed += 1
        self.rows_flushed += table.num_rows
        self.last_flush_seconds = seconds
        self._set_state("ok")
        log.info(
            "flushed segment=%s rows=%d seconds=%.3f",
            token,
            table.num_rows,
            seconds,
            extra={"segment": token, "rows": table.num_rows, "seconds": seconds},
        )

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
            "ClickHouse unavailable at %s (failure %d in a row)%s: %s",
            self._safe_dsn(),
            self._failures_in_a_row,
            retry,
            self.last_error,
            exc_info=self._failures_in_a_row == 1,
            extra={"error": self.last_error, "retry_in": retry_in},
        )
        self.state = "unavailable"
        self._publish(force=True)  # every failure: its error text may be new

    def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            _close_quietly(client)

    def _safe_dsn(self) -> str:
        """The DSN without a password."""
        scheme, sep, rest = self.dsn.partition("://")
        if "@" in rest:
            rest = rest.rsplit("@", 1)[1]
        return scheme + sep + rest

    # -- status ---------------------------------------------------------------------------

    def _set_state(self, state: ClickHouseState) -> None:
        if state != self.state:
            self.state = state
            self._publish(force=True)

    def status(self) -> FlusherStatus:
        """The flusher's status now (what `read_status` returns in other processes)."""
        usage = spool_usage(self.spool_dir)
        return FlusherStatus(
            clickhouse=self.state,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
            segments_flushed=self.segments_flushed,
            rows_flushed=self.rows_flushed,
            errors=self.errors,
            last_flush_seconds=self.last_flush_seconds,
            pending_segments=usage.segments,
            pending_bytes=usage.bytes,
            pid=os.getpid(),
            updated_at=time.time(),
        )

    def _publish(self, *, force: bool = False) -> None:
        """Write the status file atomically (tmp + rename), at most every status_interval
        unless forced."""
        if not force and time.monotonic() - self._last_publish < self.status_interval:
            return
        with self._status_lock:
            self._last_publish = time.monotonic()
            target = self.spool_dir / STATUS_FILE
            tmp = target.with_name(f".{STATUS_FILE}.{os.getpid()}.tmp")
            try:
                tmp.write_bytes(msgspec.json.encode(self.status()))
                os.replace(tmp, target)
            except OSError:
                log.exception("flusher: cannot write its status file %s", target)


def _close_quietly(client: Client) -> None:
    try:
        client.close()
    except Exception:
        log.debug("closing the ClickHouse client failed", exc_info=True)
