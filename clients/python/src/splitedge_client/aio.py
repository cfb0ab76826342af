"""`AsyncClient`: the asyncio client, for agents that run on an event loop.

The same calls as `splitedge_client.Client`, awaited, with the same fallbacks, queue and
spill file. Task events are posted by a sender task, started on the loop of the first
call; ``await close()`` (or leaving ``async with``) delivers what it can first. An event
loop that ends with the client open loses its queue: close it.

No locks: everything here runs on one event loop, so the state between two awaits is
the sender's and the callers' alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from splitedge_client import spill
from splitedge_client.batches import (
    DEFAULT_MAX_QUEUE,
    DeliveryStats,
    Verdict,
    batch_body,
    judge,
    left_behind,
    outcome,
)
from splitedge_client.errors import ClientClosed, DeliveryTimeout
from splitedge_client.fallback import Admission, AssignFallback
from splitedge_client.retry import CallTries, RetryPolicy
from splitedge_client.sync import ASSIGN_TIMEOUT, client_headers, spilled_events
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
        assign_timeout: float = ASSIGN_TIMEOUT,
        strict: bool = False,
        batch_size: int = 100,
        flush_interval: float = 0.5,
        max_queue: int = DEFAULT_MAX_QUEUE,
        spill_path: str | os.PathLike[str] | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = RetryPolicy() if retry is None else retry
        self.strict = strict
        self._assign_timeout = assign_timeout
        self._fallback = AssignFallback(self.base_url)
        import httpx

        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=client_headers(api_key), timeout=timeout
        )
        self._queue, self._spill_path = spilled_events(spill_path, batch_size, max_queue)
        self._flush_interval = flush_interval
        self._sender: asyncio.Task[None] | None = None
        self._probes: set[asyncio.Task[bytes | None]] = set()
        self._closing = False
        # Set when the sender may have something to do, and when events end.
        self._wake = asyncio.Event()
        self._ended = asyncio.Event()

    async def assign(
        self, experiment_id: str, unit_id: str, *, default: Any = None, strict: bool | None = None
    ) -> AssignedVariant | None:
        """The variant ``unit_id`` gets in the experiment, with its payload; None when
        the unit is outside the experiment's coverage. Never raises unless ``strict``
        (see `splitedge_client.Client.assign`)."""
        self._start()
        body = assign_body(experiment_id, unit_id)
        if self.strict if strict is None else strict:
            return assigned(await self._call("POST", "/v1/assign", body))
        return self._fallback.one(experiment_id, unit_id, await self._ask(body), default)

    async def assign_many(
        self,
        experiment_id: str,
        unit_ids: Sequence[str],
        *,
        default: Any = None,
        strict: bool | None = None,
    ) -> list[AssignedVariant | None]:
        """`assign` for many units, in batches of 1000; answers in the order of the ids."""
        answers: list[AssignedVariant | None] = []
        for batch, body in assign_batches(experiment_id, unit_ids):
            if self.strict if strict is None else strict:
                answers += assigned_batch(await self._call("POST", "/v1/assign", body))
            else:
                content = await self._ask(body)
                answers += self._fallback.many(experiment_id, batch, content, default)
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
        it never waits."""
        event_id, encoded = task_event(
            agent_id, task, outcome, cost=cost, duration_ms=duration_ms, metadata=metadata,
            turns=turns, experiment_id=experiment_id, variant_id=variant_id,
            session_id=session_id, assignment=assignment, event_id=event_id, ts=ts,
        )  # fmt: skip
        if self._closing:
            raise ClientClosed("this client is closed; make a new one")
        self._start()
        if self._queue.put(encoded):
            self._wake.set()
        return event_id

    async def results(self, experiment_id: str) -> dict[str, Any]:
        """The experiment's results (``GET /v1/experiments/{id}/results``): its ``data``."""
        return results_data(await self._call("GET", results_path(experiment_id)))

    def stats(self) -> DeliveryStats:
        """What the task events tracked so far came to."""
        return self._queue.stats()

    async def flush(self, timeout: float | None = None) -> None:
        """Send what is queued now and wait until the server took it (or refused it for
        good); `DeliveryTimeout` after ``timeout`` seconds."""
        self._start()
        queue = self._queue
        target = queue.total
        queue.flush_target = max(queue.flush_target, target)
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        while queue.ended < target:
            self._ended.clear()
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            if not await _wait(self._ended, left):
                raise DeliveryTimeout(
                    f"{target - queue.ended} task events not delivered in {timeout} s "
                    f"(last error: {queue.last_error}); they stay queued"
                )

    async def close(self, timeout: float = 30.0) -> None:
        """Deliver what is queued in ``timeout`` seconds, then stop. What is left is
        written to ``spill_path``; without one it is dropped, and `DeliveryTimeout`
        says how many."""
        if self._closing:
            return
        self._start()
        self._closing = True
        self._wake.set()
        try:
            for probe in self._probes:
                probe.cancel()
            sender = self._sender
            if sender is None:
                return
            done, _ = await asyncio.wait({sender}, timeout=timeout)
            if done:
                sender.result()  # a failure of the sender itself surfaces here
                return
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            events = self._queue.remaining()
            spilled = spill.keep(self._spill_path, events)
            spill.release(self._queue.leave(spilled))
            if not spilled:
                raise left_behind(len(events), timeout, self._queue.last_error)
        finally:
            await asyncio.gather(*self._probes, return_exceptions=True)
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        self._start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def _start(self) -> None:
        """Start the sender on the running loop, if it has anything to send."""
        if self._sender is None and not self._closing and self._queue.pending:
            self._sender = asyncio.get_running_loop().create_task(
                self._run(), name="splitedge-events"
            )

    async def _ask(self, body: bytes) -> bytes | None:
        """A non-strict assign request: the answer's body, or None to answer from memory
        (the breaker is open, or this call starts a probe in the background)."""
        admission = self._fallback.breaker.admit()
        if admission is Admission.CALL:
            return await self._request_assign(body)
        if admission is Admission.PROBE:
            probe = asyncio.get_running_loop().create_task(self._request_assign(body))
            self._probes.add(probe)
            probe.add_done_callback(self._probes.discard)
        return None

    async def _request_assign(self, body: bytes) -> bytes | None:
        if self._closing:
            return None
        import httpx

        try:
            response = await self._http.post(
                "/v1/assign", content=body, timeout=self._assign_timeout
            )
        except httpx.HTTPError as exc:
            self._fallback.unreachable(exc)
            return None
        return self._fallback.answered(response.status_code, response.content)

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
            self._queue.last_error = f"the sender failed: {exc!r}"
            self._queue.leave(spilled=False)
            self._ended.set()

    async def _next_batch(self) -> list[bytes] | None:
        queue = self._queue
        while True:
            due = queue.due(self._closing, self._flush_interval, time.monotonic())
            if due is None and self._closing:
                return None
            if due == 0.0:
                return queue.take()
            self._wake.clear()
            await _wait(self._wake, due)

    async def _deliver(self, batch: list[bytes]) -> None:
        verdict, error = await self._send(batch)
        if verdict is Verdict.SPLIT:
            for event in batch:
                await self._deliver([event])
            return
        finished = self._queue.end(len(batch), verdict, error)
        self._ended.set()
        spill.release(finished)

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
            self._queue.retried(error)
            await asyncio.sleep(self.retry.delay(failures, wait))
