"""The columnar event buffer: requests hand over decoded events and wait, batched, until
the Arrow RecordBatch holding them is in the spool (group commit).

A request adds a chunk (its events plus what the server knows of them: workspace, site,
receive time) and awaits the chunk's future. One writer task per worker takes every
pending chunk at once, turns them into one RecordBatch per event source and appends it
to the spool segment; then it resolves the futures, and only then are the requests
answered 2xx. Under load, the requests that arrive while a batch is being written form
the next batch, so batches grow with the load with no timer on the request path.

Defaults: a batch closes at ``max_rows`` (10 000) rows, or ``max_delay`` (1 ms) after
the writer woke for its first pending chunk, whichever comes first.

Building a batch never converts event by event into Arrow: each column is gathered with
one comprehension over the batch and converted by one ``pyarrow.array`` call; what is
constant per request (workspace, site, receive time) is repeated by NumPy, and a source's
columns it never fills (agent fields on browser events and vice versa) are constants.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import msgspec
import numpy as np
import pyarrow as pa

from edge.ingest.schema import EVENT_SCHEMA, AgentTaskEvent, BrowserEvent

__all__ = [
    "AgentChunk",
    "BrowserChunk",
    "EventBuffer",
    "SpoolAppender",
    "agent_batch",
    "browser_batch",
]

log = logging.getLogger("splitedge.ingest")

_DICT = pa.dictionary(pa.int32(), pa.string())
_TS = pa.timestamp("ms", tz="UTC")


class SpoolAppender(Protocol):
    """Where finished batches go (`edge.ingest.spool.SpoolWriter`)."""

    def append(self, batch: pa.RecordBatch) -> None:
        """Write the batch durably enough to acknowledge it, or raise."""
        ...


class BrowserChunk(msgspec.Struct, gc=False):
    """The accepted browser events of one request."""

    workspace_id: str
    site_id: str
    received_ms: int
    events: list[BrowserEvent]


class AgentChunk(msgspec.Struct, gc=False):
    """The agent task events of one request, with the ids the server answered."""

    workspace_id: str
    received_ms: int
    events: list[AgentTaskEvent]
    event_ids: list[str]


def _constant(value: str, n: int) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(n, dtype=np.int32)), pa.array([value], pa.string())
    )


def _per_chunk(values: Sequence[str], counts: Sequence[int]) -> pa.DictionaryArray:
    """A dictionary column whose value is fixed within each chunk."""
    memo: dict[str, int] = {}
    codes = [memo.setdefault(v, len(memo)) for v in values]
    indices = np.repeat(np.asarray(codes, dtype=np.int32), counts)
    return pa.DictionaryArray.from_arrays(pa.array(indices), pa.array(list(memo), pa.string()))


def _per_chunk_ts(values: Sequence[int], counts: Sequence[int]) -> pa.Array:
    return _timestamps(np.repeat(np.asarray(values, dtype=np.int64), counts))


def _timestamps(millis: Any) -> pa.Array:
    """Epoch milliseconds (a NumPy int64 array or a list of ints) as a timestamp column,
    built from the int64 buffer directly (a cast would copy and check every value)."""
    values = np.asarray(millis, dtype=np.int64)
    return pa.Array.from_buffers(_TS, len(values), [None, pa.py_buffer(values)])


def browser_batch(chunks: Sequence[BrowserChunk]) -> pa.RecordBatch:
    """The events of browser chunks as one RecordBatch of `EVENT_SCHEMA`."""
    events = [e for c in chunks for e in c.events]
    n = len(events)
    counts = [len(c.events) for c in chunks]
    return pa.record_batch(
        [
            pa.array([e.event_id for e in events], pa.string()),
            pa.array([e.type for e in events], _DICT),
            _per_chunk([c.workspace_id for c in chunks], counts),
            _per_chunk([c.site_id for c in chunks], counts),
            pa.array([e.experiment_id for e in events], _DICT),
            pa.array([e.variant_id for e in events], _DICT),
            pa.array([e.visitor_id for e in events], pa.string()),
            pa.array([e.session_id for e in events], pa.string()),
            pa.array([e.goal_id for e in events], _DICT),
            pa.array([e.name for e in events], _DICT),
            pa.array([e.value for e in events], pa.float64()),
            pa.array([e.pathname for e in events], _DICT),
            pa.array([e.device for e in events], _DICT),
            _constant("", n),
            _constant("", n),
            pa.nulls(n, pa.float64()),
            pa.nulls(n, pa.float64()),
            pa.nulls(n, pa.int32()),
            pa.repeat("", n).cast(pa.string()),
            _timestamps([e.ts for e in events]),
            _per_chunk_ts([c.received_ms for c in chunks], counts),
        ],
        schema=EVENT_SCHEMA,
    )


_encode_json = msgspec.json.encode


def agent_batch(chunks: Sequence[AgentChunk]) -> pa.RecordBatch:
    """The events of agent chunks as one RecordBatch of `EVENT_SCHEMA`."""
    events = [e for c in chunks for e in c.events]
    n = len(events)
    counts = [len(c.events) for c in chunks]
    return pa.record_batch(
        [
            pa.array([i for c in chunks for i in c.event_ids], pa.string()),
            _constant("task", n),
            _per_chunk([c.workspace_id for c in chunks], counts),
            _constant("", n),
            pa.array([e.experiment_id for e in events], _DICT),
            pa.array([e.variant_id for e in events], _DICT),
            pa.array([e.session_id or e.agent_id for e in events], pa.string()),
            pa.array([e.session_id for e in events], pa.string()),
            _constant("", n),
            pa.array([e.task for e in events], _DICT),
            pa.nulls(n, pa.float64()),
            _constant("", n),
            _constant("", n),
            pa.array([e.agent_id for e in events], _DICT),
            pa.array([e.outcome for e in events], _DICT),
            pa.array([e.cost for e in events], pa.float64()),
            pa.array([e.duration_ms for e in events], pa.float64()),
            pa.array([e.turns for e in events], pa.int32()),
            pa.array(
                [_encode_json(e.metadata).decode() if e.metadata else "" for e in events],
                pa.string(),
            ),
            _timestamps([e.ts or c.received_ms for c in chunks for e in c.events]),
            _per_chunk_ts([c.received_ms for c in chunks], counts),
        ],
        schema=EVENT_SCHEMA,
    )


_Pending = tuple[BrowserChunk | AgentChunk, "asyncio.Future[None]"]


class EventBuffer:
    """Group commit of chunks into spool batches, for one worker process."""

    def __init__(self, spool: SpoolAppender, max_rows: int = 10_000, max_delay: float = 0.001):
        self.spool = spool
        self.max_rows = max_rows
        self.max_delay = max_delay
        self._pending: list[_Pending] = []
        self._pending_rows = 0
        self._wake = asyncio.Event()
        self._closed = False

    async def add(self, chunk: BrowserChunk | AgentChunk) -> None:
        """Return once the chunk's events are in the spool; raise what the spool raised."""
        if self._closed:
            raise RuntimeError("the event buffer is closed")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((chunk, future))
        self._pending_rows += len(chunk.events)
        self._wake.set()
        await future

    async def run(self) -> None:
        """The writer task: until cancelled, write whatever is pending."""
        try:
            while True:
                await self._wake.wait()
                if self.max_delay and self._pending_rows < self.max_rows:
                    await asyncio.sleep(self.max_delay)
                self._write_pending()
        finally:
            self._write_pending()

    async def close(self, writer: asyncio.Task[None]) -> None:
        """Stop taking chunks, write what is pending and stop the writer task."""
        self._closed = True
        writer.cancel()
        try:
            await writer
        except asyncio.CancelledError:
            pass

    def _write_pending(self) -> None:
        self._wake.clear()
        pending, self._pending, self._pending_rows = self._pending, [], 0
        start = 0
        while start < len(pending):
            end, rows = start, 0
            while end < len(pending) and (end == start or rows < self.max_rows):
                rows += len(pending[end][0].events)
                end += 1
            group = pending[start:end]
            browser = [item for item in group if isinstance(item[0], BrowserChunk)]
            agent = [item for item in group if isinstance(item[0], AgentChunk)]
            if browser:
                self._write(browser, browser_batch)
            if agent:
                self._write(agent, agent_batch)
            start = end

    def _write(self, taken: list[_Pending], to_batch: Callable[[Any], pa.RecordBatch]) -> None:
        """Spool one batch of same-source chunks; resolve their futures either way."""
        try:
            self.spool.append(to_batch([chunk for chunk, _ in taken]))
        except Exception as exc:
            log.warning("spool write failed for %d chunks: %s", len(taken), exc)
            for _, future in taken:
                if not future.done():
                    future.set_exception(exc)
            return
        for _, future in taken:
            if not future.done():
                future.set_result(None)
