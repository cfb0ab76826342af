"""Webhook signing (edge.control.webhook_dispatch): each flavour's X-ClawSplit-Signature,
the Standard Webhooks headers checked by the ``standardwebhooks`` library itself, the
secrets it reads, and endpoints registered before flavours (store v12)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from edge.control.store import Store
from edge.control.store.schema import MIGRATIONS
from edge.control.webhook_dispatch import (
    clawsplit_signature,
    sign,
    signature_headers,
    standard_webhooks_secret,
)
from edge.control.webhooks import _new_secret as new_secret

BODY = b'{"id":"evt_1","event":"experiment.winner_declared","winner":"concise"}'
NOW = 1_790_000_000


def test_a_clawsplit_endpoint_gets_the_hmac_of_the_raw_body() -> None:
    secret = new_secret()
    headers = signature_headers(secret, "evt_1", NOW, BODY, "clawsplit")
    expected = hmac.new(secret.encode(), BODY, hashlib.sha256).hexdigest()
    assert headers["X-ClawSplit-Signature"] == expected == clawsplit_signature(secret, BODY)
    assert headers["X-abTestBot-Signature"] == sign(secret, NOW, BODY)


@pytest.mark.parametrize("flavour", ["splitedge", "clawtrait", "crewkit"])
def test_other_endpoints_keep_todays_clawsplit_header(flavour: str) -> None:
    secret = new_secret()
    headers = signature_headers(secret, "evt_1", NOW, BODY, flavour)  # type: ignore[arg-type]
    assert headers["X-ClawSplit-Signature"] == headers["X-abTestBot-Signature"]
    assert headers["X-abTestBot-Timestamp"] == str(NOW)


def test_standard_webhooks_verify_accepts_every_delivery_with_the_secret_as_shown() -> None:
    for _ in range(200):
        secret = new_secret()
        assert len(secret) == 49 and "-" not in secret[6:] and "_" not in secret[6:]
        headers = signature_headers(secret, "evt_1", NOW, BODY, "splitedge")
        assert headers["webhook-id"] == "evt_1"
        assert headers["webhook-timestamp"] == str(NOW)
        # verify() checks the timestamp against the clock: compare with sign() at NOW
        expected = Webhook(secret).sign("evt_1", datetime.fromtimestamp(NOW, UTC), BODY)
        assert headers["webhook-signature"] == expected
    fresh = signature_headers(secret, "evt_2", _now(), BODY, "clawsplit")
    assert Webhook(secret).verify(BODY, fresh) is not None
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, fresh)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY + b" ", fresh)


def test_an_older_url_safe_secret_maps_to_the_same_bytes() -> None:
    # Before v12 secrets were URL-safe base64; the library drops "-" and "_" from them.
    raw = bytes(range(251, 256)) * 6 + b"\xfb\xff"
    old = "whsec_" + base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert "-" in old[6:] and "_" in old[6:]
    mapped = standard_webhooks_secret(old)
    assert mapped.startswith("whsec_") and base64.b64decode(mapped[6:] + "=") == raw
    headers = signature_headers(old, "evt_1", _now(), BODY, "splitedge")
    assert Webhook(mapped).verify(BODY, headers) is not None
    for _ in range(100):
        token = secrets.token_urlsafe(32)
        decoded = base64.urlsafe_b64decode(token + "=")
        assert Webhook(standard_webhooks_secret("whsec_" + token))._whsecret == decoded


def test_a_secret_that_is_not_base64_still_signs() -> None:
    headers = signature_headers("whsec_1", "evt_1", _now(), BODY, "splitedge")
    assert Webhook(b"whsec_1").verify(BODY, headers) is not None


def test_endpoints_registered_before_flavours_are_splitedge_endpoints(tmp_path: Path) -> None:
    path = tmp_path / "splitedge.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:11], start=1):
        conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
    conn.execute("INSERT INTO workspaces (id, name, created_at) VALUES ('w', 'w', 'now')")
    conn.execute(
        "INSERT INTO webhooks (id, workspace_id, url, events, secret, created_at) "
        "VALUES ('h', 'w', 'https://x.example/', '[\"experiment.started\"]', 'whsec_a', 'now')"
    )
    conn.close()
    store = Store(path)
    try:
        (flavour,) = store.conn.execute("SELECT flavour FROM webhooks").fetchone()
        assert flavour == "splitedge"
        store.create_webhook("w", "https://y.example/", ["experiment.started"], "s", "clawsplit")
        rows = dict(store.conn.execute("SELECT url, flavour FROM webhooks").fetchall())
        assert rows["https://y.example/"] == "clawsplit"
        with pytest.raises(sqlite3.IntegrityError):
            store.conn.execute("UPDATE webhooks SET flavour = 'optimizely'")
    finally:
        store.close()


def _now() -> int:
    return int(time.time())
