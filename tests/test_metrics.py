"""/metrics: prometheus_client across Granian workers (a real two-worker server), and the
worker's own figures in-process (one process, no multiprocess directory)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.metrics import WorkerMetrics, route_group
from tests.support import running_server, seed_store, web_events


def _scrape(metrics: WorkerMetrics) -> str:
    sent: list[dict[str, Any]] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/metrics"}
    asyncio.run(metrics(scope, receive, send))
    assert sent[0]["status"] == 200
    return bytes(sent[1]["body"]).decode()


def _value(text: str, sample: str) -> float:
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[1])
    return 0.0


def test_route_groups_are_few() -> None:
    assert route_group("/s/pk_abc.js") == "snippet"
    assert route_group("/v1/assign") == "assign"
    assert route_group("/v1/collect") == "collect"
    assert route_group("/v1/events") == "events"
    assert route_group("/v1/experiments/e1/results") == "api"
    assert route_group("/mcp") == "mcp"
    assert route_group("/reports/e1") == "reports"
    assert route_group("/metrics") == "other" and route_group("/docs") == "other"


def test_a_worker_shows_its_counters_latencies_and_the_snapshot_age(tmp_path: Path) -> None:
    (tmp_path / "flusher.status.json").write_text(
        '{"clickhouse": "ok", "rows_flushed": 7, "rows_duplicate": 2, "pending_bytes": 12, '
        '"pid": 1}'
    )
    metrics = WorkerMetrics(tmp_path, lambda: time.time() - 30)
    metrics.counters.receive("browser", 3)
    metrics.counters.accept("browser", 2)
    metrics.counters.reject("unknown_variant")
    metrics.latency.observe("collect", 0.003)
    metrics.latency.observe("collect", 20.0)
    text = _scrape(metrics)
    assert "# TYPE splitedge_events_received_total counter" in text
    assert _value(text, 'splitedge_events_received_total{source="browser"}') == 3
    assert _value(text, 'splitedge_events_accepted_total{source="browser"}') == 2
    assert _value(text, 'splitedge_events_rejected_total{reason="unknown_variant"}') == 1
    bucket = 'splitedge_request_duration_seconds_bucket{le="%s",route="collect"}'
    assert _value(text, bucket % "0.0025") == 0 and _value(text, bucket % "0.005") == 1
    assert _value(text, bucket % "10.0") == 1 and _value(text, bucket % "+Inf") == 2
    assert _value(text, 'splitedge_request_duration_seconds_count{route="collect"}') == 2
    assert _value(text, "splitedge_events_flushed_total") == 7
    assert _value(text, "splitedge_events_duplicate_total") == 2
    assert _value(text, "splitedge_spool_bytes") == 12
    assert "splitedge_clickhouse_up 1" in text
    assert 30 <= _value(text, "splitedge_config_snapshot_age_seconds") < 40
    # Published counts are not published again.
    metrics.counters.receive("browser", 1)
    again = _scrape(metrics)
    assert _value(again, 'splitedge_events_received_total{source="browser"}') == 4
    assert _value(again, 'splitedge_request_duration_seconds_count{route="collect"}') == 2


def test_no_config_and_no_flusher_yet_leave_their_families_out(tmp_path: Path) -> None:
    text = _scrape(WorkerMetrics(tmp_path, lambda: None))
    assert "splitedge_config_snapshot_age_seconds" not in text
    assert "splitedge_clickhouse_up" not in text


@pytest.mark.server
def test_every_worker_is_counted_whichever_answers(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seed = seed_store(data / "splitedge.sqlite3")
    with running_server(data, workers=2) as server:
        plan = [(30, 3), (30, 6)]
        events = web_events(seed.experiment_id, seed.variant_ids, seed.goal_id, plan, "m")
        requests = 0
        with httpx.Client(base_url=server.base_url) as client:
            for i in range(0, len(events), 5):
                answer = client.post(
                    "/v1/collect",
                    json={"public_key": seed.site.public_key, "events": events[i : i + 5]},
                )
                assert answer.status_code == 200, answer.text
                requests += 1
            for _ in range(10):
                assert client.get(f"/s/{seed.site.public_key}.js").status_code == 200
        count = 'splitedge_request_duration_seconds_count{route="collect"}'
        deadline = time.monotonic() + 10
        while True:  # each worker publishes within a second
            text = httpx.get(server.base_url + "/metrics").text
            if _value(text, count) >= requests or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert _value(text, count) == requests
        assert _value(text, 'splitedge_request_duration_seconds_count{route="snippet"}') >= 10
        assert _value(text, 'splitedge_events_received_total{source="browser"}') == len(events)
        assert 0 <= _value(text, "splitedge_config_snapshot_age_seconds") < 600
        files = sorted(p.name for p in (data / "run" / "prometheus").glob("*.db"))
        assert files and all(name.startswith(("counter_", "histogram_")) for name in files)
