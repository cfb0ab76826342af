"""Filling in a draft (issue 23: a blank draft is "to fill in" later), through a real
server: ``PATCH /v1/experiments/{id}`` with create's content fields, checked by create's
own checks. A blank draft given a variant and goals launches, and the snippet and
``/v1/assign`` serve the variant it was given; a launched experiment's variants and goals
are a 409; a malformed field is a 400 naming it; another workspace's draft is a 404."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest

from tests.support import Seed, Server, api_call, running_server, seed_store

pytestmark = pytest.mark.server

BOLD = {
    "name": "Bold",
    "changes": [{"selector": "h1", "action": "set_content", "payload": "Go Pro today"}],
}
BUY = {"name": "Buy", "type": "click", "selector": ".buy"}


class Env(msgspec.Struct):
    server: Server
    seed: Seed


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data = tmp_path_factory.mktemp("draft-fill-in") / "data"
    seed = seed_store(data / "splitedge.sqlite3")
    with running_server(data) as server:
        yield Env(server, seed)


def call(
    env: Env, method: str, path: str, body: Any = None, key: str | None = None
) -> httpx.Response:
    return api_call(env.server, key or env.seed.key.key, method, path, body)


def error_of(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    return str(error["message"])


def blank(env: Env, name: str = "Blank", key: str | None = None, site_id: str | None = None) -> str:
    body = {"site_id": site_id or env.seed.site.id, "name": name}
    created = call(env, "POST", "/v1/experiments", body, key)
    assert created.status_code == 201, created.text
    experiment = created.json()["data"]["experiment"]
    assert experiment["status"] == "draft" and len(experiment["variants"]) == 1
    return str(experiment["id"])


def patch(env: Env, experiment_id: str, body: dict[str, Any]) -> httpx.Response:
    return call(env, "PATCH", f"/v1/experiments/{experiment_id}", body)


def test_a_blank_draft_filled_in_launches_and_is_served(env: Env) -> None:
    experiment_id = blank(env)
    filled = patch(
        env,
        experiment_id,
        {"variants": [BOLD], "goals": [BUY], "hypothesis": "Bolder sells", "traffic_split": 30},
    )
    assert filled.status_code == 200, filled.text
    data = filled.json()["data"]
    assert set(data) == {"experiment", "preview_urls", "activation_hint"}
    experiment = data["experiment"]
    assert experiment["status"] == "draft" and experiment["hypothesis"] == "Bolder sells"
    assert [v["name"] for v in experiment["variants"]] == ["Control (A)", "Bold"]
    assert [v["weight_bps"] for v in experiment["variants"]] == [7000, 3000]
    assert experiment["variants"][1]["changes"] == BOLD["changes"]
    assert [g["name"] for g in experiment["goals"]] == ["Buy"]
    bold_id = experiment["variants"][1]["id"]
    assert [p["variant_id"] for p in data["preview_urls"]] == [bold_id]
    assert "Now:" not in data["activation_hint"]  # nothing is missing for a launch
    # The same shape as GET.
    got = call(env, "GET", f"/v1/experiments/{experiment_id}").json()["data"]
    assert got == data

    # Only the goals change: the variants (and their ids, so their preview URLs) stay.
    regoaled = patch(env, experiment_id, {"goals": [BUY, {"name": "Seen", "type": "pageview"}]})
    assert regoaled.status_code == 200, regoaled.text
    again = regoaled.json()["data"]["experiment"]
    assert again["variants"] == experiment["variants"]
    assert [g["name"] for g in again["goals"]] == ["Buy", "Seen"]

    launched = patch(env, experiment_id, {"action": "launch"})
    assert launched.status_code == 200, launched.text
    assert launched.json()["data"] == {"id": experiment_id, "status": "running"}
    snippet = httpx.get(f"{env.server.base_url}/s/{env.seed.site.public_key}.js", timeout=5)
    assert experiment_id in snippet.text and "Go Pro today" in snippet.text
    # A unit in the variant's 30 % gets its changes, one in the control's none.
    served = {}
    for unit in range(40):
        assigned = call(
            env, "POST", "/v1/assign", {"experiment_id": experiment_id, "unit_id": f"u{unit}"}
        )
        assert assigned.status_code == 200, assigned.text
        (assignment,) = assigned.json()["data"]["assignments"]
        served[assignment["variant_id"]] = assignment["payload"]["changes"]
    assert served == {experiment["variants"][0]["id"]: [], bold_id: BOLD["changes"]}


def test_a_launched_experiments_variants_and_goals_are_a_409(env: Env) -> None:
    experiment_id = blank(env, "Launched")
    assert patch(env, experiment_id, {"variants": [BOLD], "goals": [BUY]}).status_code == 200
    assert patch(env, experiment_id, {"action": "launch"}).status_code == 200
    before = call(env, "GET", f"/v1/experiments/{experiment_id}").json()["data"]
    redirect = {"name": "Elsewhere", "redirect_url": "https://example.com/b"}
    message = error_of(
        patch(env, experiment_id, {"variants": [redirect]}), 409, "invalid_transition"
    )
    assert "cannot change the variants" in message and "it is running" in message
    assert "goals" in error_of(patch(env, experiment_id, {"goals": []}), 409, "invalid_transition")
    after = call(env, "GET", f"/v1/experiments/{experiment_id}").json()["data"]
    assert after == before
    # Its traffic split still changes, as before.
    resplit = patch(env, experiment_id, {"traffic_split": 20})
    assert resplit.status_code == 200, resplit.text
    assert resplit.json()["data"]["experiment"]["traffic_split"] == 20


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ({"variants": [{"name": "B", "redirect_url": "ftp://x"}]}, "variants[0].redirect_url"),
        (
            {
                "variants": [
                    {
                        "name": "B",
                        "changes": [{"selector": " ", "action": "set_content", "payload": "x"}],
                    }
                ]
            },  # fmt: skip
            "variants[0].changes[0].selector",
        ),  # fmt: skip
        ({"goals": [{"name": "G", "type": "click"}]}, "goals[0]"),
        ({"goals": [{"name": "G", "type": "hover"}]}, "goals[0].type"),
        ({"target_url": "not a url"}, "target_url"),
        ({"name": " "}, "name is required"),
        ({"traffic_split": 40, "name": "x"}, "traffic_split"),  # a blank draft has no variant
        ({"variants": [BOLD, BOLD]}, "variants has 2 entries"),
        ({"variants": [{"name": "A", "config": {"x": 1}}]}, "config"),
        ({"action": "launch", "name": "x"}, "one change at a time"),
    ],
)
def test_a_malformed_edit_is_a_400_naming_the_field(
    env: Env, body: dict[str, Any], names: str
) -> None:
    experiment_id = blank(env, "Malformed")
    before = call(env, "GET", f"/v1/experiments/{experiment_id}").json()["data"]
    assert names in error_of(patch(env, experiment_id, body), 400, "invalid_request")
    assert call(env, "GET", f"/v1/experiments/{experiment_id}").json()["data"] == before


def test_a_bad_url_pattern_is_a_400(env: Env) -> None:
    experiment_id = blank(env, "Pattern")
    answer = patch(env, experiment_id, {"url_pattern": "/a/***"})
    assert answer.status_code == 400, answer.text


def test_another_workspaces_draft_is_a_404_and_unchanged(env: Env) -> None:
    other = env.seed.other_key.key
    theirs = blank(env, "Theirs", key=other, site_id=env.seed.other_site.id)
    before = call(env, "GET", f"/v1/experiments/{theirs}", key=other).json()["data"]
    answer = patch(env, theirs, {"variants": [BOLD], "goals": [BUY]})
    assert error_of(answer, 404, "not_found")
    assert call(env, "GET", f"/v1/experiments/{theirs}", key=other).json()["data"] == before


def test_an_agent_draft_keeps_its_variants_when_renamed(env: Env) -> None:
    body = {
        "name": "Agent",
        "variants": [{"name": "control", "soul_md": "A"}, {"name": "concise", "soul_md": "B"}],
    }
    created = call(env, "POST", "/v1/experiments", body)
    assert created.status_code == 201, created.text
    experiment = created.json()["data"]["experiment"]
    renamed = patch(env, experiment["id"], {"name": "Agent, renamed"})
    assert renamed.status_code == 200, renamed.text
    after = renamed.json()["data"]["experiment"]
    assert after["name"] == "Agent, renamed" and after["variants"] == experiment["variants"]
