"""The MCP gateway (edge.control.mcp_gateway): the official SDK's own client connects to a
real server over streamable HTTP, lists exactly the reference's 14 tools with their input
schemas, gets the reference's guardrail errors as isError results, and runs the
reference's flows with the credits of its table."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import httpx2
import msgspec
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from edge.control import credits
from edge.control.previews import PreviewTokens
from edge.control.store import Store
from tests.page_server import serve_pages
from tests.support import MCP_INITIALIZE, Server, api_call, running_server

T = TypeVar("T")

TOOL_NAMES = [
    "create_site",
    "list_sites",
    "get_site_intelligence",
    "list_ideas",
    "generate_ideas",
    "generate_variant",
    "list_experiments",
    "get_experiment",
    "create_experiment",
    "launch_experiment",
    "create_loop",
    "get_loop_status",
    "pause_loop",
    "resume_loop",
]

VARIANTS = [
    {"name": "Bold", "changes": [{"selector": "h1", "action": "set_content", "payload": "Bold"}]}
]

PLANS = {"metered": {"metered": True}, "unmetered": {}}


class Env(msgspec.Struct):
    server: Server
    store_path: Path


class Workspace(msgspec.Struct):
    id: str
    key: str


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("mcp")
    plans_file = root / "plans.json"
    plans_file.write_text(json.dumps(PLANS))
    data = root / "data"
    Store(data / "splitedge.sqlite3").close()
    with running_server(
        data, args=["--limits", str(plans_file), "--allow-private-targets"]
    ) as server:
        yield Env(server, data / "splitedge.sqlite3")


_workspaces = 0


def new_workspace(env: Env, plan: str = "metered", credit: int = 0) -> Workspace:
    global _workspaces
    _workspaces += 1
    store = Store(env.store_path)
    try:
        workspace = store.create_workspace(f"mcp-{_workspaces}", plan=plan)
        if credit:
            credits.grant(store, workspace.id, credit)
        return Workspace(workspace.id, store.issue_api_key(workspace.id).key)
    finally:
        store.close()


def balance(env: Env, ws: Workspace) -> int:
    answer = api_call(env.server, ws.key, "GET", "/v1/credits")
    assert answer.status_code == 200, answer.text
    value: int = answer.json()["data"]["balance"]
    return value


@asynccontextmanager
async def connect(env: Env, key: str) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        transport = streamable_http_client(env.server.base_url + "/mcp", http_client=http)
        async with Client(transport) as client:
            yield client


def with_client(env: Env, key: str, work: Callable[[Client], Awaitable[T]]) -> T:
    async def run() -> T:
        async with connect(env, key) as client:
            return await work(client)

    return asyncio.run(run())


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """A tool's structured answer; fails the test on an isError result."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, (tool, result.content)
    data: dict[str, Any] = result.structured_content
    assert json.loads(result.content[0].text) == data  # type: ignore[union-attr]
    return data


async def error(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """A tool's isError answer (the reference's error object)."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, (tool, result.structured_content)
    data: dict[str, Any] = result.structured_content
    assert result.content[0].text == data["error"]  # type: ignore[union-attr]
    return data


def test_lists_exactly_the_reference_tools_with_their_input_schemas(env: Env) -> None:
    ws = new_workspace(env, "unmetered")

    async def work(client: Client) -> None:
        tools = (await client.list_tools()).tools
        assert [t.name for t in tools] == TOOL_NAMES
        schemas = {t.name: t.input_schema for t in tools}
        for name, schema in schemas.items():
            assert schema["type"] == "object", name
            assert schema.get("additionalProperties") is False, name
        assert schemas["list_sites"]["properties"] == {}
        assert schemas["create_site"]["required"] == ["url"]
        assert set(schemas["create_site"]["properties"]) == {"url", "name", "reuse_if_exists"}
        assert schemas["generate_variant"]["required"] == ["site_id", "prompt"]
        assert schemas["generate_variant"]["properties"]["prompt"]["minLength"] == 10
        assert set(schemas["create_experiment"]["properties"]) == {
            "site_id", "name", "prompt", "target_url", "url_pattern", "auto_launch", "idea_id",
            "hypothesis", "traffic_split", "variants", "goals",
        }  # fmt: skip
        assert schemas["create_experiment"]["required"] == ["site_id", "name"]
        assert schemas["create_loop"]["required"] == ["site_id", "element_types"]
        assert "selected_idea_id" in schemas["create_loop"]["properties"]
        for name in ("get_loop_status", "pause_loop", "resume_loop"):
            assert schemas[name]["required"] == ["loop_id"]
        for name in ("get_experiment", "launch_experiment"):
            assert schemas[name]["required"] == ["experiment_id"]
        limit = schemas["list_ideas"]["properties"]["limit"]
        assert (limit["maximum"], limit["default"]) == (100, 20)

    with_client(env, ws.key, work)


def test_the_gateway_takes_only_a_valid_workspace_key(env: Env) -> None:
    initialize = MCP_INITIALIZE
    headers = {"Accept": "application/json, text/event-stream"}
    url = env.server.base_url + "/mcp"
    missing = httpx.post(url, json=initialize, headers=headers)
    assert missing.status_code == 401
    assert "Bearer" in missing.json()["error"]["message"]
    wrong = httpx.post(
        url, json=initialize, headers=headers | {"Authorization": "Bearer sk_live_" + "x" * 43}
    )
    assert wrong.status_code == 401
    ws = new_workspace(env, "unmetered")
    good = httpx.post(url, json=initialize, headers=headers | {"Authorization": f"Bearer {ws.key}"})
    assert good.status_code == 200, good.text
    assert good.json()["result"]["serverInfo"]["name"] == "splitedge"


def test_site_guardrails_answer_the_reference_errors(env: Env) -> None:
    ws = new_workspace(env, "unmetered")

    async def work(client: Client) -> None:
        missing = await error(client, "list_experiments")
        assert (missing["error"], missing["status"]) == ("site_id is required", 400)
        none_yet = await error(client, "generate_variant", site_id="nope", prompt="x" * 20)
        assert none_yet["status"] == 404
        assert none_yet["error"] == (
            "No sites registered in this workspace. Call `create_site` first."
        )
        created = await call(client, "create_site", url="mystore.example", name="My Store")
        assert set(created) == {"site", "snippet", "instructions"}
        site = created["site"]
        assert set(site) == {"id", "name", "url", "public_key"}
        assert site["url"] == "https://mystore.example/"
        assert f"/s/{site['public_key']}.js" in created["snippet"]
        other = await error(client, "list_ideas", site_id="not-this-one")
        assert other["status"] == 404
        assert "Call `list_sites`" in other["error"] and "`create_site`" in other["error"]
        duplicate = await error(client, "create_site", url="https://mystore.example")
        assert (duplicate["status"], duplicate["code"]) == (409, "conflict")
        assert duplicate["existing_site"]["id"] == site["id"]
        assert duplicate["existing_site"]["public_key"] == site["public_key"]
        reused = await call(client, "create_site", url="mystore.example", reuse_if_exists=True)
        assert reused["reused"] is True and reused["site"] == site
        listed = await call(client, "list_sites")
        assert [s["id"] for s in listed["sites"]] == [site["id"]]
        wrong_type = await error(client, "list_ideas", site_id=site["id"], limit="many")
        assert wrong_type["status"] == 400 and "limit" in wrong_type["error"]
        unknown = await error(client, "list_sites", surprise=1)
        assert unknown["status"] == 400 and "surprise" in unknown["error"]
        no_tool = await error(client, "drop_tables")
        assert no_tool["status"] == 404 and "create_site" in no_tool["error"]

    with_client(env, ws.key, work)


def test_launch_preconditions_and_lifecycle_through_tools(env: Env) -> None:
    ws = new_workspace(env, "unmetered")

    async def work(client: Client) -> None:
        site = (await call(client, "create_site", url="https://launch.example"))["site"]
        goalless = await call(
            client, "create_experiment", site_id=site["id"], name="No goal", variants=VARIANTS
        )
        experiment_id = goalless["experiment"]["id"]
        blocked = await error(client, "launch_experiment", experiment_id=experiment_id)
        assert blocked["status"] == 400 and "goal" in blocked["error"]
        made = await call(
            client,
            "create_experiment",
            site_id=site["id"],
            name="Headline",
            variants=VARIANTS,
            goals=[{"name": "Buy", "type": "click", "selector": ".buy"}],
        )
        launched = await call(client, "launch_experiment", experiment_id=made["experiment"]["id"])
        assert launched == {
            "experiment_id": made["experiment"]["id"],
            "status": "running",
            "message": "Experiment launched successfully",
        }
        got = await call(client, "get_experiment", experiment_id=made["experiment"]["id"])
        # create_experiment's shape, with the results.
        assert set(got) >= {"experiment", "preview_urls", "activation_hint", "results"}
        assert got["experiment"]["status"] == "running" and len(got["experiment"]["variants"]) == 2
        assert got["preview_urls"] == made["preview_urls"]
        # Both tools' preview URLs carry the server's preview token of the variant.
        tokens = PreviewTokens(env.store_path)
        [preview] = got["preview_urls"]
        token = preview["url"].split("sk_preview=")[1]
        experiment = got["experiment"]
        assert tokens.read(token) == (experiment["id"], experiment["variants"][1]["id"])
        listed = await call(client, "list_experiments", site_id=site["id"], status="active")
        assert [e["id"] for e in listed["experiments"]] == [made["experiment"]["id"]]
        gone = await error(client, "get_experiment", experiment_id="no-such-experiment")
        assert gone["status"] == 404

    with_client(env, ws.key, work)


def enums_in(node: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema in ``node`` that has an ``enum``, with where it is."""
    if isinstance(node, dict):
        if "enum" in node:
            yield where, node
        for key, value in node.items():
            yield from enums_in(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from enums_in(item, f"{where}[{i}]")


def test_every_enum_of_every_tool_schema_has_its_type(env: Env) -> None:
    ws = new_workspace(env, "unmetered")

    async def work(client: Client) -> dict[str, dict[str, Any]]:
        return {t.name: t.input_schema for t in (await client.list_tools()).tools}

    schemas = with_client(env, ws.key, work)
    assert list(schemas) == TOOL_NAMES
    found = dict(kv for name, schema in schemas.items() for kv in enums_in(schema, name))
    assert set(found) == {
        "list_ideas.properties.status.anyOf[0]",
        "list_experiments.properties.status.anyOf[0]",
        "create_experiment.$defs.MutationConfig.properties.action",
    }
    for where, enum in found.items():
        assert enum["type"] == "string", where
        assert all(isinstance(value, str) for value in enum["enum"]), where


def test_list_experiments_takes_active_and_running_alike(env: Env) -> None:
    ws = new_workspace(env, "unmetered")

    async def work(client: Client) -> None:
        site = (await call(client, "create_site", url="https://status.example"))["site"]
        goals = [{"name": "Buy", "type": "click", "selector": ".buy"}]
        made = await call(
            client, "create_experiment", site_id=site["id"], name="Live", variants=VARIANTS,
            goals=goals, auto_launch=True,
        )  # fmt: skip
        assert made["experiment"]["status"] == "running"
        await call(client, "create_experiment", site_id=site["id"], name="Draft")
        for status in ("running", "active"):
            listed = await call(client, "list_experiments", site_id=site["id"], status=status)
            assert [e["id"] for e in listed["experiments"]] == [made["experiment"]["id"]]
            assert {e["status"] for e in listed["experiments"]} == {"running"}
        wrong = await error(client, "list_experiments", site_id=site["id"], status="live")
        assert wrong["status"] == 400 and "status" in wrong["error"]

    with_client(env, ws.key, work)


def test_a_blank_draft_through_tools_launches_only_once_complete(env: Env) -> None:
    ws = new_workspace(env, "unmetered")

    async def work(client: Client) -> None:
        site = (await call(client, "create_site", url="https://blank.example"))["site"]
        blank = await call(client, "create_experiment", site_id=site["id"], name="Later")
        assert blank["experiment"]["status"] == "draft"
        assert len(blank["experiment"]["variants"]) == 1 and blank["preview_urls"] == []
        refused = await error(client, "launch_experiment", experiment_id=blank["experiment"]["id"])
        assert (refused["status"], refused["code"]) == (400, "launch_preconditions_failed")
        assert refused["error"] == (
            "experiment has 1 variant(s) and 0 goal(s); launch requires ≥2 variants and ≥1 goal."
        )

    with_client(env, ws.key, work)


ROUTE = re.compile(r"\b(GET|POST|PATCH|PUT|DELETE) /v1/|/v1/experiments")


def test_texts_name_tools_not_routes(env: Env) -> None:
    """Every text a tool answers (errors, hints, instructions) names the tools to call."""
    ws = new_workspace(env, "unmetered")

    async def work(client: Client) -> list[str]:
        texts: list[str] = []
        created = await call(client, "create_site", url="https://words.example", name="Words")
        site = created["site"]
        texts.append(created["instructions"])
        assert "call create_experiment" in created["instructions"]
        duplicate = await error(client, "create_site", url="https://words.example")
        assert duplicate["error"] == (
            f"A site for words.example is already registered (ID: {site['id']}). Reuse it via "
            "list_sites / its id, or call create_site again with reuse_if_exists: true for "
            "idempotent behavior."
        )
        texts.append(duplicate["error"])
        draft = await call(
            client, "create_experiment", site_id=site["id"], name="Draft", variants=VARIANTS,
            goals=[{"name": "Buy", "type": "click", "selector": ".buy"}],
        )  # fmt: skip
        experiment_id = draft["experiment"]["id"]
        assert draft["activation_hint"] == (
            "To launch: pass `auto_launch: true` on create, OR call launch_experiment({ "
            f'experiment_id: "{experiment_id}" }}) after reviewing the preview URLs below. '
            "Requires at least 1 non-control variant and 1 goal."
        )
        texts.append(draft["activation_hint"])
        await call(client, "launch_experiment", experiment_id=experiment_id)
        again = await error(client, "launch_experiment", experiment_id=experiment_id)
        assert (again["status"], again["code"]) == (409, "invalid_transition")
        assert again["error"].endswith("launch_experiment launches a draft experiment only")
        texts.append(again["error"])
        running = await call(client, "get_experiment", experiment_id=experiment_id)
        assert "get_experiment" in running["activation_hint"]
        texts.append(running["activation_hint"])
        for tool, arguments, status, tool_named in [
            ("get_experiment", {"experiment_id": "nope"}, 404, "list_experiments"),
            ("launch_experiment", {"experiment_id": "nope"}, 404, "list_experiments"),
            ("get_loop_status", {"loop_id": "nope"}, 404, "create_loop"),
            ("pause_loop", {"loop_id": "nope"}, 404, "create_loop"),
            ("create_experiment", {"site_id": site["id"], "name": "x", "idea_id": "nope"}, 404,
             "list_ideas"),
            ("create_experiment", {"site_id": site["id"], "name": "x", "prompt": "Make it pop!!",
                                   "variants": VARIANTS}, 400, "generate_variant"),
        ]:  # fmt: skip
            failed = await error(client, tool, **arguments)
            assert failed["status"] == status, (tool, failed)
            assert tool_named in failed["error"], (tool, failed)
            texts.append(failed["error"])
        return texts

    for text in with_client(env, ws.key, work):
        assert not ROUTE.search(text), text


def test_one_workspace_never_reaches_anothers_objects(env: Env) -> None:
    a, b = new_workspace(env, "unmetered"), new_workspace(env, "unmetered")

    async def owned(client: Client) -> tuple[str, str]:
        site = (await call(client, "create_site", url="https://owned.example"))["site"]
        made = await call(
            client, "create_experiment", site_id=site["id"], name="Mine", variants=VARIANTS
        )
        return site["id"], made["experiment"]["id"]

    site_id, experiment_id = with_client(env, b.key, owned)

    async def intrude(client: Client) -> None:
        for tool, args in [
            ("list_experiments", {"site_id": site_id}),
            ("list_ideas", {"site_id": site_id}),
            ("get_site_intelligence", {"site_id": site_id}),
            ("create_experiment", {"site_id": site_id, "name": "x"}),
            ("get_experiment", {"experiment_id": experiment_id}),
            ("launch_experiment", {"experiment_id": experiment_id}),
        ]:
            assert (await error(client, tool, **args))["status"] == 404, tool

    with_client(env, a.key, intrude)


# --- the reference's flows, with the credits of its table --------------------------------

PRICE_PROMPT = (
    "Change the hero price from $99 to $499 and link the CTA to https://buy.stripe.com/pro_abc123"
)


@pytest.fixture(scope="module")
def pages() -> Iterator[str]:
    with serve_pages() as base:
        yield base


def ledger(env: Env, ws: Workspace) -> list[tuple[str, int]]:
    """The workspace's debits, oldest first: (reason, credits)."""
    store = Store(env.store_path)
    try:
        rows = store.conn.execute(
            "SELECT reason, delta FROM credit_ledger WHERE workspace_id = ? AND delta < 0 "
            "ORDER BY id",
            (ws.id,),
        ).fetchall()
    finally:
        store.close()
    return [(reason, -delta) for reason, delta in rows]


def registered(env: Env, ws: Workspace, url: str) -> str:
    answer = api_call(env.server, ws.key, "POST", "/v1/sites", {"url": url})
    assert answer.status_code == 201, answer.text
    site_id: str = answer.json()["data"]["id"]
    return site_id


def assert_price_variant(experiment: dict[str, Any]) -> None:
    changes = next(v["changes"] for v in experiment["variants"] if not v["is_control"])
    assert {c["action"] for c in changes} == {"set_content", "set_attribute"}
    assert any("$499" in c["payload"] for c in changes)
    assert any(c["payload"] == "https://buy.stripe.com/pro_abc123" for c in changes)
    assert experiment["goals"], "the suggested goal became the experiment's goal"


def test_one_shot_flow_costs_15_credits(env: Env, pages: str) -> None:
    ws = new_workspace(env, credit=100)
    site_id = registered(env, ws, pages)
    before = balance(env, ws)

    async def flow(client: Client) -> dict[str, Any]:
        return await call(
            client,
            "create_experiment",
            site_id=site_id,
            name="Pro pricing $499",
            prompt=PRICE_PROMPT,
            target_url=f"{pages}/pricing",
            auto_launch=True,
        )

    created = with_client(env, ws.key, flow)
    assert created["launch"] == {"status": "running"}
    assert created["experiment"]["status"] == "running"
    assert_price_variant(created["experiment"])
    assert before - balance(env, ws) == 15
    # One debit: create_experiment's 5 and the inline generate's 10.
    assert ledger(env, ws)[-1] == ("create_experiment", 15)


def test_two_step_flow_costs_17_credits(env: Env, pages: str) -> None:
    ws = new_workspace(env, credit=100)
    site_id = registered(env, ws, pages)
    before = balance(env, ws)

    async def flow(client: Client) -> dict[str, Any]:
        draft = await call(
            client,
            "generate_variant",
            site_id=site_id,
            prompt=PRICE_PROMPT,
            target_url=f"{pages}/pricing",
        )
        created = await call(
            client,
            "create_experiment",
            site_id=site_id,
            name="Premium pricing $499",
            hypothesis=draft["hypothesis"],
            variants=[{"name": draft["variant"]["name"], "changes": draft["variant"]["mutations"]}],
            goals=draft["suggested_goals"],
        )
        assert created["experiment"]["status"] == "draft"
        await call(client, "launch_experiment", experiment_id=created["experiment"]["id"])
        got = await call(client, "get_experiment", experiment_id=created["experiment"]["id"])
        return dict(got["experiment"])

    experiment = with_client(env, ws.key, flow)
    assert experiment["status"] == "running"
    assert_price_variant(experiment)
    assert [tool for tool, _ in ledger(env, ws)[-4:]] == [
        "generate_variant", "create_experiment", "launch_experiment", "get_experiment",
    ]  # fmt: skip
    assert before - balance(env, ws) == 17 + 2  # the flow, then the get_experiment check


def test_new_site_flow_costs_what_its_steps_cost(env: Env, pages: str) -> None:
    """list_sites 1 + create_site 5 + create_experiment with a prompt 15: 21 credits (the
    reference's steps; its heading says 22, which its own steps do not add up to)."""
    ws = new_workspace(env, credit=100)

    async def flow(client: Client) -> dict[str, Any]:
        assert (await call(client, "list_sites"))["sites"] == []
        site = (await call(client, "create_site", url=pages, reuse_if_exists=True))["site"]
        return await call(
            client,
            "create_experiment",
            site_id=site["id"],
            name="Pro pricing $499",
            prompt=PRICE_PROMPT,
            target_url=f"{pages}/pricing",
            auto_launch=True,
        )

    created = with_client(env, ws.key, flow)
    assert created["experiment"]["status"] == "running"
    assert 100 - balance(env, ws) == 1 + 5 + 15
    assert ledger(env, ws) == [("list_sites", 1), ("create_site", 5), ("create_experiment", 15)]


def test_idea_flow_costs_what_its_steps_cost(env: Env, pages: str) -> None:
    """list_ideas 1 + create_experiment from the idea 5 + launch_experiment 2: 8 credits
    (the reference's steps; its heading says 7)."""
    ws = new_workspace(env, credit=100)
    site_id = registered(env, ws, pages)

    async def ideas(client: Client) -> list[dict[str, Any]]:
        generated = await call(client, "generate_ideas", site_id=site_id, num_ideas=3)
        assert generated["success"] is True
        return list(generated["ideas"])

    assert len(with_client(env, ws.key, ideas)) == 3
    before = balance(env, ws)

    async def flow(client: Client) -> dict[str, Any]:
        listed = (await call(client, "list_ideas", site_id=site_id))["ideas"]
        idea = listed[0]
        created = await call(
            client,
            "create_experiment",
            site_id=site_id,
            idea_id=idea["id"],
            name=idea["title"][:200],
            goals=[{"name": "Signup", "type": "click", "selector": "a.nav__cta"}],
        )
        launched = await call(
            client, "launch_experiment", experiment_id=created["experiment"]["id"]
        )
        assert launched["status"] == "running"
        return dict(created["experiment"])

    experiment = with_client(env, ws.key, flow)
    assert next(v["changes"] for v in experiment["variants"] if not v["is_control"])
    assert before - balance(env, ws) == 1 + 5 + 2
    assert ledger(env, ws)[-3:] == [
        ("list_ideas", 1), ("create_experiment", 5), ("launch_experiment", 2),
    ]  # fmt: skip


def test_a_prompt_without_a_page_asks_and_creates_nothing_for_10_credits(
    env: Env, pages: str
) -> None:
    ws = new_workspace(env, credit=100)
    site_id = registered(env, ws, pages)
    before = balance(env, ws)

    async def flow(client: Client) -> dict[str, Any]:
        return await call(
            client, "create_experiment", site_id=site_id, name="Vague",
            prompt="Make the main button more exciting for visitors",
        )  # fmt: skip

    asked = with_client(env, ws.key, flow)
    question = asked["needs_clarification"]["questions"][0]
    assert (question["field"], question["input_type"], question["required"]) == (
        "target_url", "url", True,
    )  # fmt: skip
    assert f"{pages}/pricing" in question["suggestions"]
    assert before - balance(env, ws) == 10
    listed = api_call(env.server, ws.key, "GET", f"/v1/experiments?site_id={site_id}")
    assert listed.json()["data"] == []


def test_a_short_balance_is_an_error_result_and_changes_nothing(env: Env, pages: str) -> None:
    ws = new_workspace(env, credit=4)

    async def flow(client: Client) -> dict[str, Any]:
        return await error(client, "create_site", url=pages)

    short = with_client(env, ws.key, flow)
    assert (short["status"], short["code"]) == (402, "insufficient_credits")
    assert balance(env, ws) == 4
    listed = api_call(env.server, ws.key, "GET", "/v1/sites")
    assert listed.json()["data"] == []


def test_loop_tools_run_a_loop_with_the_reference_credits(env: Env, pages: str) -> None:
    ws = new_workspace(env, credit=100)
    site_id = registered(env, ws, pages)
    before = balance(env, ws)
    goal = {"name": "Pro checkout click", "type": "click", "selector": ".plan--pro a.cta"}

    async def flow(client: Client) -> None:
        coming = await error(
            client, "create_loop", site_id=site_id, element_types=["headline", "image"]
        )
        assert (coming["status"], coming["code"]) == (400, "coming_soon")
        seeds = await call(
            client, "create_loop", site_id=site_id, target_url=f"{pages}/pricing",
            element_types=["headline", "copy"],
        )  # fmt: skip
        assert seeds["phase"] == "seed_ideas" and 3 <= len(seeds["ideas"]) <= 5
        idea = seeds["ideas"][0]
        assert idea["mockup_data"]["mutations"]
        launched = await call(
            client, "create_loop", site_id=site_id, name="Pricing headline loop",
            target_url=f"{pages}/pricing", element_types=["headline", "copy"],
            primary_goal=goal, selected_idea_id=idea["id"],
        )  # fmt: skip
        assert launched["phase"] == "launched"
        loop, first = launched["loop"], launched["round"]
        assert (loop["status"], first["round_number"], first["outcome"]) == (
            "running", 1, "pending",
        )  # fmt: skip
        assert launched["preview_url"].endswith(f"sk_preview={first['challenger_variant_id']}")
        status = await call(client, "get_loop_status", loop_id=loop["id"])
        assert status["current_round"]["id"] == first["id"]
        assert status["next_decision_eta"]["decision"] == "wait"
        paused = await call(client, "pause_loop", loop_id=loop["id"])
        assert (paused["loop"]["status"], paused["no_op"]) == ("paused", False)
        assert paused["paused_experiment_id"] == first["experiment_id"]
        again = await call(client, "pause_loop", loop_id=loop["id"])
        assert again["no_op"] is True
        resumed = await call(client, "resume_loop", loop_id=loop["id"])
        assert (resumed["loop"]["status"], resumed["no_op"]) == ("running", False)
        assert resumed["resumed_experiment_id"] == first["experiment_id"]
        gone = await error(client, "get_loop_status", loop_id="no-such-loop")
        assert gone["status"] == 404

    with_client(env, ws.key, flow)
    # Two create_loop calls of 15, status 2, pause 2 twice, resume 2; the coming_soon
    # call and the unknown loop are not charged.
    assert before - balance(env, ws) == 15 + 15 + 2 + 2 + 2 + 2


@pytest.mark.server
def test_get_is_405_at_once_and_sigterm_stops_cleanly_with_clients_connected(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    store = Store(data / "splitedge.sqlite3")
    workspace = store.create_workspace("stream")
    key = store.issue_api_key(workspace.id).key
    store.close()
    auth = {"Authorization": f"Bearer {key}"}
    with running_server(data) as server:
        url = server.base_url + "/mcp"
        for accept in (None, "text/event-stream"):
            headers = auth if accept is None else auth | {"Accept": accept}
            started = time.monotonic()
            answer = httpx.get(url, headers=headers, timeout=5)
            assert time.monotonic() - started < 2
            assert answer.status_code == 405 and answer.headers["allow"] == "POST"
            assert answer.json()["error"]["code"] == "method_not_allowed"
        assert httpx.delete(url, headers=auth, timeout=5).status_code == 405
        # a client holding a keep-alive connection after its calls does not hold up a stop
        client = httpx.Client(headers=auth | {"Accept": "application/json, text/event-stream"})
        assert client.post(url, json=MCP_INITIALIZE).status_code == 200
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < 8
        client.close()
