"""Where a worker runs the slow outbound work tenants ask for: authors' page fetches (and
the parsing after them) and the DNS lookups that check a site or webhook URL.

That work takes seconds at a target's pace, and a hostile target can trickle its answer
on purpose. On asyncio's default thread pool, which every store call also uses, eight
such requests of one workspace stalled every other workspace's API. So it runs here:

- on threads of its own (`THREADS` per worker), so store calls never wait behind it;
- at most `PER_WORKSPACE` calls of one workspace at a time per worker; one more is
  answered ``429 too_many_fetches`` at once (Retry-After 2 s) rather than queued, so one
  tenant cannot fill the pool;
- a call that fails (an unreachable, refused or too-slow page) costs no credits, so it
  counts `FAILED_CALL_REQUESTS` requests against the caller's rate limit instead
  (`record_failure`): failing on purpose is not free on a rate-limited plan.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from edge.control import plans
from edge.control.store import Store
from edge.errors import RateLimited

__all__ = [
    "FAILED_CALL_REQUESTS",
    "PER_WORKSPACE",
    "THREADS",
    "FetchPool",
    "TooManyFetches",
    "record_failure",
    "shared_pool",
]

T = TypeVar("T")

THREADS = 8
"""Threads per worker for outbound work."""

PER_WORKSPACE = 2
"""Calls of one workspace that may run at once in one worker."""

FAILED_CALL_REQUESTS = 10
"""How many requests a failed call counts as, against the caller's rate limit."""

_RETRY_AFTER = 2


class TooManyFetches(RateLimited):
    """The workspace already runs as many page fetches or URL checks as it may at once."""

    code = "too_many_fetches"


class FetchPool:
    """A bounded thread pool with a per-workspace cap; see the module docstring. Use one
    per worker, from its event loop."""

    def __init__(self, threads: int = THREADS, per_workspace: int = PER_WORKSPACE) -> None:
        self.per_workspace = per_workspace
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="splitedge-fetch")
        self._running: dict[str, int] = {}

    async def run(self, workspace_id: str, work: Callable[[], T]) -> T:
        """``work()`` on the pool's threads, for ``workspace_id``; `TooManyFetches` (429)
        at once when that workspace already has `per_workspace` calls running."""
        running = self._running.get(workspace_id, 0)
        if running >= self.per_workspace:
            raise TooManyFetches(
                f"this workspace already has {running} page fetches or URL checks in "
                f"progress, the most it may run at once; retry in {_RETRY_AFTER} s "
                "(Retry-After), when one has ended",
                _RETRY_AFTER,
            )
        self._running[workspace_id] = running + 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work)
        finally:
            left = self._running[workspace_id] - 1
            if left:
                self._running[workspace_id] = left
            else:
                del self._running[workspace_id]


@functools.cache
def shared_pool() -> FetchPool:
    """The worker's pool, made on first use (like asyncio's default executor, one per
    process: every route that fetches shares it, so the cap holds across them)."""
    return FetchPool()


def record_failure(store: Store, key_id: str) -> None:
    """Count a failed call against ``key_id``'s rate limit (`FAILED_CALL_REQUESTS`)."""
    store.count_request(key_id, plans.window_start(time.time()), FAILED_CALL_REQUESTS)
