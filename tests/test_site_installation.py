"""A site's installation check (``installation`` of ``GET /v1/sites/{site_id}``), through a
real server with two workers, its real store and chDB: null before anything happens; a
fetch of the snippet sets ``snippet_fetched_at`` within a few seconds (the workers publish
their in-memory fetch times, `edge.snippet_fetches`) and an event sent to /v1/collect sets
``last_event_at`` once the flusher has stored it; the fetch time outlives a restart; the
fetch file merges what workers publish at once; another workspace's site is a 404."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.snippet_fetches import FETCHES_FILE, merge_fetch_times, read_fetch_times
from tests.support import (
    api_get,
    collect,
    exposures,
    running_server,
    seed_store,
    wait_flushed,
)

pytestmark = pytest.mark.server


def _installation(server: Any, site_id: str, key: str) -> dict[str, Any]:
    answer = api_get(server, f"/v1/sites/{site_id}", key)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()["data"]["installation"]
    return found


def _wait_for(server: Any, site_id: str, key: str, field: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        value = _installation(server, site_id, key)[field]
        if value is not None:
            return str(value)
        time.sleep(0.2)
    raise AssertionError(f"{field} still null after 30 s:\n{server.output()}")


def test_fetch_and_event_set_the_installation_check(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seed = seed_store(data / "splitedge.sqlite3")
    key, site = seed.key.key, seed.site
    with running_server(data, workers=2) as server:
        answer = api_get(server, f"/v1/sites/{site.id}", key).json()["data"]
        assert answer["installation"] == {
            "snippet_fetched_at": None,
            "last_event_at": None,
            "last_event_error": None,
        }
        assert answer["snippet"] == (
            f'<script src="{server.base_url}/s/{site.public_key}.js"></script>'
        )
        before = datetime.now(UTC)
        assert httpx.get(f"{server.base_url}/s/{site.public_key}.js").status_code == 200
        fetched = datetime.fromisoformat(_wait_for(server, site.id, key, "snippet_fetched_at"))
        assert before.timestamp() - 1 <= fetched.timestamp() <= time.time()
        # Another site's fetch does not count for this one.
        other = api_get(server, f"/v1/sites/{seed.other_site.id}", seed.other_key.key)
        assert other.json()["data"]["installation"]["snippet_fetched_at"] is None

        sent = datetime.now(UTC)
        events = exposures(seed.experiment_id, seed.variant_ids[0], ["visitor-1"])
        assert collect(server, site.public_key, events) == 1
        wait_flushed(server, 1)
        last_event = datetime.fromisoformat(_wait_for(server, site.id, key, "last_event_at"))
        assert sent.timestamp() - 1 <= last_event.timestamp() <= time.time() + 1
        assert (
            _installation(server, seed.other_site.id, seed.other_key.key)["last_event_at"] is None
        )

        # Another workspace's key sees the same 404 as for an unknown id.
        assert api_get(server, f"/v1/sites/{site.id}", seed.other_key.key).status_code == 404
    with running_server(data) as server:
        assert _installation(server, site.id, key)["snippet_fetched_at"] == fetched.isoformat()


def test_workers_publishing_at_once_keep_each_others_times(tmp_path: Path) -> None:
    path = tmp_path / FETCHES_FILE
    barrier = threading.Barrier(8)

    def publish(worker: int) -> None:
        barrier.wait()
        for round_ in range(20):
            merge_fetch_times(path, {f"site-{worker}": float(round_), "shared": float(worker)})

    threads = [threading.Thread(target=publish, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    times = read_fetch_times(path)
    assert times == {**{f"site-{w}": 19.0 for w in range(8)}, "shared": 7.0}
    # A later merge never moves a time back.
    merge_fetch_times(path, {"shared": 1.0})
    assert read_fetch_times(path)["shared"] == 7.0
    path.write_bytes(b"not json")
    assert read_fetch_times(path) == {}
