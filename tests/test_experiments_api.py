"""Contract tests of ``/v1/experiments`` against a real server, with the reference's
example bodies: create (draft, preview URLs, activation hint, ``auto_launch`` and its
``launch`` outcome, the ``idea_id`` path, the ``prompt`` path refused, every validation 400),
list (filters, paging), get, PATCH actions and traffic_split, DELETE, crewkit's
start/stop/archive/deploy, the webhook events each change queues, isolation between
workspaces, and a launch reaching ``GET /s/{public_key}.js`` within a second."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from edge.control.idea_records import NewIdea
from edge.control.ideas import add_idea
from edge.control.previews import PreviewTokens
from edge.control.store import Store
from tests.support import Seed, Server, running_server, seed_store


class Env(msgspec.Struct):
    server: Server
    store_path: Path
    seed: Seed
    key: str
    other_key: str


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data = tmp_path_factory.mktemp("experiments-api") / "data"
    store_path = data / "splitedge.sqlite3"
    seed = seed_store(store_path)
    with running_server(data, args=["--allow-private-targets"]) as server:
        yield Env(server, store_path, seed, seed.key.key, seed.other_key.key)


def token(env: Env, experiment_id: str, variant_id: str) -> str:
    """The preview token this server signs for that variant (`edge.control.previews`)."""
    return PreviewTokens(env.store_path).token(experiment_id, variant_id)


def call(
    env: Env, method: str, path: str, key: str | None = None, body: Any = None
) -> httpx.Response:
    return httpx.request(
        method,
        env.server.base_url + path,
        headers={"authorization": f"Bearer {key or env.key}"},
        json=body,
        timeout=30,
    )


def error_of(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    return str(error["message"])


# The reference's example (abtestbot MCP tools, "chaining from generate_variant").
PREMIUM = {
    "name": "Premium pricing $499",
    "hypothesis": "Raising the price signals quality; lift in ACV exceeds conversion drop.",
    "variants": [
        {
            "name": "Premium Pricing with Pro Stripe Link",
            "changes": [
                {"selector": ".plan--pro .price", "action": "set_content", "payload": "$499"},
                {
                    "selector": ".plan--pro a.cta",
                    "action": "set_attribute",
                    "attribute_name": "href",
                    "payload": "https://buy.stripe.com/pro_abc123",
                },
            ],
        }
    ],
    "goals": [{"name": "Pro checkout click", "type": "click", "selector": ".plan--pro a.cta"}],
}


def create(env: Env, key: str | None = None, **fields: Any) -> dict[str, Any]:
    body = {"site_id": env.seed.site.id, **PREMIUM, **fields}
    response = call(env, "POST", "/v1/experiments", key, body)
    assert response.status_code == 201, response.text
    return dict(response.json()["data"])


def test_create_draft_from_variant_changes(env: Env) -> None:
    response = call(env, "POST", "/v1/experiments", body={"site_id": env.seed.site.id, **PREMIUM})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["meta"] == {"workspace_id": env.seed.workspace_id}
    data = body["data"]
    assert "launch" not in data
    experiment = data["experiment"]
    assert experiment["status"] == "draft"
    assert experiment["name"] == "Premium pricing $499"
    assert experiment["hypothesis"] == PREMIUM["hypothesis"]
    assert experiment["target_url"] == env.seed.site.url
    assert experiment["sites"] == {
        "id": env.seed.site.id,
        "name": env.seed.site.name,
        "url": env.seed.site.url,
    }
    control, variant = experiment["variants"]
    assert control["is_control"] and control["name"] == "Control (A)" and control["changes"] == []
    assert not variant["is_control"]
    assert variant["name"] == "Premium Pricing with Pro Stripe Link"
    assert variant["changes"] == PREMIUM["variants"][0]["changes"]  # type: ignore[index]
    assert (control["weight_bps"], variant["weight_bps"]) == (5000, 5000)
    assert experiment["traffic_split"] == 50
    (goal,) = experiment["goals"]
    assert goal["name"] == "Pro checkout click" and goal["type"] == "click"
    assert data["preview_urls"] == [
        {
            "variant_id": variant["id"],
            "variant_name": variant["name"],
            "url": f"{env.seed.site.url}?sk_preview={token(env, experiment['id'], variant['id'])}",
        }
    ]
    # The reference's REST hint names the tool and the route.
    assert data["activation_hint"] == (
        f"To launch: pass `auto_launch: true` on create, OR call launch_experiment({{ "
        f'experiment_id: "{experiment["id"]}" }}) / PATCH /v1/experiments/{experiment["id"]} '
        '{ "action": "launch" } after reviewing the preview URLs below. Requires at least 1 '
        "non-control variant and 1 goal."
    )


def test_preview_urls_use_the_target_url(env: Env) -> None:
    data = create(env, target_url="https://mysite.com/pricing?plan=pro#top", url_pattern="/pricing")
    variant_id = data["experiment"]["variants"][1]["id"]
    assert data["experiment"]["url_pattern"] == "/pricing"
    assert data["preview_urls"][0]["url"] == (
        "https://mysite.com/pricing?plan=pro"
        f"&sk_preview={token(env, data['experiment']['id'], variant_id)}#top"
    )


def test_auto_launch_without_a_goal_stays_draft_with_the_reason(env: Env) -> None:
    data = create(env, goals=[], auto_launch=True)
    assert data["experiment"]["status"] == "draft"
    assert data["launch"] == {
        "status": "draft",
        "error": "auto_launch skipped: experiment has 2 variant(s) and 0 goal(s); "
        "launch requires ≥2 variants and ≥1 goal.",
    }


def test_auto_launch_with_a_goal_runs(env: Env) -> None:
    data = create(env, auto_launch=True)
    assert data["launch"] == {"status": "running"}
    assert data["experiment"]["status"] == "running"
    assert data["experiment"]["started_at"] is not None
    assert data["activation_hint"].startswith("Running.")


def test_a_blank_draft_is_created_and_its_launch_says_what_it_needs(env: Env) -> None:
    """The reference's fourth create path: none of prompt, variants and idea_id."""
    body = {"site_id": env.seed.site.id, "name": "Fill in later"}
    response = call(env, "POST", "/v1/experiments", body=body)
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    experiment = data["experiment"]
    assert (experiment["status"], experiment["kind"]) == ("draft", "web")
    [control] = experiment["variants"]
    assert (control["name"], control["is_control"], control["changes"]) == (
        "Control (A)",
        True,
        [],
    )
    assert experiment["goals"] == [] and data["preview_urls"] == []
    needs = "experiment has 1 variant(s) and 0 goal(s); launch requires ≥2 variants and ≥1 goal."
    assert data["activation_hint"].endswith("Now: " + needs)
    path = f"/v1/experiments/{experiment['id']}"
    launched = call(env, "PATCH", path, body={"action": "launch"})
    assert error_of(launched, 400, "launch_preconditions_failed") == needs
    auto = call(env, "POST", "/v1/experiments", body={**body, "auto_launch": True})
    assert auto.status_code == 201, auto.text
    assert auto.json()["data"]["launch"] == {
        "status": "draft",
        "error": f"auto_launch skipped: {needs}",
    }
    assert not snippet_has(env, experiment["id"])
    assert call(env, "GET", path).json()["data"]["experiment"] == experiment
    assert call(env, "DELETE", path).status_code == 200


def test_the_status_filter_takes_running_as_active(env: Env) -> None:
    running = create(env, name="filtered", auto_launch=True)["experiment"]
    assert running["status"] == "running"
    by_status = {
        status: [
            e["id"]
            for e in call(env, "GET", f"/v1/experiments?status={status}&limit=100").json()["data"]
        ]
        for status in ("active", "running")
    }
    assert running["id"] in by_status["active"]
    assert by_status["active"] == by_status["running"]


def test_redirect_variant_split_url(env: Env) -> None:
    data = create(env, variants=[{"name": "B", "redirect_url": "https://shop.example.com/b"}])
    assert data["experiment"]["variants"][1]["redirect_url"] == "https://shop.example.com/b"


def test_agent_experiment_clawsplit_style(env: Env) -> None:
    body: dict[str, Any] = {
        "name": "concise-vs-verbose-soulmd",
        "variants": [
            {"name": "control", "config": {"soul_md": "You are a helpful assistant..."}},
            {"name": "concise", "config": {"soul_md": "Be concise and direct..."}},
        ],
        "sample_size": 200,
        "primary_metric": "task_completion",
        "confidence": 0.95,
        "goals": [],
    }
    data = create(env, **body)
    experiment = data["experiment"]
    assert experiment["kind"] == "agent"
    assert [v["name"] for v in experiment["variants"]] == ["control", "concise"]
    assert experiment["variants"][1]["config"] == {"soul_md": "Be concise and direct..."}
    assert (experiment["sample_size"], experiment["primary_metric"], experiment["confidence"]) == (
        200,
        "task_completion",
        0.95,
    )
    assert data["preview_urls"] == []
    # An agent experiment is judged on task outcomes: it launches without a goal.
    launched = call(env, "PATCH", f"/v1/experiments/{experiment['id']}", body={"action": "launch"})
    assert launched.json() == {
        "data": {"id": experiment["id"], "status": "running"},
        "meta": {"workspace_id": env.seed.workspace_id},
    }


def test_clawsplits_documented_body_needs_no_site(env: Env) -> None:
    """ClawSplit's quickstart body, as its docs show it: no site, soul_md on the variants."""
    body = {
        "name": "concise-vs-verbose-soulmd",
        "variants": [
            {"name": "control", "soul_md": "You are a helpful assistant..."},
            {"name": "concise", "soul_md": "Be concise and direct..."},
        ],
        "sample_size": 500,
        "primary_metric": "task_completion",
        "confidence": 0.95,
    }
    response = call(env, "POST", "/v1/experiments", body=body)
    assert response.status_code == 201, response.text
    experiment = response.json()["data"]["experiment"]
    assert experiment["kind"] == "agent" and experiment["site_id"] is None
    assert [v["config"] for v in experiment["variants"]] == [
        {"soul_md": "You are a helpful assistant..."},
        {"soul_md": "Be concise and direct..."},
    ]
    both = {"name": "both", "soul_md": "x", "config": {"soul_md": "y"}}
    refused = call(env, "POST", "/v1/experiments", body={**body, "variants": [both, both]})
    assert "has both config and soul_md" in error_of(refused, 400, "invalid_request")
    web = {"name": "no site", "variants": PREMIUM["variants"]}
    refused = call(env, "POST", "/v1/experiments", body=web)
    assert "site_id is required" in error_of(refused, 400, "invalid_request")


def test_agent_experiment_crewkit_style(env: Env) -> None:
    body = {
        "site_id": env.seed.site.id,
        "name": "Rails expert v2 test",
        "resource_id": "resource_abc123",
        "control_version_hash": "hash_control",
        "variant_version_hash": "hash_variant",
        "traffic_split": 70,
    }
    response = call(env, "POST", "/v1/experiments", body=body)
    assert response.status_code == 201, response.text
    experiment = response.json()["data"]["experiment"]
    assert experiment["kind"] == "agent" and experiment["traffic_split"] == 70
    control, variant = experiment["variants"]
    assert (control["name"], control["weight_bps"]) == ("control", 3000)
    assert variant["config"] == {"resource_id": "resource_abc123", "version_hash": "hash_variant"}


@pytest.mark.parametrize(
    ("fields", "status", "code", "message"),
    [
        ({"site_id": None}, 400, "invalid_request", "site_id is required"),
        ({"name": " "}, 400, "invalid_request", "name is required"),
        ({"prompt": "Change the hero price from $99 to $499"}, 400, "invalid_request",
         "prompt and variants are mutually exclusive"),
        ({"idea_id": "idea-1", "variants": []}, 404, "not_found", "no idea 'idea-1'"),
        ({"variants": [], "traffic_split": 30}, 400, "invalid_request",
         "this blank draft has none"),
        ({"variants": [], "kind": "agent"}, 400, "invalid_request",
         "an agent experiment lists every variant"),
        ({"traffic_split": 0}, 400, "invalid_request", "from 1 to 99"),
        ({"traffic_split": 100}, 400, "invalid_request", "from 1 to 99"),
        ({"url_pattern": "https://shop.example.com/x"}, 400, "invalid_url_pattern", "path only"),
        ({"surprise": 1}, 400, "invalid_request", "unknown field `surprise`"),
        ({"target_url": "ftp://x"}, 400, "invalid_request", "target_url"),
        (
            {"goals": [{"name": "Buy", "type": "purchase"}]},
            400, "invalid_request", "goals[0].type 'purchase' is not a goal type",
        ),
        (
            {"goals": [{"name": "Buy", "type": "click"}]},
            400, "invalid_request", "goals[0] is a click goal without a selector",
        ),
        (
            {"goals": [{"name": "Seen", "type": "pageview", "url_pattern": "/a-*"}]},
            400, "invalid_url_pattern", "goals[0]: url_pattern",
        ),
        (
            {"variants": [{"name": "B", "changes": [{"selector": "a", "action": "set_attribute", "payload": "x"}]}]},  # noqa: E501
            400, "invalid_request", "changes[0].attribute_name '' is not an attribute name",
        ),
        (
            {"variants": [{"name": "B", "changes": [{"selector": "a", "action": "set_attribute", "attribute_name": "data plan", "payload": "x"}]}]},  # noqa: E501
            400, "invalid_request", "attribute_name 'data plan'",
        ),
        (
            {"variants": [{"name": "B", "changes": [{"selector": "a", "action": "add_class", "payload": " "}]}]},  # noqa: E501
            400, "invalid_request", "payload names no class",
        ),
        (
            {"variants": [{"name": "B", "changes": [{"selector": "a", "action": "explode"}]}]},
            400, "invalid_request", "$.variants[0].changes[0].action",
        ),
        (
            {"variants": [{"name": "B", "changes": [{"selector": " ", "action": "set_content"}]}]},
            400, "invalid_request", "selector is empty",
        ),
        (
            {"variants": [{"name": "B", "redirect_url": "javascript:alert(1)"}]},
            400, "invalid_request", "not an absolute http(s) URL",
        ),
        (
            {"variants": [{"name": "B", "redirect_url": "https://a.example/b", "changes": [{"selector": "h1", "action": "set_content"}]}]},  # noqa: E501
            400, "invalid_request", "changes and a redirect_url",
        ),
        (
            {"variants": [{"name": "B"}, {"name": "C"}]},
            400, "invalid_request", "a web experiment takes one variant",
        ),
        (
            {"variants": [{"name": "solo", "config": {"x": 1}}]},
            400, "invalid_request", "at least 2",
        ),
        ({"site_id": "no-such-site"}, 404, "not_found", "No site 'no-such-site' in this workspace"),
    ],
)  # fmt: skip
def test_create_refuses(
    env: Env, fields: dict[str, Any], status: int, code: str, message: str
) -> None:
    body = {"site_id": env.seed.site.id, **PREMIUM, **fields}
    body = {k: v for k, v in body.items() if v is not None}
    response = call(env, "POST", "/v1/experiments", body=body)
    assert message in error_of(response, status, code)


IDEA = NewIdea(
    title="Test CTA button color",
    hypothesis="Changing from grey to green will increase CTR",
    category="cta",
    priority="high",
    estimated_impact="high",
    mockup_data={
        "mutations": [
            {"selector": "a.cta", "action": "set_style", "payload": "background: green"},
            {"selector": "a.cta", "action": "set_content", "payload": "Start free"},
        ]
    },
    source_url="https://shop.example.com/pricing",
)


def seed_idea(env: Env, workspace_id: str, site_id: str, idea: NewIdea = IDEA) -> str:
    store = Store(env.store_path)
    try:
        return add_idea(store, workspace_id, site_id, idea).id
    finally:
        store.close()


def test_create_from_an_idea(env: Env) -> None:
    idea_id = seed_idea(env, env.seed.workspace_id, env.seed.site.id)
    body = {"site_id": env.seed.site.id, "idea_id": idea_id, "name": "CTA colour",
            "goals": PREMIUM["goals"], "auto_launch": True}  # fmt: skip
    response = call(env, "POST", "/v1/experiments", body=body)
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    experiment = data["experiment"]
    assert data["launch"] == {"status": "running"}
    assert [v["name"] for v in experiment["variants"]] == ["Control (A)", "Variant B"]
    assert experiment["variants"][1]["changes"] == IDEA.mockup_data["mutations"]
    assert experiment["hypothesis"] == IDEA.hypothesis
    assert experiment["target_url"] == IDEA.source_url
    variant_id = experiment["variants"][1]["id"]
    preview = token(env, experiment["id"], variant_id)
    assert data["preview_urls"][0]["url"] == f"{IDEA.source_url}?sk_preview={preview}"


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"variants": PREMIUM["variants"]}, "idea_id and variants are mutually exclusive"),
        ({"target_url": "https://shop.example.com/other", "kind": "agent"}, "mutually exclusive"),
    ],
)
def test_create_from_an_idea_refuses_variants_too(
    env: Env, fields: dict[str, Any], says: str
) -> None:
    idea_id = seed_idea(env, env.seed.workspace_id, env.seed.site.id)
    body = {"site_id": env.seed.site.id, "idea_id": idea_id, "name": "Both", **fields}
    assert says in error_of(call(env, "POST", "/v1/experiments", body=body), 400, "invalid_request")


def test_an_idea_without_mutations_or_of_another_site_is_400(env: Env) -> None:
    empty = seed_idea(env, env.seed.workspace_id, env.seed.site.id, NewIdea(title="Vague"))
    body = {"site_id": env.seed.site.id, "idea_id": empty, "name": "Vague"}
    message = error_of(call(env, "POST", "/v1/experiments", body=body), 400, "invalid_request")
    assert "has no mutations to test" in message
    store = Store(env.store_path)
    try:
        second = store.create_site(env.seed.workspace_id, "second-shop.example", None)
    finally:
        store.close()
    elsewhere = seed_idea(env, env.seed.workspace_id, second.id)
    body = {"site_id": env.seed.site.id, "idea_id": elsewhere, "name": "Elsewhere"}
    message = error_of(call(env, "POST", "/v1/experiments", body=body), 400, "invalid_request")
    assert f"is for site {second.id}" in message


def test_another_workspaces_idea_is_404(env: Env) -> None:
    theirs = seed_idea(env, env.seed.other_site.workspace_id, env.seed.other_site.id)
    body = {"site_id": env.seed.site.id, "idea_id": theirs, "name": "Not mine"}
    message = error_of(call(env, "POST", "/v1/experiments", body=body), 404, "not_found")
    assert f"no idea {theirs!r} in the workspace of this API key" in message


def test_create_on_another_workspaces_site_is_404(env: Env) -> None:
    response = call(
        env, "POST", "/v1/experiments", body={"site_id": env.seed.other_site.id, **PREMIUM}
    )
    error_of(response, 404, "not_found")


def test_no_key_is_401(env: Env) -> None:
    response = httpx.get(env.server.base_url + "/v1/experiments")
    assert "Invalid or missing API key" in error_of(response, 401, "unauthorized")


def test_list_filters_and_pages(env: Env) -> None:
    created = create(env, name="listed draft")["experiment"]
    everything = call(env, "GET", "/v1/experiments?limit=100").json()
    assert everything["meta"]["total"] == len(everything["data"]) >= 2
    first = everything["data"][0]
    assert first["id"] == created["id"]  # newest first
    assert set(first) >= {"id", "name", "status", "traffic_split", "started_at", "ended_at"}
    assert first["sites"]["name"] == env.seed.site.name
    drafts = call(env, "GET", "/v1/experiments?status=draft&limit=100").json()["data"]
    assert drafts and {e["status"] for e in drafts} == {"draft"}
    active = call(env, "GET", f"/v1/experiments?status=active&site_id={env.seed.site.id}").json()
    assert env.seed.experiment_id in {e["id"] for e in active["data"]}
    assert {e["status"] for e in active["data"]} == {"running"}
    page = call(env, "GET", "/v1/experiments?limit=1&offset=1").json()
    assert page["meta"]["limit"] == 1 and page["meta"]["offset"] == 1
    assert page["data"][0]["id"] == everything["data"][1]["id"]
    assert "limit" in error_of(
        call(env, "GET", "/v1/experiments?limit=101"), 400, "invalid_request"
    )
    assert "status 'live'" in error_of(
        call(env, "GET", "/v1/experiments?status=live"), 400, "invalid_request"
    )


def test_get_answers_the_experiment_in_the_shape_of_its_create(env: Env) -> None:
    """The reference shows create's ``{experiment, preview_urls, activation_hint}`` and
    says GET "returns the same preview_urls": the same resource, the same shape."""
    created = create(env)
    experiment_id = created["experiment"]["id"]
    data = call(env, "GET", f"/v1/experiments/{experiment_id}").json()["data"]
    assert data == created
    assert set(data) == {"experiment", "preview_urls", "activation_hint"}
    assert data["experiment"]["id"] == experiment_id
    assert data["experiment"]["status"] == "draft"
    resplit = call(env, "PATCH", f"/v1/experiments/{experiment_id}", body={"traffic_split": 40})
    assert set(resplit.json()["data"]) == set(data)
    message = error_of(call(env, "GET", "/v1/experiments/nope"), 404, "not_found")
    assert "no experiment 'nope' in the workspace of this API key" in message


def test_lifecycle_through_patch(env: Env) -> None:
    experiment_id = create(env)["experiment"]["id"]
    path = f"/v1/experiments/{experiment_id}"

    def act(action: str) -> httpx.Response:
        return call(env, "PATCH", path, body={"action": action})

    message = error_of(act("pause"), 409, "invalid_transition")
    assert message == (
        f"cannot pause experiment {experiment_id}: it is draft, and pause moves a running "
        'experiment to paused; its actions are {"action": "launch"}, {"action": "archive"}'
    )
    for action, status in [("launch", "running"), ("pause", "paused"), ("resume", "running")]:
        response = act(action)
        assert response.status_code == 200, response.text
        assert response.json()["data"] == {"id": experiment_id, "status": status}
    error_of(act("launch"), 409, "invalid_transition")
    error_of(act("archive"), 409, "invalid_transition")
    message = error_of(call(env, "DELETE", path), 409, "conflict")
    assert message == (
        f"only draft or archived experiments can be deleted; experiment {experiment_id} is "
        f"running: archive it first with PATCH {path} "
        '{"action": "complete"} then {"action": "archive"}'
    )
    assert act("complete").json()["data"]["status"] == "completed"
    detail = call(env, "GET", path).json()["data"]["experiment"]
    assert detail["ended_at"] is not None and detail["started_at"] is not None
    assert "from 1 to 99" not in (
        error_of(call(env, "PATCH", path, body={"traffic_split": 30}), 409, "invalid_transition")
    )
    assert act("archive").json()["data"]["status"] == "archived"
    error_of(act("resume"), 409, "invalid_transition")
    deleted = call(env, "DELETE", path)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["data"] == {"id": experiment_id, "deleted": True}
    error_of(call(env, "GET", path), 404, "not_found")


def test_launch_precondition_is_a_400_saying_what_is_missing(env: Env) -> None:
    experiment_id = create(env, goals=[])["experiment"]["id"]
    response = call(env, "PATCH", f"/v1/experiments/{experiment_id}", body={"action": "launch"})
    message = error_of(response, 400, "launch_preconditions_failed")
    assert message == (
        "experiment has 2 variant(s) and 0 goal(s); launch requires ≥2 variants and ≥1 goal."
    )
    detail = call(env, "GET", f"/v1/experiments/{experiment_id}").json()["data"]
    assert detail["experiment"]["status"] == "draft"
    assert detail["activation_hint"].endswith("Now: " + message)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"action": "explode"}, "action 'explode' is not a lifecycle action"),
        ({}, "send one change at a time"),
        ({"action": "launch", "traffic_split": 30}, "send one change at a time"),
        ({"traffic_split": 120}, "from 1 to 99"),
        ({"colour": "x"}, "unknown field `colour`"),
    ],
)
def test_patch_refuses(env: Env, body: dict[str, Any], message: str) -> None:
    path = f"/v1/experiments/{env.seed.experiment_id}"
    assert message in error_of(call(env, "PATCH", path, body=body), 400, "invalid_request")


def test_patch_traffic_split(env: Env) -> None:
    experiment_id = create(env)["experiment"]["id"]
    response = call(env, "PATCH", f"/v1/experiments/{experiment_id}", body={"traffic_split": 30})
    assert response.status_code == 200, response.text
    data = response.json()["data"]["experiment"]
    assert data["traffic_split"] == 30
    assert [v["weight_bps"] for v in data["variants"]] == [7000, 3000]


def test_crewkit_start_stop_deploy_archive(env: Env) -> None:
    experiment_id = create(env)["experiment"]["id"]
    path = f"/v1/experiments/{experiment_id}"
    assert "launch it first" in error_of(
        call(env, "POST", f"{path}/deploy", body={"variant": "Control (A)"}),
        409, "invalid_transition",
    )  # fmt: skip
    started = call(env, "POST", f"{path}/start")
    assert started.json()["data"] == {"id": experiment_id, "status": "running"}
    assert "no variant 'variant'" in error_of(
        call(env, "POST", f"{path}/deploy", body={"variant": "variant"}), 400, "invalid_request"
    )
    error_of(call(env, "POST", f"{path}/deploy", body={}), 400, "invalid_request")
    winner = "Premium Pricing with Pro Stripe Link"
    deployed = call(env, "POST", f"{path}/deploy", body={"variant": winner})
    assert deployed.status_code == 200, deployed.text
    detail = call(env, "GET", path).json()["data"]["experiment"]
    winner_id = detail["variants"][1]["id"]
    assert deployed.json()["data"] == {
        "id": experiment_id,
        "status": "completed",
        "winner_variant_id": winner_id,
    }
    assert [v["weight_bps"] for v in detail["variants"]] == [0, 10_000]
    assert detail["traffic_split"] == 100 and detail["winner_variant_id"] == winner_id
    error_of(call(env, "POST", f"{path}/promote", body={"variant_id": winner_id}), 409, "conflict")
    error_of(call(env, "POST", f"{path}/stop"), 409, "invalid_transition")
    assert call(env, "POST", f"{path}/archive").json()["data"]["status"] == "archived"

    other = create(env)["experiment"]["id"]
    call(env, "POST", f"/v1/experiments/{other}/start")
    stopped = call(env, "POST", f"/v1/experiments/{other}/stop")
    assert stopped.json()["data"] == {"id": other, "status": "completed"}


def deliveries(env: Env, experiment_id: str) -> list[tuple[str, dict[str, Any]]]:
    conn = sqlite3.connect(env.store_path)
    try:
        rows = conn.execute("SELECT event, payload FROM webhook_deliveries ORDER BY id").fetchall()
    finally:
        conn.close()
    found = [(event, msgspec.json.decode(payload)) for event, payload in rows]
    return [(event, body) for event, body in found if body.get("experiment_id") == experiment_id]


def test_changes_queue_webhook_events(env: Env) -> None:
    events = [
        "experiment.launched", "experiment.started", "experiment.completed",
        "experiment.stopped", "variant.promoted",
    ]  # fmt: skip
    hook = call(
        env,
        "POST",
        "/v1/webhooks",
        body={"url": "https://hooks.example.invalid/x", "events": events},
    )
    assert hook.status_code == 201, hook.text
    try:
        experiment_id = create(env)["experiment"]["id"]
        path = f"/v1/experiments/{experiment_id}"
        call(env, "PATCH", path, body={"action": "launch"})
        assert [e for e, _ in deliveries(env, experiment_id)] == events[:2]
        _, launched = deliveries(env, experiment_id)[0]
        assert launched["event"] == "experiment.launched"
        assert launched["experiment_name"] == PREMIUM["name"]
        assert launched["status"] == "running" and launched["site_id"] == env.seed.site.id
        call(env, "PATCH", path, body={"action": "pause"})
        assert len(deliveries(env, experiment_id)) == 2  # pausing queues nothing
        call(env, "POST", f"{path}/deploy", body={"variant": "Control (A)"})
        queued = deliveries(env, experiment_id)
        assert [e for e, _ in queued] == events
        promoted = queued[-1][1]
        assert promoted["variant_name"] == "Control (A)" and promoted["status"] == "completed"
        # A refused change queues nothing.
        call(env, "PATCH", path, body={"action": "launch"})
        assert len(deliveries(env, experiment_id)) == len(events)
    finally:
        call(env, "DELETE", f"/v1/webhooks/{hook.json()['data']['id']}")


def test_another_workspaces_experiment_is_404_and_unchanged(env: Env) -> None:
    theirs = env.seed.other_experiment_id
    before = call(env, "GET", f"/v1/experiments/{theirs}", key=env.other_key).json()["data"]
    path = f"/v1/experiments/{theirs}"
    attempts = [
        ("GET", path, None),
        ("PATCH", path, {"action": "pause"}),
        ("PATCH", path, {"action": "complete"}),
        ("PATCH", path, {"traffic_split": 10}),
        ("DELETE", path, None),
        ("POST", f"{path}/start", None),
        ("POST", f"{path}/stop", None),
        ("POST", f"{path}/archive", None),
        ("POST", f"{path}/deploy", {"variant": "Bold"}),
        ("POST", f"{path}/promote", {"variant": "Bold"}),
        ("GET", f"{path}/results", None),
        ("GET", f"{path}/metrics", None),
    ]
    for method, url, body in attempts:
        response = call(env, method, url, body=body)
        assert response.status_code == 404, (method, url, response.text)
        assert response.json()["error"]["code"] == "not_found"
    listed = call(env, "GET", f"/v1/experiments?site_id={env.seed.other_site.id}").json()
    assert listed["data"] == [] and listed["meta"]["total"] == 0
    after = call(env, "GET", f"/v1/experiments/{theirs}", key=env.other_key).json()["data"]
    assert after == before


def snippet_has(env: Env, experiment_id: str) -> bool:
    response = httpx.get(f"{env.server.base_url}/s/{env.seed.site.public_key}.js", timeout=5)
    return experiment_id in response.text


def seconds_until_served(env: Env, experiment_id: str, served: bool, since: float) -> float:
    """Seconds from ``since`` until the snippet does (or no longer does) serve it."""
    while time.monotonic() - since < 5:
        if snippet_has(env, experiment_id) == served:
            return time.monotonic() - since
        time.sleep(0.02)
    raise AssertionError("the snippet did not follow within 5 s")


def test_lifecycle_changes_reach_the_snippet_within_a_second(env: Env) -> None:
    experiment_id = create(env)["experiment"]["id"]
    path = f"/v1/experiments/{experiment_id}"
    assert not snippet_has(env, experiment_id)
    for action, served in [("launch", True), ("pause", False), ("resume", True)]:
        since = time.monotonic()
        assert call(env, "PATCH", path, body={"action": action}).status_code == 200
        took = seconds_until_served(env, experiment_id, served, since)
        assert took < 1.0, f"{action}: {took:.3f} s"
    since = time.monotonic()
    assert call(env, "PATCH", path, body={"action": "complete"}).status_code == 200
    assert seconds_until_served(env, experiment_id, False, since) < 1.0


def served_config(env: Env, experiment_id: str) -> dict[str, Any] | None:
    """The experiment as the site's snippet serves it, if it does."""
    text = httpx.get(f"{env.server.base_url}/s/{env.seed.site.public_key}.js", timeout=5).text
    start = text.index('"experiments":')
    experiments, _ = json.JSONDecoder().raw_decode(text, start + len('"experiments":'))
    return next((e for e in experiments if e["id"] == experiment_id), None)


def test_a_promoted_winner_is_served_to_everyone_within_a_second(env: Env) -> None:
    data = create(env, auto_launch=True)
    experiment_id = data["experiment"]["id"]
    winner = data["experiment"]["variants"][1]
    since = time.monotonic()
    deployed = call(
        env, "POST", f"/v1/experiments/{experiment_id}/deploy", body={"variant": winner["name"]}
    )
    assert deployed.status_code == 200, deployed.text
    while True:
        served = served_config(env, experiment_id)
        if served is not None and not served["goals"]:
            break
        assert time.monotonic() - since < 1.0, served
        time.sleep(0.02)
    # All the weight on the winner, and no goals: nothing more is counted.
    weights = {v["id"]: v["weight"] for v in served["variants"]}
    assert weights == {v["id"]: 0 for v in data["experiment"]["variants"]} | {winner["id"]: 10_000}
    units = [{"unit_id": f"visitor-{n}"} for n in range(200)]
    assigned = httpx.post(
        env.server.base_url + "/v1/assign",
        json={"public_key": env.seed.site.public_key, "units": units},
        timeout=10,
    ).json()["data"]["units"]
    picks = {
        a["variant_id"]
        for u in assigned
        for a in u["assignments"]
        if a["experiment_id"] == experiment_id
    }
    assert picks == {winner["id"]} and all(
        any(a["experiment_id"] == experiment_id for a in u["assignments"]) for u in assigned
    )
    # An exposure sent by a page that still had the running experiment is stored as a late
    # event and counts in no result: the deployed experiment's results are those of its
    # run (tests/test_collect_late.py checks the results stay the same).
    exposure = {"event_id": "late-1", "type": "exposure", "visitor_id": "v",
                "ts": int(time.time() * 1000),
                "experiment_id": experiment_id, "variant_id": winner["id"]}  # fmt: skip
    late = httpx.post(
        env.server.base_url + "/v1/collect",
        json={"public_key": env.seed.site.public_key, "events": [exposure]},
        timeout=10,
    )
    assert late.status_code == 200 and late.json()["data"]["accepted"] == 1, late.text
    # Archiving keeps the deployment (crewkit's lifecycle archives on deploy): the edge
    # follows the archive (config_version) and still serves the winner.
    path = f"/v1/experiments/{experiment_id}"
    version = httpx.get(f"{env.server.base_url}/readyz", timeout=5).json()["config_version"]
    archived = call(env, "PATCH", path, body={"action": "archive"})
    assert archived.status_code == 200, archived.text
    since = time.monotonic()
    while httpx.get(f"{env.server.base_url}/readyz", timeout=5).json()["config_version"] == version:
        assert time.monotonic() - since < 1.0, "the edge did not follow the archive"
        time.sleep(0.02)
    assert served_config(env, experiment_id) == served
    # Deleting the experiment ends it.
    since = time.monotonic()
    assert call(env, "DELETE", path).status_code in (200, 204)
    assert seconds_until_served(env, experiment_id, False, since) < 1.0


def test_store_is_left_consistent(env: Env) -> None:
    store = Store(env.store_path)
    try:
        (orphans,) = store.conn.execute(
            "SELECT count(*) FROM variants v LEFT JOIN experiments e ON e.id = v.experiment_id "
            "WHERE e.id IS NULL"
        ).fetchone()
    finally:
        store.close()
    assert orphans == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [("onclick", "steal()"), ("href", "java\tscript:alert(1)"), ("style", "color:red")],
)
def test_explicit_changes_that_would_run_script_are_400_as_the_author_drops_them(
    env: Env, name: str, value: str
) -> None:
    change = {"selector": ".cta", "action": "set_attribute", "attribute_name": name,
              "payload": value}  # fmt: skip
    body = {"site_id": env.seed.site.id, "name": "xss", "goals": [{"name": "Buy", "type": "click",
            "selector": ".buy"}], "variants": [{"name": "B", "changes": [change]}]}  # fmt: skip
    answer = call(env, "POST", "/v1/experiments", body=body)
    assert answer.status_code == 400, answer.text
    message = answer.json()["error"]["message"]
    assert "variants[0].changes[0] is refused" in message and "run script" in message
