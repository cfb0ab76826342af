"""The ClickHouse sink (edge.ingest.sinks) against real embedded ClickHouse (chDB): a token
is stored once, a failed prepare releases the directory, and logs name no password."""

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
