"""ClawTrait's own documented examples, run unchanged against splitedge with a ClawTrait key.

The reference (shared/reference/clawtrait-api.txt) is translated line for line from its
curl calls (and its SDK's ``trackTask``, which posts the same event) into Python with
httpx; only the base URL and the key change. The ``ct_`` key is minted as its users would,
with ``splitedge keys create --flavour clawtrait``; the events go through a real server
into embedded ClickHouse and the stats and drift are read back. docs/compatibility.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest

from edge.control.store import Store
from tests.support import Server, running_server, wait_flushed
from tests.test_contract_clawsplit import mint_key

pytestmark = pytest.mark.server

DAY_MS = 86_400_000
VALUE_PER_SUCCESS = 0.1


class Env(msgspec.Struct):
    server: Server
    key: str
    splitedge_key: str


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data = tmp_path_factory.mktemp("clawtrait") / "data"
    data.mkdir()
    Store(data / "splitedge.sqlite3").close()
    key = mint_key(data, "clawtrait")
    splitedge_key = mint_key(data, "splitedge")
    server_env = {"SPLITEDGE_AGENT_VALUE_PER_SUCCESS": str(VALUE_PER_SUCCESS)}
    with running_server(data, env=server_env) as server:
        yield Env(server, key, splitedge_key)


def history(now_ms: int) -> list[dict[str, Any]]:
    """Earlier tasks of support-bot-1 (splitedge's ``ts``, epoch ms): 20 to 8 days ago, as
    a fleet that ran before the examples: 90 tasks, 81 successes, 0.04 USD each."""
    return [
        {
            "agentId": "support-bot-1", "task": "resolve-ticket",
            "outcome": "success" if i % 10 else "failure", "cost": 0.04, "durationMs": 3000,
            "ts": now_ms - 8 * DAY_MS - i * (12 * DAY_MS // 90),
        }
        for i in range(90)
    ]  # fmt: skip


def test_events_stats_and_drift_as_documented(env: Env) -> None:
    BASE = env.server.base_url + "/v1"
    ct_your_api_key = env.key
    sent = httpx.post(
        BASE + "/events",
        headers={"Authorization": f"Bearer {ct_your_api_key}"},
        json=history(int(time.time() * 1000)),
        timeout=30,
    )
    assert sent.status_code == 201, sent.text

    # --- POST /events ---
    # curl -X POST https://api.clawtrait.com/v1/events \
    res = httpx.post(
        f"{BASE}/events",
        # -H "Authorization: Bearer ct_your_api_key" -H "Content-Type: application/json"
        headers={"Authorization": f"Bearer {ct_your_api_key}", "Content-Type": "application/json"},
        # -d '{...}'
        content="""{
"agentId": "support-bot-1",
"task": "resolve-ticket",
"outcome": "success",
"cost": 0.042,
"durationMs": 3200
}""",
        timeout=30,
    )
    # Response: 201 Created with the event ID.
    assert res.status_code == 201, res.text
    event_id = res.json()["id"]
    assert isinstance(event_id, str) and event_id

    # --- The SDK's trackTask (Quickstart step 3): the same event, with its metadata ---
    # await ct.trackTask({ agentId: 'support-bot-1', task: 'resolve-ticket', ... })
    res = httpx.post(
        f"{BASE}/events",
        headers={"Authorization": f"Bearer {ct_your_api_key}"},
        json={
            "agentId": "support-bot-1",
            "task": "resolve-ticket",
            "outcome": "success",  # 'success' | 'failure' | 'partial'
            "cost": 0.042,  # USD spent on this task
            "durationMs": 3200,  # how long the task took
            "metadata": {  # optional — any extra context
                "ticketId": "TK-1234",
                "model": "gpt-4o",
            },
        },
        timeout=30,
    )
    assert res.status_code == 201, res.text
    assert res.json()["id"] != event_id
    wait_flushed(env.server, 92)

    # --- GET /agents/:id/stats ---
    # curl https://api.clawtrait.com/v1/agents/support-bot-1/stats \
    res = httpx.get(
        f"{BASE}/agents/support-bot-1/stats",
        # -H "Authorization: Bearer ct_your_api_key"
        headers={"Authorization": f"Bearer {ct_your_api_key}"},
        timeout=30,
    )
    stats = res.json()
    assert res.status_code == 200, res.text
    # {"agentId": "support-bot-1", "period": "30d", "totalTasks": 1284, "successRate": 0.94,
    #  "costPerTask": 0.038, "totalCost": 48.79, "netROI": 2.4}
    assert stats["agentId"] == "support-bot-1"
    assert stats["period"] == "30d"
    assert stats["totalTasks"] == 92
    assert stats["successRate"] == pytest.approx(83 / 92)
    total_cost = 90 * 0.04 + 2 * 0.042
    assert stats["totalCost"] == pytest.approx(total_cost)
    assert stats["costPerTask"] == pytest.approx(total_cost / 92)
    assert isinstance(stats["netROI"], float)

    # --- GET /agents/:id/drift ---
    # curl https://api.clawtrait.com/v1/agents/support-bot-1/drift \
    res = httpx.get(
        f"{BASE}/agents/support-bot-1/drift",
        # -H "Authorization: Bearer ct_your_api_key"
        headers={"Authorization": f"Bearer {ct_your_api_key}"},
        timeout=30,
    )
    drift = res.json()
    assert res.status_code == 200, res.text
    # {"agentId": "support-bot-1", "driftScore": 0.12, "status": "healthy",
    #  "baselineDate": "2026-02-15T00:00:00Z",
    #  "topChanges": [{"dimension": "tone", "delta": 0.08}, ...]}
    assert drift["agentId"] == "support-bot-1"
    assert isinstance(drift["driftScore"], int | float) and drift["driftScore"] >= 0
    assert drift["status"] in ("healthy", "warning", "drifting")
    assert isinstance(drift["baselineDate"], str) and drift["baselineDate"][:2] == "20"
    assert isinstance(drift["topChanges"], list)
    for change in drift["topChanges"]:
        assert isinstance(change["dimension"], str) and "delta" in change


def test_nested_metadata_is_extra_context(env: Env) -> None:
    """ "metadata: optional — any extra context": an object inside it too."""
    res = httpx.post(
        env.server.base_url + "/v1/events",
        headers={"Authorization": f"Bearer {env.key}"},
        content=json.dumps(
            {
                "agentId": "support-bot-2",
                "task": "resolve-ticket",
                "outcome": "success",
                "cost": 0.042,
                "durationMs": 3200,
                "metadata": {"ticket": {"id": "TK-1234", "tags": ["billing"]}, "model": "gpt-4o"},
            }
        ),  # fmt: skip
        timeout=30,
    )
    assert res.status_code == 201, res.text


def test_a_splitedge_key_keeps_the_envelope_and_unknown_keys_are_refused(env: Env) -> None:
    base = env.server.base_url + "/v1"
    auth = {"Authorization": f"Bearer {env.splitedge_key}"}
    event = {"agentId": "support-bot-1", "task": "t", "outcome": "success", "cost": 0.01}
    res = httpx.post(base + "/events", headers=auth, json=event, timeout=30)
    assert res.status_code == 201, res.text
    assert set(res.json()) == {"data"} and res.json()["data"]["id"]
    stats = httpx.get(base + "/agents/support-bot-1/stats", headers=auth, timeout=30)
    assert stats.status_code == 200, stats.text
    assert stats.json()["data"]["agentId"] == "support-bot-1"
    unknown = {"Authorization": "Bearer ct_" + "x" * 43}
    assert httpx.post(base + "/events", headers=unknown, json=event).status_code == 401
