from __future__ import annotations

import asyncio

import pyarrow as pa
import pytest

from edge.errors import ServiceUnavailable
from edge.ingest.buffer import AgentChunk, BrowserChunk, EventBuffer, agent_batch, browser_batch
from edge.ingest.schema import EVENT_SCHEMA, AgentTaskEvent, BrowserEvent

T0 = 1_763_900_000_000


def browser_events(n: int, prefix: str = "e") -> list[BrowserEvent]:
    return [
        BrowserEvent(
            event_id=f"{prefix}{i}",
            type="goal" if i % 3 == 0 else "exposure",
            visitor_id=f"visitor-{i % 7}",
            ts=T0 + i,
            experiment_id="exp-1",
            variant_id=f"var-{i % 2}",
            goal_id="goal-1" if i % 3 == 0 else "",
            value=1.5 if i % 3 == 0 else None,
            pathname="/pricing",
            device="mobile",
        )
        for i in range(n)
    ]


class ListSpool:
    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[pa.RecordBatch] = []
        self.calls = 0
        self.fail_on = fail_on

    def append(self, batch: pa.RecordBatch) -> None:
        self.calls += 1
        if self.calls == self.fail_on:
            raise ServiceUnavailable("spool full")
        self.batches.append(batch)


def test_batches_of_one_site_each_keep_their_own_ids() -> None:
    # One site per batch is the usual case, served from a cached column per value; a
    # batch longer than the cached column grows it.
    for workspace, site, n in [
        ("ws-a", "site-a", 3),
        ("ws-b", "site-b", 1500),
        ("ws-a", "site-a", 2),
    ]:
        chunks = [BrowserChunk(workspace, site, T0, browser_events(n - n // 2, "x"))]
        chunks.append(BrowserChunk(workspace, site, T0 + 1, browser_events(n // 2, "y")))
        columns = browser_batch(chunks).to_pydict()
        assert columns["site_id"] == [site] * n
        assert columns["workspace_id"] == [workspace] * n


def test_browser_batch_rows() -> None:
    chunks = [
        BrowserChunk("ws-a", "site-a", T0, browser_events(3, "a")),
        BrowserChunk("ws-b", "site-b", T0 + 5, browser_events(2, "b")),
    ]
    batch = browser_batch(chunks)
    assert batch.schema == EVENT_SCHEMA
    rows = batch.to_pylist()
    assert [r["event_id"] for r in rows] == ["a0", "a1", "a2", "b0", "b1"]
    assert [r["site_id"] for r in rows] == ["site-a"] * 3 + ["site-b"] * 2
    assert [r["workspace_id"] for r in rows] == ["ws-a"] * 3 + ["ws-b"] * 2
    assert [r["received_at"].timestamp() * 1000 for r in rows] == [T0] * 3 + [T0 + 5] * 2
    assert rows[0]["kind"] == "goal" and rows[0]["value"] == 1.5 and rows[1]["value"] is None
    assert rows[1]["unit_id"] == "visitor-1" and rows[1]["variant_id"] == "var-1"
    assert rows[0]["client_ts"].timestamp() * 1000 == T0
    assert rows[0]["agent_id"] == "" and rows[0]["cost"] is None and rows[0]["metadata"] == ""


def test_agent_batch_rows() -> None:
    events = [
        AgentTaskEvent(agent_id="bot", task="resolve", outcome="success", cost=0.04,
                       duration_ms=3200, metadata={"model": "x"}, turns=7,
                       experiment_id="exp", variant_id="v", session_id="run-9"),
        AgentTaskEvent(agent_id="bot", task="resolve", outcome="failure"),
    ]  # fmt: skip
    batch = agent_batch([AgentChunk("ws", T0, events, ["id-1", "id-2"])])
    assert batch.schema == EVENT_SCHEMA
    first, second = batch.to_pylist()
    assert first["event_id"] == "id-1" and first["kind"] == "task"
    assert first["unit_id"] == "run-9" and second["unit_id"] == "bot"
    assert first["turns"] == 7 and second["turns"] is None
    assert first["metadata"] == '{"model":"x"}' and second["metadata"] == ""
    assert first["cost"] == 0.04 and first["duration_ms"] == 3200.0
    assert first["site_id"] == ""
    assert second["client_ts"].timestamp() * 1000 == T0  # no clock of its own


def test_concurrent_requests_share_batches() -> None:
    spool = ListSpool()

    async def scenario() -> None:
        buffer = EventBuffer(spool, max_delay=0.005)
        writer = asyncio.create_task(buffer.run())
        chunks = [BrowserChunk("ws", "s", T0, browser_events(20, f"r{i}-")) for i in range(50)]
        await asyncio.gather(*(buffer.add(c) for c in chunks))
        await buffer.close(writer)

    asyncio.run(scenario())
    assert sum(b.num_rows for b in spool.batches) == 1000
    assert len(spool.batches) < 50  # group commit
    ids = [i for b in spool.batches for i in b.column("event_id").to_pylist()]
    assert len(set(ids)) == 1000


def test_batches_close_at_max_rows() -> None:
    spool = ListSpool()

    async def scenario() -> None:
        buffer = EventBuffer(spool, max_rows=100, max_delay=0.005)
        writer = asyncio.create_task(buffer.run())
        chunks = [BrowserChunk("ws", "s", T0, browser_events(30, f"r{i}-")) for i in range(10)]
        await asyncio.gather(*(buffer.add(c) for c in chunks))
        await buffer.close(writer)

    asyncio.run(scenario())
    assert sum(b.num_rows for b in spool.batches) == 300
    assert max(b.num_rows for b in spool.batches) <= 120  # closes on the chunk that crosses


def test_a_spool_failure_fails_only_its_requests() -> None:
    spool = ListSpool(fail_on=1)

    async def scenario() -> list[BaseException | None]:
        buffer = EventBuffer(spool, max_delay=0)
        writer = asyncio.create_task(buffer.run())
        first = asyncio.create_task(buffer.add(BrowserChunk("ws", "s", T0, browser_events(2))))
        outcome: list[BaseException | None] = []
        try:
            await first
            outcome.append(None)
        except ServiceUnavailable as exc:
            outcome.append(exc)
        await buffer.add(BrowserChunk("ws", "s", T0, browser_events(3)))
        outcome.append(None)
        await buffer.close(writer)
        return outcome

    failed, ok = asyncio.run(scenario())
    assert isinstance(failed, ServiceUnavailable) and ok is None
    assert [b.num_rows for b in spool.batches] == [3]


def test_a_closed_buffer_refuses_chunks() -> None:
    async def scenario() -> None:
        buffer = EventBuffer(ListSpool())
        writer = asyncio.create_task(buffer.run())
        await buffer.close(writer)
        with pytest.raises(RuntimeError):
            await buffer.add(BrowserChunk("ws", "s", T0, browser_events(1)))

    asyncio.run(scenario())
