"""The warehouse gateway: real chDB in this process (as in the server's parent, next to a
writing client like the flusher's), a real Unix socket, the worker-side runner."""

from __future__ import annotations

import socket
import stat
import struct
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pytest

from analytics import warehouse
from analytics.gateway import (
    SOCKET_NAME,
    ClickHouseRunner,
    GatewayRunner,
    QueryFailed,
    QueryTimeout,
    WarehouseGateway,
    WarehouseUnavailable,
    query_runner,
)

TABLE = "gw.numbers"


class Warehouse(msgspec.Struct):
    writer: Any  # the flusher's stand-in: a client of its own on the same directory
    gateway: WarehouseGateway
    runner: GatewayRunner
    run_dir: Path


@pytest.fixture(scope="module")
def wh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    root = tmp_path_factory.mktemp("gw")
    dsn = f"chdb://{root / 'clickhouse'}"
    writer = warehouse.connect(dsn)
    writer.command("CREATE DATABASE IF NOT EXISTS gw")
    writer.command(f"CREATE TABLE {TABLE} (n UInt64, label String) ENGINE = MergeTree ORDER BY n")
    writer.insert_arrow(
        TABLE,
        pa.table({"n": pa.array(range(100), pa.uint64()), "label": [f"l{i}" for i in range(100)]}),
    )
    run_dir = root / "run"
    run_dir.mkdir()
    gateway = WarehouseGateway(run_dir / SOCKET_NAME, dsn, timeout=5.0)
    gateway.start()
    try:
        yield Warehouse(writer, gateway, GatewayRunner(run_dir / SOCKET_NAME, 5.0), run_dir)
    finally:
        gateway.stop()
        writer.close()


def test_round_trip_with_parameters(wh: Warehouse) -> None:
    table = wh.runner(
        f"SELECT n, label, {{tag:String}} AS tag FROM {TABLE} "
        "WHERE n >= {low:UInt64} AND n < {high:UInt64} ORDER BY n",
        {"low": 10, "high": 13, "tag": 'it\'s "quoted" ✓'},
    )
    assert isinstance(table, pa.Table)
    assert table.column_names == ["n", "label", "tag"]
    assert table.column("n").to_pylist() == [10, 11, 12]
    assert [str(x) for x in table.column("label").to_pylist()] == ["l10", "l11", "l12"]
    assert {str(x) for x in table.column("tag").to_pylist()} == {'it\'s "quoted" ✓'}


def test_datetime_and_list_parameters(wh: Warehouse) -> None:
    table = wh.runner(
        "SELECT toUnixTimestamp({at:DateTime('UTC')}) AS t, has({ids:Array(UInt64)}, 3) AS h",
        {"at": datetime(2026, 3, 1, 12, 0, tzinfo=UTC), "ids": [1, 3]},
    )
    assert table.to_pylist() == [{"t": 1772366400, "h": 1}]


def test_the_same_table_as_a_direct_query(wh: Warehouse) -> None:
    sql = f"SELECT count() AS c, sum(n) AS s, avg(n) AS a FROM {TABLE}"
    assert wh.runner(sql, {}).equals(wh.writer.query_arrow(sql))


def test_an_empty_result_keeps_its_schema(wh: Warehouse) -> None:
    table = wh.runner(f"SELECT n FROM {TABLE} WHERE n > 1000", {})
    assert table.num_rows == 0
    assert table.column_names == ["n"]


@pytest.mark.parametrize(
    "sql",
    [
        f"INSERT INTO {TABLE} (n, label) VALUES (1000, 'x')",
        f"INSERT INTO {TABLE} (n, label) SELECT 1000, 'x' SETTINGS readonly = 0",
        f"ALTER TABLE {TABLE} DELETE WHERE 1",
        f"TRUNCATE TABLE {TABLE}",
        "CREATE TABLE gw.other (n UInt8) ENGINE = Memory",
        f"DROP TABLE {TABLE}",
    ],
)
def test_a_write_is_refused(wh: Warehouse, sql: str) -> None:
    with pytest.raises(QueryFailed) as caught:
        wh.runner(sql, {})
    assert caught.value.status == 502
    assert "readonly" in caught.value.message.lower() or "READONLY" in caught.value.message
    assert wh.writer.command(f"SELECT count() FROM {TABLE}") == 100
    assert wh.writer.command("EXISTS TABLE gw.other") == 0


def test_the_read_only_limit_cannot_be_lifted(wh: Warehouse) -> None:
    with pytest.raises(QueryFailed, match="readonly"):
        wh.runner("SELECT 1 SETTINGS readonly = 0", {})
    with pytest.raises(QueryFailed, match="readonly"):
        wh.runner("SELECT 1 SETTINGS max_execution_time = 1000", {})


def test_a_bad_query_says_what_clickhouse_said(wh: Warehouse) -> None:
    with pytest.raises(QueryFailed, match="UNKNOWN_TABLE|does not exist") as caught:
        wh.runner("SELECT * FROM gw.nope", {})
    assert caught.value.code == "query_failed"
    with pytest.raises(QueryFailed, match="SYNTAX_ERROR|Syntax error"):
        wh.runner("SELEKT 1", {})
    with pytest.raises(QueryFailed, match="not set|UNKNOWN_QUERY_PARAMETER"):
        wh.runner("SELECT {missing:UInt8}", {})
    # and the gateway still answers
    assert wh.runner("SELECT 1 AS one", {}).to_pylist() == [{"one": 1}]


def test_a_slow_query_is_cancelled_at_the_time_limit(wh: Warehouse) -> None:
    slow = "SELECT count() FROM numbers(100000000000) WHERE sipHash64(number) % 7 = 1"
    gateway = WarehouseGateway(wh.run_dir / "slow.sock", wh.gateway._pool.dsn, timeout=0.3)
    gateway.start()
    try:
        with pytest.raises(QueryTimeout) as caught:
            GatewayRunner(wh.run_dir / "slow.sock", 0.3)(slow, {})
    finally:
        gateway.stop()
    assert caught.value.status == 503 and caught.value.retry_after > 0
    assert "TIMEOUT_EXCEEDED" in caught.value.message


def test_reads_run_while_the_flusher_client_writes(wh: Warehouse) -> None:
    """The gateway's clients and another client of the same directory in the same
    process work side by side."""
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for i in range(20):
                batch = pa.table(
                    {"n": pa.array([10_000 + i], pa.uint64()), "label": ["w"]},
                )
                wh.writer.insert_arrow("gw.side", batch)
        except BaseException as exc:
            errors.append(exc)

    wh.writer.command("CREATE TABLE gw.side (n UInt64, label String) ENGINE = MergeTree ORDER BY n")
    thread = threading.Thread(target=write)
    thread.start()
    counts = [wh.runner("SELECT count() AS c FROM gw.side", {}).column("c")[0].as_py()]
    while thread.is_alive():
        counts.append(wh.runner("SELECT count() AS c FROM gw.side", {}).column("c")[0].as_py())
    thread.join()
    assert not errors
    counts.append(wh.runner("SELECT count() AS c FROM gw.side", {}).column("c")[0].as_py())
    assert counts == sorted(counts) and counts[-1] == 20


def test_parallel_queries_from_many_threads(wh: Warehouse) -> None:
    results: dict[int, int] = {}

    def query(i: int) -> None:
        table = wh.runner(f"SELECT sum(n) AS s FROM {TABLE} WHERE n < {{k:UInt64}}", {"k": i})
        results[i] = table.column("s")[0].as_py()

    threads = [threading.Thread(target=query, args=(i,)) for i in range(1, 17)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {i: i * (i - 1) // 2 for i in range(1, 17)}


def test_the_socket_is_private(wh: Warehouse) -> None:
    mode = (wh.run_dir / SOCKET_NAME).stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


def test_garbage_gets_an_answer_not_a_hang(wh: Warehouse) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(wh.run_dir / SOCKET_NAME))
        sock.sendall(struct.pack("!I", 3) + b"\xc1\xc1\xc1")
        size = struct.unpack("!I", sock.recv(4))[0]
        answer = msgspec.msgpack.decode(sock.recv(size))
    assert answer["type"] == "failure" and answer["code"] == "query_failed"
    assert "not a query request" in answer["message"]


def test_an_oversized_frame_closes_the_connection(wh: Warehouse) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(wh.run_dir / SOCKET_NAME))
        sock.sendall(struct.pack("!I", 1 << 30))
        assert sock.recv(4) == b""
    assert wh.runner("SELECT 2 AS two", {}).to_pylist() == [{"two": 2}]


def test_the_gateway_down_is_a_clear_503(tmp_path: Path) -> None:
    runner = GatewayRunner(tmp_path / SOCKET_NAME, 1.0)
    with pytest.raises(WarehouseUnavailable) as caught:
        runner("SELECT 1", {})
    assert caught.value.status == 503 and caught.value.retry_after > 0
    assert str(tmp_path / SOCKET_NAME) in caught.value.message
    # a socket file nobody listens on any more
    dead = WarehouseGateway(tmp_path / "dead.sock", "chdb:///nowhere")
    dead.start()
    dead.stop()
    (tmp_path / "dead.sock").touch()
    with pytest.raises(WarehouseUnavailable):
        GatewayRunner(tmp_path / "dead.sock", 1.0)("SELECT 1", {})


def test_a_locked_directory_is_unavailable_not_a_query_error(wh: Warehouse, tmp_path: Path) -> None:
    """chDB already hosts this process's engine on another directory: the gateway cannot
    connect, and says so as unavailable."""
    gateway = WarehouseGateway(tmp_path / "other.sock", f"chdb://{tmp_path / 'ch'}")
    gateway.start()
    try:
        with pytest.raises(WarehouseUnavailable, match="cannot connect"):
            GatewayRunner(tmp_path / "other.sock", 1.0)("SELECT 1", {})
    finally:
        gateway.stop()


def test_a_too_long_socket_path_is_refused_up_front(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shorter --data-dir"):
        GatewayRunner(tmp_path / ("x" * 120) / SOCKET_NAME)


def test_query_runner_picks_the_path_by_dsn(tmp_path: Path) -> None:
    embedded = query_runner(f"chdb://{tmp_path / 'ch'}", tmp_path / "run")
    assert isinstance(embedded, GatewayRunner)
    assert embedded.socket_path == tmp_path / "run" / SOCKET_NAME
    server = query_runner("http://127.0.0.1:1", tmp_path / "run")
    assert isinstance(server, ClickHouseRunner)
    # nothing listens there: unavailable, with clickhouse-connect's reason
    with pytest.raises(WarehouseUnavailable):
        server("SELECT 1", {})
