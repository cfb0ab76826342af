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
