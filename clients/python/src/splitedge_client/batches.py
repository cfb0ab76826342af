"""Task events on their way to the server: the pending queue, how a batch is cut from it,
what each answer means for the batch, and the counts a client reports.

Shared by the sync client (a sender thread) and the async one (a sender task); each
guards its queue with its own lock or condition.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from typing import TYPE_CHECKING

import msgspec

from splitedge_client.retry import retry_after, retryable
from splitedge_client.wire import MAX_EVENTS_PER_BATCH, api_error

if TYPE_CHECKING:
    import httpx

__all__ = [
    "MAX_BATCH_BYTES",
    "DeliveryStats",
    "PendingEvents",
    "Verdict",
    "batch_body",
    "judge",
    "outcome",
]

# Well under the server's 1 MiB limit on an events body (its MAX_EVENTS_BODY),
# so that no batch is ever refused for its size.
MAX_BATCH_BYTES = 512 << 10


class DeliveryStats(msgspec.Struct, frozen=True):
    """What a client's task events came to so far: ``queued`` by ``track_task``,
    ``delivered`` (the server answered 201), ``dropped`` (refused for good, or given up
    on), waiting (``queued - delivered - dropped``, in the queue or on the wire),
    ``retries`` sent, and the ``last_error`` seen, if any."""

    queued: int
    delivered: int
    dropped: int
    retries: int
    last_error: str | None

    @property
    def waiting(self) -> int:
        """Events tracked and not yet delivered or dropped."""
        return self.queued - self.delivered - self.dropped


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
