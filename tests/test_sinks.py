"""The ClickHouse sink (edge.ingest.sinks) against real embedded ClickHouse (chDB): a token
is stored once, an event id once per workspace (in a segment, across segments, found by
the event's own time or by its having none), a failed prepare releases the directory, and
logs name no password."""

from __future__ import annotations

import pyarrow as pa
import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ProgrammingError

from analytics import warehouse
from edge.ingest.sinks import ClickHouseSink
from tests.test_flusher import counts
from tests.test_spool import event_batch


def test_a_token_is_stored_once(dsn: str) -> None:
    sink = ClickHouseSink(dsn, prepare=warehouse.migrate)
    first = pa.Table.from_batches([event_batch(30, "a")])
    second = pa.Table.from_batches([event_batch(20, "b", 30)])
    sink.open()
    try:
        sink.check()
        sink.deliver(first, "segment-1")
        sink.deliver(first, "segment-1")  # a retry after a lost answer
        sink.deliver(second, "segment-2")
    finally:
        sink.close()
    assert counts(dsn) == (50, 50)


def test_a_closed_sink_refuses_to_deliver(dsn: str) -> None:
    sink = ClickHouseSink(dsn)
    with pytest.raises(ConnectionError, match="not connected"):
        sink.deliver(pa.Table.from_batches([event_batch(1, "a")]), "segment-1")
    sink.open()
    sink.close()
    with pytest.raises(ConnectionError, match="not connected"):
        sink.check()


def test_a_failed_prepare_closes_its_client(dsn: str) -> None:
    made: list[Client] = []

    def connect(dsn: str) -> Client:
        made.append(warehouse.connect(dsn))
        return made[-1]

    def refuse(client: Client) -> None:
        raise RuntimeError("migration refused")

    with pytest.raises(RuntimeError, match="migration refused"):
        ClickHouseSink(dsn, prepare=refuse, connect=connect).open()
    [client] = made
    with pytest.raises(ProgrammingError, match="closed"):
        client.command("SELECT 1")


@pytest.mark.parametrize(
    ("dsn", "described"),
    [
        ("http://default:s3cret@ch.internal:8123", "ClickHouse at http://ch.internal:8123"),
        ("https://ch:8443/?user=x", "ClickHouse at https://ch:8443/?user=x"),
        (
            "chdb:///var/lib/splitedge/clickhouse",
            "ClickHouse at chdb:///var/lib/splitedge/clickhouse",
        ),
    ],
)
def test_describe_names_no_password(dsn: str, described: str) -> None:
    assert ClickHouseSink(dsn).describe() == described


def test_an_event_id_is_stored_once_across_segments(dsn: str) -> None:
    batch = pa.Table.from_batches([event_batch(30, "a")])
    # The same 30 events twice in one segment, then retried in another, mixed with 10 new.
    doubled = pa.concat_tables([batch, batch])
    retried = pa.concat_tables([batch.slice(10), pa.Table.from_batches([event_batch(10, "b")])])
    sink = ClickHouseSink(dsn, prepare=warehouse.migrate)
    sink.open()
    try:
        assert sink.deliver(doubled, "segment-1") == 30
        assert sink.deliver(retried, "segment-2") == 20
        assert sink.deliver(retried, "segment-2") == 30  # a replay: all recorded by now
    finally:
        sink.close()
    assert counts(dsn) == (40, 40)


def test_a_crash_between_the_two_inserts_stores_the_events_once(dsn: str) -> None:
    batch = pa.Table.from_batches([event_batch(25, "a")])
    sink = ClickHouseSink(dsn, prepare=warehouse.migrate)
    sink.open()
    try:
        client = sink._opened()
        # The events went in, the process died before their ids were recorded.
        client.insert_arrow(
            warehouse.EVENTS_TABLE, batch, settings=warehouse.insert_settings("segment-1")
        )
        assert sink.deliver(batch, "segment-1") == 0  # the replay: dropped by its token
        assert sink.deliver(batch, "segment-2") == 25  # a client's retry: by the ids
    finally:
        sink.close()
    assert counts(dsn) == (25, 25)


def test_the_same_event_id_in_two_workspaces_is_two_events(dsn: str) -> None:
    batch = pa.Table.from_batches([event_batch(5, "a")])
    other = batch.set_column(
        batch.schema.get_field_index("workspace_id"),
        "workspace_id",
        pa.array(["ws-other"] * 5)
        .dictionary_encode()
        .cast(batch.schema.field("workspace_id").type),
    )
    sink = ClickHouseSink(dsn, prepare=warehouse.migrate)
    sink.open()
    try:
        assert sink.deliver(batch, "segment-1") == 0
        assert sink.deliver(other, "segment-2") == 0
    finally:
        sink.close()
    assert counts(dsn) == (10, 5)


def _timed(batch: pa.Table, client_shift_ms: int, received_shift_ms: int) -> pa.Table:
    """``batch`` with its client times and receive times moved."""
    for name, shift in (("client_ts", client_shift_ms), ("received_at", received_shift_ms)):
        column = batch.column(name)
        moved = pa.array([t + shift for t in column.cast(pa.int64()).to_pylist()])
        index = batch.schema.get_field_index(name)
        batch = batch.set_column(index, batch.schema.field(index), moved.cast(column.type))
    return batch


def test_a_retry_is_known_by_its_own_time_or_by_having_none(dsn: str) -> None:
    # event_batch's rows have client_ts == received_at: the ingest's mark of an event
    # that came without its own time. Here the first 5 have a time of their own.
    batch = pa.Table.from_batches([event_batch(10, "a")])
    own = _timed(batch.slice(0, 5), 0, 2_000)
    sink = ClickHouseSink(dsn, prepare=warehouse.migrate)
    sink.open()
    try:
        assert sink.deliver(pa.concat_tables([own, batch.slice(5)]), "segment-1") == 0
        # Hours later: the same times, received again; no time, received again.
        hour = 3_600_000
        assert sink.deliver(_timed(own, 0, hour), "segment-2") == 5
        assert sink.deliver(_timed(batch.slice(5), hour, hour), "segment-3") == 5
        # Sent again with another time, or without one though the first send had one:
        # stored again (README, "Exactly once per event id").
        assert sink.deliver(_timed(own, hour, 0), "segment-4") == 0
        assert sink.deliver(_timed(own, 2_000 + hour, hour), "segment-5") == 0
    finally:
        sink.close()
    assert counts(dsn) == (20, 10)
