"""Validation that protects the numbers, over a real server: agent task events with a
negative cost or an over-limit metadata are refused, ``ts`` as ISO-8601 and nested
``metadata`` are stored (read back from embedded ClickHouse, the ISO and millisecond forms
of one instant deduplicated as one event), unknown event fields are counted on /metrics
rather than refused, and an unknown ``primary_metric`` is a 400 that lists the allowed
ones."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.ingest.schema import MAX_METADATA_BYTES, MAX_METADATA_DEPTH
from tests.support import (
    Seed,
    Server,
    api_call,
    clickhouse_rows,
    running_server,
    seed_store,
    wait_flushed,
)

pytestmark = pytest.mark.server

Served = tuple[Server, Seed]

# 2026-01-02T03:04:05.678Z
INSTANT_MS = 1_767_323_045_678


def task(**fields: Any) -> dict[str, Any]:
    return {"agentId": "bot", "task": "triage", "outcome": "success", **fields}


def nested(depth: int) -> dict[str, Any]:
    """A metadata object ``depth`` levels deep (the object itself is level 1)."""
    value: Any = 1
    for _ in range(depth - 1):
        value = {"k": value}
    return {"k": value}


@pytest.mark.parametrize(
    ("event", "says"),
    [
        (task(cost=-1), ".cost`"),
        (task(cost=-0.0001), ".cost`"),
        (task(durationMs=-5), ".durationMs`"),
        (task(turns=-1), ".turns`"),
        (task(metadata={"blob": "x" * MAX_METADATA_BYTES}), f"limit of {MAX_METADATA_BYTES}"),
        (task(metadata=nested(MAX_METADATA_DEPTH + 1)), f"deeper than {MAX_METADATA_DEPTH}"),
        (task(ts="1999-12-31T23:59:59Z"), "between 2000-01-01 and 2100-01-01"),
        (task(ts="yesterday"), ".ts`"),
    ],
)
def test_bad_task_event_fields_are_400s_that_say_what_to_fix(
    edge_server: Served, event: dict[str, Any], says: str
) -> None:
    server, seed = edge_server
    for body in (event, [task(), event]):  # alone, and anywhere in a batch
        r = api_call(server, seed.key.key, "POST", "/v1/events", body)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "invalid_request"
        assert says in r.json()["error"]["message"]


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_cost_that_is_no_finite_number_is_a_400(edge_server: Served, text: str) -> None:
    server, seed = edge_server
    body = json.dumps(task()).replace('"agentId"', f'"cost": {text}, "agentId"')
    headers = {"authorization": f"Bearer {seed.key.key}"}
    r = httpx.post(server.base_url + "/v1/events", content=body, headers=headers)
    assert r.status_code == 400, r.text


def test_the_limits_themselves_are_accepted(edge_server: Served) -> None:
    server, seed = edge_server
    padding = MAX_METADATA_BYTES - len(json.dumps({"blob": ""}, separators=(",", ":")))
    events = [
        task(cost=0, durationMs=0, turns=0),
        task(metadata={"blob": "x" * padding}),
        task(metadata=nested(MAX_METADATA_DEPTH)),
    ]
    r = api_call(server, seed.key.key, "POST", "/v1/events", events)
    assert r.status_code == 201, r.text


def unknown_fields_counted(server: Server) -> float:
    prefix = 'splitedge_events_unknown_fields_total{source="agent"}'
    for line in httpx.get(server.base_url + "/metrics").text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[1])
    return 0.0


def test_iso_ts_nested_metadata_and_unknown_fields_reach_clickhouse(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seed = seed_store(data / "splitedge.sqlite3")
    metadata = {"ticket": {"id": "TK-1", "tags": ["refund", "vip"], "scores": [0.5, 1]},
                "model": "gpt-4o", "retry": None}  # fmt: skip
    first = [
        task(event_id="iso-z", ts="2026-01-02T03:04:05.678Z", metadata=metadata,
             sdk_span={"id": "abc"}, sampled=True),  # fields this server does not know
        task(event_id="iso-offset", ts="2026-01-02T04:04:05.678+01:00"),
        task(event_id="iso-naive", ts="2026-01-02T03:04:05.678"),
        task(event_id="millis", ts=INSTANT_MS),
    ]  # fmt: skip
    with running_server(data) as server:
        r = api_call(server, seed.key.key, "POST", "/v1/events", first)
        assert r.status_code == 201, r.text
        assert r.json()["data"]["ids"] == ["iso-z", "iso-offset", "iso-naive", "millis"]
        wait_flushed(server, len(first))
        # The retry of the first event in the other form of its ts, once the first send is
        # in ClickHouse: the id is looked up in the same second, so it is not stored again.
        retry = task(event_id="iso-z", ts=INSTANT_MS, metadata=metadata, another_new_field=1)
        r = api_call(server, seed.key.key, "POST", "/v1/events", retry)
        assert r.status_code == 201, r.text
        deadline = time.monotonic() + 5  # workers publish their counters every second
        while unknown_fields_counted(server) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert unknown_fields_counted(server) == 3
        assert server.stop() == 0
    rows = clickhouse_rows(
        data,
        "SELECT event_id, toUnixTimestamp64Milli(client_ts), metadata FROM splitedge.events "
        "ORDER BY event_id",
    )
    assert [(event_id, ts) for event_id, ts, _ in rows] == [
        ("iso-naive", INSTANT_MS),
        ("iso-offset", INSTANT_MS),
        ("iso-z", INSTANT_MS),
        ("millis", INSTANT_MS),
    ]
    stored = {event_id: text for event_id, _, text in rows}
    assert json.loads(str(stored["iso-z"])) == metadata
    assert stored["millis"] == ""


def test_an_unknown_primary_metric_is_a_400_listing_the_allowed_ones(
    edge_server: Served,
) -> None:
    server, seed = edge_server
    body = {
        "name": "unknown metric",
        "variants": [{"name": "control", "soul_md": "a"}, {"name": "b", "soul_md": "b"}],
        "primary_metric": "foo",
    }
    r = api_call(server, seed.key.key, "POST", "/v1/experiments", body)
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert "primary_metric 'foo'" in message
    for allowed in ("task_completion", "success_rate", "avg_cost", "avg_duration", "avg_turns"):
        assert allowed in message
    body["primary_metric"] = "avg_cost"
    r = api_call(server, seed.key.key, "POST", "/v1/experiments", body)
    assert r.status_code == 201, r.text
    assert r.json()["data"]["experiment"]["primary_metric"] == "avg_cost"


def test_an_unknown_guardrail_metric_is_a_400(edge_server: Served) -> None:
    server, seed = edge_server
    body = {
        "name": "unknown guardrail",
        "variants": [{"name": "control", "soul_md": "a"}, {"name": "b", "soul_md": "b"}],
        "guardrail_metrics": ["cost", "vibes"],
    }
    r = api_call(server, seed.key.key, "POST", "/v1/experiments", body)
    assert r.status_code == 400, r.text
    assert "'vibes'" in r.json()["error"]["message"]


def test_the_control_plane_still_refuses_unknown_fields(edge_server: Served) -> None:
    server, seed = edge_server
    body = {"name": "strict", "variants": [{"name": "a", "soul_md": "a"}], "colour": "red"}
    r = api_call(server, seed.key.key, "POST", "/v1/experiments", body)
    assert r.status_code == 400
    assert "unknown field `colour`" in r.json()["error"]["message"]
