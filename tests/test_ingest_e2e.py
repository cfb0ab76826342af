"""Events end to end: HTTP → spool → ClickHouse, through outages and SIGKILL.

Every test runs a real server on loopback with embedded ClickHouse (chDB) and reads the
events table after the server has stopped (one process owns a chDB directory at a time).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support import (
    Seed,
    Server,
    clickhouse_rows,
    running_server,
    seed_store,
    wait_flushed,
)

pytestmark = pytest.mark.server

T0 = 1_763_900_000_000


def batch(seed: Seed, n: int, visitor: str = "v") -> list[dict[str, object]]:
    return [
        {
            "event_id": uuid.uuid4().hex,
            "type": "exposure",
            "visitor_id": f"{visitor}-{i}",
            "ts": T0 + i,
            "experiment_id": seed.experiment_id,
            "variant_id": seed.variant_ids[i % 2],
            "pathname": "/pricing",
            "device": "mobile",
        }
        for i in range(n)
    ]


def send(server: Server, seed: Seed, events: list[dict[str, object]]) -> httpx.Response:
    return httpx.post(
        server.base_url + "/v1/collect",
        json={"public_key": seed.site.public_key, "events": events},
        timeout=10,
    )


def event_counts(data: Path) -> tuple[int, int]:
    ((rows, ids),) = clickhouse_rows(
        data, "SELECT count(), uniqExact(event_id) FROM splitedge.events"
    )
    return int(rows), int(ids)  # type: ignore[call-overload]


def wait_drained(server: Server, timeout: float = 60) -> None:
    """Wait until ClickHouse is up and the spool is empty."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = httpx.get(server.base_url + "/readyz").json()
        if ready["clickhouse"] == "ok" and ready["spool_segments"] == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"spool not drained: {ready}")


def test_events_reach_clickhouse_exactly_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seed = seed_store(data / "splitedge.sqlite3")
    sent = 0
    with running_server(data) as server:
        for i in range(10):
            assert send(server, seed, batch(seed, 20, f"b{i}")).json()["data"]["accepted"] == 20
            sent += 20
        tasks = [
            {"agentId": "bot", "task": "t", "outcome": "success", "cost": 0.5, "turns": 3},
            {"agentId": "bot", "task": "t", "outcome": "failure", "durationMs": 10},
        ]
        r = httpx.post(
            server.base_url + "/v1/events",
            json=tasks,
            headers={"authorization": f"Bearer {seed.key.key}"},
        )
        assert r.status_code == 201
        sent += 2
        wait_flushed(server, sent)
        assert server.stop() == 0
    assert event_counts(data) == (sent, sent)
    rows = clickhouse_rows(
        data,
        "SELECT kind, count(), uniqExact(unit_id), sum(cost) FROM splitedge.events "
        "GROUP BY kind ORDER BY kind",
    )
    assert rows == [("exposure", 200, 200, None), ("task", 2, 1, 0.5)]
    ((workspace, site),) = clickhouse_rows(
        data, "SELECT DISTINCT workspace_id, site_id FROM splitedge.events WHERE kind != 'task'"
    )
    assert (workspace, site) == (seed.workspace_id, seed.site.id)


def test_shutdown_spools_and_flushes_what_it_holds(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seed = seed_store(data / "splitedge.sqlite3")
    with running_server(data) as server:
        for i in range(5):
            assert send(server, seed, batch(seed, 20, f"s{i}")).status_code == 200
        assert server.stop() == 0  # at once: the open segment is finished and flushed
    assert event_counts(data) == (100, 100)


LOCKER = """
import sys, time, clickhouse_connect
client = clickhouse_connect.get_client(dsn=sys.argv[1])
print("locked", flush=True)
time.sleep(600)
"""


@contextmanager
def clickhouse_held_elsewhere(data: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process owns the embedded ClickHouse directory: for the server it is down
    until that process is killed."""
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, f"chdb://{(data / 'clickhouse').resolve()}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        yield locker
    finally:
        locker.kill()
        locker.wait()
        assert locker.stdout is not None
        locker.stdout.close()


def test_clickhouse_outage_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seed = seed_store(data / "splitedge.sqlite3")
    with clickhouse_held_elsewhere(data) as locker:
        with running_server(data) as server:
            for i in range(15):
                assert send(server, seed, batch(seed, 20, f"o{i}")).status_code == 200
            time.sleep(1.5)  # segments finish; the flusher fails and backs off
            ready = httpx.get(server.base_url + "/readyz").json()
            assert ready["status"] == "ready"
            assert ready["clickhouse"] == "unavailable", ready
            assert ready["spool_segments"] >= 1
            locker.kill()
            locker.wait()
            wait_flushed(server, 300)
            assert server.stop() == 0
    assert event_counts(data) == (300, 300)


def test_a_full_spool_answers_503_and_keeps_what_it_took(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seed = seed_store(data / "splitedge.sqlite3")
    accepted = 0
    with clickhouse_held_elsewhere(data) as locker:
        env = {"SPLITEDGE_SPOOL_CAP_MB": "1"}
        with running_server(data, env=env) as server, httpx.Client(timeout=10) as client:
            refused = None
            for i in range(3000):
                body = {"public_key": seed.site.public_key, "events": batch(seed, 100, f"f{i}")}
                r = client.post(server.base_url + "/v1/collect", json=body)
                if r.status_code == 503:
                    refused = r
                    break
                assert r.status_code == 200
                accepted += 100
            assert refused is not None, "the spool never filled"
            assert refused.json()["error"]["code"] == "spool_full"
            # anonymous callers learn nothing of the server's disk layout
            assert str(data) not in refused.text and "/spool" not in refused.text
            assert int(refused.headers["retry-after"]) >= 1
            locker.kill()
            locker.wait()
            wait_flushed(server, accepted)
            assert server.stop() == 0
    assert event_counts(data) == (accepted, accepted)


def test_sigkill_mid_load_keeps_every_acknowledged_event(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seed = seed_store(data / "splitedge.sqlite3")
    acknowledged: list[str] = []
    stop = threading.Event()

    def load(server: Server) -> None:
        with httpx.Client(timeout=5) as client:
            n = 0
            while not stop.is_set():
                events = batch(seed, 20, f"k{n}")
                n += 1
                try:
                    r = client.post(
                        server.base_url + "/v1/collect",
                        json={"public_key": seed.site.public_key, "events": events},
                    )
                except httpx.TransportError:
                    return
                if r.status_code == 200:
                    acknowledged.extend(str(e["event_id"]) for e in events)

    with running_server(data) as server:
        loader = threading.Thread(target=load, args=(server,))
        loader.start()
        time.sleep(2.0)
        server.kill()
        stop.set()
        loader.join()
    assert len(acknowledged) >= 100

    with running_server(data) as server:
        wait_drained(server)
        assert server.stop() == 0
    counts = dict(
        clickhouse_rows(data, "SELECT event_id, count() FROM splitedge.events GROUP BY event_id")
    )
    missing = [i for i in acknowledged if i not in counts]
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged events lost"
    assert max(counts.values()) == 1  # type: ignore[type-var]
