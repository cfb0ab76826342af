"""POST /v1/assign over a real server: answers, auth, and every kind of bad input."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.assign import AssignmentTable
from edge.assign_route import MAX_ASSIGN_BODY
from tests.support import Seed, Server, api_call, running_server, seed_store

Served = tuple[Server, Seed]


def assign(server: Server, body: object, key: str | None = None) -> httpx.Response:
    headers = {} if key is None else {"authorization": f"Bearer {key}"}
    return httpx.post(server.base_url + "/v1/assign", json=body, headers=headers)


def expected_variant(seed: Seed, unit: str) -> int | None:
    return AssignmentTable.build(seed.experiment_id, [5000, 5000]).assign(unit)


def test_single_unit_by_public_key(edge_server: Served) -> None:
    server, seed = edge_server
    r = assign(server, {"public_key": seed.site.public_key, "unit_id": "visitor-7"})
    assert r.status_code == 200
    body = r.json()
    assert body["meta"]["config_version"] >= 1
    assert body["data"]["unit_id"] == "visitor-7"
    (a,) = body["data"]["assignments"]
    assert a["experiment_id"] == seed.experiment_id
    index = expected_variant(seed, "visitor-7")
    assert a["is_control"] is (index == 0)
    assert a["variant_name"] == ("Control", "Bold")[index or 0]
    if index == 1:
        assert a["payload"]["changes"][0]["payload"] == "</script><b>"
    else:
        assert a["payload"] == {"changes": [], "redirect_url": None}


def test_both_arms_are_served_as_the_spec_says(edge_server: Served) -> None:
    server, seed = edge_server
    units = [{"unit_id": f"u{i}"} for i in range(400)]
    r = assign(server, {"public_key": seed.site.public_key, "units": units})
    assert r.status_code == 200
    got = {u["unit_id"]: u["assignments"][0]["is_control"] for u in r.json()["data"]["units"]}
    assert len(got) == 400
    assert got == {f"u{i}": expected_variant(seed, f"u{i}") == 0 for i in range(400)}
    assert 120 < sum(got.values()) < 280


def test_url_limits_the_answer_to_matching_experiments(edge_server: Served) -> None:
    server, seed = edge_server
    key = seed.site.public_key
    on = assign(
        server, {"public_key": key, "unit_id": "v", "url": "https://x.test/pricing/pro?a=1"}
    )
    off = assign(server, {"public_key": key, "unit_id": "v", "url": "/about"})
    assert len(on.json()["data"]["assignments"]) == 1
    assert off.json()["data"]["assignments"] == []


def test_site_id_needs_a_key_of_its_workspace(edge_server: Served) -> None:
    server, seed = edge_server
    body = {"site_id": seed.site.id, "unit_id": "agent-run-1"}
    ok = assign(server, body, seed.key.key)
    assert ok.status_code == 200 and ok.json()["data"]["assignments"]
    missing = assign(server, body)
    assert missing.status_code == 401 and "Bearer" in missing.json()["error"]["message"]
    wrong = assign(server, body, seed.key.key + "x")
    assert wrong.status_code == 401
    foreign = assign(server, body, seed.other_key.key)
    assert foreign.status_code == 404 and foreign.json()["error"]["code"] == "not_found"
    unknown = assign(server, {"site_id": "nope", "unit_id": "x"}, seed.key.key)
    assert unknown.status_code == 404


def test_experiment_id_answers_that_experiment_alone_with_a_key_of_its_workspace(
    edge_server: Served,
) -> None:
    server, seed = edge_server
    body = {"experiment_id": seed.experiment_id, "unit_id": "agent-run-7"}
    ok = assign(server, body, seed.key.key)
    assert ok.status_code == 200, ok.text
    (a,) = ok.json()["data"]["assignments"]
    index = expected_variant(seed, "agent-run-7")
    assert (a["experiment_id"], a["variant_id"]) == (
        seed.experiment_id,
        seed.variant_ids[index or 0],
    )
    assert a["deployed"] is False
    by_site = assign(server, {"site_id": seed.site.id, "unit_id": "agent-run-7"}, seed.key.key)
    assert by_site.json()["data"]["assignments"] == [a]
    units = [{"unit_id": f"u{i}"} for i in range(50)] + [{"unit_id": "v", "url": "/about"}]
    batch = assign(server, {"experiment_id": seed.experiment_id, "units": units}, seed.key.key)
    answers = batch.json()["data"]["units"]
    assert [u["assignments"][0]["variant_id"] for u in answers[:50]] == [
        seed.variant_ids[expected_variant(seed, f"u{i}") or 0] for i in range(50)
    ]
    assert answers[50] == {"unit_id": "v", "assignments": []}  # /about is not /pricing
    assert assign(server, body).status_code == 401
    assert assign(server, body, seed.key.key + "x").status_code == 401
    for key, experiment_id in [
        (seed.other_key.key, seed.experiment_id),
        (seed.key.key, seed.other_experiment_id),
        (seed.key.key, "no-such-experiment"),
    ]:
        foreign = assign(server, {"experiment_id": experiment_id, "unit_id": "x"}, key)
        assert foreign.status_code == 404 and foreign.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"unit_id": "x"}, 400, "exactly one of experiment_id (with an API key), public_key"),
        ({"public_key": "a", "site_id": "b", "unit_id": "x"}, 400, "exactly one"),
        ({"experiment_id": "a", "public_key": "KEY", "unit_id": "x"}, 400, "exactly one"),
        ({"experiment_id": "x" * 129, "unit_id": "x"}, 400, "experiment_id"),
        ({"public_key": "KEY"}, 400, "unit_id is required"),
        ({"public_key": "KEY", "unit_id": ""}, 400, "unit_id"),
        ({"public_key": "KEY", "unit_id": 42}, 400, "got `int` - at `$.unit_id`"),
        ({"public_key": "KEY", "unit_id": "x" * 1025}, 400, "unit_id"),
        ({"public_key": "KEY", "unit_id": "x", "colour": 1}, 400, "colour"),
        ({"public_key": "KEY", "unit_id": "x", "attributes": {"a": [1]}}, 400, "attributes"),
        ({"public_key": "KEY", "unit_id": "x", "units": [{"unit_id": "y"}]}, 400, "not both"),
        ({"public_key": "KEY", "units": []}, 400, "units"),
        ({"public_key": "KEY", "units": [{"unit_id": "y"}] * 1001}, 400, "units"),
        ({"public_key": "nope", "unit_id": "x"}, 404, "public_key"),
        ([1, 2], 400, "Expected `object`"),
        ("x", 400, "Expected `object`"),
    ],
)
def test_bad_bodies_get_4xx_that_say_what_to_fix(
    edge_server: Served, body: object, status: int, says: str
) -> None:
    server, seed = edge_server
    text = json.dumps(body).replace("KEY", seed.site.public_key)
    r = httpx.post(server.base_url + "/v1/assign", content=text)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] and says in error["message"]


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b'{"unit_id": "x",}', b"\xff\xfe"])
def test_malformed_json_is_400(edge_server: Served, raw: bytes) -> None:
    server, _ = edge_server
    r = httpx.post(server.base_url + "/v1/assign", content=raw)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_request"


def test_bodies_over_one_megabyte_are_413(edge_server: Served) -> None:
    server, seed = edge_server
    big = json.dumps({"public_key": seed.site.public_key, "unit_id": "x" * MAX_ASSIGN_BODY})
    r = httpx.post(server.base_url + "/v1/assign", content=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"

    def chunks() -> object:  # no Content-Length: the limit holds while streaming
        for _ in range(MAX_ASSIGN_BODY // 65536 + 2):
            yield b" " * 65536

    r = httpx.post(server.base_url + "/v1/assign", content=chunks())
    assert r.status_code == 413


def test_gzip_bodies_are_not_guessed(edge_server: Served) -> None:
    server, seed = edge_server
    raw = gzip.compress(json.dumps({"public_key": seed.site.public_key, "unit_id": "x"}).encode())
    r = httpx.post(server.base_url + "/v1/assign", content=raw)
    assert r.status_code == 400


def test_wrong_method_is_405(edge_server: Served) -> None:
    server, _ = edge_server
    r = httpx.get(server.base_url + "/v1/assign")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.one_of(
        json_values,
        st.fixed_dictionaries(
            {},
            optional={
                "experiment_id": json_values,
                "public_key": json_values,
                "site_id": json_values,
                "unit_id": json_values,
                "url": json_values,
                "attributes": json_values,
                "units": st.lists(
                    st.fixed_dictionaries(
                        {}, optional={"unit_id": json_values, "url": json_values}
                    ),
                    max_size=3,
                ),
            },
        ),
    )
)
def test_fuzzed_bodies_never_get_a_5xx(edge_server: Served, body: object) -> None:
    server, _ = edge_server
    r = httpx.post(server.base_url + "/v1/assign", json=body)
    assert r.status_code < 500, r.text
    assert r.headers["content-type"] == "application/json"
    if r.status_code >= 400:
        assert set(r.json()["error"]) == {"code", "message"}


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=200))
def test_fuzzed_bytes_never_get_a_5xx(edge_server: Served, raw: bytes) -> None:
    server, _ = edge_server
    r = httpx.post(server.base_url + "/v1/assign", content=raw)
    assert 400 <= r.status_code < 500


def test_invalid_utf8_is_400(edge_server: Served) -> None:
    server, _ = edge_server
    r = httpx.post(server.base_url + "/v1/assign", content=b'{"unit_id": "\xff"}')
    assert r.status_code == 400 and "UTF-8" in r.json()["error"]["message"]


def test_a_public_key_never_reaches_an_agent_experiments_configs(tmp_path: Path) -> None:
    """An agent experiment that names a site is served by id (and by site_id) with the
    workspace's key only: its prompts and configs are the workspace's secrets."""
    data = tmp_path / "data"
    seed = seed_store(data / "splitedge.sqlite3")
    secrets = [{"soul_md": "TOPSECRET-PROMPT-1"}, {"api_key": "TOPSECRET-CONFIG-2"}]
    body = {
        "site_id": seed.site.id,
        "name": "agent on a site",
        "variants": [{"name": f"v{i}", "config": c} for i, c in enumerate(secrets)],
        "goals": [],
        "auto_launch": True,
    }
    with running_server(data) as server:
        created = api_call(server, seed.key.key, "POST", "/v1/experiments", body)
        assert created.status_code == 201, created.text
        agent_id = created.json()["data"]["experiment"]["id"]
        by_id = {"experiment_id": agent_id, "unit_id": "run-1"}
        deadline = time.monotonic() + 5
        while assign(server, by_id, seed.key.key).status_code != 200:
            assert time.monotonic() < deadline, "the agent experiment was never served"
            time.sleep(0.05)
        assert "TOPSECRET" in assign(server, by_id, seed.key.key).text  # its own key: yes
        by_site = assign(server, {"site_id": seed.site.id, "unit_id": "run-1"}, seed.key.key)
        assert agent_id in by_site.text

        key = seed.site.public_key
        units = [{"unit_id": f"u{i}"} for i in range(200)]
        for request in (
            {"public_key": key, "unit_id": "run-1"},
            {"public_key": key, "units": units},
        ):
            answer = assign(server, request)
            assert answer.status_code == 200, answer.text
            assert "TOPSECRET" not in answer.text and agent_id not in answer.text
        assert seed.experiment_id in assign(server, {"public_key": key, "unit_id": "x"}).text
        snippet = httpx.get(f"{server.base_url}/s/{key}.js").text
        assert "TOPSECRET" not in snippet and agent_id not in snippet
        # nor may the public key write the agent experiment's events
        variant_id = created.json()["data"]["experiment"]["variants"][0]["id"]
        event = {"event_id": "e1", "type": "exposure", "visitor_id": "u", "ts": 1_700_000_000_000,
                 "experiment_id": agent_id, "variant_id": variant_id}  # fmt: skip
        collected = httpx.post(
            f"{server.base_url}/v1/collect", json={"public_key": key, "events": [event]}
        )
        assert collected.status_code == 400 and "unknown_experiment" in collected.text
