"""Webhooks end to end: a real server (dev mode, small backoff) delivers to a real local
HTTP receiver, which checks every signature with the Python snippet of docs/webhooks.md."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.control.records import NewGoal
from edge.control.secret_box import SecretBox
from edge.control.store import Store
from edge.control.webhook_dispatch import SECRET_ERROR, RetryPolicy, WebhookDispatcher
from edge.control.webhooks import EVENTS, enqueue_event
from tests.support import LOOPBACK_ALLOWED, Seed, Server, add_experiment, running_server, seed_store
from tests.webhook_receiver import DOCS, Receiver, documented_verifier

# Endpoints no test expects deliveries at: port 9 (discard) refuses them at once.
NOWHERE = "https://127.0.0.1:9"

# Retries a few tenths of a second apart, so a test sees them without waiting minutes.
SERVER_ENV = {
    "SPLITEDGE_WEBHOOK_BACKOFF": "0.3",
    "SPLITEDGE_WEBHOOK_BACKOFF_CAP": "0.6",
    "SPLITEDGE_WEBHOOK_TIMEOUT": "5",
    "SPLITEDGE_WEBHOOK_MAX_ATTEMPTS": "3",
}


def documented_js_verifies(secret: str, headers: Message, body: bytes) -> bool:
    """Whether ``verifyWebhook`` of docs/webhooks.md, run by Node, accepts a delivery."""
    snippet = re.search(r"```js\n(.*?)```", DOCS.read_text(), re.S)
    assert snippet is not None
    check = (
        "const input = JSON.parse(require('node:fs').readFileSync(0, 'utf8'));\n"
        "console.log(verifyWebhook(input.secret, input.headers, "
        "Buffer.from(input.body, 'base64')));\n"
    )
    given = {
        "secret": secret,
        "headers": {name.lower(): value for name, value in headers.items()},
        "body": base64.b64encode(body).decode(),
    }
    run = subprocess.run(
        ["node", "-e", snippet.group(1) + check],
        input=json.dumps(given),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return run.stdout.strip() == "true"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.http.shutdown()
    r.http.server_close()


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Seed, Path]]:
    data = tmp_path_factory.mktemp("webhooks") / "data"
    store_path = data / "splitedge.sqlite3"
    seed = seed_store(store_path)
    with running_server(data, env=SERVER_ENV, args=["--dev"]) as server:
        yield server, seed, store_path


def call(server: Server, method: str, path: str, key: str, body: Any = None) -> httpx.Response:
    return httpx.request(
        method,
        server.base_url + path,
        headers={"authorization": f"Bearer {key}"},
        json=body,
        timeout=30,
    )


def register(server: Server, key: str, url: str, events: list[str]) -> dict[str, Any]:
    response = call(server, "POST", "/v1/webhooks", key, {"url": url, "events": events})
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def enqueue(store_path: Path, workspace_id: str, event: str, **payload: Any) -> int:
    """Queue an event the way a store change does: inside a store transaction."""
    store = Store(store_path)
    try:
        with store.transaction():
            return enqueue_event(store, workspace_id, event, payload)
    finally:
        store.close()


def delivery_log(server: Server, key: str, webhook_id: str) -> list[dict[str, Any]]:
    response = call(server, "GET", f"/v1/webhooks/{webhook_id}/deliveries", key)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["data"]
    return entries


def wait_log(
    server: Server, key: str, webhook_id: str, done: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 15
    while not done(entries := delivery_log(server, key, webhook_id)):
        assert time.monotonic() < deadline, entries
        time.sleep(0.05)
    return entries


def test_a_500_is_retried_and_every_attempt_is_signed_and_logged(
    dev_server: tuple[Server, Seed, Path], receiver: Receiver
) -> None:
    server, seed, store_path = dev_server
    hook = register(server, seed.key.key, receiver.url("/flaky"), ["experiment.winner_declared"])
    receiver.secrets["/flaky"] = hook["secret"]
    receiver.answers["/flaky"] = [500, 200]

    queued = enqueue(
        store_path, seed.workspace_id, "experiment.winner_declared",
        experiment_id="exp_abc123", winner="concise", p_value=0.003,
    )  # fmt: skip
    assert queued == 1

    first, second = receiver.wait_for("/flaky", 2)
    assert first.verified and second.verified
    assert first.body == second.body  # the same bytes on every attempt
    body = json.loads(first.body)
    assert body["event"] == "experiment.winner_declared"
    assert body["winner"] == "concise" and body["p_value"] == 0.003
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["timestamp"])
    assert first.headers["X-abTestBot-Event"] == "experiment.winner_declared"
    assert first.headers["X-abTestBot-Delivery"] == body["id"]
    assert first.headers["X-ClawSplit-Signature"] == first.headers["X-abTestBot-Signature"]
    # the retry waited out its backoff (0.3 s, jittered down to half at most)
    assert second.at - first.at >= 0.14

    (entry,) = wait_log(
        server, seed.key.key, hook["id"], lambda log: log[0]["status"] == "delivered"
    )
    assert entry["attempts"] == 2 and entry["last_status_code"] == 200
    assert entry["payload"] == body and entry["next_attempt_at"] is None
    attempts = entry["attempt_log"]
    assert [a["number"] for a in attempts] == [1, 2]
    assert [a["status_code"] for a in attempts] == [500, 200]
    # the status only: the receiver's body ("boom") is not kept (docs/security.md)
    assert attempts[0]["error"] == "HTTP 500"
    assert attempts[1]["error"] is None

    # a tampered body or a wrong secret fails the documented check
    verify = documented_verifier()
    assert not verify(hook["secret"], first.headers, first.body + b" ")
    assert not verify("whsec_other", first.headers, first.body)
    # and so does the JavaScript snippet
    assert documented_js_verifies(hook["secret"], second.headers, second.body)
    assert not documented_js_verifies(hook["secret"], second.headers, second.body + b" ")


def test_attempts_stop_at_the_limit(
    dev_server: tuple[Server, Seed, Path], receiver: Receiver
) -> None:
    server, seed, store_path = dev_server
    hook = register(server, seed.key.key, receiver.url("/down"), ["idea.status_changed"])
    receiver.answers["/down"] = [503]
    enqueue(store_path, seed.workspace_id, "idea.status_changed", idea_id="i1")

    (entry,) = wait_log(server, seed.key.key, hook["id"], lambda log: log[0]["status"] == "failed")
    assert entry["attempts"] == 3  # SPLITEDGE_WEBHOOK_MAX_ATTEMPTS
    assert [a["status_code"] for a in entry["attempt_log"]] == [503, 503, 503]
    assert len(receiver.at("/down")) == 3


def test_only_subscribed_events_are_queued(dev_server: tuple[Server, Seed, Path]) -> None:
    server, seed, store_path = dev_server
    register(server, seed.key.key, NOWHERE + "/only-ideas", ["ideas.generated"])
    assert enqueue(store_path, seed.workspace_id, "experiment.no_winner") == 0
    with pytest.raises(ValueError, match="unknown webhook event"):
        enqueue(store_path, seed.workspace_id, "experiment.exploded")
    with pytest.raises(ValueError, match="may not set"):
        enqueue(store_path, seed.workspace_id, "ideas.generated", timestamp="x")


def test_registration_validates_url_and_events(dev_server: tuple[Server, Seed, Path]) -> None:
    server, seed, _ = dev_server
    key = seed.key.key

    def refused(body: Any) -> str:
        response = call(server, "POST", "/v1/webhooks", key, body)
        assert response.status_code == 400, response.text
        error: dict[str, str] = response.json()["error"]
        assert error["code"] == "invalid_request"
        return error["message"]

    events = ["experiment.launched"]
    assert "https://" in refused({"url": "http://example.com/hook", "events": events})
    assert "https://" in refused({"url": "ftp://example.com/hook", "events": events})
    assert "https://" in refused({"url": "/relative", "events": events})
    assert "credentials" in refused({"url": "https://u:p@example.com/", "events": events})
    assert "port" in refused({"url": "https://example.com:99999/", "events": events})
    assert "$.events[0]" in refused({"url": "https://example.com/", "events": ["nope"]})
    assert "$.events" in refused({"url": "https://example.com/", "events": []})
    assert "`url`" in refused({"events": events})
    assert "color" in refused({"url": "https://example.com/", "events": events, "color": 1})

    for loopback in ("http://127.0.0.1:9/hook", "http://localhost/hook", "http://[::1]:9/"):
        hook = register(server, key, loopback, events)
        assert hook["url"] == loopback
    hook = register(server, key, NOWHERE + "/h", [*events, *events, "ideas.generated"])
    assert hook["events"] == ["experiment.launched", "ideas.generated"]

    response = httpx.post(server.base_url + "/v1/webhooks", json={}, timeout=30)
    assert response.status_code == 401


def test_http_is_refused_outside_dev_mode(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seed = seed_store(data / "splitedge.sqlite3")
    with running_server(data) as server:
        body = {"url": "http://127.0.0.1:9/hook", "events": ["experiment.launched"]}
        response = call(server, "POST", "/v1/webhooks", seed.key.key, body)
        assert response.status_code == 400
        assert "--dev" in response.json()["error"]["message"]
        # https to a public name is fine (.invalid never resolves: checked again on sending)
        register(
            server, seed.key.key, "https://hooks.example.invalid/hook", ["experiment.launched"]
        )


def test_the_secret_is_shown_once(dev_server: tuple[Server, Seed, Path]) -> None:
    server, seed, _ = dev_server
    hook = register(server, seed.key.key, NOWHERE + "/once", ["experiment.completed"])
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}", hook["secret"])
    assert set(hook) == {"id", "url", "events", "is_active", "created_at", "secret"}

    response = call(server, "GET", "/v1/webhooks?limit=100", seed.key.key)
    assert response.status_code == 200
    listed = response.json()
    assert listed["meta"]["workspace_id"] == seed.workspace_id
    (same,) = [h for h in listed["data"] if h["id"] == hook["id"]]
    assert same == {k: v for k, v in hook.items() if k != "secret"}
    assert hook["secret"] not in response.text


def test_deleting_stops_deliveries(
    dev_server: tuple[Server, Seed, Path], receiver: Receiver
) -> None:
    server, seed, store_path = dev_server
    key = seed.key.key
    hook = register(server, key, receiver.url("/deleted"), ["experiment.stopped"])
    receiver.secrets["/deleted"] = hook["secret"]
    receiver.answers["/deleted"] = [500]
    enqueue(store_path, seed.workspace_id, "experiment.stopped", experiment_id="e1")
    receiver.wait_for("/deleted", 1)

    response = call(server, "DELETE", f"/v1/webhooks/{hook['id']}", key)
    assert response.status_code == 200 and response.json()["data"] == {"deleted": True}
    again = call(server, "DELETE", f"/v1/webhooks/{hook['id']}", key)
    assert again.status_code == 200  # deleting twice changes nothing

    (entry,) = wait_log(server, key, hook["id"], lambda log: log[0]["status"] == "cancelled")
    assert enqueue(store_path, seed.workspace_id, "experiment.stopped", experiment_id="e2") == 0
    time.sleep(1.0)  # past the retry the first 500 scheduled (0.3 s at most)
    assert len(receiver.at("/deleted")) == 1
    listed = call(server, "GET", "/v1/webhooks?limit=100", key).json()["data"]
    assert hook["id"] not in {h["id"] for h in listed}


def test_another_workspace_gets_404(dev_server: tuple[Server, Seed, Path]) -> None:
    server, seed, _ = dev_server
    hook = register(server, seed.key.key, NOWHERE + "/mine", ["experiment.launched"])
    other = seed.other_key.key
    for method, path in (
        ("DELETE", f"/v1/webhooks/{hook['id']}"),
        ("GET", f"/v1/webhooks/{hook['id']}/deliveries"),
        ("DELETE", "/v1/webhooks/no-such-id"),
    ):
        response = call(server, method, path, other)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "not_found"
    listed = call(server, "GET", "/v1/webhooks", other).json()["data"]
    assert hook["id"] not in {h["id"] for h in listed}
    mine = call(server, "GET", "/v1/webhooks?limit=100", seed.key.key).json()["data"]
    assert hook["id"] in {h["id"] for h in mine}  # still active


def test_an_api_request_returns_before_its_delivery(
    dev_server: tuple[Server, Seed, Path], receiver: Receiver
) -> None:
    server, seed, store_path = dev_server
    hook = register(server, seed.key.key, receiver.url("/slow"), ["experiment.launched"])
    receiver.secrets["/slow"] = hook["secret"]
    receiver.delays["/slow"] = 2.0
    store = Store(store_path)
    try:
        experiment_id, _, _ = add_experiment(
            store, seed, "Slow hook", ["Control", "B"], [NewGoal("Buy", "click", ".buy")],
            start=False,
        )  # fmt: skip
    finally:
        store.close()

    started = time.monotonic()
    response = call(
        server, "PATCH", f"/v1/experiments/{experiment_id}", seed.key.key, {"action": "launch"}
    )
    answered = time.monotonic()
    assert response.status_code == 200, response.text
    assert answered - started < 1.0

    (delivery,) = receiver.wait_for("/slow", 1)
    assert delivery.verified
    assert json.loads(delivery.body)["experiment_id"] == experiment_id
    # the receiver took 2 s to answer, long after the launch was answered
    (entry,) = wait_log(
        server, seed.key.key, hook["id"], lambda log: bool(log) and log[0]["status"] == "delivered"
    )
    assert entry["attempt_log"][0]["duration_ms"] >= 1900


def test_two_dispatchers_never_send_an_attempt_twice(tmp_path: Path, receiver: Receiver) -> None:
    store_path = tmp_path / "splitedge.sqlite3"
    store = Store(store_path)
    workspace = store.create_workspace("pair")
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO webhooks (id, workspace_id, url, events, secret, created_at) "
            "VALUES ('w', ?, ?, ?, 'whsec_pair', 'now')",
            (workspace.id, receiver.url("/pair"), json.dumps(list(EVENTS))),
        )
        for number in range(40):
            enqueue_event(store, workspace.id, "ideas.generated", {"n": number})
    store.close()
    receiver.secrets["/pair"] = "whsec_pair"

    dispatchers = [
        WebhookDispatcher(
            store_path,
            RetryPolicy(timeout=5, backoff=0.1),
            guard=LOOPBACK_ALLOWED,
            poll_interval=0.01,
        )
        for _ in range(2)
    ]
    for dispatcher in dispatchers:
        dispatcher.start()
    try:
        got = receiver.wait_for("/pair", 40)
        time.sleep(0.3)
    finally:
        for dispatcher in dispatchers:
            assert dispatcher.stop()
    assert len(receiver.at("/pair")) == 40
    assert sorted(json.loads(r.body)["n"] for r in got) == list(range(40))
    assert all(r.verified for r in got)


def test_backoff_is_capped_exponential_with_jitter() -> None:
    policy = RetryPolicy(backoff=30, backoff_cap=3600)
    for failures, full in ((1, 30), (2, 60), (3, 120), (8, 3600), (40, 3600)):
        delays = [policy.delay(failures) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in delays)
        assert max(delays) - min(delays) > full / 10  # jittered, not fixed


def test_secrets_are_encrypted_at_rest_and_old_plain_ones_sealed_at_start(
    tmp_path: Path, receiver: Receiver
) -> None:
    data = tmp_path / "data"
    seed = seed_store(data / "splitedge.sqlite3")
    store = Store(data / "splitedge.sqlite3")
    with store.transaction() as conn:  # as an earlier version stored it
        conn.execute(
            "INSERT INTO webhooks (id, workspace_id, url, events, secret, created_at) "
            "VALUES ('old', ?, ?, ?, 'whsec_plain_old', 'now')",
            (seed.workspace_id, receiver.url("/old"), json.dumps(["ideas.generated"])),
        )
    store.close()
    receiver.secrets["/old"] = "whsec_plain_old"
    with running_server(data, env=SERVER_ENV, args=["--dev"]) as server:
        hook = register(server, seed.key.key, receiver.url("/new"), ["ideas.generated"])
        receiver.secrets["/new"] = hook["secret"]
        dump = (data / "splitedge.sqlite3").read_bytes() + b"".join(
            p.read_bytes() for p in data.glob("splitedge.sqlite3-*")
        )
        assert hook["secret"].encode() not in dump
        store = Store(data / "splitedge.sqlite3")
        stored = [row[0] for row in store.conn.execute("SELECT secret FROM webhooks")]
        store.close()
        assert len(stored) == 2 and all(s.startswith("fernet:") for s in stored)
        assert oct((data / "secrets.key").stat().st_mode & 0o777) == "0o600"
        enqueue(data / "splitedge.sqlite3", seed.workspace_id, "ideas.generated", n=1)
        old, new = receiver.wait_for("/old", 1)[0], receiver.wait_for("/new", 1)[0]
        assert old.verified and new.verified  # both still sign with the secret issued


def test_a_secret_that_cannot_be_decrypted_fails_its_endpoints_attempts_only(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A store restored without its secrets.key: that endpoint's attempts fail, without
    a request, and every other endpoint is still served."""
    store_path = tmp_path / "data" / "splitedge.sqlite3"
    store = Store(store_path)
    workspace = store.create_workspace("restored")
    foreign = SecretBox(tmp_path / "elsewhere" / "splitedge.sqlite3")
    (tmp_path / "elsewhere").mkdir()
    hooks = [
        ("bad", "/unreadable", foreign.seal("whsec_bad")),
        ("good", "/readable", SecretBox(store_path).seal("whsec_good")),
    ]
    with store.transaction() as conn:
        for webhook_id, path, secret in hooks:
            conn.execute(
                "INSERT INTO webhooks (id, workspace_id, url, events, secret, created_at) "
                "VALUES (?, ?, ?, ?, ?, 'now')",
                (webhook_id, workspace.id, receiver.url(path), json.dumps(list(EVENTS)), secret),
            )
        enqueue_event(store, workspace.id, "ideas.generated", {"n": 1})
    receiver.secrets["/readable"] = "whsec_good"
    dispatcher = WebhookDispatcher(
        store_path,
        RetryPolicy(timeout=5, backoff=0.05, backoff_cap=0.05, max_attempts=2),
        guard=LOOPBACK_ALLOWED,
        poll_interval=0.01,
    )
    dispatcher.start()
    try:
        (got,) = receiver.wait_for("/readable", 1)
        assert got.verified
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            (status,) = store.conn.execute(
                "SELECT status FROM webhook_deliveries WHERE webhook_id = 'bad'"
            ).fetchone()
            if status == "failed":
                break
            time.sleep(0.05)
        errors = [
            row[0]
            for row in store.conn.execute(
                "SELECT a.error FROM webhook_attempts AS a JOIN webhook_deliveries AS d "
                "ON d.id = a.delivery_id WHERE d.webhook_id = 'bad' ORDER BY a.number"
            )
        ]
        assert status == "failed" and errors == [SECRET_ERROR, SECRET_ERROR]
        # The dispatcher still serves: a later event reaches the readable endpoint.
        with store.transaction():
            enqueue_event(store, workspace.id, "ideas.generated", {"n": 2})
        receiver.wait_for("/readable", 2)
    finally:
        assert dispatcher.stop()
        store.close()
    assert receiver.at("/unreadable") == []
