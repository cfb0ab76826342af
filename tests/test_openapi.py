"""``GET /openapi.json`` and ``GET /docs`` against a real server: the document is OpenAPI
3.1 and names every ``/v1`` route the app serves with its methods, the page names every
path, and schemathesis finds no 5xx and no answer that breaks the document."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from typing import Any

import httpx
import markupsafe
import msgspec
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import Case
from starlette.routing import Route

from edge.app import create_app
from edge.control.openapi import openapi_document, operations
from edge.control.records import NewGoal
from edge.control.store import Store
from edge.hot_routes import HotRoutes
from edge.metrics import RequestTimer
from edge.operation import Operation
from edge.settings import Settings
from tests.page_server import serve_pages
from tests.support import (
    SENT_AT_MS,
    Seed,
    Server,
    add_experiment,
    collect,
    running_server,
    seed_store,
    wait_flushed,
    web_events,
)

Served = tuple[Server, Seed]


def built_app() -> tuple[dict[str, set[str]], list[tuple[str, str, Operation]], dict[str, Any]]:
    """The methods of every route the app serves (HEAD aside: Starlette answers it for
    GET), its documented operations, and its OpenAPI document, made in a scratch data
    directory."""
    with tempfile.TemporaryDirectory() as scratch:
        app = create_app(Settings(data_dir=scratch))
        assert isinstance(app, RequestTimer) and isinstance(app.app, HotRoutes)
        routes = app.app.app.router.routes  # type: ignore[attr-defined]
        methods = {
            route.path: set(route.methods or ()) - {"HEAD"}
            for route in routes
            if isinstance(route, Route)
        }
        document = json.loads(msgspec.json.encode(openapi_document(routes)))
    return methods, operations(routes), document


# Schemathesis makes its tests (one per operation) when the module is collected, from the
# document; the document the server serves is checked to be this one. (Its lazy loader,
# schemathesis.pytest.from_fixture, would load the served one, but it sets Node._nodeid,
# which pytest 9.2 no longer has.)
ROUTES, OPERATIONS, DOCUMENT = built_app()


# Ids the server's store holds, by the name of the path parameter or body field that takes
# them; `served` fills it, and the hooks below mix them with what schemathesis makes up, so
# that its requests reach the handlers' core and not only their 404s.
KNOWN: dict[str, list[Any]] = {}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server of its own (schemathesis creates, changes and deletes what it finds) over a
    seeded store: a running experiment with events, a draft, a webhook endpoint, and a
    second workspace whose ids must stay 404."""
    data = tmp_path_factory.mktemp("openapi") / "data"
    seed = seed_store(data / "splitedge.sqlite3")
    store = Store(data / "splitedge.sqlite3")
    try:
        draft, draft_variants, _ = add_experiment(
            store, seed, "Draft", ["Control", "Wide"], [NewGoal("Signup", "custom")], start=False
        )
        # A key schemathesis may revoke: never the one it sends (seed.key).
        spare = store.issue_api_key(seed.workspace_id, name="spare")
    finally:
        store.close()
    with (
        serve_pages() as pages,
        running_server(data, args=["--allow-private-targets"]) as server,
    ):
        # The authoring routes fetch the site's pages: the fixture pages on loopback.
        store = Store(data / "splitedge.sqlite3")
        try:
            store.conn.execute("UPDATE sites SET url = ? WHERE id = ?", (pages + "/", seed.site.id))
        finally:
            store.close()
        events = web_events(seed.experiment_id, seed.variant_ids, seed.goal_id,
                            [(40, 4), (40, 9)], "openapi")  # fmt: skip
        assert collect(server, seed.site.public_key, events) == len(events)
        # An agent's tasks, half of them ten days ago: its stats and drift have figures.
        outcomes = ("success", "failure", "partial")
        tasks = [
            {
                "agentId": "openapi-bot",
                "task": f"t{i % 3}",
                "outcome": outcomes[i % 3],
                "cost": 0.01 * (i + 1),
                "durationMs": 100.0 * i,
                "turns": i % 5,
                "ts": SENT_AT_MS - i % 2 * 10 * 86_400_000,
            }
            for i in range(80)
        ]
        sent = httpx.post(
            server.base_url + "/v1/events",
            headers={"authorization": f"Bearer {seed.key.key}"},
            json=tasks,
        )
        assert sent.status_code == 201, sent.text
        wait_flushed(server, len(events) + len(tasks))
        webhook = httpx.post(
            server.base_url + "/v1/webhooks",
            headers={"authorization": f"Bearer {seed.key.key}"},
            # Deliveries fail at once (nothing listens there) and stay on this machine.
            json={"url": "https://127.0.0.1:9/hook", "events": ["experiment.launched"]},
        )
        assert webhook.status_code == 201, webhook.text
        KNOWN.update(
            site_id=[seed.site.id, seed.other_site.id],
            org_id=[seed.workspace_id, seed.other_key.record.workspace_id],
            public_key=[seed.site.public_key, seed.other_site.public_key],
            experiment_id=[seed.experiment_id, draft, seed.other_experiment_id],
            variant_id=[*seed.variant_ids, *draft_variants],
            variant=["Control", "Bold", "Wide"],
            goal_id=[seed.goal_id],
            agent_id=["openapi-bot"],
            webhook_id=[webhook.json()["data"]["id"]],
            key_id=[spare.record.id, seed.other_key.record.id],
            target_id=[seed.experiment_id, seed.site.id],
            # An endpoint URL on this machine, for the webhook example among others. (Events
            # are queued for the endpoints registered when they happen, and the webhook
            # operations come after every lifecycle operation: the endpoints schemathesis
            # registers never get a delivery, so nothing leaves loopback.)
            url=["https://127.0.0.1:9/hook"],
        )
        try:
            yield server, seed
        finally:
            KNOWN.clear()


@pytest.fixture(scope="module")
def document(served: Served) -> dict[str, Any]:
    answer = httpx.get(served[0].base_url + "/openapi.json", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    body: dict[str, Any] = answer.json()
    return body


def test_the_document_is_openapi_3_1_with_every_v1_route(document: dict[str, Any]) -> None:
    assert document == DOCUMENT
    assert document["openapi"] == "3.1.0"
    assert document["servers"] == [{"url": "/", "description": "This server."}]
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    served = ROUTES
    v1 = {path: methods for path, methods in served.items() if path.startswith("/v1/")}
    assert len(v1) >= 20
    documented = {
        path: {method.upper() for method in item} for path, item in document["paths"].items()
    }
    for path, methods in v1.items():
        assert documented.get(path) == methods, (
            f"{path} serves {sorted(methods)} but documents {sorted(documented.get(path, ()))}: "
            "give each method an ApiOperation (edge.control.api) in its module's routes()"
        )
    for path in ("/s/{public_key}.js", "/healthz", "/readyz"):
        assert documented[path] == served[path]
    # Each Struct is one component, named by its class (a clash would be module-qualified).
    assert all("." not in name for name in document["components"]["schemas"])


def test_every_operation_documents_its_answers(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        for method, op in item.items():
            where = f"{method.upper()} {path}"
            assert op["summary"], where
            statuses = set(op["responses"])
            assert statuses & {"200", "201", "204"}, where
            if op["security"] == [{"bearerAuth": []}]:
                assert "401" in statuses, where
            if "requestBody" in op:
                assert {"400", "413"} <= statuses, where
            for status, response in op["responses"].items():
                if status.startswith("4") and "application/json" in response.get("content", {}):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorEnvelope"}, where


def test_every_example_is_a_body_its_operation_decodes() -> None:
    examples = [(path, op) for path, _, op in OPERATIONS if op.example is not None]
    assert len(examples) >= 8
    for path, op in examples:
        assert op.body is not None, path
        op.body.decode(msgspec.json.encode(op.example))


def test_docs_page_names_every_path(served: Served, document: dict[str, Any]) -> None:
    answer = httpx.get(served[0].base_url + "/docs", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    page = answer.text
    # Self-contained: nothing to fetch from elsewhere, nothing to run.
    assert "<script" not in page and "<link" not in page and "src=" not in page
    assert 'href="http' not in page
    for path, item in document["paths"].items():
        assert f"<code>{path}</code>" in page, path
        for method, op in item.items():
            assert f">{method.upper()}</span>" in page
            assert str(markupsafe.escape(op["summary"])) in page, op["summary"]
    assert 'href="#schema-CreateSite"' in page and 'id="schema-CreateSite"' in page


# Bodies the schema admits (or once admitted) that made a handler fail with a 500: each is
# now a 400 that says what is wrong. Schemathesis rarely makes these up; they stay here.
WEB_VARIANTS = [
    {"name": "B", "changes": [{"selector": "h1", "action": "set_content", "payload": "B"}]}
]
ADMITTED_BUT_WRONG = [
    ("/v1/sites", {"url": "http://[::1"}, "Invalid IPv6 URL"),
    ("/v1/sites", {"url": "https://shop.example.com:99999/"}, "Port out of range"),
    ("/v1/sites", {"url": "shop\x00.example.com"}, "control character"),
    ("/v1/webhooks", {"url": "https://[::1/x", "events": ["experiment.launched"]}, "IPv6"),
    (
        "/v1/experiments",
        {"name": "n", "variants": [{"name": "B", "redirect_url": "https://[::1"}]},
        "variants[0].redirect_url",
    ),
    (
        "/v1/experiments",
        {"name": "n", "variants": WEB_VARIANTS, "target_url": "https://a.example:99999/"},
        "target_url",
    ),
    (
        "/v1/experiments",
        {"name": "n", "variants": WEB_VARIANTS, "sample_size": 2**63},
        "sample_size",
    ),
]


@pytest.mark.parametrize(("path", "body", "says"), ADMITTED_BUT_WRONG)
def test_wrong_values_of_the_right_type_are_400(
    served: Served, path: str, body: dict[str, Any], says: str
) -> None:
    server, seed = served
    if path == "/v1/experiments":
        body = {"site_id": seed.site.id, **body}
    answer = httpx.post(
        server.base_url + path, headers={"authorization": f"Bearer {seed.key.key}"}, json=body
    )
    assert answer.status_code == 400, answer.text
    assert says in answer.json()["error"]["message"]


def test_a_body_nested_too_deeply_is_400(served: Served) -> None:
    server, seed = served
    config = "[" * 100_000 + "]" * 100_000
    answer = httpx.post(
        server.base_url + "/v1/experiments",
        headers={"authorization": f"Bearer {seed.key.key}", "content-type": "application/json"},
        content=f'{{"name": "n", "variants": [{{"name": "a", "config": {config}}}]}}',
    )
    assert answer.status_code == 400, answer.text
    assert "nests" in answer.json()["error"]["message"]


schema = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=schemathesis.Config.from_dict(
        {
            "seed": 6,
            "generation": {"max-examples": 50, "database": "none"},
            "checks": {
                "enabled": False,
                "not_a_server_error": {"enabled": True},
                "status_code_conformance": {"enabled": True},
                "content_type_conformance": {"enabled": True},
                "response_schema_conformance": {"enabled": True},
            },
        }
    ),
)


def with_known(values: dict[str, Any] | None) -> st.SearchStrategy[dict[str, Any] | None]:
    """``values`` as made up, or with one of its fields set to an id the store holds."""
    if not values:
        return st.just(values)
    choices = [values]
    for name in values:
        choices += [{**values, name: known} for known in KNOWN.get(name, ())]
    return st.sampled_from(choices)


@schema.hook
def flatmap_path_parameters(
    context: schemathesis.HookContext, path_parameters: dict[str, Any]
) -> st.SearchStrategy[dict[str, Any]]:
    return with_known(path_parameters)


@schema.hook
def flatmap_query(
    context: schemathesis.HookContext, query: dict[str, Any] | None
) -> st.SearchStrategy[dict[str, Any] | None]:
    return with_known(query)


@schema.hook
def flatmap_body(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
    if not isinstance(body, dict):
        return st.just(body)
    events = body.get("events")
    if isinstance(events, list) and events and all(isinstance(e, dict) for e in events):
        # A collect batch: its first event may name the running experiment's ids.
        return with_known(body).flatmap(
            lambda b: with_known(events[0]).map(lambda first: {**b, "events": [first, *events[1:]]})
        )
    return with_known(body)


@schema.parametrize()
def test_schemathesis_finds_no_5xx_and_no_schema_violation(case: Case, served: Served) -> None:
    server, seed = served
    if case.meta is not None and case.meta.phase.name == "examples":
        # The documented examples name ids of no store: send them with the seeded ones.
        for values in (case.path_parameters, case.body):
            if isinstance(values, dict):
                values.update({k: KNOWN[k][0] for k in values if KNOWN.get(k)})
    case.call_and_validate(
        base_url=server.base_url, headers={"authorization": f"Bearer {seed.key.key}"}
    )
