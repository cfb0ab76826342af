"""How a worker process runs analytics queries.

With a ClickHouse server (``http://`` DSN) every worker queries it directly with
clickhouse-connect. Embedded chDB (``chdb://`` DSN) is different: only one process may
open its directory, and that is the server's parent, which runs the flusher. So the
parent also runs a `WarehouseGateway`: a thread serving read-only queries on a Unix
socket in the run directory (`SOCKET_NAME`, mode 0600), answered as Arrow IPC. Workers
reach it through a `GatewayRunner`. `query_runner` picks the right one for a DSN.

The gateway opens chDB clients of its own next to the flusher's: chDB hosts one engine per
process and gives each clickhouse-connect client its own connection handle (own session,
own lock), so a gateway query and a flusher insert run side by side.

Wire format
    Each message is a 4-byte big-endian length, then msgpack: a worker sends `QueryRequest`,
    the gateway answers `QueryRows` (an Arrow IPC stream) or `QueryFailure` (a code and a
    message). A connection carries any number of request/answer pairs.

Read-only
    Every gateway query runs with ``readonly=1`` (which also forbids changing settings in
    the query) and ``max_execution_time``; the request carries no settings, so a worker
    can neither write nor lift the limits.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import clickhouse_connect
import msgspec
import pyarrow as pa

from analytics import warehouse
from edge.errors import ServiceUnavailable, SplitedgeError

__all__ = [
    "QUERY_TIMEOUT",
    "SOCKET_NAME",
    "ClickHouseRunner",
    "GatewayRunner",
    "QueryFailed",
    "QueryFailure",
    "QueryRequest",
    "QueryRows",
    "QueryTimeout",
    "WarehouseGateway",
    "WarehouseUnavailable",
    "query_runner",
    "read_only_settings",
]

log = logging.getLogger("splitedge.gateway")

SOCKET_NAME = "warehouse.sock"
QUERY_TIMEOUT = 30.0
"""Seconds an analytics query may run in ClickHouse before it is cancelled."""

# A worker waits for a query slot and the query (each up to the time limit), then for the
# answer to arrive.
_ANSWER_GRACE = 5.0
_MAX_REQUEST_BYTES = 1 << 20
_MAX_ANSWER_BYTES = 1 << 30
_LENGTH = struct.Struct("!I")
# sockaddr_un holds 108 bytes, the terminating NUL included.
_MAX_SOCKET_PATH = 107


class WarehouseUnavailable(ServiceUnavailable):
    """ClickHouse (or the gateway to it) cannot be reached; retry in a few seconds."""

    code = "warehouse_unavailable"
    retry_after = 5


class QueryTimeout(ServiceUnavailable):
    """The query ran longer than its time limit and was cancelled."""

    code = "query_timeout"
    retry_after = 10


class QueryFailed(SplitedgeError):
    """ClickHouse refused the query (e.g. a syntax error or a write on the read-only path)."""

    code = "query_failed"
    status = 502


class QueryRequest(msgspec.Struct, frozen=True, tag="query"):
    """A worker's query: SQL with clickhouse-connect ``{name:Type}`` parameters."""

    sql: str
    parameters: dict[str, Any]


class QueryRows(msgspec.Struct, frozen=True, tag="rows"):
    """A successful answer: the result as an Arrow IPC stream."""

    arrow: bytes


class QueryFailure(msgspec.Struct, frozen=True, tag="failure"):
    """A failed query: the error's code (`QueryFailed`'s or `QueryTimeout`'s, or
    ``warehouse_unavailable``) and ClickHouse's message."""

    code: str
    message: str


_Answer = QueryRows | QueryFailure
_request_decoder = msgspec.msgpack.Decoder(QueryRequest)
_answer_decoder = msgspec.msgpack.Decoder(_Answer)
_encoder = msgspec.msgpack.Encoder()


def read_only_settings(timeout: float) -> dict[str, Any]:
    """The ClickHouse settings of every analytics query: read-only, and cancelled after
    ``timeout`` seconds."""
    # In this order: once readonly=1 applies, no other setting may change.
    return {"max_execution_time": timeout, "readonly": 1}


def _table_to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def _ipc_to_table(data: bytes) -> pa.Table:
    with pa.ipc.open_stream(data) as reader:
        return reader.read_all()


def _failure_of(exc: Exception) -> QueryFailure:
    """What a ClickHouse error means to the caller: a timeout, an unreachable or locked
    warehouse, or a refused query."""
    text = str(exc).strip() or type(exc).__name__
    if "TIMEOUT_EXCEEDED" in text:
        return QueryFailure(QueryTimeout.code, text)
    # clickhouse-connect's DatabaseError is a query ClickHouse refused; anything else
    # (OperationalError, a chDB directory locked by another process, OSError) means the
    # warehouse itself cannot answer now.
    if type(exc).__name__ == "DatabaseError" and "Cannot lock file" not in text:
        return QueryFailure(QueryFailed.code, text)
    return QueryFailure(WarehouseUnavailable.code, text)


def _raise_failure(failure: QueryFailure) -> None:
    kind: type[SplitedgeError] = {
        QueryTimeout.code: QueryTimeout,
        WarehouseUnavailable.code: WarehouseUnavailable,
    }.get(failure.code, QueryFailed)
    raise kind(f"the analytics query failed: {failure.message}")


def _send_frame(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(_LENGTH.pack(len(payload)) + payload)


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    """``size`` bytes, or None when the peer closed the connection before the first."""
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(min(size - len(chunks), 1 << 20))
        if not chunk:
            if chunks:
                raise ConnectionError("the connection closed in the middle of a message")
            return None
        chunks += chunk
    return bytes(chunks)


def _recv_frame(sock: socket.socket, limit: int) -> bytes | None:
    header = _recv_exactly(sock, _LENGTH.size)
    if header is None:
        return None
    (size,) = _LENGTH.unpack(header)
    if size > limit:
        raise ConnectionError(f"a message of {size} bytes is over the {limit}-byte limit")
    payload = _recv_exactly(sock, size)
    if payload is None:
        raise ConnectionError("the connection closed in the middle of a message")
    return payload


def _socket_path_fits(path: Path) -> None:
    if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
        raise ValueError(
            f"the warehouse socket path {path} is over {_MAX_SOCKET_PATH} bytes, the Unix "
            "limit; use a shorter --data-dir"
        )


# --- the parent side -----------------------------------------------------------------


class _ClientPool:
    """Up to ``size`` chDB clients, made when first needed; a client that failed other
    than by a refused query is dropped, so the next query reconnects."""

    def __init__(self, dsn: str, size: int, connect: Callable[[str], Any]) -> None:
        self.dsn = dsn
        self.connect = connect
        self.idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self.slots = threading.BoundedSemaphore(size)
        self.lock = threading.Lock()
        self.closed = False

    def run(self, request: QueryRequest, timeout: float) -> QueryRows | QueryFailure:
        if not self.slots.acquire(timeout=timeout):
            return QueryFailure(QueryTimeout.code, f"no query slot was free within {timeout}s")
        try:
            try:
                client = self.idle.get_nowait()
            except queue.Empty:
                try:
                    client = self.connect(self.dsn)
                except Exception as exc:
                    return QueryFailure(WarehouseUnavailable.code, f"cannot connect: {exc}")
            try:
                table = client.query_arrow(
                    request.sql,
                    parameters=request.parameters,
                    settings=read_only_settings(timeout),
                )
            except Exception as exc:
                failure = _failure_of(exc)
                if failure.code == WarehouseUnavailable.code:
                    warehouse.close_quietly(client)
                else:
                    self._give_back(client)
                return failure
            self._give_back(client)
            return QueryRows(_table_to_ipc(table))
        finally:
            self.slots.release()

    def _give_back(self, client: Any) -> None:
        with self.lock:
            if not self.closed:
                self.idle.put(client)
                return
        warehouse.close_quietly(client)

    def close(self) -> None:
        with self.lock:
            self.closed = True
        while True:
            try:
                warehouse.close_quietly(self.idle.get_nowait())
            except queue.Empty:
                return


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    block_on_close = False
    # Every request of every worker opens a connection; a full backlog refuses a connect
    # (EAGAIN on a Unix socket) instead of queueing it.
    request_queue_size = 1024

    def __init__(self, path: Path, gateway: WarehouseGateway) -> None:
        self.gateway = gateway
        self.path = path
        super().__init__(str(path), _Handler)

    def server_bind(self) -> None:
        super().server_bind()
        # Before listen(): no connection can be accepted while the socket is still open
        # to others.
        os.chmod(self.path, 0o600)


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        gateway = self.server.gateway
        try:
            while True:
                frame = _recv_frame(sock, _MAX_REQUEST_BYTES)
                if frame is None:
                    return
                answer: QueryRows | QueryFailure
                try:
                    request = _request_decoder.decode(frame)
                except msgspec.DecodeError as exc:
                    answer = QueryFailure(QueryFailed.code, f"not a query request: {exc}")
                else:
                    answer = gateway.execute(request)
                _send_frame(sock, _encoder.encode(answer))
        except OSError as exc:  # the worker went away or sent garbage framing
            log.info("warehouse gateway: connection dropped (%s)", exc)


class WarehouseGateway:
    """The parent process's read-only query service for its workers (see the module
    docstring). ``pool_size`` queries run at once; more wait for a slot."""

    def __init__(
        self,
        socket_path: Path | str,
        dsn: str,
        *,
        timeout: float = QUERY_TIMEOUT,
        pool_size: int = 2,
        connect: Callable[[str], Any] = warehouse.connect,
    ) -> None:
        self.socket_path = Path(socket_path)
        _socket_path_fits(self.socket_path)
        self.timeout = timeout
        self.queries = 0
        self.failures = 0
        self._pool = _ClientPool(dsn, pool_size, connect)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Listen on the socket (replacing a stale one) and serve on a daemon thread."""
        if self._server is not None:
            raise RuntimeError("the warehouse gateway is already started")
        self.socket_path.unlink(missing_ok=True)
        self._server = _Server(self.socket_path, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="splitedge-warehouse-gateway",
            daemon=True,
        )
        self._thread.start()
        log.info("warehouse gateway listening on %s", self.socket_path)

    def stop(self) -> None:
        """Stop listening, remove the socket and close the clients. Queries still running
        finish on their own threads and close their client after."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.socket_path.unlink(missing_ok=True)
        self._pool.close()

    def execute(self, request: QueryRequest) -> QueryRows | QueryFailure:
        """Run one request read-only; every error becomes a `QueryFailure`."""
        started = time.monotonic()
        answer = self._pool.run(request, self.timeout)
        self.queries += 1
        if isinstance(answer, QueryFailure):
            self.failures += 1
            log.warning(
                "analytics query failed code=%s seconds=%.3f: %s",
                answer.code,
                time.monotonic() - started,
                answer.message[:500],
            )
        return answer


# --- the worker side -----------------------------------------------------------------


class GatewayRunner:
    """A `QueryRunner` for a worker process: sends each query to the parent's gateway
    over its Unix socket. Raises `WarehouseUnavailable` when the gateway does not answer,
    and the error the gateway reports otherwise. Thread-safe: one connection per call."""

    def __init__(self, socket_path: Path | str, timeout: float = QUERY_TIMEOUT) -> None:
        self.socket_path = Path(socket_path)
        _socket_path_fits(self.socket_path)
        self.timeout = timeout
        self._wait = 2 * timeout + _ANSWER_GRACE

    def close(self) -> None:
        """Nothing to close: a connection lasts one call."""

    def __call__(self, sql: str, parameters: dict[str, Any]) -> pa.Table:
        request = _encoder.encode(QueryRequest(sql, parameters))
        if len(request) > _MAX_REQUEST_BYTES:
            raise QueryFailed(f"the query is over the {_MAX_REQUEST_BYTES}-byte limit")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self._wait)
                sock.connect(str(self.socket_path))
                _send_frame(sock, request)
                frame = _recv_frame(sock, _MAX_ANSWER_BYTES)
        except TimeoutError:
            raise WarehouseUnavailable(
                f"the warehouse gateway did not answer within {self._wait:.0f}s"
            ) from None
        except OSError as exc:
            raise WarehouseUnavailable(
                f"the warehouse gateway at {self.socket_path} is unavailable ({exc}); "
                "retry in a few seconds"
            ) from None
        if frame is None:
            raise WarehouseUnavailable("the warehouse gateway closed the connection unanswered")
        answer = _answer_decoder.decode(frame)
        if isinstance(answer, QueryFailure):
            _raise_failure(answer)
        assert isinstance(answer, QueryRows)
        return _ipc_to_table(answer.arrow)


def _connect_shared(dsn: str) -> Any:
    # Without a session id, one HTTP client may run queries from several threads at once
    # (ClickHouse refuses concurrent queries in one session).
    return clickhouse_connect.get_client(dsn=dsn, autogenerate_session_id=False)


class ClickHouseRunner:
    """A `QueryRunner` straight to a ClickHouse server (``http://`` DSN), with the same
    read-only settings and time limit as the gateway. One client, made on first use and
    shared by the worker's threads."""

    def __init__(
        self,
        dsn: str,
        timeout: float = QUERY_TIMEOUT,
        connect: Callable[[str], Any] = _connect_shared,
    ) -> None:
        self.dsn = dsn
        self.timeout = timeout
        self._connect = connect
        self._client: Any = None
        self._lock = threading.Lock()

    def __call__(self, sql: str, parameters: dict[str, Any]) -> pa.Table:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    try:
                        self._client = self._connect(self.dsn)
                    except Exception as exc:
                        _raise_failure(QueryFailure(WarehouseUnavailable.code, str(exc)))
                client = self._client
        try:
            table: pa.Table = client.query_arrow(
                sql, parameters=parameters, settings=read_only_settings(self.timeout)
            )
        except Exception as exc:
            failure = _failure_of(exc)
            if failure.code == WarehouseUnavailable.code:
                with self._lock:
                    if self._client is client:
                        self._client = None
                warehouse.close_quietly(client)
            _raise_failure(failure)
        return table

    def close(self) -> None:
        """Close the client, if one was made."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            warehouse.close_quietly(client)


def query_runner(
    dsn: str, run_dir: Path | str, timeout: float = QUERY_TIMEOUT
) -> GatewayRunner | ClickHouseRunner:
    """The `QueryRunner` of a worker: through the parent's gateway (in ``run_dir``) for
    embedded chDB, straight to the server otherwise."""
    if dsn.startswith("chdb:"):
        return GatewayRunner(Path(run_dir) / SOCKET_NAME, timeout)
    return ClickHouseRunner(dsn, timeout)
