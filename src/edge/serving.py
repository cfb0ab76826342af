"""What every process that serves the edge has, the control plane's workers (`edge.app`)
and a remote edge node's (`edge.node.app`) alike: the config KV and its follower, the
event buffer and spool, the ingest counters, and the edge routes (snippet, assignment,
ingestion, health, readiness, metrics). Only where the config comes from differs: the
store, or the node's snapshot file.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable

from starlette.routing import BaseRoute, Route

from edge.assign_route import ASSIGN_OPERATION, AssignEndpoint
from edge.bearer import KeyLedger
from edge.health import HEALTH_OPERATION, READY_OPERATION, Health, Readiness, SnapshotState
from edge.hot_routes import HotRoute
from edge.ingest.buffer import EventBuffer
from edge.ingest.collect_route import COLLECT_OPERATION, PREFLIGHT_OPERATION, CollectEndpoint
from edge.ingest.events_route import EVENTS_OPERATION, EventsEndpoint
from edge.ingest.spool import SpoolWriter
from edge.ingest.status import read_status
from edge.kv import ConfigFollower, ConfigKV, KVHolder, SnapshotSource
from edge.metrics import WorkerMetrics
from edge.operation import DocumentedRoute
from edge.settings import Settings
from edge.snippet import load_runtime
from edge.snippet_fetches import FetchLog, fetch_times_path
from edge.snippet_route import SNIPPET_OPERATION, SnippetEndpoint
from edge.version_board import BOARD_FILE, VersionBoard

__all__ = ["MISS_CHECK_INTERVAL", "EdgeServing", "KVCatchUp"]

log = logging.getLogger("splitedge.app")

MISS_CHECK_INTERVAL = 0.05
"""Seconds between two asks of the store's version by one worker's KV misses."""


async def _publish_every(metrics: WorkerMetrics, interval: float = 1.0) -> None:
    while True:
        await asyncio.sleep(interval)
        metrics.publish()


async def _follow(follower: ConfigFollower, present: Callable[[], bool], interval: float) -> None:
    while not present():
        await asyncio.sleep(interval)
    await follower.follow()


def _nothing_posted() -> int:
    return 0


class KVCatchUp:
    """Brings a worker's KV up to what the server has written, for the requests that need
    it (`edge.kv.CatchUp`).

    The follower polls (``config_poll_interval``), so for a moment after a write the KV
    still answers the old way: a site just created would be a 404 on its snippet, an
    experiment just launched a 404 to the assigns that follow. So:

    - A control-plane write this server answers posts the store's version on the
      `VersionBoard` before its answer ends (`after_write`, called by
      `edge.hot_routes.HotRoutes`). The edge routes compare the board with their KV, a
      read of shared memory, and wait for a reload only when it is ahead (`current`):
      the next request, to any worker, the writer's too, sees the write.
    - A request with an API key asks the ledger's version anyway
      (`edge.bearer.require_workspace`), and catches up when the store is ahead
      (`__call__`).
    - A miss (a site key or experiment the KV does not know) asks the store's version,
      for writes made outside this server's routes (the CLI, the decisions), at most once
      per ``miss_interval`` per worker, whatever the number of misses (`after_miss`;
      ``on_check`` counts the asks).

    A reload is one shared by every request that waits meanwhile. Without a ledger (an
    edge node) or a follower yet, the KV is what there is."""

    def __init__(
        self,
        ledger: KeyLedger | None,
        board: VersionBoard | None = None,
        miss_interval: float = MISS_CHECK_INTERVAL,
        on_check: Callable[[], None] = lambda: None,
    ) -> None:
        self.ledger = ledger
        self.board = board
        self.board_version: Callable[[], int] = _nothing_posted if board is None else board.version
        self.miss_interval = miss_interval
        self.on_check = on_check
        self.follower: ConfigFollower | None = None
        self._reload: asyncio.Task[ConfigKV | None] | None = None
        self._next_miss_check = 0.0

    async def __call__(self, kv: ConfigKV) -> tuple[ConfigKV, bool]:
        """``kv``, or the KV of the store's version when that is newer; and whether the
        answer is at the store's version (it then answers for API keys, and the ledger
        need not be asked again)."""
        if self.ledger is None or self.follower is None:
            return kv, False
        version = self.ledger.version()
        if version == kv.version:
            return kv, True
        loaded = await self._reach(self.follower, version)
        if loaded is None:
            return kv, False
        return loaded, loaded.version >= version

    async def current(self, kv: ConfigKV) -> ConfigKV:
        """``kv``, or the KV at the board's version when the board is ahead of it."""
        posted = self.board_version()
        if posted <= kv.version or self.follower is None:
            return kv
        loaded = await self._reach(self.follower, posted)
        if loaded is None:
            return kv
        if loaded.version < posted and self.board is not None and self.ledger is not None:
            self.board.correct(self.ledger.version)
        return loaded

    async def after_miss(self, kv: ConfigKV) -> ConfigKV:
        """``kv``, or a newer KV when the store has moved past it. The store is asked at
        most once per ``miss_interval``; a miss in between gets ``kv`` as it is."""
        if self.ledger is None or self.follower is None:
            return kv
        now = time.monotonic()
        if now < self._next_miss_check:
            return kv
        self._next_miss_check = now + self.miss_interval
        self.on_check()
        version = self.ledger.version()
        if version <= kv.version:
            return kv
        return await self._reach(self.follower, version) or kv

    async def after_write(self) -> None:
        """Post the store's version on the board, for every worker's next request. The
        reload waits for that request: a client that writes several times in a row
        costs one reload per worker, not one per write. A failure is logged: the write
        is done, and the poll still brings it."""
        if self.ledger is None or self.board is None:
            return
        try:
            self.board.publish(self.ledger.version())
        except Exception:
            log.exception("posting a write's config version failed")

    async def _reach(self, follower: ConfigFollower, version: int) -> ConfigKV | None:
        """A KV at ``version`` or later, else the one the last reload got (None: it
        failed)."""
        loaded = await self._shared_load(follower)
        if loaded is not None and loaded.version < version:
            # The reload joined may have read the store before ``version`` was written;
            # one that starts now reads it after.
            loaded = await self._shared_load(follower)
        return loaded

    async def _shared_load(self, follower: ConfigFollower) -> ConfigKV | None:
        if self._reload is None:
            self._reload = asyncio.create_task(self._load(follower), name="kv-catch-up")
        return await asyncio.shield(self._reload)

    async def _load(self, follower: ConfigFollower) -> ConfigKV | None:
        try:
            return await asyncio.to_thread(follower.load)
        except Exception:
            log.exception("config catch-up failed; still serving the previous version")
            return None
        finally:
            self._reload = None


class EdgeServing:
    """The edge parts of one worker, from its settings. ``snapshot_state`` (a node's)
    adds the snapshot's version and age to /readyz; ``ledger`` (the control plane's
    store) answers for API keys while the KV is behind it."""

    def __init__(
        self,
        settings: Settings,
        snapshot_state: Callable[[], SnapshotState | None] | None = None,
        ledger: KeyLedger | None = None,
    ) -> None:
        self.settings = settings
        # Requests allocate many short-lived objects and no cycles worth chasing often;
        # with the default (a young collection every 700 allocations) the collector took
        # 14% of an ingesting worker's time (py-spy, bench/RESULTS.md).
        gc.set_threshold(10_000, 10, 10)
        self.holder = KVHolder()
        self.spool = SpoolWriter(settings.spool_dir, disk_cap_bytes=settings.spool_cap_mb << 20)
        self.buffer = EventBuffer(self.spool)
        self.metrics = WorkerMetrics(
            settings.spool_dir, lambda: None if self.holder.kv is None else self.holder.kv.built_at
        )
        settings.run_dir.mkdir(parents=True, exist_ok=True)
        holder, buffer, counters = self.holder, self.buffer, self.metrics.counters
        # Only the control plane's workers post writes: an edge node has no ledger.
        self.board = None if ledger is None else VersionBoard(settings.run_dir / BOARD_FILE)
        self.catch_up = KVCatchUp(ledger, self.board, on_check=self.metrics.kv_miss_checks.inc)
        # The installation check reads the fetch times beside the store: an edge node,
        # which has none, keeps none.
        self.fetches = None if ledger is None else FetchLog(fetch_times_path(settings))
        self.ingest = [
            DocumentedRoute(
                "/v1/assign",
                AssignEndpoint(holder, ledger, self.catch_up),
                {"POST": ASSIGN_OPERATION},
            ),
            DocumentedRoute(
                "/v1/collect",
                CollectEndpoint(holder, buffer, counters, settings.late_event_grace, self.catch_up),
                {"POST": COLLECT_OPERATION, "OPTIONS": PREFLIGHT_OPERATION},
            ),
            DocumentedRoute(
                "/v1/events",
                EventsEndpoint(
                    holder, buffer, counters, ledger, self.catch_up, settings.late_event_grace
                ),
                {"POST": EVENTS_OPERATION},
            ),
        ]
        self.readiness = Readiness(holder, lambda: read_status(settings.spool_dir), snapshot_state)

    def routes(self) -> list[BaseRoute]:
        """The edge routes."""
        return [
            DocumentedRoute(
                "/s/{public_key}.js",
                SnippetEndpoint(self.holder, self.catch_up, self.fetches),
                {"GET": SNIPPET_OPERATION},
            ),
            *self.ingest,
            DocumentedRoute("/healthz", Health(), {"GET": HEALTH_OPERATION}),
            DocumentedRoute("/readyz", self.readiness, {"GET": READY_OPERATION}),
            Route("/metrics", self.metrics, methods=["GET"]),
        ]

    def hot_routes(self) -> list[HotRoute]:
        """The ingest and assignment routes, dispatched ahead of Starlette."""
        return [HotRoute(r.path, r.operations, r.endpoint) for r in self.ingest]

    @contextlib.asynccontextmanager
    async def lifespan(
        self, source: SnapshotSource, present: Callable[[], bool] = lambda: True
    ) -> AsyncIterator[None]:
        """Load the KV from ``source`` and follow it; write the event buffer to the spool
        and finish the open segment at the end. A source without a snapshot yet (an edge
        node's, ``present`` false) is awaited while the worker serves: 503s meanwhile."""
        interval = self.settings.config_poll_interval
        follower = ConfigFollower(source, load_runtime(), self.holder, interval=interval)
        self.catch_up.follower = follower
        if present():
            kv = await asyncio.to_thread(follower.load)
            log.info("ready at config version %d (%d sites)", kv.version, len(kv.by_public_key))
        else:
            log.warning("no config snapshot yet: not ready until one arrives")
        # What start-up built lives as long as the worker: move it out of the cyclic
        # collector's sight, so collections under load only scan what requests create.
        gc.collect()
        gc.freeze()
        tasks = [
            asyncio.create_task(_follow(follower, present, interval), name="config-follower"),
            asyncio.create_task(_publish_every(self.metrics), name="metrics"),
        ]
        if self.fetches is not None:
            tasks.append(asyncio.create_task(self.fetches.publish_every(), name="fetch-times"))
        writer = asyncio.create_task(self.buffer.run(), name="event-writer")
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.buffer.close(writer)
            self.spool.close()
            self.metrics.publish()
            if self.fetches is not None:
                await self.fetches.publish()
            if self.board is not None:
                self.board.close()
