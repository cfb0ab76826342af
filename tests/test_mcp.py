"""The MCP gateway (edge.control.mcp_gateway): the official SDK's own client connects to a
real server over streamable HTTP, lists exactly the reference's 14 tools with their input
schemas, gets the reference's guardrail errors as isError results, and runs the
reference's flows with the credits of its table."""

from __future__ import annotations

import asyncio
import json
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
from edge.control.store import Store
from tests.support import Server, api_call, running_server

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
    with running_server(data, args=["--limits", str(plans_file)]) as server:
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
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
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
        assert got["status"] == "running" and len(got["variants"]) == 2
        listed = await call(client, "list_experiments", site_id=site["id"], status="active")
        assert [e["id"] for e in listed["experiments"]] == [made["experiment"]["id"]]
        gone = await error(client, "get_experiment", experiment_id="no-such-experiment")
        assert gone["status"] == 404

    with_client(env, ws.key, work)


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
