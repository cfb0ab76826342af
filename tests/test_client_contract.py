"""The SDK's wire shapes and the server's agree: what the SDK sends, the server's own
decoders read as the same values; what the server answers, the SDK reads; and each pair
of Structs has the same fields, types and constraints, so a field added or changed on one
side only fails here.

The SDK (splitedge_client) has its own copies of these Structs so that it never imports
the server; this file is what keeps the copies honest.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge import http as server_http
from edge import wire as server_wire
from edge.assign_route import ASSIGN_OPERATION
from edge.config import ExperimentConfig, VariantConfig
from edge.ingest import schema as server_schema
from edge.ingest.events_route import EVENTS_OPERATION, MAX_EVENTS_BODY
from edge.operation import Operation
from splitedge_client import AssignedVariant, InvalidRequest
from splitedge_client import wire as sdk_wire
from splitedge_client.batches import MAX_BATCH_BYTES, batch_body
from splitedge_client.wire import assign_body, assigned, assigned_batch, task_event

# (SDK Struct, server Struct): the same shape on both sides of the wire.
PAIRS: list[tuple[type[msgspec.Struct], type[msgspec.Struct]]] = [
    (sdk_wire.AssignRequest, server_wire.AssignRequest),
    (sdk_wire.AssignUnit, server_wire.AssignUnit),
    (sdk_wire.Assignment, server_wire.Assignment),
    (sdk_wire.UnitAssignments, server_wire.UnitAssignments),
    (sdk_wire.AssignBatch, server_wire.AssignBatch),
    (sdk_wire.AgentTaskEvent, server_schema.AgentTaskEvent),
    (sdk_wire.ErrorEnvelope, server_http.ErrorEnvelope),
    (sdk_wire.ErrorDetail, server_http.ErrorDetail),
]


def _body_decoder(operation: Operation) -> msgspec.json.Decoder[Any]:
    assert operation.body is not None
    return operation.body


# What the server decodes an assign and an events body with: the routes' own decoders.
server_assign = _body_decoder(ASSIGN_OPERATION)
server_events = _body_decoder(EVENTS_OPERATION)


def _fields(struct: type[msgspec.Struct]) -> dict[str, Any]:
    """Each wire field of a Struct (by its encoded name): its JSON schema (type,
    constraints, default), and whether it is required. Docstrings do not count."""
    (_, components) = msgspec.json.schema_components([struct])
    schema = components[struct.__name__]
    return {"properties": schema["properties"], "required": sorted(schema["required"])}


@pytest.mark.parametrize("sdk, server", PAIRS, ids=[sdk.__name__ for sdk, _ in PAIRS])
def test_each_sdk_struct_has_the_fields_of_the_servers(
    sdk: type[msgspec.Struct], server: type[msgspec.Struct]
) -> None:
    assert sdk.__name__ == server.__name__  # a nested $ref names the same Struct
    assert _fields(sdk) == _fields(server)
    sdk_names = [(f.name, f.encode_name) for f in msgspec.structs.fields(sdk)]
    server_names = [(f.name, f.encode_name) for f in msgspec.structs.fields(server)]
    assert sdk_names == server_names


def test_the_batch_limits_are_the_servers() -> None:
    assert sdk_wire.MAX_UNITS_PER_BATCH == server_wire.MAX_UNITS_PER_BATCH
    assert sdk_wire.MAX_EVENTS_PER_BATCH == server_schema.MAX_EVENTS_PER_BATCH
    assert MAX_BATCH_BYTES < MAX_EVENTS_BODY


ids = st.text(min_size=1, max_size=128)
optional_ids = st.text(max_size=128)
short_text = st.text(max_size=256)
finite = st.floats(allow_nan=False, allow_infinity=False)
metadata_values = st.one_of(
    short_text,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    finite,
    st.booleans(),
    st.none(),
)
# Every field of a task event, each filled (task_event makes event_id and ts otherwise).
task_fields = st.fixed_dictionaries(
    {
        "agent_id": ids,
        "task": short_text,
        "outcome": st.sampled_from(["success", "failure", "partial"]),
        "cost": st.floats(min_value=0, max_value=1e15),
        "duration_ms": st.floats(min_value=0, max_value=1e12),
        "metadata": st.dictionaries(short_text, metadata_values, max_size=8),
        "turns": st.integers(min_value=0, max_value=1_000_000),
        "experiment_id": optional_ids,
        "variant_id": optional_ids,
        "session_id": optional_ids,
        "event_id": ids,
        "ts": st.integers(min_value=946_684_800_000, max_value=4_102_444_800_000 - 1),
    }
)


@settings(max_examples=150, deadline=None)
@given(st.lists(task_fields, min_size=1, max_size=5))
def test_task_events_the_sdk_sends_decode_to_the_same_values_on_the_server(
    events: list[dict[str, Any]],
) -> None:
    encoded = [task_event(**fields)[1] for fields in events]
    decoded = server_events.decode(batch_body(encoded))
    assert isinstance(decoded, list)
    for fields, event in zip(events, decoded, strict=True):
        assert msgspec.structs.asdict(event) == fields
    # One event alone is a body the server takes too.
    single = server_events.decode(encoded[0])
    assert isinstance(single, server_schema.AgentTaskEvent)
    assert msgspec.structs.asdict(single) == events[0]


@pytest.mark.parametrize(
    "bad",
    [
        {"agent_id": ""},
        {"task": "t" * 257},
        {"outcome": "maybe"},
        {"cost": 2e15},
        {"duration_ms": -1.0},
        {"turns": -1},
        {"experiment_id": "e" * 129},
        {"metadata": {f"k{i}": i for i in range(65)}},
        {"ts": 1},
    ],
)
def test_an_event_the_sdk_refuses_the_server_refuses(bad: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"agent_id": "bot", "task": "t", "outcome": "success", **bad}
    with pytest.raises(InvalidRequest):
        task_event(**fields)
    # The server ignores a field it does not know: send each by its wire name.
    wire_names = {"agent_id": "agentId", "duration_ms": "durationMs"}
    as_sent = {wire_names.get(name, name): v for name, v in fields.items()}
    with pytest.raises(msgspec.ValidationError):
        server_events.decode(msgspec.json.encode(as_sent))


@pytest.mark.parametrize("cost", [-1.0, -1e-9, float("nan"), float("inf")])
def test_an_impossible_cost_is_a_value_error_when_tracked(cost: float) -> None:
    with pytest.raises(ValueError, match=r"cost"):
        task_event("bot", "t", "success", cost=cost)


@settings(max_examples=100, deadline=None)
@given(ids, st.lists(st.text(min_size=1, max_size=1024), min_size=1, max_size=20))
def test_assign_bodies_the_sdk_sends_decode_to_the_same_values_on_the_server(
    experiment_id: str, unit_ids: list[str]
) -> None:
    one = server_assign.decode(assign_body(experiment_id, unit_ids[0]))
    assert (one.experiment_id, one.unit_id, one.units) == (experiment_id, unit_ids[0], None)
    many = server_assign.decode(assign_body(experiment_id, unit_ids))
    assert many.experiment_id == experiment_id and many.unit_id is None
    assert [unit.unit_id for unit in many.units or []] == unit_ids


def test_an_assign_request_with_every_field_filled_decodes_the_same_on_the_server() -> None:
    unit = sdk_wire.AssignUnit("u-1", url="https://x.test/p", attributes={"plan": "pro"})
    request = sdk_wire.AssignRequest(
        experiment_id="exp", public_key="pk", site_id="site", unit_id="u-0",
        url="/pricing", attributes={"n": 1, "f": 0.5, "b": True, "z": None}, units=[unit],
    )  # fmt: skip
    decoded = server_assign.decode(msgspec.json.encode(request))
    assert msgspec.to_builtins(decoded) == msgspec.to_builtins(request)


def _assignment(deployed: bool, config: Any) -> bytes:
    """An agent variant's encoded assignment, made as the server makes it."""
    variant = VariantConfig(id="v-1", name="concise", control=False, weight=5000, config=config)
    control = VariantConfig(id="v-0", name="control", control=True, weight=5000)
    experiment = ExperimentConfig(
        id="exp-1", kind="agent", variants=(control, variant), deployed=deployed
    )
    return server_wire.assignment_fragment(experiment, variant)


@pytest.mark.parametrize("deployed", [False, True])
def test_assign_answers_the_server_encodes_decode_in_the_sdk(deployed: bool) -> None:
    config = {"soul_md": "Be concise.", "temperature": 0.2, "tools": ["search"]}
    fragment = msgspec.json.decode(_assignment(deployed, config), type=server_wire.Assignment)
    answer = server_wire.UnitAssignments("run-7", [fragment])
    body = msgspec.json.encode({"data": answer, "meta": server_wire.AssignMeta(3)})
    expected = AssignedVariant("exp-1", "run-7", "v-1", "concise", False, config, deployed)
    assert assigned(body) == expected

    outside = server_wire.UnitAssignments("run-8", [])
    batch = server_wire.AssignBatch([answer, outside])
    body = msgspec.json.encode({"data": batch, "meta": server_wire.AssignMeta(3)})
    assert assigned_batch(body) == [expected, None]


def test_the_servers_error_envelope_reads_as_an_api_error() -> None:
    error = sdk_wire.api_error(404, server_http.error_body("not_found", "no such experiment"))
    assert (error.status, error.code, error.message) == (404, "not_found", "no such experiment")


def test_the_sdk_refuses_metadata_the_server_would_refuse() -> None:
    """The SDK checks the server's metadata limits itself, so one oversized event is
    refused when it is tracked instead of getting its whole batch refused."""
    assert sdk_wire.MAX_METADATA_BYTES == server_schema.MAX_METADATA_BYTES
    assert sdk_wire.MAX_METADATA_DEPTH == server_schema.MAX_METADATA_DEPTH
    nested: dict[str, Any] = {"leaf": 1}
    for _ in range(server_schema.MAX_METADATA_DEPTH - 1):
        nested = {"in": nested}
    task_event("a", "t", "success", metadata=nested)  # exactly as deep as allowed
    with pytest.raises(InvalidRequest, match="deeper than 8"):
        task_event("a", "t", "success", metadata={"in": nested})
    with pytest.raises(InvalidRequest, match="over the server's limit of 8192"):
        task_event("a", "t", "success", metadata={"text": "x" * 8200})
