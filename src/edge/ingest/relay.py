"""The relay: an edge node without ClickHouse sends its finished spool segments to the
control plane, which stores them in its own spool for its flusher to insert.

`SegmentRelay` is the flusher's loop (`edge.ingest.flusher.SpoolDrain`: orphan recovery,
oldest first, delete only after acceptance, capped exponential backoff with jitter, the
same status file for /readyz and /metrics) with a sink that posts each segment to
``POST {control_url}/v1/edge/segments`` (`edge.control.edge_ingest_api`). It runs on a
daemon thread in the edge node's parent process. In its status file, the ``clickhouse``
state is that of the control plane as the relay sees it.

Wire
    ``POST /v1/edge/segments?token=TOKEN`` with ``Authorization: Bearer et_...`` and, as
    the body, the segment's complete batches as one Arrow IPC stream
    (`STREAM_MEDIA_TYPE`). ``TOKEN`` is the segment's name followed by the node's id,
    ``{time_ns:020d}-{pid}-{seq:06d}-{node id}`` (`RELAY_TOKEN_PATTERN`): a segment name
    is unique on one machine only (two nodes in containers may share a pid and a clock
    tick), and the node id, drawn at random once and kept in the spool directory
    (`NODE_ID_FILE`), makes the token unique across nodes and stable across the node's
    restarts. The control plane stores the segment under that token and inserts it with
    it as the ``insert_deduplication_token``, so a relay retried after a lost answer is
    a no-op: every event reaches ClickHouse exactly once.

Answers
    A 2xx (201 stored, 200 already there) deletes the local segment. Connection errors,
    timeouts, 5xx, 408 and 429 are retried with the loop's backoff, and no sooner than
    the answer's Retry-After (the control plane's spool is full: 503). 401, 403, 404 and
    redirects say the node's edge token or control URL is wrong, not the segment: they
    are retried too, and logged as failures until an operator fixes the node. Any other
    4xx (400: the segment does not decode or has another schema; 413: too large) says the
    segment can never be accepted: it is moved aside as ``.rejected`` and logged as an
    error.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Any, Unpack

import httpx
import msgspec
import pyarrow as pa

from edge.ingest.flusher import DrainTimings, SpoolDrain
from edge.ingest.sinks import SegmentRejected, SinkBusy

__all__ = [
    "NODE_ID_FILE",
    "RELAY_TOKEN",
    "RELAY_TOKEN_PATTERN",
    "SEGMENTS_PATH",
    "STREAM_MEDIA_TYPE",
    "ControlPlaneSink",
    "SegmentRelay",
    "node_id",
    "relay_token",
    "segment_stream",
]

SEGMENTS_PATH = "/v1/edge/segments"
STREAM_MEDIA_TYPE = "application/vnd.apache.arrow.stream"
NODE_ID_FILE = "relay.node-id"
"""The node's id, in its spool directory (no segment suffix: the spool ignores it)."""

RELAY_TOKEN = re.compile(r"[0-9]{20}-[0-9]{1,10}-[0-9]{6,20}-[0-9a-f]{16}")
"""A relayed segment's token (`fullmatch` it): the segment's name, then the node's id."""
RELAY_TOKEN_PATTERN = f"^{RELAY_TOKEN.pattern}$"
"""`RELAY_TOKEN` as a JSON Schema pattern, which matches anywhere unless anchored."""

_NODE_ID = re.compile(r"[0-9a-f]{16}")

# Answers that blame the node's credentials or address, never the segment: retried (as
# is a redirect: the control URL is not the control plane's).
_NODE_AT_FAULT = frozenset({401, 403, 404})
# Answers that ask for a later retry.
_RETRY_LATER = frozenset({408, 429})


def node_id(spool_dir: Path | str) -> str:
    """This node's id: read from the spool directory, or drawn and kept there the first
    time (written to a temporary file, then renamed, so it is whole or absent)."""
    directory = Path(spool_dir)
    path = directory / NODE_ID_FILE
    try:
        found = path.read_text().strip()
    except FileNotFoundError:
        found = ""
    if _NODE_ID.fullmatch(found):
        return found
    directory.mkdir(parents=True, exist_ok=True)
    made = secrets.token_hex(8)
    tmp = directory / f".{NODE_ID_FILE}.{os.getpid()}.tmp"
    tmp.write_text(made + "\n")
    os.replace(tmp, path)
    return made


def relay_token(segment: str, node: str) -> str:
    """The token of segment ``segment`` (its name without suffix) relayed by ``node``."""
    return f"{segment}-{node}"


def segment_stream(table: pa.Table) -> bytes:
    """``table`` as one Arrow IPC stream, the body of a relay."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


class _Error(msgspec.Struct):
    message: str = ""


class _ErrorEnvelope(msgspec.Struct):
    error: _Error


def _answer_text(answer: httpx.Response) -> str:
    """What the control plane said: its error message, else the start of its body."""
    try:
        return msgspec.json.decode(answer.content, type=_ErrorEnvelope).error.message[:500]
    except msgspec.DecodeError:
        return answer.text[:200]


def _retry_after(answer: httpx.Response) -> float | None:
    text = answer.headers.get("retry-after", "").strip()
    try:
        return max(0.0, float(text)) if text else None
    except ValueError:  # an HTTP date: the backoff decides
        return None


class ControlPlaneSink:
    """Posts segments to the control plane's ``/v1/edge/segments`` with the node's edge
    token; see the module docstring for what each answer does."""

    def __init__(
        self, control_url: str, edge_token: str, node: str, *, timeout: float = 30.0
    ) -> None:
        self.control_url = control_url.rstrip("/")
        self.node = node
        self.timeout = timeout
        self._edge_token = edge_token
        self._client: httpx.Client | None = None

    def describe(self) -> str:
        return f"the control plane at {self.control_url}"

    def open(self) -> None:
        client = httpx.Client(
            base_url=self.control_url,
            timeout=self.timeout,
            headers={"authorization": f"Bearer {self._edge_token}"},
        )
        self._client = client
        self.check()

    def deliver(self, table: pa.Table, token: str) -> int:
        relayed = relay_token(token, self.node)
        answer = self._request(
            "POST",
            SEGMENTS_PATH,
            params={"token": relayed},
            content=segment_stream(table),
            headers={"content-type": STREAM_MEDIA_TYPE},
        )
        status = answer.status_code
        if 200 <= status < 300:
            return 0  # the control plane drops duplicated events when it inserts them
        said = f"{self.describe()} answered {status} to segment {relayed}: {_answer_text(answer)}"
        if status >= 500 or status in _RETRY_LATER:
            wait = _retry_after(answer)
            raise ConnectionError(said) if wait is None else SinkBusy(said, wait)
        if status < 400 or status in _NODE_AT_FAULT:
            raise PermissionError(
                f"{said} (check this node's --control-url and its edge token; "
                "`splitedge edge-tokens list` on the control plane)"
            )
        raise SegmentRejected(said)

    def check(self) -> None:
        answer = self._request("GET", "/healthz")
        if answer.status_code != 200:
            raise ConnectionError(f"{self.describe()} answered {answer.status_code} to /healthz")

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _request(self, method: str, path: str, **options: Any) -> httpx.Response:
        if self._client is None:
            raise ConnectionError(f"{self.describe()} is not connected")
        try:
            return self._client.request(method, path, **options)
        except httpx.TransportError as exc:  # its text alone does not say where
            raise ConnectionError(
                f"{self.describe()} cannot be reached ({type(exc).__name__}: {exc})"
            ) from exc


class SegmentRelay(SpoolDrain):
    """Relays the spool's finished segments to the control plane at ``control_url`` with
    the node's ``edge_token`` (``et_...``): the flusher's loop with a `ControlPlaneSink`.
    ``start()`` runs it on a daemon thread; ``stop(timeout)`` makes a last pass and
    returns False if the thread did not end in time."""

    def __init__(
        self,
        spool_dir: Path,
        control_url: str,
        edge_token: str,
        *,
        timeout: float = 30.0,
        **timings: Unpack[DrainTimings],
    ) -> None:
        sink = ControlPlaneSink(control_url, edge_token, node_id(spool_dir), timeout=timeout)
        super().__init__(spool_dir, sink, name="relay", **timings)
