"""`Client`: the blocking client, for agents in plain scripts and threads.

``assign`` and ``results`` are calls the caller waits for (retried a few times on a
connection error, a 429 or a 5xx). ``track_task`` only checks and queues the event: a
sender thread, started with the first event, posts batches to ``/v1/events`` and retries
them with backoff. ``flush`` waits until what was queued is delivered; ``close`` (or
leaving the ``with`` block) delivers everything queued first. An interpreter that exits
with a client still open gives it five seconds to deliver its queue.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

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

# httpx is imported where a request is made, not here: it is most of the import time of
# the package, and an agent imports the client long before its first call.
if TYPE_CHECKING:
    import httpx

__all__ = ["Client", "client_headers"]

log = logging.getLogger("splitedge.client")


def client_headers(api_key: str) -> dict[str, str]:
    """The headers of every request: the workspace API key, JSON bodies."""
    return {"authorization": f"Bearer {api_key}", "content-type": "application/json"}


class Client:
    """A splitedge server, for an agent: ``assign``, ``track_task``, ``results``.

    ``base_url`` is the server (``http://127.0.0.1:8000``), ``api_key`` a workspace API
    key (``sk_live_...``). Task events go in batches of up to ``batch_size``, at the
    latest ``flush_interval`` seconds after the first of them was tracked; at most
    ``max_queue`` wait, and ``track_task`` blocks up to ``queue_timeout`` seconds for
    room before it raises `QueueFull`. ``timeout`` bounds each HTTP request.
    """

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

        headers = client_headers(api_key)
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)
        self._closed = False

        def events_http() -> httpx.Client:
            return httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

        self._sender = _Sender(
            events_http, PendingEvents(batch_size), flush_interval, max_queue, queue_timeout,
            self.retry,
        )  # fmt: skip

    def assign(self, experiment_id: str, unit_id: str) -> AssignedVariant | None:
        """The variant ``unit_id`` (an agent session or run id) gets in the experiment,
        with its payload; None when the unit is outside the experiment's coverage.
        The same unit always gets the same variant (the promoted winner once deployed)."""
        return assigned(self._call("POST", "/v1/assign", assign_body(experiment_id, unit_id)))

    def assign_many(
        self, experiment_id: str, unit_ids: Sequence[str]
    ) -> list[AssignedVariant | None]:
        """`assign` for many units, in batches of 1000; answers in the order of the ids."""
        answers: list[AssignedVariant | None] = []
        for body in assign_batches(experiment_id, unit_ids):
            answers += assigned_batch(self._call("POST", "/v1/assign", body))
        return answers

    def track_task(
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
        """Queue a task event (ClawTrait's trackTask, plus turns and the experiment's
        ids) and return its event id. ``assignment`` (what `assign` returned) fills
        ``session_id``, ``experiment_id`` and ``variant_id``. A bad field raises
        `InvalidRequest` here; delivery happens in the background."""
        event_id, encoded = task_event(
            agent_id, task, outcome, cost=cost, duration_ms=duration_ms, metadata=metadata,
            turns=turns, experiment_id=experiment_id, variant_id=variant_id,
            session_id=session_id, assignment=assignment, event_id=event_id, ts=ts,
        )  # fmt: skip
        self._sender.put(encoded)
        return event_id

    def results(self, experiment_id: str) -> dict[str, Any]:
        """The experiment's results (``GET /v1/experiments/{id}/results``): its ``data``."""
        return results_data(self._call("GET", results_path(experiment_id)))

    @property
    def stats(self) -> DeliveryStats:
        """What the task events tracked so far came to."""
        return self._sender.stats()

    def flush(self, timeout: float | None = None) -> None:
        """Send what is queued now and wait until the server took it (or refused it for
        good: see ``stats``); `DeliveryTimeout` after ``timeout`` seconds."""
        self._sender.flush(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Deliver everything queued, then stop. Events still undelivered after
        ``timeout`` seconds are dropped and `DeliveryTimeout` says how many."""
        if self._closed:
            return
        self._closed = True
        try:
            self._sender.close(timeout)
        finally:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, method: str, path: str, body: bytes | None = None) -> bytes:
        if self._closed:
            raise ClientClosed("this client is closed; make a new one")
        import httpx

        tries = CallTries(self.retry, f"{method} {path}", self.base_url)
        while True:
            try:
                response = self._http.request(method, path, content=body)
            except httpx.TransportError as exc:
                time.sleep(tries.unreachable(exc))
                continue
            if response.is_success:
                return response.content
            time.sleep(tries.refused(response))


# Senders whose thread runs; each gets a last chance to deliver at interpreter exit.
_running: weakref.WeakSet[_Sender] = weakref.WeakSet()


@atexit.register
def _close_at_exit() -> None:
    for sender in list(_running):
        try:
            sender.close(5.0)
        except DeliveryTimeout as exc:
            log.warning("at exit: %s", exc)


class _Sender:
    """The queue of encoded task events and the thread that posts them in batches."""

    def __init__(
        self,
        make_http: Callable[[], httpx.Client],
        pending: PendingEvents,
        flush_interval: float,
        max_queue: int,
        queue_timeout: float,
        retry: RetryPolicy,
    ) -> None:
        self.make_http = make_http
        self.pending = pending
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        self.queue_timeout = queue_timeout
        self.retry = retry
        self.cond = threading.Condition()
        self.abort = threading.Event()
        self.thread: threading.Thread | None = None
        self.closing = False
        # Events: queued by track_task, taken into batches, settled (delivered or dropped).
        self.queued = self.taken = self.settled = self.flush_target = 0
        self.delivered = self.dropped = self.retries = 0
        self.last_error: str | None = None

    def stats(self) -> DeliveryStats:
        with self.cond:
            return DeliveryStats(
                self.queued, self.delivered, self.dropped, self.retries, self.last_error
            )

    def put(self, event: bytes) -> None:
        with self.cond:
            if len(self.pending) >= self.max_queue and not self.cond.wait_for(
                lambda: len(self.pending) < self.max_queue or self.closing, self.queue_timeout
            ):
                raise QueueFull(
                    f"{len(self.pending)} task events are waiting and none left the queue in "
                    f"{self.queue_timeout} s (last error: {self.last_error}); raise max_queue "
                    "or check the server"
                )
            if self.closing:
                raise ClientClosed("this client is closed; make a new one")
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="splitedge-events")
                self.thread.daemon = True
                self.thread.start()
                _running.add(self)
            self.queued += 1
            if self.pending.add(event) or self.pending.full():
                self.cond.notify_all()

    def flush(self, timeout: float | None) -> None:
        with self.cond:
            target = self.queued
            self.flush_target = max(self.flush_target, target)
            self.cond.notify_all()
            if not self.cond.wait_for(lambda: self.settled >= target, timeout):
                raise DeliveryTimeout(
                    f"{target - self.settled} task events not delivered in {timeout} s "
                    f"(last error: {self.last_error}); they stay queued"
                )

    def close(self, timeout: float) -> None:
        with self.cond:
            if self.closing:
                return
            self.closing = True
            self.cond.notify_all()
        thread = self.thread
        if thread is None:
            return
        thread.join(timeout)
        _running.discard(self)
        if not thread.is_alive():
            return
        with self.cond:
            left = self.queued - self.settled
        self.abort.set()
        thread.join()  # at most the request in flight: its HTTP timeout
        raise DeliveryTimeout(
            f"{left} task events were not delivered in {timeout} s and were dropped "
            f"(last error: {self.last_error})"
        )

    def _run(self) -> None:
        http = self.make_http()
        try:
            while (batch := self._next_batch()) is not None:
                self._deliver(http, batch)
        except Exception as exc:
            # A bug, not a delivery failure: do not leave flush() waiting for ever.
            log.exception("the task event sender failed")
            with self.cond:
                self.closing = True
                self.pending.events.clear()
                self.dropped += self.queued - self.settled
                self.settled = self.queued
                self.last_error = f"the sender failed: {exc!r}"
                self.cond.notify_all()
        finally:
            http.close()

    def _next_batch(self) -> list[bytes] | None:
        with self.cond:
            pending = self.pending
            while True:
                if pending:
                    if self.closing or pending.full() or self.flush_target > self.taken:
                        break
                    wait = pending.oldest_at + self.flush_interval - time.monotonic()
                    if wait <= 0:
                        break
                    self.cond.wait(wait)
                elif self.closing:
                    return None
                else:
                    self.cond.wait()
            batch = pending.cut()
            self.taken += len(batch)
            self.cond.notify_all()
            return batch

    def _deliver(self, http: httpx.Client, batch: list[bytes]) -> None:
        verdict, error = self._send(http, batch)
        if verdict is Verdict.SPLIT:
            for event in batch:
                self._deliver(http, [event])
            return
        with self.cond:
            if verdict is Verdict.DELIVERED:
                self.delivered += len(batch)
            else:
                self.dropped += len(batch)
                self.last_error = error
                log.warning("dropped %d task events: %s", len(batch), error)
            self.settled += len(batch)
            self.cond.notify_all()

    def _send(self, http: httpx.Client, batch: list[bytes]) -> tuple[Verdict, str | None]:
        import httpx

        body = batch_body(batch)
        failures = 0
        while not self.abort.is_set():
            status: int | None
            try:
                status, error, wait = outcome(http.post("/v1/events", content=body))
            except httpx.HTTPError as exc:
                status, error, wait = None, f"{exc!r} from {http.base_url}", None
            verdict = judge(status, len(batch))
            if verdict is not Verdict.RETRY:
                return verdict, error
            failures += 1
            if failures >= self.retry.attempts:
                return Verdict.DROP, f"{error} ({failures} tries)"
            with self.cond:
                self.retries += 1
                self.last_error = error
            if self.abort.wait(self.retry.delay(failures, wait)):
                break
        return Verdict.DROP, "the client closed before the server took them"
