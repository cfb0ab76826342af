"""Late task events (issue 22, item 2), through a real server and its embedded ClickHouse:
/v1/events takes the events of sessions that were running when their experiment ended,
for the grace period after its end (`Settings.late_event_grace`); they are stored, and
the ended experiment's results and verdict stay those of its run."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest

from edge.ingest.schema import MAX_EVENTS_PER_BATCH
from tests.support import Seed, Server, api_call, running_server, seed_store, wait_flushed

pytestmark = pytest.mark.server

GRACE = 8.0


class Env(msgspec.Struct):
    server: Server
    seed: Seed


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data = tmp_path_factory.mktemp("late") / "data"
    seed = seed_store(data / "splitedge.sqlite3")
    with running_server(data, env={"SPLITEDGE_LATE_EVENT_GRACE": str(GRACE)}) as server:
        yield Env(server, seed)


def call(env: Env, method: str, path: str, body: Any = None) -> httpx.Response:
    return api_call(env.server, env.seed.key.key, method, path, body)


def launched(env: Env, name: str) -> tuple[str, list[str]]:
    """An agent experiment launched on create: its id and its variant ids, control first."""
    body = {
        "name": name,
        "variants": [{"name": "control", "soul_md": "A"}, {"name": "concise", "soul_md": "B"}],
        "auto_launch": True,
    }
    created = call(env, "POST", "/v1/experiments", body)
    assert created.status_code == 201, created.text
    experiment = created.json()["data"]["experiment"]
    return experiment["id"], [v["id"] for v in experiment["variants"]]


def act(env: Env, experiment_id: str, action: str) -> None:
    answer = call(env, "PATCH", f"/v1/experiments/{experiment_id}", {"action": action})
    assert answer.status_code == 200, answer.text


def tasks(
    experiment_id: str, variant_id: str, prefix: str, successes: int, failures: int
) -> list[dict[str, Any]]:
    outcomes = ["success"] * successes + ["failure"] * failures
    return [
        {
            "agentId": "bot",
            "task": "reply",
            "outcome": outcome,
            "cost": 0.01,
            "session_id": f"{prefix}-{i}",
            "experiment_id": experiment_id,
            "variant_id": variant_id,
        }
        for i, outcome in enumerate(outcomes)
    ]


def send(env: Env, events: list[dict[str, Any]]) -> httpx.Response:
    """POST the events in batches of `MAX_EVENTS_PER_BATCH`; the last answer, or the first
    that is not a 201."""
    for start in range(0, len(events), MAX_EVENTS_PER_BATCH):
        answer = call(env, "POST", "/v1/events", events[start : start + MAX_EVENTS_PER_BATCH])
        if answer.status_code != 201:
            break
    return answer


def results(env: Env, experiment_id: str) -> dict[str, Any]:
    """The results, but for their report link (signed afresh, with its own expiry)."""
    answer = call(env, "GET", f"/v1/experiments/{experiment_id}/results")
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    del data["report_url"]
    return data


def test_late_events_are_stored_and_leave_the_results_of_the_run_unchanged(env: Env) -> None:
    experiment_id, (control, concise) = launched(env, "late")
    run = tasks(experiment_id, control, "c", 300, 300) + tasks(
        experiment_id, concise, "v", 480, 120
    )
    answer = send(env, run)
    assert answer.status_code == 201, answer.text
    wait_flushed(env.server, len(run))
    act(env, experiment_id, "complete")
    ended = results(env, experiment_id)
    assert ended["status"] == "significant" and ended["winner"] == "concise"
    assert {v["units"] for v in ended["variants"].values()} == {600}
    # Sessions that were still running report after the end: enough to reverse the
    # verdict if they counted.
    late = tasks(experiment_id, control, "lc", 900, 0) + tasks(experiment_id, concise, "lv", 0, 900)
    answer = send(env, late)
    assert answer.status_code == 201, answer.text
    wait_flushed(env.server, len(run) + len(late))  # stored: in ClickHouse
    assert results(env, experiment_id) == ended


def test_late_events_are_taken_for_the_grace_period_after_the_end(env: Env) -> None:
    ended_id, (control, _) = launched(env, "ended")
    archived_id, (_, winner) = launched(env, "deployed and archived")
    paused_id, (paused_control, _) = launched(env, "paused")
    act(env, ended_id, "complete")
    deployed = call(env, "POST", f"/v1/experiments/{archived_id}/deploy", {"variant": "concise"})
    assert deployed.status_code == 200, deployed.text
    act(env, archived_id, "archive")
    act(env, paused_id, "pause")
    ended_at = time.monotonic()
    for experiment_id, variant_id in [(ended_id, control), (archived_id, winner)]:
        answer = send(env, tasks(experiment_id, variant_id, "late", 1, 1))
        assert answer.status_code == 201, answer.text
    # A paused experiment has not ended: it takes no events until it resumes.
    assert send(env, tasks(paused_id, paused_control, "p", 1, 0)).status_code == 404
    time.sleep(max(0.0, ended_at + GRACE + 1 - time.monotonic()))
    for experiment_id, variant_id in [(ended_id, control), (archived_id, winner)]:
        answer = send(env, tasks(experiment_id, variant_id, "too-late", 1, 0))
        assert answer.status_code == 404, answer.text
        assert "no running experiment" in answer.json()["error"]["message"]
