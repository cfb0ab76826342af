"""The relay from an edge node's spool to the control plane: one real control plane
(``splitedge serve`` with embedded chDB) on loopback for the module, an edge token made
with the CLI, `SegmentRelay`s in this process over real spools written by `SpoolWriter`.

The module's control plane starts after its relay: the relay first meets it down. The
last test stops it and counts what reached ClickHouse, so the tests run in file order
and add what they relay to `Relayed.rows`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyarrow as pa
import pytest

from edge.control.edge_ingest_api import MAX_SEGMENT_BODY, store_segment
from edge.ingest.flusher import REJECTED_SUFFIX
from edge.ingest.relay import (
    NODE_ID_FILE,
    SEGMENTS_PATH,
    STREAM_MEDIA_TYPE,
    SegmentRelay,
    node_id,
    relay_token,
    segment_stream,
)
from edge.ingest.segments import read_segment, ready_segments, recover_orphans, segment_token
from edge.ingest.spool import (
    PARTIAL_SUFFIX,
    READY_SUFFIX,
    STALE_NEW_SECONDS,
    SpoolFull,
    SpoolWriter,
)
from edge.ingest.status import FlusherStatus, read_status
from tests.support import Server, clickhouse_rows, free_port, running_server
from tests.test_flusher import spool, status, wait_for
from tests.test_spool import event_batch


def create_edge_token(data_dir: Path, name: str) -> str:
    """An edge token made by ``splitedge edge-tokens create``, as its output shows it."""
    made = subprocess.run(
        [sys.executable, "-m", "edge.cli", "edge-tokens", "create", "--name", name,
         "--data-dir", str(data_dir)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    found = re.search(r"\bet_[A-Za-z0-9_-]+", made.stdout)
    assert found is not None, made.stdout
    return found.group(0)


def fast_relay(spool_dir: Path, control_url: str, token: str) -> SegmentRelay:
    return SegmentRelay(
        spool_dir, control_url, token, backoff_initial=0.05, backoff_cap=0.3, poll_interval=0.05
    )


def post_segment(
    server: Server, token: str | None, body: bytes, relayed: str | None
) -> httpx.Response:
    """``POST /v1/edge/segments`` as a relay sends it (None: no such header or query)."""
    headers = {"content-type": STREAM_MEDIA_TYPE}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    params = {} if relayed is None else {"token": relayed}
    return httpx.post(
        server.base_url + SEGMENTS_PATH, headers=headers, params=params, content=body, timeout=30
    )


def stream(n: int, tag: str, start: int = 0) -> bytes:
    return segment_stream(pa.Table.from_batches([event_batch(n, tag, start)]))


@dataclass
class Relayed:
    """The module's control plane and the edge node relaying to it."""

    data: Path
    server: Server
    token: str
    spool: Path
    relay: SegmentRelay
    down: FlusherStatus
    """The relay's status while the control plane was still down."""
    waiting: list[Path]
    """The segments spooled then."""
    rows: int
    """Every row relayed so far: what ClickHouse must hold once, in the end."""


@pytest.fixture(scope="module")
def relayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relayed]:
    root = tmp_path_factory.mktemp("relay")
    data = root / "control"
    token = create_edge_token(data, "edge-1")
    edge_spool = root / "edge" / "spool"
    port = free_port()
    rows = spool(edge_spool, (40, "a", 0), (40, "b", 40), (30, "c", 80))
    waiting = ready_segments(edge_spool)
    relay = fast_relay(edge_spool, f"http://127.0.0.1:{port}", token)
    relay.start()
    try:
        # The status file, not the counter: the file is what is asserted on below.
        wait_for(lambda: getattr(read_status(edge_spool), "errors", 0) >= 3, timeout=30)
        down = status(edge_spool)
        with running_server(data, port=port) as server:
            yield Relayed(data, server, token, edge_spool, relay, down, waiting, rows)
    finally:
        relay.stop(10)


def test_segments_wait_for_a_control_plane_that_is_down(relayed: Relayed) -> None:
    down = relayed.down
    assert len(relayed.waiting) > 1
    assert down.clickhouse == "unavailable" and down.errors >= 3 and down.segments_flushed == 0
    assert f"the control plane at {relayed.server.base_url}" in down.last_error
    assert down.pending_segments == len(relayed.waiting)
    # It is up now: the backlog arrives, then what is spooled meanwhile.
    wait_for(lambda: not ready_segments(relayed.spool), timeout=30)
    relayed.rows += spool(relayed.spool, (25, "d", 110))
    wait_for(lambda: not ready_segments(relayed.spool) and relayed.relay.rows_flushed == 135)
    assert status(relayed.spool).clickhouse == "ok" and relayed.relay.segments_rejected == 0


def test_the_endpoint_refuses_what_it_cannot_store(relayed: Relayed) -> None:
    server, token = relayed.server, relayed.token
    body = stream(5, "x")
    relayed_token = relay_token(f"{time.time_ns():020d}-42-000001", "0123456789abcdef")

    def refused(status: int, says: str, answer: httpx.Response) -> None:
        assert answer.status_code == status, answer.text
        assert says in answer.json()["error"]["message"], answer.text

    # Who may relay: an edge node, with a token it was issued.
    refused(401, "Bearer et_", post_segment(server, None, body, relayed_token))
    refused(401, "unknown", post_segment(server, "et_" + "x" * 43, body, relayed_token))
    api_key = "sk_live_" + "x" * 43
    refused(403, "not an edge token", post_segment(server, api_key, body, relayed_token))
    # What: a relay token, and a whole stream of events.
    refused(400, "no token", post_segment(server, token, body, None))
    for wrong in ("../../etc/passwd", relayed_token + "\n", relayed_token.upper()):
        refused(400, "not a relay token", post_segment(server, token, body, wrong))
    refused(400, "empty", post_segment(server, token, b"", relayed_token))
    refused(400, "not a whole Arrow IPC", post_segment(server, token, b"{}", relayed_token))
    refused(400, "not a whole Arrow IPC", post_segment(server, token, body[:-90], relayed_token))
    other = segment_stream(pa.table({"event_id": ["a"], "colour": ["red"]}))
    refused(400, "missing columns: kind", post_segment(server, token, other, relayed_token))
    nulls = pa.Table.from_batches([event_batch(3, "n")])
    kind = nulls.schema.get_field_index("kind")
    nulls = nulls.set_column(kind, nulls.schema.field(kind), pa.array(["a", None, "b"]))
    refused(
        400, "kind has 1 nulls", post_segment(server, token, segment_stream(nulls), relayed_token)
    )
    # How much: past the limit, refused before it is read.
    huge = b"\0" * (MAX_SEGMENT_BODY + 1)
    refused(413, "limit", post_segment(server, token, huge, relayed_token))
    assert not list((relayed.data / "spool").glob(f"*{relayed_token}*"))
    stored = post_segment(server, token, body, relayed_token)
    assert stored.status_code == 201, stored.text
    relayed.rows += 5


def test_a_segment_the_control_plane_refuses_is_moved_aside(relayed: Relayed) -> None:
    with SpoolWriter(relayed.spool, max_segment_age=60) as writer:  # another schema
        writer.append(pa.record_batch({"event_id": ["p-1"], "colour": ["red"]}))
    relayed.rows += spool(relayed.spool, (10, "good", 0))
    wait_for(lambda: relayed.relay.segments_rejected and not ready_segments(relayed.spool))
    (aside,) = relayed.spool.glob("*" + REJECTED_SUFFIX)
    assert read_segment(aside).column("colour").to_pylist() == ["red"]
    assert relayed.relay.segments_rejected == 1
    wait_for(lambda: status(relayed.spool).segments_rejected == 1)


def test_a_wrong_edge_token_blames_the_node_not_its_segments(
    relayed: Relayed, tmp_path: Path
) -> None:
    edge_spool = tmp_path / "spool"
    spool(edge_spool, (5, "kept", 0))
    segments = ready_segments(edge_spool)
    wrong = fast_relay(edge_spool, relayed.server.base_url, "et_" + "y" * 43)
    wrong.start()
    try:
        wait_for(lambda: wrong.errors >= 3)
    finally:
        assert wrong.stop(10)
    assert "answered 401" in status(edge_spool).last_error
    assert ready_segments(edge_spool) == segments and wrong.segments_rejected == 0


def test_every_relayed_event_is_in_clickhouse_once(relayed: Relayed) -> None:
    """A relay retried after a lost answer, while the control plane still holds the
    segment and after it has inserted it, is inserted once."""
    server, token = relayed.server, relayed.token
    body = stream(20, "e", 200)
    again = relay_token("00000000000000000001-7-000001", node_id(relayed.spool))
    control_spool = relayed.data / "spool"
    # Its flusher runs in its parent process: paused, the segment waits in its spool.
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        first = post_segment(server, token, body, again)
        second = post_segment(server, token, body, again)
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    assert first.status_code == 201, first.text
    assert first.json() == {"data": {"token": again, "rows": 20, "duplicate": False}}
    assert second.status_code == 200, second.text
    assert second.json() == {"data": {"token": again, "rows": 20, "duplicate": True}}
    wait_for(lambda: not (control_spool / (again + READY_SUFFIX)).exists())
    third = post_segment(server, token, body, again)
    assert third.status_code == 201, third.text
    relayed.rows += 20
    wait_for(lambda: not ready_segments(control_spool) and not ready_segments(relayed.spool))
    assert relayed.relay.stop(10)
    assert status(relayed.spool).clickhouse == "stopped"
    server.stop()
    counted = clickhouse_rows(
        relayed.data, "SELECT count(), uniqExact(event_id) FROM splitedge.events"
    )
    assert counted == [(relayed.rows, relayed.rows)]
    assert clickhouse_rows(
        relayed.data, "SELECT count() FROM splitedge.events WHERE event_id LIKE 'e-%'"
    ) == [(20,)]


def test_the_node_id_is_made_once_and_kept(tmp_path: Path) -> None:
    made = node_id(tmp_path / "spool")
    assert re.fullmatch(r"[0-9a-f]{16}", made)
    assert node_id(tmp_path / "spool") == made
    assert (tmp_path / "spool" / NODE_ID_FILE).read_text().strip() == made
    assert node_id(tmp_path / "other") != made


def test_store_segment_is_durable_exclusive_and_capped(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    body = stream(3, "s")
    token = relay_token(f"{time.time_ns():020d}-1-000001", "00000000000000ff")
    assert store_segment(spool_dir, token, body, 1 << 20)
    assert not store_segment(spool_dir, token, body, 1 << 20)  # already there
    (stored,) = ready_segments(spool_dir)
    assert segment_token(stored) == token and stored.read_bytes() == body
    assert [p.name for p in spool_dir.iterdir()] == [stored.name]  # no temporary file left
    # The temporary file of a relay being written is no segment to the spool.
    (spool_dir / f".relay-{token}-0.partial").write_bytes(body)
    assert recover_orphans(spool_dir) == [] and ready_segments(spool_dir) == [stored]
    with pytest.raises(SpoolFull):
        store_segment(spool_dir, token.replace("-1-", "-2-"), body, 2 * len(body) - 1)


def test_a_killed_workers_partial_file_is_swept_once_stale(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    token = relay_token(f"{time.time_ns():020d}-1-000001", "00000000000000ff")
    left = spool_dir / f".relay-{token}-0{PARTIAL_SUFFIX}"
    fresh = spool_dir / f".relay-{token}-1{PARTIAL_SUFFIX}"  # a live worker may be writing it
    left.write_bytes(b"half")
    fresh.write_bytes(b"half")
    kept = spool_dir / "other.tmp"  # not the spool's
    kept.write_bytes(b"x")
    stale = time.time() - STALE_NEW_SECONDS - 5
    os.utime(left, (stale, stale))
    assert recover_orphans(spool_dir) == []
    assert sorted(p.name for p in spool_dir.iterdir()) == sorted([fresh.name, kept.name])
    os.utime(fresh, (stale, stale))
    recover_orphans(spool_dir)
    assert not fresh.exists() and kept.exists()
    # The relay writes its body as such a file, and leaves none behind.
    body = stream(3, "s")
    assert store_segment(spool_dir, token, body, 1 << 20)
    assert sorted(p.name for p in spool_dir.iterdir()) == sorted([kept.name, token + READY_SUFFIX])
