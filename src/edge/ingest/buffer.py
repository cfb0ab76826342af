"""The columnar event buffer: requests hand over decoded events and wait, batched, until
the Arrow RecordBatch holding them is in the spool (group commit).

A request adds a chunk (its events plus what the server knows of them: workspace, site,
receive time) and awaits the chunk's future. One writer task per worker takes every
pending chunk at once, turns them into one RecordBatch per event source and appends it
to the spool segment; then it resolves the futures, and only then are the requests
answered 2xx. Under load, the requests that arrive while a batch is being written form
the next batch, so batches grow with the load with no timer on the request path.

Defaults: a batch closes at ``max_rows`` (10 000) rows, or ``max_delay`` (2 ms) after
the writer woke for its first pending chunk, whichever comes first.

Under load a batch holds only a few requests, so what a batch costs regardless of its
size matters as much as the cost per event: each ``pyarrow`` call has a fixed price of
several microseconds. So the string fields of every event go through one ``pa.array``
call (the columns are then zero-copy slices of it), the fields are gathered with
``msgspec.structs.astuple`` and ``zip`` (C loops, no Python per field), what is constant
per request (workspace, site, receive time) is repeated by NumPy (or, for a batch of one
site, sliced from a cached column), and a source's columns it never fills are slices of a
cached constant array.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from itertools import chain
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

_TS = pa.timestamp("ms", tz="UTC")
_STRING = pa.string()
_INT32 = pa.int32()
_FLOAT64 = pa.float64()
_astuple = msgspec.structs.astuple
_encode_json = msgspec.json.encode


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


class _ConstantColumn:
    """A column of one repeated value, sliced (zero-copy) from a cached array that grows
    when a longer one is asked for."""

    def __init__(self, make: Callable[[int], pa.Array]):
        self._make = make
        self._array = make(1024)

    def __call__(self, n: int) -> pa.Array:
        if n > len(self._array):
            self._array = self._make(max(n, 2 * len(self._array)))
        return self._array.slice(0, n)


_empty_strings = _ConstantColumn(lambda n: pa.array([""] * n, _STRING))
_task_kind = _ConstantColumn(lambda n: pa.array(["task"] * n, _STRING))
_null_floats = _ConstantColumn(lambda n: pa.nulls(n, _FLOAT64))
_null_ints = _ConstantColumn(lambda n: pa.nulls(n, _INT32))


def _string_columns(columns: Sequence[Sequence[str]], n: int) -> list[pa.Array]:
    """Several string columns of ``n`` rows each, converted by one ``pa.array`` call."""
    strings = pa.array(list(chain.from_iterable(columns)), _STRING)
    return [strings.slice(i * n, n) for i in range(len(columns))]


def _int32_array(values: np.ndarray[Any, Any]) -> pa.Array:
    return pa.Array.from_buffers(_INT32, len(values), [None, pa.py_buffer(values)])


class _RepeatedValues:
    """Dictionary columns of one repeated string, sliced from a cached column per value:
    a batch usually holds one site's events, and building its dictionary column anew
    took a quarter of `browser_batch`'s fixed cost. At most `limit` values are kept."""

    def __init__(self, limit: int = 1024) -> None:
        self.limit = limit
        self._columns: dict[str, _ConstantColumn] = {}

    def __call__(self, value: str, n: int) -> pa.Array:
        column = self._columns.get(value)
        if column is None:
            if len(self._columns) >= self.limit:
                self._columns.clear()
            dictionary = pa.array([value], _STRING)

            def make(size: int) -> pa.Array:
                zeros = _int32_array(np.zeros(size, dtype=np.int32))
                return pa.DictionaryArray.from_arrays(zeros, dictionary, safe=False)

            column = self._columns[value] = _ConstantColumn(make)
        return column(n)


_repeated = _RepeatedValues()


def _per_chunk(values: Sequence[str], counts: Sequence[int]) -> pa.DictionaryArray:
    """A dictionary column whose value is fixed within each chunk."""
    first = values[0]
    if all(value == first for value in values):
        return _repeated(first, sum(counts))
    memo: dict[str, int] = {}
    codes = [memo.setdefault(v, len(memo)) for v in values]
    indices = np.repeat(np.asarray(codes, dtype=np.int32), counts)
    return pa.DictionaryArray.from_arrays(
        _int32_array(indices), pa.array(list(memo), _STRING), safe=False
    )


def _timestamps(millis: Any) -> pa.Array:
    """Epoch milliseconds (a NumPy int64 array or a sequence of ints) as a timestamp
    column, built from the int64 buffer directly (a cast would copy and check every
    value)."""
    values = np.asarray(millis, dtype=np.int64)
    return pa.Array.from_buffers(_TS, len(values), [None, pa.py_buffer(values)])


def _per_chunk_ts(values: Sequence[int], counts: Sequence[int]) -> pa.Array:
    return _timestamps(np.repeat(np.asarray(values, dtype=np.int64), counts))


# The string fields of a browser event in the order of their columns in `EVENT_SCHEMA`
# (kind is the event's type, unit_id its visitor_id).
_BROWSER_STRINGS = (
    "event_id", "type", "experiment_id", "variant_id", "visitor_id", "session_id", "goal_id",
    "name", "pathname", "device",
)  # fmt: skip


def browser_batch(chunks: Sequence[BrowserChunk]) -> pa.RecordBatch:
    """The events of browser chunks as one RecordBatch of `EVENT_SCHEMA`."""
    events = [e for c in chunks for e in c.events]
    n = len(events)
    counts = [len(c.events) for c in chunks]
    field = dict(zip(BrowserEvent.__struct_fields__, zip(*map(_astuple, events))))
    strings = _string_columns([field[name] for name in _BROWSER_STRINGS], n)
    return pa.RecordBatch.from_arrays(
        [
            *strings[:2],
            _per_chunk([c.workspace_id for c in chunks], counts),
            _per_chunk([c.site_id for c in chunks], counts),
            *strings[2:8],
            pa.array(field["value"], _FLOAT64),
            *strings[8:],
            _empty_strings(n),
            _empty_strings(n),
            _null_floats(n),
            _null_floats(n),
            _null_ints(n),
            _empty_strings(n),
            _timestamps(field["ts"]),
            _per_chunk_ts([c.received_ms for c in chunks], counts),
        ],
        schema=EVENT_SCHEMA,
    )


def agent_batch(chunks: Sequence[AgentChunk]) -> pa.RecordBatch:
    """The events of agent chunks as one RecordBatch of `EVENT_SCHEMA`."""
    events = [e for c in chunks for e in c.events]
    n = len(events)
    counts = [len(c.events) for c in chunks]
    strings = _string_columns(
        (
            [i for c in chunks for i in c.event_ids],
            [e.experiment_id for e in events],
            [e.variant_id for e in events],
            [e.session_id or e.agent_id for e in events],
            [e.session_id for e in events],
            [e.task for e in events],
            [e.agent_id for e in events],
            [e.outcome for e in events],
            [_encode_json(e.metadata).decode() if e.metadata else "" for e in events],
        ),
        n,
    )
    return pa.RecordBatch.from_arrays(
        [
            strings[0],
            _task_kind(n),
            _per_chunk([c.workspace_id for c in chunks], counts),
            _per_chunk(["" for _ in chunks], counts),
            *strings[1:5],
            _empty_strings(n),
            strings[5],
            _null_floats(n),
            _empty_strings(n),
            _empty_strings(n),
            *strings[6:8],
            pa.array([e.cost for e in events], _FLOAT64),
            pa.array([e.duration_ms for e in events], _FLOAT64),
            pa.array([e.turns for e in events], _INT32),
            strings[8],
            _timestamps([e.ts or c.received_ms for c in chunks for e in c.events]),
            _per_chunk_ts([c.received_ms for c in chunks], counts),
        ],
        schema=EVENT_SCHEMA,
    )


_Pending = tuple[BrowserChunk | AgentChunk, "asyncio.Future[None]"]


class EventBuffer:
    """Group commit of chunks into spool batches, for one worker process."""

    def __init__(self, spool: SpoolAppender, max_rows: int = 10_000, max_delay: float = 0.002):
        self.spool = spool
        self.max_rows = max_rows
        self.max_delay = max_delay
        self._pending: list[_Pending] = []
        self._pending_rows = 0
        self._wake = asyncio.Event()
        self._closed = False
        # The loop of the first request, kept: asyncio.get_running_loop() makes a getpid()
        # system call each time (its fork check), about 3% of a worker under load.
        self._loop: asyncio.AbstractEventLoop | None = None

    async def add(self, chunk: BrowserChunk | AgentChunk) -> None:
        """Return once the chunk's events are in the spool; raise what the spool raised."""
        if self._closed:
            raise RuntimeError("the event buffer is closed")
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = self._loop.create_future()
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
