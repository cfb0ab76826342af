"""POST /v1/collect and POST /v1/events over a real server: answers and bad input."""

from __future__ import annotations

import gzip
import json
import time
import uuid

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.ingest.collect_route import MAX_COLLECT_BODY, MAX_COLLECT_JSON
from tests.support import Seed, Server

Served = tuple[Server, Seed]
T0 = 1_763_900_000_000


def exposure(seed: Seed, **fields: object) -> dict[str, object]:
    event: dict[str, object] = {
        "event_id": uuid.uuid4().hex,
        "type": "exposure",
        "visitor_id": "visitor-1",
        "session_id": "session-1",
        "ts": T0,
        "experiment_id": seed.experiment_id,
        "variant_id": seed.variant_ids[1],
        "pathname": "/pricing",
        "device": "desktop",
    }
    event.update(fields)
    return event


def collect(server: Server, body: object, **kwargs: object) -> httpx.Response:
    return httpx.post(server.base_url + "/v1/collect", json=body, **kwargs)  # type: ignore[arg-type]


def test_a_batch_is_accepted_and_foreign_events_are_counted(edge_server: Served) -> None:
    server, seed = edge_server
    events = [
        exposure(seed),
        exposure(seed, type="goal", goal_id=seed.goal_id, value=19.5),
        exposure(seed, type="pageview", experiment_id="", variant_id=""),
        exposure(seed, experiment_id=seed.other_experiment_id),
        exposure(seed, variant_id="not-a-variant"),
        exposure(seed, type="goal", goal_id="not-a-goal"),
    ]
    r = collect(server, {"public_key": seed.site.public_key, "events": events})
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.json()["data"] == {
        "accepted": 3,
        "rejected": 3,
        "rejected_reasons": {"unknown_experiment": 1, "unknown_variant": 1, "unknown_goal": 1},
    }


def test_a_batch_of_only_foreign_events_is_a_400(edge_server: Served) -> None:
    server, seed = edge_server
    events = [
        exposure(seed, experiment_id=seed.other_experiment_id),
        exposure(seed, variant_id="x"),
    ]
    r = collect(server, {"public_key": seed.site.public_key, "events": events})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "events_rejected"
    assert "unknown_experiment: 1" in error["message"] and "unknown_variant: 1" in error["message"]


def test_preflight(edge_server: Served) -> None:
    server, _ = edge_server
    r = httpx.options(server.base_url + "/v1/collect")
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "*"
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "content-type" in r.headers["access-control-allow-headers"]


def test_beacons_as_text_plain_and_gzip(edge_server: Served) -> None:
    server, seed = edge_server
    text = json.dumps({"public_key": seed.site.public_key, "events": [exposure(seed)]}).encode()
    url = server.base_url + "/v1/collect"
    plain = httpx.post(url, content=text, headers={"content-type": "text/plain;charset=UTF-8"})
    assert plain.json()["data"]["accepted"] == 1
    zipped = httpx.post(url, content=gzip.compress(text), headers={"content-encoding": "gzip"})
    assert zipped.json()["data"]["accepted"] == 1
    sniffed = httpx.post(url, content=gzip.compress(text), headers={"content-type": "text/plain"})
    assert sniffed.json()["data"]["accepted"] == 1


def _bomb() -> bytes:
    return gzip.compress(b'{"public_key": "' + b" " * (MAX_COLLECT_JSON * 4) + b'"}')


@pytest.mark.parametrize(
    ("name", "make", "status", "says"),
    [
        ("malformed", lambda s: b'{"public_key": ', 400, "not valid JSON"),
        ("not an object", lambda s: b"[1, 2]", 400, "Expected `object`"),
        ("wrong type", lambda s: json.dumps({"public_key": s.site.public_key,
                                             "events": [{"event_id": 5}]}).encode(), 400,
         "events[0].event_id"),
        ("empty batch", lambda s: json.dumps({"public_key": s.site.public_key,
                                              "events": []}).encode(), 400, "events"),
        ("bad type", lambda s: json.dumps({"public_key": s.site.public_key, "events": [
            {**exposure(s), "type": "purchase"}]}).encode(), 400, "type"),
        ("ts out of range", lambda s: json.dumps({"public_key": s.site.public_key, "events": [
            {**exposure(s), "ts": 5}]}).encode(), 400, "ts"),
        ("unknown field", lambda s: json.dumps({"public_key": s.site.public_key, "events": [
            {**exposure(s), "colour": "red"}]}).encode(), 400, "colour"),
        ("invalid utf-8", lambda s: b'{"public_key": "\xff\xfe", "events": []}', 400, "UTF-8"),
        ("missing key", lambda s: json.dumps({"events": [exposure(s)]}).encode(), 400,
         "public_key"),
        ("wrong key", lambda s: json.dumps({"public_key": "0" * 32,
                                            "events": [exposure(s)]}).encode(), 404, "public_key"),
        ("corrupt gzip", lambda s: b"\x1f\x8b\x08\x00garbage", 400, "gzip"),
        ("gzip bomb", lambda s: _bomb(), 413, "inflates"),
        ("oversized", lambda s: b" " * (MAX_COLLECT_BODY + 1), 413, "limit"),
    ],
)  # fmt: skip
def test_bad_input_gets_a_clear_4xx(
    edge_server: Served, name: str, make: object, status: int, says: str
) -> None:
    server, seed = edge_server
    body = make(seed)  # type: ignore[operator]
    r = httpx.post(server.base_url + "/v1/collect", content=body)
    assert r.status_code == status, (name, r.text)
    assert r.headers["access-control-allow-origin"] == "*"
    error = r.json()["error"]
    assert says in error["message"], (name, error)


def test_other_content_types_are_refused(edge_server: Served) -> None:
    server, seed = edge_server
    r = httpx.post(
        server.base_url + "/v1/collect",
        content=b"<xml/>",
        headers={"content-type": "application/xml"},
    )
    assert r.status_code == 400 and "text/plain" in r.json()["error"]["message"]


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    events=st.lists(
        st.dictionaries(
            st.sampled_from(["event_id", "type", "visitor_id", "ts", "experiment_id",
                             "variant_id", "goal_id", "value", "pathname", "device", "x"]),
            st.none() | st.booleans() | st.integers() | st.text(max_size=12)
            | st.floats(allow_nan=False, allow_infinity=False),
        ),
        max_size=4,
    )
)  # fmt: skip
def test_fuzzed_batches_never_get_a_5xx(edge_server: Served, events: list[object]) -> None:
    server, seed = edge_server
    r = collect(server, {"public_key": seed.site.public_key, "events": events})
    assert r.status_code in (200, 400), r.text


def task(**fields: object) -> dict[str, object]:
    event: dict[str, object] = {
        "agentId": "support-bot-1",
        "task": "resolve-ticket",
        "outcome": "success",
        "cost": 0.042,
        "durationMs": 3200,
        "metadata": {"ticketId": "TK-1234", "model": "gpt-4o"},
    }
    event.update(fields)
    return event


def events_post(server: Server, body: object, key: str | None) -> httpx.Response:
    headers = {} if key is None else {"authorization": f"Bearer {key}"}
    return httpx.post(server.base_url + "/v1/events", json=body, headers=headers)


def test_task_events_get_201_with_ids(edge_server: Served) -> None:
    server, seed = edge_server
    one = events_post(server, task(), seed.key.key)
    assert one.status_code == 201, one.text
    assert len(one.json()["data"]["id"]) == 32
    batch = [
        task(turns=3, experiment_id=seed.experiment_id, variant_id=seed.variant_ids[0]),
        task(outcome="partial", event_id="client-id-1"),
    ]
    many = events_post(server, batch, seed.key.key)
    assert many.status_code == 201
    ids = many.json()["data"]["ids"]
    assert len(ids) == 2 and ids[1] == "client-id-1"


@pytest.mark.parametrize(
    ("body", "key", "status", "says"),
    [
        (task(), None, 401, "Bearer"),
        (task(), "sk_live_nope", 401, "unknown"),
        (task(outcome="done"), "KEY", 400, "outcome"),
        (task(cost="cheap"), "KEY", 400, "cost"),
        ({"task": "x", "outcome": "success"}, "KEY", 400, "agentId"),
        ([], "KEY", 400, "length"),
        (task(experiment_id="OTHER"), "KEY", 404, "no running experiment"),
        (task(experiment_id="EXP", variant_id="nope"), "KEY", 400, "not a variant"),
        (task(variant_id="v"), "KEY", 400, "experiment_id"),
    ],
)
def test_bad_task_events(
    edge_server: Served, body: object, key: str | None, status: int, says: str
) -> None:
    server, seed = edge_server
    text = (
        json.dumps(body)
        .replace("OTHER", seed.other_experiment_id)
        .replace("EXP", seed.experiment_id)
    )
    real_key = seed.key.key if key == "KEY" else key
    headers = {} if real_key is None else {"authorization": f"Bearer {real_key}"}
    r = httpx.post(server.base_url + "/v1/events", content=text, headers=headers)
    assert r.status_code == status, r.text
    assert says in r.json()["error"]["message"]


def test_metrics_count_what_came_in(edge_server: Served) -> None:
    server, seed = edge_server
    collect(server, {"public_key": seed.site.public_key, "events": [exposure(seed)]})
    collect(
        server, {"public_key": seed.site.public_key, "events": [exposure(seed, variant_id="x")]}
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # workers publish their counters every second
        text = httpx.get(server.base_url + "/metrics").text
        if 'splitedge_events_rejected_total{reason="unknown_variant"}' in text:
            break
        time.sleep(0.2)
    assert "# TYPE splitedge_events_received_total counter" in text
    accepted = [line for line in text.splitlines() if line.startswith(
        'splitedge_events_accepted_total{source="browser"}')]  # fmt: skip
    assert accepted and float(accepted[0].split()[1]) >= 1
    assert 'splitedge_events_rejected_total{reason="unknown_variant"}' in text
    assert "splitedge_clickhouse_up 1" in text
