"""Late browser events (issue 23), through a real server: a visitor who loaded the page
while an experiment ran and converts a moment after its completion is taken by
``/v1/collect`` as ``/v1/events`` takes a late task event, by the same rule
(`ExperimentConfig.takes_events`, ``SPLITEDGE_LATE_EVENT_GRACE``): for a completed,
deployed or archived experiment of that site, for the grace period after its end. The
event is stored, the results of the run are unchanged, and the snippet of an ended
experiment still counts nothing (no goals)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest

from tests.support import (
    Seed,
    Server,
    api_call,
    exposures,
    goals,
    running_server,
    seed_store,
    wait_flushed,
    wait_served,
)

pytestmark = pytest.mark.server

GRACE = 8.0
BOLD = {"name": "Bold", "changes": [{"selector": "h1", "action": "set_content", "payload": "B"}]}


class Env(msgspec.Struct):
    server: Server
    seed: Seed


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data = tmp_path_factory.mktemp("collect-late") / "data"
    seed = seed_store(data / "splitedge.sqlite3")
    with running_server(data, env={"SPLITEDGE_LATE_EVENT_GRACE": str(GRACE)}) as server:
        yield Env(server, seed)


def call(env: Env, method: str, path: str, body: Any = None) -> httpx.Response:
    return api_call(env.server, env.seed.key.key, method, path, body)


class Launched(msgspec.Struct):
    id: str
    variants: list[str]
    goal: str


def launched(env: Env, name: str, site_id: str | None = None) -> Launched:
    body = {
        "site_id": site_id or env.seed.site.id,
        "name": name,
        "variants": [BOLD],
        "goals": [{"name": "Buy", "type": "custom"}],
        "auto_launch": True,
    }
    created = call(env, "POST", "/v1/experiments", body)
    assert created.status_code == 201, created.text
    experiment = created.json()["data"]["experiment"]
    assert experiment["status"] == "running"
    # /v1/collect reads the worker's config, which follows a launch within a second.
    if site_id is None:
        wait_served(env.server, env.seed.site.public_key, experiment["id"])
    return Launched(
        experiment["id"], [v["id"] for v in experiment["variants"]], experiment["goals"][0]["id"]
    )


def act(env: Env, experiment_id: str, action: str) -> None:
    answer = call(env, "PATCH", f"/v1/experiments/{experiment_id}", {"action": action})
    assert answer.status_code == 200, answer.text


def beacon(env: Env, events: list[dict[str, Any]], public_key: str | None = None) -> httpx.Response:
    """Events as the snippet sends them (sendBeacon: text/plain)."""
    body = msgspec.json.encode({"public_key": public_key or env.seed.site.public_key,
                                "events": events})  # fmt: skip
    return httpx.post(
        f"{env.server.base_url}/v1/collect",
        content=body,
        headers={"content-type": "text/plain;charset=UTF-8"},
        timeout=10,
    )


def accepted(answer: httpx.Response) -> int:
    assert answer.status_code == 200, answer.text
    return int(answer.json()["data"]["accepted"])


def results(env: Env, experiment_id: str) -> dict[str, Any]:
    answer = call(env, "GET", f"/v1/experiments/{experiment_id}/results")
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


def snippet(env: Env) -> str:
    return httpx.get(f"{env.server.base_url}/s/{env.seed.site.public_key}.js", timeout=5).text


def test_a_conversion_just_after_the_end_is_taken_and_counts_in_no_result(env: Env) -> None:
    run = launched(env, "late conversion")
    visitors = [f"visitor-{i}" for i in range(20)]
    sent = (
        exposures(run.id, run.variants[0], visitors[:10])
        + exposures(run.id, run.variants[1], visitors[10:])
        + goals(run.id, run.goal, visitors[:2] + visitors[10:15])
    )
    assert accepted(beacon(env, sent)) == len(sent)
    flushed = len(sent)
    wait_flushed(env.server, flushed)
    act(env, run.id, "complete")
    ended = results(env, run.id)["variants"]
    # Pages loaded before the completion convert now: taken, as /v1/events takes them.
    late = goals(run.id, run.goal, visitors[2:10] + visitors[15:])
    assert accepted(beacon(env, late)) == len(late)
    wait_flushed(env.server, flushed + len(late))  # stored
    assert results(env, run.id)["variants"] == ended
    # The ended experiment's snippet config still counts nothing.
    assert run.id not in snippet(env)


def test_late_events_are_taken_for_the_grace_period_of_this_sites_ended_experiments(
    env: Env,
) -> None:
    completed = launched(env, "completed")
    deployed = launched(env, "deployed and archived")
    paused = launched(env, "paused")
    site = call(env, "POST", "/v1/sites", {"url": "https://second.example"})
    assert site.status_code == 201, site.text
    theirs = launched(env, "another site's", site_id=site.json()["data"]["id"])
    act(env, completed.id, "complete")
    promoted = call(env, "POST", f"/v1/experiments/{deployed.id}/deploy", {"variant": "Bold"})
    assert promoted.status_code == 200, promoted.text
    act(env, deployed.id, "archive")
    act(env, paused.id, "pause")
    act(env, theirs.id, "complete")
    ended_at = time.monotonic()
    # The deployed winner is served to every visitor, with no goals: nothing counts.
    assert deployed.id in snippet(env)
    for run in (completed, deployed):
        answer = beacon(env, goals(run.id, run.goal, ["late-visitor"]))
        assert accepted(answer) == 1
    # Not a goal of the experiment, not a paused one (it has not ended), not another
    # site's (wrong public key): dropped, as before.
    for event, reason in [
        (goals(completed.id, theirs.goal, ["v"]), "unknown_goal"),
        (goals(paused.id, paused.goal, ["v"]), "unknown_experiment"),
        (goals(theirs.id, theirs.goal, ["v"]), "unknown_experiment"),
    ]:
        answer = beacon(env, event)
        assert answer.status_code == 400, answer.text
        assert reason in answer.json()["error"]["message"]
    time.sleep(max(0.0, ended_at + GRACE + 1 - time.monotonic()))
    for run in (completed, deployed):
        answer = beacon(env, goals(run.id, run.goal, ["too-late"]))
        assert answer.status_code == 400, answer.text
        assert "unknown_experiment: 1" in answer.json()["error"]["message"]
