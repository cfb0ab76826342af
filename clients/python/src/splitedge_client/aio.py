"""`AsyncClient`: the asyncio client, for agents that run on an event loop.

The same calls as `splitedge_client.Client`, awaited. Task events are posted by a sender
task, started with the first event on the loop that tracked it; ``await close()`` (or
leaving ``async with``) delivers everything queued first. An event loop that ends with
the client open loses its queue: close it.

No locks: everything here runs on one event loop, so the state between two awaits is
the sender's and the callers' alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from splitedge_client.batches import (
    DeliveryStats,
    PendingEvents,
    Verdict,
    batch_body,
    judge,
    outcome,
)
from splitedge_client.errors import ClientClosed, DeliveryTimeout, QueueFull
from splitedge_client.retry import CallTries, RetryPolicy
from splitedge_client.sync import client_headers
from splitedge_client.wire import (
    AssignedVariant,
    MetadataValue,
    Outcome,
    assign_batches,
    assign_body,
    assigned,
    assigned_batch,
    results_data,
    results_path,
    task_event,
)

__all__ = ["AsyncClient"]

log = logging.getLogger("splitedge.client")


async def _wait(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait for ``event`` at most ``timeout`` seconds (None: for ever); True if it came."""
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        return False
    return True


class AsyncClient:
    """A splitedge server, for an asyncio agent: ``await assign``, ``await track_task``,
    ``await results``. The options are `splitedge_client.Client`'s."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        batch_size: int = 100,
        flush_interval: float = 0.5,
        max_queue: int = 10_000,
        queue_timeout: float = 10.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = RetryPolicy() if retry is None else retry
        import httpx

        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=client_headers(api_key), timeout=timeout
        )
        self._pending = PendingEvents(batch_size)
        self._flush_interval = flush_interval
        self._max_queue = max_queue
        self._queue_timeout = queue_timeout
        self._sender: asyncio.Task[None] | None = None
        self._closing = False
        # Set when the sender may have something to do, when the queue has room again,
        # and when events settle (are delivered or dropped).
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._settled_event = asyncio.Event()
        self._queued = self._taken = self._settled = self._flush_target = 0
        self._delivered = self._dropped = self._retries = 0
        self._last_error: str | None = None

    async def assign(self, experiment_id: str, unit_id: str) -> AssignedVariant | None:
        """The variant ``unit_id`` gets in the experiment, with its payload; None when
        the unit is outside the experiment's coverage."""
        body = assign_body(experiment_id, unit_id)
        return assigned(await self._call("POST", "/v1/assign", body))

    async def assign_many(
        self, experiment_id: str, unit_ids: Sequence[str]
    ) -> list[AssignedVariant | None]:
        """`assign` for many units, in batches of 1000; answers in the order of the ids."""
        answers: list[AssignedVariant | None] = []
        for body in assign_batches(experiment_id, unit_ids):
            answers += assigned_batch(await self._call("POST", "/v1/assign", body))
        return answers

    async def track_task(
        self,
        agent_id: str,
        task: str,
        outcome: Outcome,
        *,
        cost: float = 0.0,
        duration_ms: float = 0.0,
        metadata: Mapping[str, MetadataValue] | None = None,
        turns: int | None = None,
        experiment_id: str | None = None,
        variant_id: str | None = None,
        session_id: str | None = None,
        assignment: AssignedVariant | None = None,
        event_id: str | None = None,
        ts: int | None = None,
    ) -> str:
        """Queue a task event and return its id (see `splitedge_client.Client.track_task`);
        waits only while the queue is full."""
        event_id, encoded = task_event(
            agent_id, task, outcome, cost=cost, duration_ms=duration_ms, metadata=metadata,
            turns=turns, experiment_id=experiment_id, variant_id=variant_id,
            session_id=session_id, assignment=assignment, event_id=event_id, ts=ts,
        )  # fmt: skip
        pending = self._pending
        while len(pending) >= self._max_queue and not self._closing:
            self._room.clear()
            if not await _wait(self._room, self._queue_timeout):
                raise QueueFull(
                    f"{len(pending)} task events are waiting and none left the queue in "
                    f"{self._queue_timeout} s (last error: {self._last_error}); raise "
                    "max_queue or check the server"
                )
        if self._closing:
            raise ClientClosed("this client is closed; make a new one")
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(
                self._run(), name="splitedge-events"
            )
        self._queued += 1
        if pending.add(encoded) or pending.full():
            self._wake.set()
        return event_id

    async def results(self, experiment_id: str) -> dict[str, Any]:
        """The experiment's results (``GET /v1/experiments/{id}/results``): its ``data``."""
        return results_data(await self._call("GET", results_path(experiment_id)))

    @property
    def stats(self) -> DeliveryStats:
        """What the task events tracked so far came to."""
        return DeliveryStats(
            self._queued, self._delivered, self._dropped, self._retries, self._last_error
        )

    async def flush(self, timeout: float | None = None) -> None:
        """Send what is queued now and wait until the server took it (or refused it for
        good); `DeliveryTimeout` after ``timeout`` seconds."""
        target = self._queued
        self._flush_target = max(self._flush_target, target)
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._settled < target:
            self._settled_event.clear()
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            if not await _wait(self._settled_event, left):
                raise DeliveryTimeout(
                    f"{target - self._settled} task events not delivered in {timeout} s "
                    f"(last error: {self._last_error}); they stay queued"
                )

    async def close(self, timeout: float = 30.0) -> None:
        """Deliver everything queued, then stop. Events still undelivered after
        ``timeout`` seconds are dropped and `DeliveryTimeout` says how many."""
        if self._closing:
            return
        self._closing = True
        self._wake.set()
        self._room.set()
        sender = self._sender
        try:
            if sender is None:
                return
            done, _ = await asyncio.wait({sender}, timeout=timeout)
            if done:
                sender.result()  # a failure of the sender itself surfaces here
                return
            left = self._queued - self._settled
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            self._dropped += left
            raise DeliveryTimeout(
                f"{left} task events were not delivered in {timeout} s and were dropped "
                f"(last error: {self._last_error})"
            )
        finally:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _call(self, method: str, path: str, body: bytes | None = None) -> bytes:
        if self._closing:
            raise ClientClosed("this client is closed; make a new one")
        import httpx

        tries = CallTries(self.retry, f"{method} {path}", self.base_url)
        while True:
            try:
                response = await self._http.request(method, path, content=body)
            except httpx.TransportError as exc:
                await asyncio.sleep(tries.unreachable(exc))
                continue
            if response.is_success:
                return response.content
            await asyncio.sleep(tries.refused(response))

    async def _run(self) -> None:
        try:
            while (batch := await self._next_batch()) is not None:
                await self._deliver(batch)
        except Exception as exc:
            # A bug, not a delivery failure: do not leave flush() waiting for ever.
            log.exception("the task event sender failed")
            self._closing = True
            self._pending.events.clear()
            self._dropped += self._queued - self._settled
            self._settled = self._queued
            self._last_error = f"the sender failed: {exc!r}"
            self._settled_event.set()
            self._room.set()

    async def _next_batch(self) -> list[bytes] | None:
        pending = self._pending
        while True:
            if pending:
                if self._closing or pending.full() or self._flush_target > self._taken:
                    break
                wait = pending.oldest_at + self._flush_interval - time.monotonic()
                if wait <= 0:
                    break
                self._wake.clear()
                await _wait(self._wake, wait)
            elif self._closing:
                return None
            else:
                self._wake.clear()
                await self._wake.wait()
        batch = pending.cut()
        self._taken += len(batch)
        self._room.set()
        return batch

    async def _deliver(self, batch: list[bytes]) -> None:
        verdict, error = await self._send(batch)
        if verdict is Verdict.SPLIT:
            for event in batch:
                await self._deliver([event])
            return
        if verdict is Verdict.DELIVERED:
            self._delivered += len(batch)
        else:
            self._dropped += len(batch)
            self._last_error = error
            log.warning("dropped %d task events: %s", len(batch), error)
        self._settled += len(batch)
        self._settled_event.set()

    async def _send(self, batch: list[bytes]) -> tuple[Verdict, str | None]:
        import httpx

        body = batch_body(batch)
        failures = 0
        while True:
            status: int | None
            try:
                status, error, wait = outcome(await self._http.post("/v1/events", content=body))
            except httpx.HTTPError as exc:
                status, error, wait = None, f"{exc!r} from {self.base_url}", None
            verdict = judge(status, len(batch))
            if verdict is not Verdict.RETRY:
                return verdict, error
            failures += 1
            if failures >= self.retry.attempts:
                return Verdict.DROP, f"{error} ({failures} tries)"
            self._retries += 1
            self._last_error = error
            await asyncio.sleep(self.retry.delay(failures, wait))
