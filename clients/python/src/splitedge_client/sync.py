"""`Client`: the blocking client, for agents in plain scripts and threads.

``assign`` never raises unless asked to (``strict``): it asks the server once with a
short timeout and, when the server cannot answer, answers from memory (see
`splitedge_client.fallback`). ``results`` is a call the caller waits for (retried a few
times on a connection error, a 429 or a 5xx). ``track_task`` only checks and queues the
event: a sender thread posts batches to ``/v1/events`` and retries each until the server
takes it. ``flush`` waits until what was queued is delivered; ``close`` (or leaving the
``with`` block) delivers what it can in its time and spills the rest to ``spill_path``.
An interpreter that exits with a client still open gives it five seconds.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from splitedge_client import spill
from splitedge_client.batches import (
    DEFAULT_MAX_QUEUE,
    DeliveryStats,
    EventQueue,
    Verdict,
    batch_body,
    judge,
    left_behind,
    outcome,
)
from splitedge_client.errors import ClientClosed, DeliveryTimeout
from splitedge_client.fallback import Admission, AssignFallback
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

__all__ = ["Client", "client_headers", "spilled_events"]

log = logging.getLogger("splitedge.client")

ASSIGN_TIMEOUT = 0.5
"""Seconds a non-strict ``assign`` waits for the server before it answers from memory."""


def client_headers(api_key: str) -> dict[str, str]:
    """The headers of every request: the workspace API key, JSON bodies."""
    return {"authorization": f"Bearer {api_key}", "content-type": "application/json"}


def spilled_events(
    spill_path: str | os.PathLike[str] | None, batch_size: int, max_queue: int
) -> tuple[EventQueue, Path | None]:
    """A client's event queue, holding first what its spill file kept (claimed now)."""
    if spill_path is None:
        return EventQueue(batch_size, max_queue, [], []), None
    path = Path(spill_path)
    claimed, events = spill.claim(path)
    queue = EventQueue(batch_size, max_queue, claimed, events)
    spill.release(queue.finished_files())  # claims that held no event
    if events:
        log.info("sending first %d task events spilled to %s", len(events), path)
    return queue, path


class Client:
    """A splitedge server, for an agent: ``assign``, ``track_task``, ``results``.

    ``base_url`` is the server (``http://127.0.0.1:8000``), ``api_key`` a workspace API
    key (``sk_live_...``). ``assign`` waits at most ``assign_timeout`` seconds and never
    raises unless ``strict`` (here or per call). Task events go in batches of up to
    ``batch_size``, at the latest ``flush_interval`` seconds after the first of them was
    tracked; at most ``max_queue`` wait, then the oldest are dropped (``stats()``
    counts them). ``spill_path``: a file where ``close`` keeps what it could not
    deliver, and which the next client on it sends first. ``timeout`` bounds every
    other HTTP request.
    """

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

        headers = client_headers(api_key)
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)
        self._closed = False

        def events_http() -> httpx.Client:
            return httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

        queue, path = spilled_events(spill_path, batch_size, max_queue)
        self._sender = _Sender(events_http, queue, flush_interval, self.retry, path)

    def assign(
        self, experiment_id: str, unit_id: str, *, default: Any = None, strict: bool | None = None
    ) -> AssignedVariant | None:
        """The variant ``unit_id`` (an agent session or run id) gets in the experiment,
        with its payload; None when the unit is outside the experiment's coverage.
        The same unit always gets the same variant (the promoted winner once deployed).

        Unless ``strict``, it never raises: when the server cannot answer (a timeout,
        no connection, a 429, a 5xx, a 4xx such as 404), the answer is the last one the
        server gave for the experiment (``source="cache"``) or ``default`` as the payload
        (``source="default"``); see `AssignedVariant`. ``strict`` raises `ApiError` or
        `Unreachable` instead, after a few tries."""
        body = assign_body(experiment_id, unit_id)
        if self.strict if strict is None else strict:
            return assigned(self._call("POST", "/v1/assign", body))
        return self._fallback.one(experiment_id, unit_id, self._ask(body), default)

    def assign_many(
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
                answers += assigned_batch(self._call("POST", "/v1/assign", body))
            else:
                answers += self._fallback.many(experiment_id, batch, self._ask(body), default)
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
        ids) and return its event id; it never waits for the server. ``assignment``
        (what `assign` returned) fills ``session_id`` and, if it is counted,
        ``experiment_id`` and ``variant_id``. A bad field (a negative ``cost``, an
        unknown ``outcome``...) raises `InvalidRequest`, a `ValueError`, here."""
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

    def stats(self) -> DeliveryStats:
        """What the task events tracked so far came to."""
        return self._sender.stats()

    def flush(self, timeout: float | None = None) -> None:
        """Send what is queued now and wait until the server took it (or refused it for
        good: see ``stats()``); `DeliveryTimeout` after ``timeout`` seconds."""
        self._sender.flush(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Deliver what is queued in ``timeout`` seconds, then stop. What is left is
        written to ``spill_path``; without one it is dropped, and `DeliveryTimeout`
        says how many."""
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

    def _ask(self, body: bytes) -> bytes | None:
        """A non-strict assign request: the answer's body, or None to answer from memory
        (the breaker is open, or this call starts a probe in the background)."""
        admission = self._fallback.breaker.admit()
        if admission is Admission.CALL:
            return self._request_assign(body)
        if admission is Admission.PROBE:
            probe = threading.Thread(
                target=self._request_assign, args=(body,), name="splitedge-probe", daemon=True
            )
            probe.start()
        return None

    def _request_assign(self, body: bytes) -> bytes | None:
        if self._closed:
            return None
        import httpx

        try:
            response = self._http.post("/v1/assign", content=body, timeout=self._assign_timeout)
        except httpx.HTTPError as exc:
            self._fallback.unreachable(exc)
            return None
        except RuntimeError:  # closed by another thread meanwhile
            return None
        return self._fallback.answered(response.status_code, response.content)

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
    """The `EventQueue` and the thread that posts it in batches. Every count and the
    queue are guarded by ``cond``; no request is made holding it."""

    def __init__(
        self,
        make_http: Callable[[], httpx.Client],
        queue: EventQueue,
        flush_interval: float,
        retry: RetryPolicy,
        spill_path: Path | None,
    ) -> None:
        self.make_http = make_http
        self.queue = queue
        self.flush_interval = flush_interval
        self.retry = retry
        self.spill_path = spill_path
        self.cond = threading.Condition()
        # Set when close gave up waiting: the thread ends without touching the queue.
        self.abort = threading.Event()
        self.thread: threading.Thread | None = None
        self.closing = False
        if queue.pending:
            with self.cond:
                self._start()

    def stats(self) -> DeliveryStats:
        with self.cond:
            return self.queue.stats()

    def put(self, event: bytes) -> None:
        with self.cond:
            if self.closing:
                raise ClientClosed("this client is closed; make a new one")
            self._start()
            if self.queue.put(event):
                self.cond.notify_all()

    def flush(self, timeout: float | None) -> None:
        with self.cond:
            queue = self.queue
            target = queue.total
            queue.flush_target = max(queue.flush_target, target)
            self.cond.notify_all()
            if not self.cond.wait_for(lambda: queue.ended >= target, timeout):
                raise DeliveryTimeout(
                    f"{target - queue.ended} task events not delivered in {timeout} s "
                    f"(last error: {queue.last_error}); they stay queued"
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
        # Out of time. The thread may be in a request: it is left to end on its own.
        self.abort.set()
        with self.cond:
            events = self.queue.remaining()
            last_error = self.queue.last_error
        spilled = spill.keep(self.spill_path, events)
        with self.cond:
            finished = self.queue.leave(spilled)
        spill.release(finished)
        if not spilled:
            raise left_behind(len(events), timeout, last_error)

    def _start(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="splitedge-events")
            self.thread.daemon = True
            self.thread.start()
            _running.add(self)

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
                self.queue.last_error = f"the sender failed: {exc!r}"
                self.queue.leave(spilled=False)
                self.cond.notify_all()
        finally:
            http.close()

    def _next_batch(self) -> list[bytes] | None:
        with self.cond:
            while not self.abort.is_set():
                due = self.queue.due(self.closing, self.flush_interval, time.monotonic())
                if due is None and self.closing:
                    return None
                if due == 0.0:
                    batch = self.queue.take()
                    self.cond.notify_all()
                    return batch
                self.cond.wait(due)
            return None

    def _deliver(self, http: httpx.Client, batch: list[bytes]) -> None:
        verdict, error = self._send(http, batch)
        if verdict is Verdict.SPLIT:
            for event in batch:
                self._deliver(http, [event])
            return
        with self.cond:
            if self.abort.is_set():  # close counted the batch already
                return
            finished = self.queue.end(len(batch), verdict, error)
            self.cond.notify_all()
        spill.release(finished)

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
            with self.cond:
                self.queue.retried(error)
            self.abort.wait(self.retry.delay(failures, wait))
        return Verdict.DROP, "the client closed before the server took them"
