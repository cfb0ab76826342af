"""ClawSplit's own documented examples, run unchanged against splitedge with a ClawSplit key.

The reference (shared/reference/clawsplit-api.txt) is translated line for line from its
curl and JavaScript into Python with httpx; only the base URL and the key change. The key
is minted as its users would, with ``splitedge keys create --flavour clawsplit``. The
experiment then runs (the fleet's task events), the server decides it, and a real
receiver on 127.0.0.1 checks every delivery the way ClawSplit's doc implies (HMAC-SHA256
of the raw body, hex, in X-ClawSplit-Signature) and the Standard Webhooks way (the
``standardwebhooks`` library's own ``Webhook.verify``). docs/compatibility.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from edge.control.store import Store
from tests.support import Server, running_server

pytestmark = pytest.mark.server

SERVER_ENV = {
    "SPLITEDGE_DECISION_INTERVAL": "0.5",
    "SPLITEDGE_WEBHOOK_BACKOFF": "0.3",
    "SPLITEDGE_WEBHOOK_BACKOFF_CAP": "0.6",
}
# ClawSplit's six webhook events, as its reference lists them.
CLAWSPLIT_EVENTS = [
    "experiment.started", "experiment.sample_reached", "experiment.winner_declared",
    "experiment.no_winner", "experiment.stopped", "variant.promoted",
]  # fmt: skip


def mint_key(data_dir: Path, flavour: str) -> str:
    """``splitedge keys create --workspace acme --flavour FLAVOUR``: the key on stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "edge.cli", "keys", "create", "--workspace", "acme",
         "--flavour", flavour, "--data-dir", str(data_dir)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


class Delivery(msgspec.Struct):
    path: str
    headers: dict[str, str]
    body: bytes
    clawsplit_verified: bool
    standard_verified: bool


class ClawSplitReceiver:
    """A webhook endpoint written from ClawSplit's doc: per path, the secret; every POST
    is checked against X-ClawSplit-Signature (hex HMAC-SHA256 of the raw body) and with
    ``standardwebhooks.Webhook(secret).verify``, then answered 200."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.deliveries: list[Delivery] = []
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw_body = self.rfile.read(int(self.headers["Content-Length"]))
                secret = receiver.secrets[self.path]
                expected = hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()
                signature = self.headers.get("X-ClawSplit-Signature", "")
                try:
                    Webhook(secret).verify(raw_body, dict(self.headers.items()))
                    standard = True
                except WebhookVerificationError:
                    standard = False
                delivery = Delivery(
                    self.path,
                    dict(self.headers.items()),
                    raw_body,
                    hmac.compare_digest(expected, signature),
                    standard,
                )
                with receiver.changed:
                    receiver.deliveries.append(delivery)
                    receiver.changed.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}{path}"

    def event(self, path: str, event: str, timeout: float = 60) -> Delivery:
        """The first delivery of ``event`` at ``path``, waiting for it."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for d in self.deliveries:
                    if d.path == path and json.loads(d.body)["event"] == event:
                        return d
                left = deadline - time.monotonic()
                assert left > 0, f"no {event} at {path} in {timeout}s"
                self.changed.wait(left)


class Env(msgspec.Struct):
    server: Server
    key: str
    splitedge_key: str
    receiver: ClawSplitReceiver


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data = tmp_path_factory.mktemp("clawsplit") / "data"
    data.mkdir()
    Store(data / "splitedge.sqlite3").close()
    key = mint_key(data, "clawsplit")
    splitedge_key = mint_key(data, "splitedge")
    receiver = ClawSplitReceiver()
    receiver.thread.start()
    try:
        with running_server(data, env=SERVER_ENV, args=["--dev"]) as server:
            yield Env(server, key, splitedge_key, receiver)
    finally:
        receiver.http.shutdown()
        receiver.http.server_close()


def configure_webhook(env: Env, key: str, path: str) -> None:
    """What ClawSplit's dashboard does ("Configure a webhook URL"): splitedge's route."""
    hook = httpx.post(
        env.server.base_url + "/v1/webhooks",
        headers={"Authorization": f"Bearer {key}"},
        json={"url": env.receiver.url(path), "events": CLAWSPLIT_EVENTS},
        timeout=30,
    )
    assert hook.status_code == 201, hook.text
    env.receiver.secrets[path] = hook.json()["data"]["secret"]


def let_it_run(env: Env, experiment: dict[str, Any]) -> None:
    """The fleet's tasks: 200 sessions per arm (the sample size), control succeeding 82%
    of the time and concise 91% (the doc's figures), spread evenly."""
    base = env.server.base_url
    auth = {"Authorization": f"Bearer {env.key}"}
    events = []
    for variant, rate, cost in zip(experiment["variants"], (0.82, 0.91), (0.0034, 0.0021)):
        for n in range(200):
            won = int((n + 1) * rate) > int(n * rate)
            events.append({
                "agentId": f"agent-{variant['name']}", "task": "triage",
                "outcome": "success" if won else "failure", "cost": cost, "durationMs": 900,
                "experiment_id": experiment["id"], "variant_id": variant["id"],
                "session_id": f"{variant['name']}-{n}",
            })  # fmt: skip
    deadline = time.monotonic() + 10
    while True:  # the edge serves a launch within about a second
        sent = httpx.post(base + "/v1/events", headers=auth, json=events, timeout=30)
        if sent.status_code != 404 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert sent.status_code == 201, sent.text


def test_quickstart_create_let_it_run_fetch_results_and_the_webhooks(env: Env) -> None:
    BASE = env.server.base_url
    YOUR_API_KEY = env.key
    configure_webhook(env, YOUR_API_KEY, "/clawsplit")
    configure_webhook(env, env.splitedge_key, "/splitedge")

    # --- Create an experiment: POST /v1/experiments (the curl, then the JavaScript) ---
    # curl -X POST https://api.clawsplit.com/v1/experiments \
    res = httpx.post(
        f"{BASE}/v1/experiments",
        # -H "Authorization: Bearer YOUR_API_KEY" -H "Content-Type: application/json"
        headers={"Authorization": f"Bearer {YOUR_API_KEY}", "Content-Type": "application/json"},
        # body: JSON.stringify({...})
        content=json.dumps(
            {
                "name": "concise-vs-verbose-soulmd",
                "variants": [
                    {"name": "control", "soul_md": "You are a helpful assistant..."},
                    {"name": "concise", "soul_md": "Be concise and direct..."},
                ],
                "sample_size": 200,
                "primary_metric": "task_completion",
                "confidence": 0.95,
            }
        ),  # fmt: skip
        timeout=30,
    )
    # const experiment = await res.json();
    experiment = res.json()
    # console.log(experiment.id); // "exp_abc123"
    print(experiment["id"])
    assert res.status_code == 201, res.text
    assert isinstance(experiment["id"], str) and experiment["id"]
    assert experiment["name"] == "concise-vs-verbose-soulmd"
    assert [v["name"] for v in experiment["variants"]] == ["control", "concise"]

    # --- Fetch results: GET /v1/experiments/:id/results (before anything ran) ---
    res = httpx.get(
        f"{BASE}/v1/experiments/{experiment['id']}/results",
        headers={"Authorization": f"Bearer {YOUR_API_KEY}"},
        timeout=30,
    )
    results = res.json()
    assert res.status_code == 200, res.text
    assert {"status", "winner", "p_value", "variants"} <= results.keys()
    assert set(results["variants"]) == {"control", "concise"}

    # "experiment.started: Fired when an experiment begins accepting traffic."
    started = env.receiver.event("/clawsplit", "experiment.started")
    assert started.clawsplit_verified and started.standard_verified
    assert json.loads(started.body)["experiment_id"] == experiment["id"]

    # --- let it run ---
    let_it_run(env, experiment)
    winner = env.receiver.event("/clawsplit", "experiment.winner_declared")

    # --- Fetch results, once it is decided ---
    # const res = await fetch("https://api.clawsplit.com/v1/experiments/exp_abc123/results",
    res = httpx.get(
        f"{BASE}/v1/experiments/{experiment['id']}/results",
        # { headers: { "Authorization": "Bearer YOUR_API_KEY" } }
        headers={"Authorization": f"Bearer {YOUR_API_KEY}"},
        timeout=30,
    )
    # const results = await res.json();
    results = res.json()
    assert res.status_code == 200, res.text
    # { status: "significant", winner: "concise", p_value: 0.003,
    #   variants: { control: { completion: 0.82 }, concise: { completion: 0.91 } } }
    assert results["status"] == "significant"
    assert results["winner"] == "concise"
    assert 0 < results["p_value"] < 0.05
    assert results["variants"]["control"]["completion"] == pytest.approx(0.82, abs=0.005)
    assert results["variants"]["concise"]["completion"] == pytest.approx(0.91, abs=0.005)

    # --- Webhook events: the experiment.winner_declared payload, field by field ---
    assert winner.clawsplit_verified, "X-ClawSplit-Signature is not HMAC-SHA256(raw body)"
    assert winner.standard_verified, "standardwebhooks' Webhook.verify refused the delivery"
    payload = json.loads(winner.body)
    assert payload["event"] == "experiment.winner_declared"
    assert payload["experiment_id"] == experiment["id"]
    assert payload["experiment_name"] == "concise-vs-verbose-soulmd"
    assert payload["winner"] == "concise"
    assert payload["p_value"] == pytest.approx(results["p_value"])
    assert payload["confidence"] == 0.95
    assert payload["variants"]["control"]["task_completion"] == pytest.approx(0.82, abs=0.005)
    assert payload["variants"]["concise"]["task_completion"] == pytest.approx(0.91, abs=0.005)
    assert payload["variants"]["control"]["avg_cost"] == pytest.approx(0.0034)
    assert payload["variants"]["concise"]["avg_cost"] == pytest.approx(0.0021)
    assert payload["timestamp"].endswith("Z")
    sample = env.receiver.event("/clawsplit", "experiment.sample_reached")
    assert sample.clawsplit_verified and sample.standard_verified

    # An endpoint of a splitedge key keeps today's headers: X-ClawSplit-Signature is the
    # abTestBot signature (timestamp.body), and it gets the Standard Webhooks ones too.
    theirs = env.receiver.event("/splitedge", "experiment.winner_declared")
    assert theirs.body == winner.body
    assert theirs.headers["X-ClawSplit-Signature"] == theirs.headers["X-abTestBot-Signature"]
    assert not theirs.clawsplit_verified and theirs.standard_verified


def test_a_splitedge_key_keeps_the_envelope(env: Env) -> None:
    base = env.server.base_url
    auth = {"Authorization": f"Bearer {env.splitedge_key}"}
    body = {
        "name": "enveloped",
        "variants": [{"name": "control", "soul_md": "a"}, {"name": "b", "soul_md": "b"}],
    }
    res = httpx.post(base + "/v1/experiments", headers=auth, json=body, timeout=30)
    assert res.status_code == 201, res.text
    created = res.json()
    assert "id" not in created
    experiment = created["data"]["experiment"]
    assert experiment["status"] == "draft"  # no auto_launch: a splitedge create is a draft
    res = httpx.get(f"{base}/v1/experiments/{experiment['id']}/results", headers=auth, timeout=30)
    assert res.status_code == 200, res.text
    assert {"data", "meta"} == res.json().keys()


def test_clawsplit_key_errors_keep_their_status(env: Env) -> None:
    base = env.server.base_url
    auth = {"Authorization": f"Bearer {env.key}"}
    missing = httpx.get(base + "/v1/experiments/exp_abc123/results", headers=auth, timeout=30)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    revoked_like = {"Authorization": "Bearer cs_live_" + "x" * 43}
    refused = httpx.get(base + "/v1/experiments/exp_abc123/results", headers=revoked_like)
    assert refused.status_code == 401
