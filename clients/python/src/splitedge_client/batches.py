"""Task events on their way to the server: the bounded queue, how a batch is cut from it,
what each answer means for the batch, and the counts a client reports.

Shared by the sync client (a sender thread) and the async one (a sender task); each
guards its `EventQueue` with its own lock or condition, and does the I/O.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from splitedge_client.errors import DeliveryTimeout
from splitedge_client.retry import retry_after, retryable
from splitedge_client.wire import MAX_EVENTS_PER_BATCH, api_error

if TYPE_CHECKING:
    import httpx

__all__ = [
    "DEFAULT_MAX_QUEUE",
    "MAX_BATCH_BYTES",
    "DeliveryStats",
    "EventQueue",
    "PendingEvents",
    "Verdict",
    "batch_body",
    "judge",
    "left_behind",
    "outcome",
]

# Well under the server's 1 MiB limit on an events body (its MAX_EVENTS_BODY),
# so that no batch is ever refused for its size.
MAX_BATCH_BYTES = 512 << 10
# Events a client keeps waiting before it drops the oldest: a few tens of MB at most.
DEFAULT_MAX_QUEUE = 100_000

log = logging.getLogger("splitedge.client")


class DeliveryStats(msgspec.Struct, frozen=True):
    """What a client's task events came to so far.

    ``queued`` by ``track_task`` and ``recovered`` from a spill file; each of them ends
    ``sent`` (the server answered 201), ``refused`` (the server answered that it never
    takes it, e.g. 404 for an experiment it does not know), ``dropped`` (the oldest, when
    the queue was full; or left at ``close`` with no spill file) or ``spilled`` (left at
    ``close`` and written to the spill file), or is still ``pending`` (queued or on the
    wire). ``retries``: batches sent again; ``last_error``: the last failure seen.
    """

    queued: int
    recovered: int
    sent: int
    pending: int
    refused: int
    dropped: int
    spilled: int
    retries: int
    last_error: str | None


class PendingEvents:
    """The encoded events waiting for a batch, oldest first, and when the oldest came.

    Not thread-safe: its owner holds its lock around every call.
    """

    __slots__ = ("batch_size", "events", "nbytes", "oldest_at")

    def __init__(self, batch_size: int) -> None:
        if not 1 <= batch_size <= MAX_EVENTS_PER_BATCH:
            raise ValueError(f"batch_size must be from 1 to {MAX_EVENTS_PER_BATCH}")
        self.batch_size = batch_size
        self.events: deque[bytes] = deque()
        self.nbytes = 0
        self.oldest_at = 0.0

    def __len__(self) -> int:
        return len(self.events)

    def add(self, event: bytes) -> bool:
        """Queue an event; True when it was the first (a waiting sender needs waking)."""
        first = not self.events
        if first:
            self.oldest_at = time.monotonic()
        self.events.append(event)
        self.nbytes += len(event)
        return first

    def drop_oldest(self) -> None:
        """Drop the oldest event (the queue is full)."""
        self.nbytes -= len(self.events.popleft())

    def full(self) -> bool:
        """Whether a whole batch is waiting (by count or by bytes)."""
        return len(self.events) >= self.batch_size or self.nbytes >= MAX_BATCH_BYTES

    def cut(self) -> list[bytes]:
        """Take the next batch: up to ``batch_size`` events and `MAX_BATCH_BYTES` bytes
        (at least one event). What is left is sent next without waiting: it is as old."""
        batch: list[bytes] = []
        size = 0
        events = self.events
        while events and len(batch) < self.batch_size:
            if batch and size + len(events[0]) > MAX_BATCH_BYTES:
                break
            event = events.popleft()
            size += len(event)
            batch.append(event)
        self.nbytes -= size
        self.oldest_at = 0.0
        return batch


class EventQueue:
    """A client's task events from ``track_task`` (or a spill file) to their end, and its
    counts: at most ``max_queue`` wait, the oldest dropped first; ``in_flight``, the
    batch on the wire. Events end in order, oldest first: the sender sends one batch at a
    time, and what is dropped or spilled is older than what stays.

    Not thread-safe: its owner holds its lock around every call.
    """

    def __init__(
        self, batch_size: int, max_queue: int, claimed: list[Path], recovered: list[bytes]
    ) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self.pending = PendingEvents(batch_size)
        self.max_queue = max_queue
        self.in_flight: list[bytes] = []
        self.queued = self.sent = self.refused = self.dropped = self.spilled = 0
        self.retries = 0
        # Events taken out of pending (into a batch, or dropped) and ended; what a flush
        # waits for, and how far ahead of the sender it is.
        self.taken = self.ended = self.flush_target = 0
        self.last_error: str | None = None
        # The spill files the recovered events came from, removed once they all ended;
        # they are the oldest events, so the first ``unfinished`` of the queue.
        self.claimed = claimed
        self.recovered = self.unfinished = 0
        for event in recovered:
            self.put(event)
        self.recovered, self.queued = self.queued, 0
        self.unfinished = min(self.recovered, len(self.pending))

    @property
    def total(self) -> int:
        """Events ever queued, recovered ones included."""
        return self.recovered + self.queued

    def stats(self) -> DeliveryStats:
        """The counts so far."""
        return DeliveryStats(
            self.queued, self.recovered, self.sent, self.total - self.ended, self.refused,
            self.dropped, self.spilled, self.retries, self.last_error,
        )  # fmt: skip

    def put(self, event: bytes) -> bool:
        """Queue an event, dropping the oldest waiting one if the queue is full; True
        when the sender should look (the first event, or a whole batch, is waiting)."""
        pending = self.pending
        if len(pending) >= self.max_queue:
            pending.drop_oldest()
            if self.unfinished > len(self.in_flight):
                self.unfinished -= 1
            self.taken += 1
            self.ended += 1
            self.dropped += 1
            if self.dropped in (1, 1000) or self.dropped % 100_000 == 0:
                log.warning(
                    "task event queue full (%d): %d oldest dropped so far (last error: %s)",
                    self.max_queue, self.dropped, self.last_error,
                )  # fmt: skip
        self.queued += 1
        return pending.add(event) or pending.full()

    def due(self, closing: bool, flush_interval: float, now: float) -> float | None:
        """Seconds until the next batch is due (0: now); None when nothing waits."""
        pending = self.pending
        if not pending:
            return None
        if closing or pending.full() or self.flush_target > self.taken:
            return 0.0
        return max(pending.oldest_at + flush_interval - now, 0.0)

    def take(self) -> list[bytes]:
        """Cut the next batch; it is in flight until it ends."""
        batch = self.pending.cut()
        self.taken += len(batch)
        self.in_flight = batch.copy()  # the sender iterates the batch itself
        return batch

    def end(self, events: int, verdict: Verdict, error: str | None) -> list[Path]:
        """The first ``events`` in flight are sent (DELIVERED) or refused (DROP); the
        spill files to remove now that all their events ended."""
        del self.in_flight[:events]
        if verdict is Verdict.DELIVERED:
            self.sent += events
        else:
            self.refused += events
            self.last_error = error
            log.warning("the server refused %d task events: %s", events, error)
        self.ended += events
        self.unfinished = max(self.unfinished - events, 0)
        return self.finished_files()

    def retried(self, error: str | None) -> None:
        """A batch is sent again after ``error``."""
        self.retries += 1
        self.last_error = error

    def remaining(self) -> list[bytes]:
        """Every event not yet ended, oldest first, the batch in flight included (it may
        yet be delivered: the server stores an event id once)."""
        return self.in_flight + list(self.pending.events)

    def leave(self, spilled: bool) -> list[Path]:
        """End the `remaining` events: spilled (written to the spill file), or else
        dropped; the spill files to remove (none unless spilled: their events are the
        oldest and were in that write)."""
        events = len(self.in_flight) + len(self.pending)
        self.taken += len(self.pending)
        self.pending.events.clear()
        self.pending.nbytes = 0
        self.in_flight = []
        self.ended += events
        if not spilled:
            self.dropped += events
            return []
        self.spilled += events
        self.unfinished = 0
        return self.finished_files()

    def finished_files(self) -> list[Path]:
        """The spill files to remove: all their events ended (each file once)."""
        if self.unfinished or not self.claimed:
            return []
        files, self.claimed = self.claimed, []
        return files


def batch_body(batch: list[bytes]) -> bytes:
    """The JSON array of a batch's encoded events."""
    return b"[" + b",".join(batch) + b"]"


class Verdict(enum.Enum):
    """What an answer (or its absence) means for the batch that was sent."""

    DELIVERED = "delivered"
    RETRY = "retry"
    # Refused as a whole for one event (an experiment no longer running, a variant not
    # its own): send each event alone, so the others still count.
    SPLIT = "split"
    DROP = "drop"


def judge(status: int | None, events: int) -> Verdict:
    """The verdict on a batch of ``events`` answered ``status`` (None: no answer came)."""
    if status is None or retryable(status):
        return Verdict.RETRY
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status in (400, 404, 413) and events > 1:
        return Verdict.SPLIT
    return Verdict.DROP


def outcome(response: httpx.Response) -> tuple[int, str | None, float | None]:
    """What an answer to a batch says: its status, the error to report (None: delivered)
    and the server's Retry-After, if any."""
    status = response.status_code
    if response.is_success:
        return status, None, None
    return status, str(api_error(status, response.content)), retry_after(response.headers)


def left_behind(events: int, timeout: float, last_error: str | None) -> DeliveryTimeout:
    """The error of a ``close`` that had to drop ``events``."""
    return DeliveryTimeout(
        f"{events} task events were not delivered in {timeout} s and were dropped "
        f"(last error: {last_error}); a spill_path keeps them for the next client"
    )
