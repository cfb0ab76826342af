"""The summary keeper: keeps the summary (`analytics.summaries`) of every running or
paused experiment of at least ``SPLITEDGE_SUMMARY_FROM_EVENTS`` events up to date, from
the server's parent process, the one writer of summaries.

Each pass (every 0.25 s) reads every experiment's marks (one small query) and hands the
experiments whose events changed since their summary to a pool of `WORKERS` threads,
each with its own ClickHouse client; an experiment is refreshed by one thread at a time,
and a long refresh (a first summary of millions of units) holds one thread while the
others keep the rest current. An experiment is refreshed once more `SETTLE_MS` after the
keeper first saw its latest marks, for an insert whose state became visible after them.
Results readers (`analytics.summaries.SummaryReader`) wait for it."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from analytics import summaries, warehouse
from analytics.aggregates import SETTLE_MS, ExperimentSpec
from analytics.summaries import Kept
from edge.control.results_api import experiment_spec
from edge.control.store import Store
from edge.periodic import PeriodicPass

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["PACE", "RETRY_CAP_MS", "RETRY_MS", "WORKERS", "SummaryKeeper"]

log = logging.getLogger("splitedge.server")


WORKERS = 2
"""Refreshes run at once."""

RETRY_MS, RETRY_CAP_MS = 1_000, 60_000
"""The wait before refreshing again an experiment whose refresh failed, doubling to the
cap."""

PACE = 3
"""A refresh of an experiment starts no sooner than this many times its previous one's
duration after that one started: a large experiment under steady traffic keeps a core
busy a third of the time at most (its readers take a summary within
`analytics.summaries.LAG`)."""

_MARKS = (
    "SELECT workspace_id, experiment_id, sum(events), "
    "toUnixTimestamp64Milli(max(last_inserted_at)), toUnixTimestamp64Milli(now64(3)) "
    f"FROM {warehouse.EXPERIMENT_MARKS_TABLE} GROUP BY workspace_id, experiment_id"
)

Key = tuple[str, str]


class SummaryKeeper(PeriodicPass):
    """Refreshes the live experiments' summaries (module docstring) until stopped."""

    def __init__(
        self, store_path: Path, dsn: str, smallest: int = 0, interval: float = 0.25
    ) -> None:
        super().__init__("summary keeper", interval, at_start=True)
        self.store_path = store_path
        self.dsn = dsn
        self.smallest = smallest
        self.refreshes = 0
        self.failures = 0
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="splitedge-summary")
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()
        self._kept: dict[Key, Kept | None] = {}
        # The marks (events, last insert) each experiment had when its refresh began, and
        # when (server time, ms) the keeper first saw them.
        self._seen: dict[Key, tuple[tuple[int, int], int]] = {}
        self._busy: set[Key] = set()
        # After a failed refresh: when (server time, ms) to try again, and the wait.
        self._retry: dict[Key, tuple[int, int]] = {}

    def stop(self, timeout: float = 30.0) -> None:
        """Stop passing, let the refreshes in progress finish, close the clients."""
        super().stop(timeout)
        self._pool.shutdown(wait=True, cancel_futures=True)
        for client in self._clients:
            warehouse.close_quietly(client)

    def run_pass(self) -> None:
        client = self._client()
        if client is None:
            return
        try:
            rows = client.query(_MARKS).result_rows
        except Exception:
            self._local.client = None  # reconnect next pass
            raise
        marks = {(ws, exp): (events, last, now) for ws, exp, events, last, now in rows}
        store = Store(self.store_path)
        try:
            records = store.live_experiment_records()
        finally:
            store.close()
        for record in records:
            key = (record.workspace_id, record.id)
            if key not in marks or marks[key][0] < self.smallest:
                continue  # read from every unit's state (SummaryReader)
            spec = experiment_spec(record)
            events, last, now = marks[key]
            with self._lock:
                if key in self._busy or not self._due(key, spec, (events, last), now):
                    continue
                self._busy.add(key)
                seen = self._seen.get(key)
                if seen is None or seen[0] != (events, last):
                    self._seen[key] = ((events, last), now)
            self._pool.submit(self._refresh, key, spec, now)

    def _due(self, key: Key, spec: ExperimentSpec, marks: tuple[int, int], now: int) -> bool:
        if now < self._retry.get(key, (0, 0))[0]:
            return False
        kept = self._kept.get(key)
        if kept is None or kept.layout != summaries.layout_of(spec):
            return True  # not read since the start (the refresh reads it first), or new
        if now < kept.version + PACE * kept.refresh_ms:
            return False  # a refresh of this experiment takes at most 1 / PACE of the time
        seen = self._seen.get(key)
        if seen is None or seen[0] != marks:
            return True
        # Once more after these marks settled: the state of the insert they count may
        # have become visible only after the refresh that saw them.
        return kept.version < seen[1] + SETTLE_MS <= now

    def _refresh(self, key: Key, spec: ExperimentSpec, now: int) -> None:
        try:
            client = self._client()
            if client is None:
                return
            with self._lock:
                known = key in self._kept
                kept = self._kept.get(key)
            if not known:
                kept = summaries.kept_summary(client, spec)
            kept = summaries.refresh(client, spec, kept)
            with self._lock:
                self._kept[key] = kept
                self.refreshes += 1
                self._retry.pop(key, None)
        except Exception:
            with self._lock:
                self._kept.pop(key, None)  # read again from ClickHouse next time
                self._seen.pop(key, None)
                # Again after 1 s, doubling to a minute: a failing experiment is not
                # retried, and logged, four times a second.
                wait = min(RETRY_CAP_MS, 2 * self._retry.get(key, (0, RETRY_MS // 2))[1])
                self._retry[key] = (now + wait, wait)
                self.failures += 1
            self._local.client = None  # and reconnect
            log.exception("summary of experiment %s failed; it is refreshed again in %d s",
                          spec.id, wait // 1000)  # fmt: skip
        finally:
            with self._lock:
                self._busy.discard(key)

    def _client(self) -> Any:
        """This thread's client; None until the flusher has migrated the schema (it does
        when it first connects)."""
        client = getattr(self._local, "client", None)
        if client is not None:
            return client
        client = warehouse.connect(self.dsn)
        if warehouse.schema_version(client) < len(warehouse.MIGRATIONS):
            warehouse.close_quietly(client)
            return None
        self._local.client = client
        with self._lock:
            self._clients.append(client)
        return client
