"""Edge nodes (``splitedge edge``, edge.node) against a control plane, all real Granian
processes on loopback: the snapshot endpoint's auth, ETag and long poll; a launch on the
control plane reaching both nodes within a second; events a node accepts reaching the
control plane's ClickHouse through the relay; and, with the control plane SIGKILLed,
both nodes serving on, a cold-started node serving from its disk snapshot, and a node with
no snapshot at all listening unready (503, saying why) until the control plane is back."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from tests.support import (
    Seed,
    Server,
    api_call,
    collect,
    running_server,
    seed_store,
    wait_flushed,
    wait_ready,
)

pytestmark = pytest.mark.server

VARIANTS = [{"name": "Bold", "changes": [{"selector": "h1", "action": "set_content",
                                           "payload": "Bold"}]}]  # fmt: skip


class Fleet(msgspec.Struct):
    control: Server
    nodes: list[Server]
    seed: Seed
    token: str
    root: Path


def edge_tokens(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", "edge-tokens", *args, "--data-dir", str(data)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def node_args(control: Server) -> list[str]:
    return ["--control-url", control.base_url]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    data = root / "control"
    seed = seed_store(data / "splitedge.sqlite3")
    made = edge_tokens(data, "create", "--name", "nodes")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    env = {"SPLITEDGE_EDGE_TOKEN": token}
    with ExitStack() as stack:
        control = stack.enter_context(running_server(data))
        nodes = [
            stack.enter_context(
                running_server(
                    root / f"node{n}", command="edge", args=node_args(control), env=env
                )  # fmt: skip
            )
            for n in range(2)
        ]
        yield Fleet(control, nodes, seed, token, root)


def snapshot(fleet: Fleet, token: str | None, **headers: str) -> httpx.Response:
    auth = {} if token is None else {"authorization": f"Bearer {token}"}
    return httpx.get(f"{fleet.control.base_url}/v1/edge/snapshot", headers={**auth, **headers},
                     timeout=90)  # fmt: skip


def call(fleet: Fleet, method: str, path: str, body: Any = None) -> httpx.Response:
    return api_call(fleet.control, fleet.seed.key.key, method, path, body)


def snippet_of(server: Server, fleet: Fleet) -> str:
    answer = httpx.get(f"{server.base_url}/s/{fleet.seed.site.public_key}.js", timeout=5)
    assert answer.status_code == 200, answer.text
    return answer.text


def draft(fleet: Fleet, name: str) -> str:
    body = {"site_id": fleet.seed.site.id, "name": name, "variants": VARIANTS,
            "goals": [{"name": "Buy", "type": "click", "selector": ".buy"}]}  # fmt: skip
    created = call(fleet, "POST", "/v1/experiments", body)
    assert created.status_code == 201, created.text
    experiment_id: str = created.json()["data"]["experiment"]["id"]
    return experiment_id


def test_the_snapshot_needs_an_edge_token(fleet: Fleet) -> None:
    missing = snapshot(fleet, None)
    assert missing.status_code == 401 and "edge-tokens create" in missing.text
    assert snapshot(fleet, "et_" + "x" * 43).status_code == 401
    api_key = snapshot(fleet, fleet.seed.key.key)
    assert api_key.status_code == 403 and "not an edge token" in api_key.text
    served = snapshot(fleet, fleet.token)
    assert served.status_code == 200 and served.headers["content-type"] == "application/json"
    body = served.json()
    assert served.headers["etag"] == f'"{body["version"]}"'
    assert fleet.seed.site.public_key in {site["public_key"] for site in body["sites"]}


def test_if_none_match_and_the_long_poll(fleet: Fleet) -> None:
    etag = snapshot(fleet, fleet.token).headers["etag"]
    same = snapshot(fleet, fleet.token, **{"if-none-match": etag})
    assert same.status_code == 304 and same.content == b"" and same.headers["etag"] == etag
    auth = {"authorization": f"Bearer {fleet.token}"}
    for bad in ("abc", "61", "-1"):
        url = f"{fleet.control.base_url}/v1/edge/snapshot?wait={bad}"
        refused = httpx.get(url, headers=auth, timeout=10)
        assert refused.status_code == 400 and "wait" in refused.text, refused.text
    started = time.monotonic()
    held = httpx.get(f"{fleet.control.base_url}/v1/edge/snapshot?wait=1",
                     headers={"authorization": f"Bearer {fleet.token}", "if-none-match": etag},
                     timeout=10)  # fmt: skip
    assert held.status_code == 304 and time.monotonic() - started >= 0.95
    # A change answers a held request at once.
    answers: list[tuple[float, httpx.Response]] = []

    def poll() -> None:
        answer = httpx.get(f"{fleet.control.base_url}/v1/edge/snapshot?wait=30",
                           headers={"authorization": f"Bearer {fleet.token}",
                                    "if-none-match": etag}, timeout=60)  # fmt: skip
        answers.append((time.monotonic(), answer))

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.5)
    changed_at = time.monotonic()
    draft(fleet, "long poll")
    thread.join(40)
    [(answered_at, answer)] = answers
    assert answer.status_code == 200 and answer.headers["etag"] != etag
    assert answered_at - changed_at < 1.0


def test_a_revoked_token_is_refused(fleet: Fleet) -> None:
    data = fleet.root / "control"
    made = edge_tokens(data, "create", "--name", "retired")
    token = made.stdout.strip()
    assert snapshot(fleet, token).status_code == 200
    listed = edge_tokens(data, "list")
    assert "retired" in listed.stdout and token not in listed.stdout
    assert edge_tokens(data, "revoke", token[:11]).returncode == 0
    refused = snapshot(fleet, token)
    assert refused.status_code == 401 and "revoked" in refused.text
    assert snapshot(fleet, fleet.token).status_code == 200
    assert edge_tokens(data, "revoke", "et_nothing").returncode == 1


def test_a_launch_reaches_both_nodes_within_a_second(fleet: Fleet) -> None:
    experiment_id = draft(fleet, "fleet launch")
    assert all(experiment_id not in snippet_of(node, fleet) for node in fleet.nodes)
    launched_at = time.monotonic()
    launch = call(fleet, "PATCH", f"/v1/experiments/{experiment_id}", {"action": "launch"})
    assert launch.status_code == 200, launch.text
    reached: dict[int, float] = {}
    while len(reached) < 2 and time.monotonic() - launched_at < 10:
        for n, node in enumerate(fleet.nodes):
            if n not in reached and experiment_id in snippet_of(node, fleet):
                reached[n] = time.monotonic() - launched_at
        time.sleep(0.02)
    print(f"\nlaunch reached the nodes in {', '.join(f'{s:.3f} s' for s in reached.values())}")
    assert len(reached) == 2 and max(reached.values()) < 1.0, reached
    for node in fleet.nodes:
        ready = httpx.get(node.base_url + "/readyz", timeout=5).json()
        assert ready["snapshot"]["source"] == "control" and ready["snapshot"]["error"] == ""
        assert ready["snapshot"]["version"] == ready["config_version"]


def test_events_accepted_by_a_node_reach_the_control_planes_clickhouse(fleet: Fleet) -> None:
    experiment_id = draft(fleet, "relayed")
    call(fleet, "PATCH", f"/v1/experiments/{experiment_id}", {"action": "launch"})
    record = call(fleet, "GET", f"/v1/experiments/{experiment_id}").json()["data"]["experiment"]
    variant = record["variants"][1]["id"]
    deadline = time.monotonic() + 5
    while experiment_id not in snippet_of(fleet.nodes[1], fleet):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    events = [{"event_id": f"relay-{n}", "type": "exposure", "visitor_id": f"v{n}",
               "ts": int(time.time() * 1000), "experiment_id": experiment_id,
               "variant_id": variant} for n in range(300)]  # fmt: skip
    assert collect(fleet.nodes[1], fleet.seed.site.public_key, events) == 300
    wait_flushed(fleet.control, 300)
    results = call(fleet, "GET", f"/v1/experiments/{experiment_id}/results").json()["data"]
    assert results["variants"][record["variants"][1]["name"]]["units"] == 300


def test_nodes_serve_through_a_control_plane_outage_and_cold_start_from_disk(
    fleet: Fleet,
) -> None:
    before = snippet_of(fleet.nodes[0], fleet)
    version = httpx.get(fleet.nodes[0].base_url + "/readyz", timeout=5).json()["config_version"]
    fleet.control.kill()
    time.sleep(1.0)
    for node in fleet.nodes:
        assert snippet_of(node, fleet) == before
        assigned = httpx.post(node.base_url + "/v1/assign",
                              json={"site_id": fleet.seed.site.id, "unit_id": "u1"},
                              headers={"authorization": f"Bearer {fleet.seed.key.key}"},
                              timeout=5)  # fmt: skip
        assert assigned.status_code == 200, assigned.text
        stamp = int(time.time() * 1000)
        pageview = [{"event_id": f"outage-{node.base_url}", "type": "pageview",
                     "visitor_id": "v", "ts": stamp, "pathname": "/"}]  # fmt: skip
        assert collect(node, fleet.seed.site.public_key, pageview) == 1  # spooled meanwhile
    deadline = time.monotonic() + 30
    while True:  # the puller notices the outage at its next request
        ready = httpx.get(fleet.nodes[0].base_url + "/readyz", timeout=5).json()
        if ready["snapshot"]["error"]:
            break
        assert time.monotonic() < deadline, ready
        time.sleep(0.2)
    assert ready["status"] == "ready" and ready["snapshot"]["version"] == version
    # A node started now, on node 0's disk, serves its snapshot.
    fleet.nodes[0].stop()
    env = {"SPLITEDGE_EDGE_TOKEN": fleet.token}
    with running_server(fleet.root / "node0", command="edge", args=node_args(fleet.control),
                        env=env) as cold:  # fmt: skip
        assert snippet_of(cold, fleet) == before
        ready = httpx.get(cold.base_url + "/readyz", timeout=5).json()
        assert ready["snapshot"]["source"] == "disk" and ready["config_version"] == version
        assert "unreachable" in ready["snapshot"]["error"]
    # With neither the control plane nor a snapshot on disk, a node listens but is not
    # ready, and says why, until the control plane is back.
    with running_server(fleet.root / "node2", command="edge", args=node_args(fleet.control),
                        env=env, until_ready=False) as empty:  # fmt: skip
        answer = first_answer(empty)
        assert answer.status_code == 503, answer.text
        body = answer.json()
        assert body["status"] == "loading" and body["snapshot"]["version"] is None
        assert "no config snapshot yet" in body["reason"] and "unreachable" in body["reason"]
        snippet = httpx.get(f"{empty.base_url}/s/{fleet.seed.site.public_key}.js", timeout=5)
        assert snippet.status_code == 503
        port = int(fleet.control.base_url.rsplit(":", 1)[1])
        with running_server(fleet.root / "control", port=port):
            wait_ready(empty)
            assert snippet_of(empty, fleet) == before
            ready = httpx.get(empty.base_url + "/readyz", timeout=5).json()
            assert ready["snapshot"]["source"] == "control" and "reason" not in ready
            deadline = time.monotonic() + 10
            while httpx.get(fleet.nodes[1].base_url + "/readyz", timeout=5).json()["snapshot"][
                "error"
            ]:  # the node that served through the outage reconnects
                assert time.monotonic() < deadline
                time.sleep(0.2)


def first_answer(server: Server, timeout: float = 30) -> httpx.Response:
    """/readyz's first answer, once ``server`` listens."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(server.base_url + "/readyz", timeout=5)
        except httpx.TransportError:
            assert time.monotonic() < deadline and server.proc.poll() is None, server.output()
            time.sleep(0.1)
