"""One tenant's slow page fetches never delay another tenant (edge.control.fetch_pool):
workspace B aims generate calls at a page that trickles its body, and workspace A's API
answers as fast as when idle. Real server, real trickling page on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.control.fetch_pool import FAILED_CALL_REQUESTS, PER_WORKSPACE
from edge.control.store import Store
from tests.support import Seed, Server, api_call, free_port, running_server, seed_store

pytestmark = pytest.mark.bench


@pytest.fixture
def trickle() -> Iterator[str]:
    """A page that sends its headers, then one byte every half second for 20 s."""
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            for _ in range(40):
                if stop.wait(0.5):
                    return
                try:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                except OSError:
                    return

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/slow"
    stop.set()
    server.shutdown()
    server.server_close()


def p99(server: Server, key: str, count: int = 200) -> float:
    """The 99th percentile of ``count`` sequential GET /v1/sites, in seconds."""
    times = []
    with httpx.Client(headers={"authorization": f"Bearer {key}"}, timeout=30) as client:
        for _ in range(count):
            started = time.perf_counter()
            assert client.get(server.base_url + "/v1/sites").status_code == 200
            times.append(time.perf_counter() - started)
    times.sort()
    return times[max(0, round(0.99 * count) - 1)]


def generate(server: Server, seed: Seed, target: str) -> httpx.Response:
    body = {
        "site_id": seed.other_site.id,
        "prompt": "Change the headline to Hi",
        "target_url": target,
    }
    return api_call(server, seed.other_key.key, "POST", "/v1/variants/generate", body)


def test_a_trickling_page_of_one_workspace_does_not_slow_another(
    tmp_path: Path, trickle: str
) -> None:
    data = tmp_path / "data"
    seed = seed_store(data / "splitedge.sqlite3")
    with running_server(data, args=["--allow-private-targets"]) as server:
        p99(server, seed.key.key, 10)  # warm up
        # A new worker warms its statistics kernels and the MCP SDK on threads of its own
        # for a second or two; idle is idle once they are done (p99 ~60 ms before, ~6 after).
        time.sleep(3)
        idle = p99(server, seed.key.key)
        with ThreadPoolExecutor(8) as attack:
            calls = [attack.submit(generate, server, seed, trickle) for _ in range(8)]
            time.sleep(0.5)  # the fetches are under way, trickling
            busy = p99(server, seed.key.key)
            answers = [call.result() for call in calls]
    # 2x idle, with a 50 ms floor for a shared 2-core machine (before the pool: 9.7 s).
    # 200 samples, so that p99 is not the single worst (one 145 ms stall of a busy box
    # failed a run at 50 samples, where p99 was the maximum).
    assert busy <= max(2 * idle, idle + 0.05), (idle, busy)
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [422] * PER_WORKSPACE + [429] * (8 - PER_WORKSPACE), statuses
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.headers["retry-after"] == "2"
    assert refused.json()["error"]["code"] == "too_many_fetches"


def test_a_failed_fetch_counts_against_the_rate_limit(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seed = seed_store(data / "splitedge.sqlite3")
    plans = tmp_path / "plans.json"
    plans.write_text(json.dumps({"enterprise": {"requests_per_minute": 1000}}))
    closed = f"http://127.0.0.1:{free_port()}/"
    with running_server(data, args=["--allow-private-targets", "--limits", str(plans)]) as server:
        assert generate(server, seed, closed).status_code == 422
    store = Store(data / "splitedge.sqlite3")
    try:
        (requests,) = store.conn.execute(
            "SELECT requests FROM rate_windows WHERE key_id = ?", (seed.other_key.record.id,)
        ).fetchone()
    finally:
        store.close()
    assert requests == 1 + FAILED_CALL_REQUESTS
