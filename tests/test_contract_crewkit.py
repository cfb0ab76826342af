"""crewkit's Experiments API, every documented route, against a real server.

Each call is crewkit's doc (``/work/shared/reference/crewkit-experiments-api.txt``)
translated line for line into Python with httpx: the documented method, path and body,
with only the base URL (crewkit's ``https://api.crewkit.io/api/v1`` becomes the server's
root) and the key changed; the org id is the key's workspace id. The answers are read at
the documented places: the metrics' ``control.total_sessions``, ``significance.p_value``
and the rest, at the top level (the doc shows no envelope); the other routes' ``data``
(crewkit's API overview: "a data key"). crewkit's lifecycle holds: deploy archives, and
the deployed config is what ``/v1/assign`` keeps serving. Another workspace's key never
learns whether an org or its experiments exist.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest

from edge.control.store import Store
from tests.support import Seed, Server, running_server, seed_store, wait_flushed


class Env(msgspec.Struct):
    server: Server
    seed: Seed
    # A crewkit-flavoured key (``ck_``) of the seed's workspace: the key crewkit's
    # examples are run with (only the base URL and the key change).
    crewkit_key: str


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data = tmp_path_factory.mktemp("crewkit") / "data"
    seed = seed_store(data / "splitedge.sqlite3")
    store = Store(data / "splitedge.sqlite3")
    try:
        crewkit_key = store.issue_api_key(seed.workspace_id, "crewkit", "crewkit").key
    finally:
        store.close()
    assert crewkit_key.startswith("ck_")
    with running_server(data) as server:
        yield Env(server, seed, crewkit_key)


class Crewkit(msgspec.Struct):
    """What crewkit's examples need: its base URL, an org id and an access token."""

    base: str
    org_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def json_headers(self) -> dict[str, str]:
        return {**self.headers, "Content-Type": "application/json"}


@pytest.fixture
def crewkit(env: Env) -> Crewkit:
    return Crewkit(env.server.base_url, env.seed.workspace_id, env.crewkit_key)


# The doc's create body, verbatim.
CREATE = {
    "name": "Rails expert v2 test",
    "resource_id": "resource_abc123",
    "control_version_hash": "hash_control...",
    "variant_version_hash": "hash_variant...",
    "traffic_split": 50,
}


def create(ck: Crewkit) -> dict[str, Any]:
    # POST /:org_id/experiments
    # Content-Type: application/json
    response = httpx.post(
        f"{ck.base}/{ck.org_id}/experiments", headers=ck.json_headers, json=CREATE
    )
    assert response.status_code == 201, response.text
    experiment: dict[str, Any] = response.json()["data"]
    return experiment


def lifecycle(ck: Crewkit, experiment_id: str, step: str, body: Any = None) -> httpx.Response:
    # POST /:org_id/experiments/:id/<start|stop|deploy|archive>
    return httpx.post(
        f"{ck.base}/{ck.org_id}/experiments/{experiment_id}/{step}",
        headers=ck.json_headers if body is not None else ck.headers,
        json=body,
    )


def assign(env: Env, experiment_id: str, unit_id: str) -> dict[str, Any]:
    """What ``/v1/assign`` gives an agent's session (crewkit documents no assign call),
    once the edge serves the experiment's latest change (within a second)."""
    deadline = time.monotonic() + 5
    while True:
        response = httpx.post(
            env.server.base_url + "/v1/assign",
            headers={"Authorization": f"Bearer {env.seed.key.key}"},
            json={"experiment_id": experiment_id, "unit_id": unit_id},
        )
        if response.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert response.status_code == 200, response.text
    (assignment,) = response.json()["data"]["assignments"]
    return dict(assignment)


def test_create_list_show_update(crewkit: Crewkit) -> None:
    created = create(crewkit)
    assert created["name"] == "Rails expert v2 test" and created["status"] == "draft"
    assert created["resource_id"] == "resource_abc123"
    assert created["control_version_hash"] == "hash_control..."
    assert created["variant_version_hash"] == "hash_variant..."
    assert created["traffic_split"] == 50
    assert [v["name"] for v in created["variants"]] == ["control", "variant"]
    experiment_id = created["id"]

    # GET /:org_id/experiments
    listed = httpx.get(f"{crewkit.base}/{crewkit.org_id}/experiments", headers=crewkit.headers)
    assert listed.status_code == 200, listed.text
    assert experiment_id in [e["id"] for e in listed.json()["data"]]
    meta = listed.json()["meta"]
    assert meta["current_page"] == 1 and meta["total_count"] >= 2 and meta["total_pages"] == 1

    # GET /:org_id/experiments/:id
    shown = httpx.get(
        f"{crewkit.base}/{crewkit.org_id}/experiments/{experiment_id}", headers=crewkit.headers
    )
    assert shown.status_code == 200, shown.text
    assert shown.json()["data"] == created

    # PATCH /:org_id/experiments/:id
    # Content-Type: application/json
    updated = httpx.patch(
        f"{crewkit.base}/{crewkit.org_id}/experiments/{experiment_id}",
        headers=crewkit.json_headers,
        json={"traffic_split": 70},
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["data"]["traffic_split"] == 70
    assert [v["weight_bps"] for v in updated.json()["data"]["variants"]] == [3000, 7000]


def test_list_pages_by_page_and_per_page(crewkit: Crewkit) -> None:
    ids = {create(crewkit)["id"] for _ in range(3)}
    url = f"{crewkit.base}/{crewkit.org_id}/experiments"
    first = httpx.get(url, headers=crewkit.headers, params={"per_page": 2}).json()
    total = first["meta"]["total_count"]
    assert len(first["data"]) == 2 and first["meta"]["total_pages"] == -(-total // 2)
    seen = [e["id"] for e in first["data"]]
    for page in range(2, first["meta"]["total_pages"] + 1):
        answer = httpx.get(url, headers=crewkit.headers, params={"page": page, "per_page": 2})
        assert answer.json()["meta"]["current_page"] == page
        seen += [e["id"] for e in answer.json()["data"]]
    assert len(seen) == len(set(seen)) == total and ids <= set(seen)


def test_start_metrics_stop_deploy(env: Env, crewkit: Crewkit) -> None:
    experiment_id = create(crewkit)["id"]
    started = lifecycle(crewkit, experiment_id, "start")
    assert started.status_code == 200, started.text
    assert started.json()["data"]["status"] == "running"

    # Sessions routed to control and variant, one task each: the variant succeeds more
    # often and costs less.
    sessions: dict[str, list[dict[str, Any]]] = {"control": [], "variant": []}
    events = []
    for i in range(60):
        got = assign(env, experiment_id, f"session-{i}")
        arm = got["variant_name"]
        success = i % 10 < (9 if arm == "variant" else 6)
        task = {
            "agentId": "rails-expert",
            "task": "review",
            "outcome": "success" if success else "failure",
            "cost": 0.02 if arm == "variant" else 0.03,
            "durationMs": 1000,
            "turns": 10 if arm == "variant" else 12,
            "experiment_id": experiment_id,
            "variant_id": got["variant_id"],
            "session_id": f"session-{i}",
        }
        sessions[arm].append(task)
        events.append(task)
    assert sessions["control"] and sessions["variant"]
    sent = httpx.post(
        env.server.base_url + "/v1/events",
        headers={"Authorization": f"Bearer {env.seed.key.key}"},
        json=events,
    )
    assert sent.status_code == 201, sent.text
    wait_flushed(env.server, len(events))

    # GET /:org_id/experiments/:id/metrics
    response = httpx.get(
        f"{crewkit.base}/{crewkit.org_id}/experiments/{experiment_id}/metrics",
        headers=crewkit.headers,
    )
    assert response.status_code == 200, response.text
    metrics = response.json()
    for arm in ("control", "variant"):
        tasks = sessions[arm]
        group = metrics[arm]
        assert group["total_sessions"] == len(tasks)
        successes = sum(t["outcome"] == "success" for t in tasks)
        assert group["success_rate"] == pytest.approx(100 * successes / len(tasks))
        assert group["avg_cost"] == pytest.approx(tasks[0]["cost"])
        assert group["avg_turns"] == pytest.approx(tasks[0]["turns"])
        assert group["p95_cost"] == pytest.approx(tasks[0]["cost"])
    significance = metrics["significance"]
    assert 0 <= significance["p_value"] <= 1
    assert isinstance(significance["significant"], bool)
    assert significance["confidence"] == 0.95

    stopped = lifecycle(crewkit, experiment_id, "stop")
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["data"]["status"] == "completed"

    # POST /:org_id/experiments/:id/deploy
    # Content-Type: application/json
    deployed = lifecycle(crewkit, experiment_id, "deploy", {"variant": "variant"})
    assert deployed.status_code == 200, deployed.text
    data = deployed.json()["data"]
    # "Promotes the winning variant to production. The experiment is archived."
    assert data["status"] == "archived"
    winner = data["variants"][1]
    assert data["winner_variant_id"] == winner["id"] and winner["name"] == "variant"
    assert [v["weight_bps"] for v in data["variants"]] == [0, 10_000]
    shown = httpx.get(
        f"{crewkit.base}/{crewkit.org_id}/experiments/{experiment_id}", headers=crewkit.headers
    )
    assert shown.json()["data"]["status"] == "archived"
    # The frozen metrics of the run stay readable after the archive.
    after = httpx.get(
        f"{crewkit.base}/{crewkit.org_id}/experiments/{experiment_id}/metrics",
        headers=crewkit.headers,
    )
    assert after.status_code == 200, after.text
    assert after.json()["control"]["total_sessions"] == len(sessions["control"])


def test_deploy_from_running_archives_and_refuses_a_second(crewkit: Crewkit) -> None:
    experiment_id = create(crewkit)["id"]
    draft = lifecycle(crewkit, experiment_id, "deploy", {"variant": "variant"})
    assert draft.status_code == 409, draft.text
    assert lifecycle(crewkit, experiment_id, "start").status_code == 200
    deployed = lifecycle(crewkit, experiment_id, "deploy", {"variant": "variant"})
    assert deployed.status_code == 200, deployed.text
    assert deployed.json()["data"]["status"] == "archived"
    assert lifecycle(crewkit, experiment_id, "deploy", {"variant": "control"}).status_code == 409
    unknown = lifecycle(crewkit, create(crewkit)["id"], "deploy", {"variant": "nope"})
    assert unknown.status_code == 400, unknown.text


def test_assign_after_deploy_and_archive_serves_the_deployed_config(
    env: Env, crewkit: Crewkit
) -> None:
    experiment_id = create(crewkit)["id"]
    assert lifecycle(crewkit, experiment_id, "start").status_code == 200
    assert lifecycle(crewkit, experiment_id, "deploy", {"variant": "variant"}).status_code == 200
    time.sleep(1.5)  # the edge follows the store within a second
    for unit in [f"after-deploy-{i}" for i in range(20)]:
        got = assign(env, experiment_id, unit)
        assert got["variant_name"] == "variant" and got["deployed"] is True
        assert got["payload"] == {
            "resource_id": "resource_abc123",
            "version_hash": "hash_variant...",
        }


def test_stop_archive_delete(crewkit: Crewkit) -> None:
    experiment_id = create(crewkit)["id"]
    one = f"{crewkit.base}/{crewkit.org_id}/experiments/{experiment_id}"
    assert lifecycle(crewkit, experiment_id, "start").status_code == 200
    assert lifecycle(crewkit, experiment_id, "stop").json()["data"]["status"] == "completed"
    # POST /:org_id/experiments/:id/archive
    archived = lifecycle(crewkit, experiment_id, "archive")
    assert archived.status_code == 200, archived.text
    assert archived.json()["data"]["status"] == "archived"
    # DELETE /:org_id/experiments/:id
    deleted = httpx.delete(one, headers=crewkit.headers)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["data"] == {"id": experiment_id, "deleted": True}
    assert httpx.get(one, headers=crewkit.headers).status_code == 404


def test_a_running_experiment_is_not_deleted(crewkit: Crewkit) -> None:
    experiment_id = create(crewkit)["id"]
    assert lifecycle(crewkit, experiment_id, "start").status_code == 200
    one = f"{crewkit.base}/{crewkit.org_id}/experiments/{experiment_id}"
    assert httpx.delete(one, headers=crewkit.headers).status_code == 409


def test_another_org_is_404_and_reveals_nothing(env: Env, crewkit: Crewkit) -> None:
    mine = create(crewkit)["id"]
    other_key = {"Authorization": f"Bearer {env.seed.other_key.key}"}
    base, org = crewkit.base, crewkit.org_id
    made_up_org, made_up_id = "00000000-0000-4000-8000-000000000000", "no-such-experiment"
    for path in ("experiments", f"experiments/{mine}", f"experiments/{mine}/metrics"):
        real = httpx.get(f"{base}/{org}/{path}", headers=other_key)
        fake = httpx.get(
            f"{base}/{made_up_org}/{path.replace(mine, made_up_id)}", headers=other_key
        )
        assert real.status_code == fake.status_code == 404, real.text
        assert real.json()["error"]["code"] == fake.json()["error"]["code"] == "not_found"
    for step in ("start", "stop", "archive"):
        assert (
            httpx.post(f"{base}/{org}/experiments/{mine}/{step}", headers=other_key).status_code
            == 404
        )
    assert (
        httpx.post(
            f"{base}/{org}/experiments/{mine}/deploy",
            headers=other_key,
            json={"variant": "variant"},
        ).status_code
        == 404
    )
    assert (
        httpx.patch(
            f"{base}/{org}/experiments/{mine}", headers=other_key, json={"traffic_split": 70}
        ).status_code
        == 404
    )
    assert httpx.delete(f"{base}/{org}/experiments/{mine}", headers=other_key).status_code == 404
    assert (
        httpx.post(f"{base}/{org}/experiments", headers=other_key, json=CREATE).status_code == 404
    )
    # The other workspace's key in its own org: this org's experiment is not there either.
    other_org = f"{base}/{env.seed.other_key.record.workspace_id}/experiments"
    assert httpx.get(f"{other_org}/{mine}", headers=other_key).status_code == 404
    assert mine not in [e["id"] for e in httpx.get(other_org, headers=other_key).json()["data"]]
    # Nothing changed for the owner.
    shown = httpx.get(f"{base}/{org}/experiments/{mine}", headers=crewkit.headers)
    assert shown.json()["data"]["status"] == "draft"
    # And without a key, 401 before anything.
    assert httpx.get(f"{base}/{org}/experiments").status_code == 401
