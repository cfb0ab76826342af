"""The SDK (splitedge_client) against real servers: assignment by experiment id (payloads,
determinism, isolation, a promoted winner), task events that reach ClickHouse exactly once
(across a server restart, sync and async), and the parts of the client that need no
server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from edge.assign import AssignmentTable
from edge.control.records import NewExperiment, NewVariant
from edge.control.store import Store
from edge.ingest.events_route import MAX_EVENTS_BODY
from edge.ingest.schema import AgentTaskEvent
from splitedge_client import (
    ApiError,
    AssignedVariant,
    AsyncClient,
    Client,
    ClientClosed,
    DeliveryTimeout,
    InvalidRequest,
    RetryPolicy,
    Unreachable,
)
from splitedge_client.batches import MAX_BATCH_BYTES, PendingEvents, Verdict, batch_body, judge
from splitedge_client.wire import task_event
from tests.support import (
    Seed,
    Server,
    api_call,
    clickhouse_rows,
    free_port,
    running_server,
    seed_store,
    wait_flushed,
)

pytestmark = pytest.mark.server

PROMPTS = ({"soul_md": "You are a helpful assistant."}, {"soul_md": "Be concise and direct."})
FAST = RetryPolicy(backoff=0.05, backoff_cap=0.5)

# These tests count what the server assigned: a loaded CI machine must not turn an assign
# into a fallback (the default timeout is 0.5 s; tests/test_sdk_resilience.py tests those).
PATIENT = 30.0


class Fleet(msgspec.Struct):
    """A seeded store with agent experiments on no site: two of workspace A (one to
    promote), one of workspace B."""

    seed: Seed
    experiment_id: str
    variant_ids: list[str]
    to_promote: str
    others: str


def agent_experiment(store: Store, workspace_id: str, name: str) -> tuple[str, list[str]]:
    """A running agent experiment on no site, its two prompts weighted equally."""
    experiment_id = store.create_experiment(
        NewExperiment(
            workspace_id=workspace_id,
            name=name,
            kind="agent",
            variants=(
                NewVariant("control", 50, config=PROMPTS[0]),
                NewVariant("concise", 50, config=PROMPTS[1]),
            ),
        )
    )
    store.set_experiment_status(experiment_id, "running")
    variants = [
        row[0]
        for row in store.conn.execute(
            "SELECT id FROM variants WHERE experiment_id = ? ORDER BY position", (experiment_id,)
        )
    ]
    return experiment_id, variants


def seed_fleet(data: Path) -> Fleet:
    seed = seed_store(data / "splitedge.sqlite3")
    store = Store(data / "splitedge.sqlite3")
    try:
        experiment_id, variants = agent_experiment(store, seed.workspace_id, "soul.md")
        to_promote, _ = agent_experiment(store, seed.workspace_id, "to promote")
        others, _ = agent_experiment(store, seed.other_site.workspace_id, "B's prompts")
    finally:
        store.close()
    return Fleet(seed, experiment_id, variants, to_promote, others)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Fleet]]:
    data = tmp_path_factory.mktemp("client") / "data"
    fleet = seed_fleet(data)
    with running_server(data) as server:
        yield server, fleet


def task_rows(data: Path) -> list[tuple[Any, ...]]:
    return clickhouse_rows(
        data,
        "SELECT event_id, experiment_id, variant_id, unit_id, agent_id, outcome, cost, turns "
        "FROM splitedge.events WHERE kind = 'task' ORDER BY event_id",
    )


# --- assignment ---------------------------------------------------------------------------


def test_assign_returns_the_variant_and_its_payload_the_same_every_time(
    fleet: tuple[Server, Fleet],
) -> None:
    server, f = fleet
    table = AssignmentTable.build(f.experiment_id, [5000, 5000])
    with Client(server.base_url, f.seed.key.key, assign_timeout=PATIENT) as client:
        units = [f"run-{i}" for i in range(200)]
        first = [client.assign(f.experiment_id, unit) for unit in units]
        assert [client.assign(f.experiment_id, unit) for unit in units[:50]] == first[:50]
        assert client.assign_many(f.experiment_id, units) == first
    for unit, got in zip(units, first, strict=True):
        assert got is not None and got.unit_id == unit
        index = table.assign(unit)
        assert index is not None
        assert got.variant_id == f.variant_ids[index]
        assert got.payload == PROMPTS[index] and got.is_control is (index == 0)
        assert got.experiment_id == f.experiment_id and not got.deployed
    assert 60 < sum(g is not None and g.is_control for g in first) < 140


def test_an_experiment_made_with_clawsplits_body_is_assigned_at_once(
    fleet: tuple[Server, Fleet],
) -> None:
    """No site, soul_md variants, launched on create: the edge serves it by id in < 1 s."""
    server, f = fleet
    body = {
        "name": "concise-vs-verbose-soulmd",
        "variants": [
            {"name": "control", "soul_md": "You are a helpful assistant..."},
            {"name": "concise", "soul_md": "Be concise and direct..."},
        ],
        "sample_size": 200,
        "primary_metric": "task_completion",
        "auto_launch": True,
    }
    created = api_call(server, f.seed.key.key, "POST", "/v1/experiments", body)
    assert created.status_code == 201, created.text
    experiment = created.json()["data"]["experiment"]
    assert experiment["site_id"] is None and experiment["status"] == "running"
    with Client(server.base_url, f.seed.key.key, assign_timeout=PATIENT, retry=FAST) as client:
        since = time.monotonic()
        while True:
            try:
                variant = client.assign(experiment["id"], "run-42", strict=True)
                break
            except ApiError as exc:
                assert exc.status == 404 and time.monotonic() - since < 1.0
                time.sleep(0.02)
    assert variant is not None
    assert {"soul_md": variant.payload["soul_md"]} in [v["config"] for v in experiment["variants"]]


def test_assign_by_experiment_id_takes_a_key_of_its_workspace(
    fleet: tuple[Server, Fleet],
) -> None:
    server, f = fleet
    with Client(server.base_url, f.seed.key.key, assign_timeout=PATIENT) as client:
        for experiment_id in (f.others, "no-such-experiment"):
            with pytest.raises(ApiError) as caught:
                client.assign(experiment_id, "run-1", strict=True)
            assert (caught.value.status, caught.value.code) == (404, "not_found")
            fallback = client.assign(experiment_id, "run-1", default={"soul_md": "mine"})
            assert fallback is not None and fallback.source == "default"
            assert fallback.payload == {"soul_md": "mine"} and not fallback.counted
    with Client(server.base_url, f.seed.other_key.key, assign_timeout=PATIENT) as client:
        assert client.assign(f.others, "run-1") is not None
    body = {"experiment_id": f.experiment_id, "unit_id": "run-1"}
    anonymous = httpx.post(server.base_url + "/v1/assign", json=body)
    assert anonymous.status_code == 401 and "Bearer" in anonymous.text
    site_and_experiment = {**body, "public_key": f.seed.site.public_key}
    both = api_call(server, f.seed.key.key, "POST", "/v1/assign", site_and_experiment)
    assert both.status_code == 400 and "exactly one" in both.text


def test_a_promoted_experiment_assigns_the_winner_to_every_unit(
    fleet: tuple[Server, Fleet],
) -> None:
    server, f = fleet
    key = f.seed.key.key
    deployed = api_call(
        server, key, "POST", f"/v1/experiments/{f.to_promote}/deploy", {"variant": "concise"}
    )
    assert deployed.status_code == 200, deployed.text
    with Client(server.base_url, key, assign_timeout=PATIENT, retry=FAST) as client:
        deadline = time.monotonic() + 2
        while not (probe := client.assign(f.to_promote, "run-0")) or not probe.deployed:
            assert time.monotonic() < deadline, "the edge did not follow the promotion"
            time.sleep(0.02)
        units = [f"run-{i}" for i in range(300)]
        everyone = client.assign_many(f.to_promote, units)
        assert {(v.variant_name, v.deployed) for v in everyone if v} == {("concise", True)}
        assert all(v is not None and v.payload == PROMPTS[1] for v in everyone)
        # A task of a deployed experiment is reported without it, so it is not refused.
        client.track_task("bot", "reply", "success", assignment=everyone[0])
        client.flush(10)
        assert (client.stats().sent, client.stats().refused) == (1, 0)


# --- task events --------------------------------------------------------------------------


def track(client: Client, f: Fleet, runs: range) -> list[str]:
    ids = []
    for i in runs:
        variant = client.assign(f.experiment_id, f"run-{i}")
        outcome = "success" if i % 3 else "failure"
        ids.append(
            client.track_task("support-bot", "refund", outcome, cost=0.01 * (i % 5),
                              duration_ms=100 + i, turns=i % 7, assignment=variant)
        )  # fmt: skip
    return ids


def test_track_task_events_reach_clickhouse_once_across_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    f = seed_fleet(data)
    port = free_port()
    with running_server(data, port=port) as server:
        client = Client(
            server.base_url, f.seed.key.key, assign_timeout=PATIENT, batch_size=25, retry=FAST
        )
        sent = track(client, f, range(0, 120))
        client.flush(20)
        assert client.stats().sent == 120
        wait_flushed(server, 120)
    # The server is down: events queue, and their batches are retried until it is back.
    for i in range(120, 200):
        sent.append(client.track_task("support-bot", "refund", "partial", session_id=f"run-{i}"))
    deadline = time.monotonic() + 5
    while client.stats().retries < 3:
        assert time.monotonic() < deadline, client.stats()
        time.sleep(0.05)
    assert client.stats().sent == 120
    with running_server(data, port=port) as server:
        client.close(30)
        stats = client.stats()
        assert (stats.sent, stats.refused, stats.dropped, stats.pending) == (200, 0, 0, 0)
        wait_flushed(server, 80)
    rows = task_rows(data)
    assert sorted(r[0] for r in rows) == sorted(sent)
    by_id = {r[0]: r for r in rows}
    table = AssignmentTable.build(f.experiment_id, [5000, 5000])
    for i, event_id in enumerate(sent[:120]):
        _, experiment_id, variant_id, unit_id, agent, outcome, cost, turns = by_id[event_id]
        assert (experiment_id, unit_id, agent) == (f.experiment_id, f"run-{i}", "support-bot")
        assert variant_id == f.variant_ids[table.assign(unit_id) or 0]
        assert (outcome, cost, turns) == ("success" if i % 3 else "failure", 0.01 * (i % 5), i % 7)
    assert {by_id[e][5] for e in sent[120:]} == {"partial"}
    with pytest.raises(ClientClosed):
        client.track_task("support-bot", "late", "success")


def test_async_client_assigns_and_delivers_exactly_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    f = seed_fleet(data)

    async def agent(client: AsyncClient, n: int) -> list[str]:
        ids = []
        for i in range(n * 40, n * 40 + 40):
            variant = await client.assign(f.experiment_id, f"run-{i}")
            assert variant is not None and variant.payload in PROMPTS
            ids.append(
                await client.track_task("async-bot", "summarise", "success", cost=0.5,
                                        turns=3, assignment=variant)
            )  # fmt: skip
        return ids

    async def fleet_of_agents(base_url: str) -> tuple[list[str], list[AssignedVariant | None]]:
        async with AsyncClient(
            base_url, f.seed.key.key, assign_timeout=PATIENT, batch_size=50, retry=FAST
        ) as client:
            batches = await asyncio.gather(*(agent(client, n) for n in range(8)))
            await client.flush(20)
            assert client.stats().sent == 320
            units = [f"run-{i}" for i in range(320)]
            return [e for ids in batches for e in ids], await client.assign_many(
                f.experiment_id, units
            )

    with running_server(data) as server:
        sent, variants = asyncio.run(fleet_of_agents(server.base_url))
        with Client(server.base_url, f.seed.key.key, assign_timeout=PATIENT) as sync:
            assert variants == sync.assign_many(f.experiment_id, [f"run-{i}" for i in range(320)])
        wait_flushed(server, 320)
    rows = task_rows(data)
    assert sorted(r[0] for r in rows) == sorted(sent)
    assert {(r[4], r[6], r[7]) for r in rows} == {("async-bot", 0.5, 3)}
    by_unit = {r[3]: r[2] for r in rows}
    assert by_unit == {v.unit_id: v.variant_id for v in variants if v}


def test_a_refused_event_does_not_take_its_batch_with_it(fleet: tuple[Server, Fleet]) -> None:
    server, f = fleet
    with Client(server.base_url, f.seed.key.key, assign_timeout=PATIENT, retry=FAST) as client:
        for i in range(4):
            client.track_task("bot", "ok", "success", session_id=f"s{i}")
        client.track_task("bot", "stale", "success", experiment_id="no-longer-running")
        client.flush(10)
        stats = client.stats()
    assert (stats.queued, stats.sent, stats.refused, stats.dropped) == (5, 4, 1, 0)
    assert stats.last_error is not None and "404" in stats.last_error


def test_results_are_the_experiments_results(fleet: tuple[Server, Fleet]) -> None:
    server, f = fleet
    with Client(server.base_url, f.seed.key.key, assign_timeout=PATIENT, retry=FAST) as client:
        track(client, f, range(1000, 1040))
        client.flush(10)
        results = client.results(f.experiment_id)
        assert results["experiment_id"] == f.experiment_id
        assert set(results["variants"]) == {"control", "concise"}
        assert {"status", "winner", "p_value"} <= set(results)
        with pytest.raises(ApiError) as caught:
            client.results(f.others)
        assert caught.value.status == 404

    async def run() -> dict[str, Any]:
        async with AsyncClient(server.base_url, f.seed.key.key, assign_timeout=PATIENT) as client:
            return await client.results(f.experiment_id)

    assert asyncio.run(run())["experiment_id"] == f.experiment_id


def test_async_client_refuses_events_after_close(fleet: tuple[Server, Fleet]) -> None:
    server, f = fleet

    async def run() -> None:
        client = AsyncClient(server.base_url, f.seed.key.key, assign_timeout=PATIENT)
        await client.track_task("bot", "t", "success")
        await client.close()
        assert client.stats().sent == 1
        with pytest.raises(ClientClosed):
            await client.track_task("bot", "t", "success")

    asyncio.run(run())


# --- no server --------------------------------------------------------------------------


def test_an_unreachable_server_is_a_fallback_a_full_queue_drops_the_oldest() -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    # A batch is due only when flushed: the queue fills without the sender taking any.
    client = Client(nowhere, "sk_live_x", max_queue=3, flush_interval=60, retry=FAST)
    with pytest.raises(Unreachable, match="after 3 tries"):
        client.assign("exp", "u", strict=True)
    fallback = client.assign("exp", "u", default="v1 prompt")
    assert fallback is not None and (fallback.source, fallback.payload) == ("default", "v1 prompt")
    ids = [client.track_task("bot", "t", "success") for _ in range(5)]
    stats = client.stats()
    assert (stats.queued, stats.dropped, stats.pending) == (5, 2, 3)
    waiting = client._sender.queue.remaining()
    assert [msgspec.json.decode(e, type=AgentTaskEvent).event_id for e in waiting] == ids[2:]
    with pytest.raises(DeliveryTimeout):
        client.flush(0.2)
    with pytest.raises(DeliveryTimeout, match="3 task events"):
        client.close(0.3)
    stats = client.stats()
    assert (stats.dropped, stats.pending, stats.sent) == (5, 0, 0) and stats.retries > 0


def test_events_are_checked_when_tracked_as_the_server_checks_them() -> None:
    event_id, encoded = task_event(
        "bot", "t", "partial", cost=1.5, duration_ms=20, metadata={"model": "m", "n": 2},
        turns=4, experiment_id="e", variant_id="v", session_id="s", ts=1_800_000_000_000,
    )  # fmt: skip
    decoded = msgspec.json.decode(encoded, type=AgentTaskEvent)
    assert decoded.event_id == event_id and len(event_id) == 32
    assert (decoded.agent_id, decoded.duration_ms, decoded.metadata) == (
        "bot",
        20,
        {"model": "m", "n": 2},
    )
    for bad in (
        {"agent_id": ""},
        {"outcome": "won"},
        {"turns": -1},
        {"metadata": {f"k{i}": i for i in range(65)}},
        {"task": "x" * 300},
    ):
        fields: dict[str, Any] = {"agent_id": "bot", "task": "t", "outcome": "success", **bad}
        with pytest.raises(InvalidRequest, match="invalid task event"):
            task_event(**fields)


def test_an_assignment_fills_the_experiment_fields_unless_deployed() -> None:
    running = AssignedVariant("exp", "run-1", "var", "concise", False, {}, False)
    _, encoded = task_event("bot", "t", "success", assignment=running)
    event = msgspec.json.decode(encoded, type=AgentTaskEvent)
    assert (event.experiment_id, event.variant_id, event.session_id) == ("exp", "var", "run-1")
    _, encoded = task_event("bot", "t", "success", assignment=running, session_id="mine")
    assert msgspec.json.decode(encoded, type=AgentTaskEvent).session_id == "mine"
    for uncounted in (
        msgspec.structs.replace(running, deployed=True),
        msgspec.structs.replace(running, in_experiment=False),
        msgspec.structs.replace(running, in_experiment=False, source="cache"),
    ):
        _, encoded = task_event("bot", "t", "success", assignment=uncounted)
        event = msgspec.json.decode(encoded, type=AgentTaskEvent)
        assert (event.experiment_id, event.variant_id, event.session_id) == ("", "", "run-1")


def test_batches_stay_within_the_server_limits() -> None:
    assert MAX_BATCH_BYTES < MAX_EVENTS_BODY
    pending = PendingEvents(batch_size=3)
    assert pending.add(b"1") and not pending.add(b"2")
    assert not pending.full()
    pending.add(b"3")
    pending.add(b"4")
    assert pending.full() and pending.cut() == [b"1", b"2", b"3"] and len(pending) == 1
    big = PendingEvents(batch_size=500)
    for _ in range(5):
        big.add(b"x" * (MAX_BATCH_BYTES // 3))
    assert big.full()
    sizes = []
    while big:
        batch = big.cut()
        sizes.append(len(batch))
        assert len(batch_body(batch)) <= MAX_BATCH_BYTES + len(batch) + 1
    assert sizes == [3, 2]
    with pytest.raises(ValueError):
        PendingEvents(batch_size=501)


@pytest.mark.parametrize(
    ("status", "events", "verdict"),
    [
        (201, 10, Verdict.DELIVERED),
        (None, 10, Verdict.RETRY),
        (429, 10, Verdict.RETRY),
        (503, 1, Verdict.RETRY),
        (500, 1, Verdict.RETRY),
        (404, 10, Verdict.SPLIT),
        (400, 10, Verdict.SPLIT),
        (404, 1, Verdict.DROP),
        (401, 10, Verdict.DROP),
    ],
)
def test_each_answer_has_its_verdict(status: int | None, events: int, verdict: Verdict) -> None:
    assert judge(status, events) is verdict


def test_backoff_doubles_with_jitter_and_honours_retry_after() -> None:
    policy = RetryPolicy(backoff=0.1, backoff_cap=1.0, retry_after_cap=5.0)
    for failures, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)]:
        delays = [policy.delay(failures) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling / 10
    assert policy.delay(1, retry_after=3) == 3
    assert policy.delay(1, retry_after=60) == 5
    # A batch retried for hours: the thousandth failure waits the cap, it does not overflow.
    assert 0.5 <= policy.delay(5000) <= 1.0
