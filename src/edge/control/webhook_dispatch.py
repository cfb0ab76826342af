"""Delivering webhooks: signing, retries, and the dispatcher thread.

Signing
    Each attempt is a POST of the delivery's JSON body with a fresh Unix ``timestamp``
    and ``X-abTestBot-Signature: sha256=<hex>``, where ``<hex>`` is
    HMAC-SHA256(key = the endpoint's secret as UTF-8, message = timestamp + "." + body),
    and ``X-abTestBot-Timestamp: <timestamp>``. Signing the timestamp lets a receiver
    reject replays of old deliveries; the body is the same bytes on every attempt.
    ``X-ClawSplit-Signature`` carries the same value, except on the endpoints of ClawSplit
    keys, which get it as ClawSplit documents it: the hex HMAC-SHA256 of the raw body
    alone. Every attempt also carries the Standard Webhooks headers (``webhook-id``: the
    event id, ``webhook-timestamp``, ``webhook-signature``), signed by the
    ``standardwebhooks`` library itself so that its ``Webhook.verify`` accepts them; its
    key is the secret read as Standard Webhooks base64 (`standard_webhooks_secret`).
    docs/webhooks.md has the verification code users paste.

Dispatcher
    One `WebhookDispatcher` runs in the server's parent process on a daemon thread (the
    workers only queue rows, `edge.control.webhooks.enqueue_event`). It claims due rows in
    a ``BEGIN IMMEDIATE`` transaction (status ``delivering``, ``attempts + 1``, and a lease
    in ``next_attempt_at``), so two processes on one store never send the same attempt;
    a claim whose process died lapses and the row is sent again (at-least-once; the event
    ``id`` lets receivers deduplicate). Claimed rows are posted by a small thread pool
    with a bounded timeout, and every outcome is written to ``webhook_attempts``. A 2xx
    delivers; anything else is retried after a capped exponential backoff with jitter,
    until `RetryPolicy.max_attempts`, then the row is ``failed``. Redirects are not
    followed (a POST must not silently turn into a GET elsewhere).

Where deliveries may go
    Every attempt connects through the outbound guard (`edge.outbound`): an endpoint that
    is, or has come to resolve to, an address of the server's own network is not
    contacted. What an attempt records is generic on purpose: the receiver's status code,
    or "refused", "could not connect" or "timed out", never the socket or TLS error or
    the receiver's body, so the delivery log cannot be used to scan ports or read pages
    on a network the tenant cannot reach.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import sqlite3
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import msgspec
import standardwebhooks

from edge.api_keys import Flavour
from edge.control.records import utc_now
from edge.control.secret_box import SecretBox, SecretUnreadable
from edge.control.store import Store
from edge.control.store.webhooks import DeliveryAttempt, DeliveryStatus, DueDelivery
from edge.outbound import OutboundGuard, TargetRefused
from edge.settings import Settings

__all__ = [
    "CLAWSPLIT_SIGNATURE_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "RetryPolicy",
    "WebhookDispatcher",
    "clawsplit_signature",
    "sign",
    "signature_headers",
    "standard_webhooks_secret",
]

log = logging.getLogger("splitedge.webhooks")

SIGNATURE_HEADER = "X-abTestBot-Signature"
TIMESTAMP_HEADER = "X-abTestBot-Timestamp"
CLAWSPLIT_SIGNATURE_HEADER = "X-ClawSplit-Signature"
EVENT_HEADER = "X-abTestBot-Event"
DELIVERY_HEADER = "X-abTestBot-Delivery"
USER_AGENT = "splitedge-webhooks/1"

# The only texts an attempt's error can be (besides an HTTP status): see "Where
# deliveries may go" above.
REFUSED_ERROR = (
    "refused: the endpoint is, or resolves to, a non-public address (loopback, private, "
    "link-local); register a public https:// endpoint"
)
UNREACHABLE_ERROR = "could not connect to the endpoint, or the connection failed"
TIMEOUT_ERROR = "the endpoint did not answer in time"
SECRET_ERROR = (
    "not sent: this server cannot read the endpoint's signing secret (its operator must "
    "restore the secrets key); or delete the endpoint and register it again"
)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of
    ``timestamp + "." + body`` under the secret."""
    message = str(timestamp).encode("ascii") + b"." + body
    return "sha256=" + hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def clawsplit_signature(secret: str, body: bytes) -> str:
    """``X-ClawSplit-Signature`` as ClawSplit documents it: the hex HMAC-SHA256 of the
    raw body under the secret (as UTF-8)."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


# Secrets issued before v12 are URL-safe base64; the library reads standard base64 and
# would silently drop their "-" and "_". The same bytes in the standard alphabet:
_STANDARD_ALPHABET = str.maketrans("-_", "+/")


def standard_webhooks_secret(secret: str) -> str:
    """The endpoint's secret as the ``standardwebhooks`` library takes it: itself for the
    secrets issued now (``whsec_`` and standard base64), and for older URL-safe ones the
    same characters with ``-`` read as ``+`` and ``_`` as ``/`` (docs/webhooks.md)."""
    prefix, found, encoded = secret.partition("whsec_")
    if prefix or not found:
        return secret
    return "whsec_" + encoded.translate(_STANDARD_ALPHABET)


def _standard_signature(secret: str, event_id: str, timestamp: int, body: bytes) -> str:
    try:
        signer = standardwebhooks.Webhook(standard_webhooks_secret(secret))
    except ValueError:
        # Not base64 (no secret this server issues): its UTF-8 bytes are the key, so the
        # delivery is still sent and signed rather than failed.
        signer = standardwebhooks.Webhook(secret.encode("utf-8"))
    return signer.sign(event_id, datetime.fromtimestamp(timestamp, UTC), body)


def signature_headers(
    secret: str, event_id: str, timestamp: int, body: bytes, flavour: Flavour
) -> dict[str, str]:
    """The signing headers of one attempt: splitedge's (abTestBot's), ClawSplit's for
    ``flavour`` and the Standard Webhooks ones."""
    signature = sign(secret, timestamp, body)
    clawsplit = clawsplit_signature(secret, body) if flavour == "clawsplit" else signature
    standard = _standard_signature(secret, event_id, timestamp, body)
    return {
        SIGNATURE_HEADER: signature,
        TIMESTAMP_HEADER: str(timestamp),
        CLAWSPLIT_SIGNATURE_HEADER: clawsplit,
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": standard,
    }


class RetryPolicy(msgspec.Struct, frozen=True):
    """How deliveries are timed: the per-attempt ``timeout`` (connect and each read),
    the first retry's delay ``backoff``, doubling up to ``backoff_cap``, and how many
    attempts a delivery gets (seconds throughout)."""

    timeout: float = 10.0
    backoff: float = 30.0
    backoff_cap: float = 3600.0
    max_attempts: int = 12

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        """The policy the server's ``webhook_*`` settings describe."""
        return cls(
            timeout=settings.webhook_timeout,
            backoff=settings.webhook_backoff,
            backoff_cap=settings.webhook_backoff_cap,
            max_attempts=settings.webhook_max_attempts,
        )

    def delay(self, failed_attempts: int) -> float:
        """Seconds until the next attempt after ``failed_attempts`` failures: capped
        exponential, jittered down to half so retries of many rows spread out."""
        exponent = min(max(failed_attempts - 1, 0), 30)
        return min(self.backoff_cap, self.backoff * 2.0**exponent) * random.uniform(0.5, 1.0)

    @property
    def lease(self) -> float:
        """How long a claim holds a row: past any attempt's duration, with room to spare."""
        return 3 * self.timeout + 30.0


def _delivered(attempt: DeliveryAttempt) -> bool:
    return attempt.status_code is not None and 200 <= attempt.status_code < 300


def _status_text(response: httpx.Response) -> str | None:
    if response.is_success:
        return None
    redirect = " (redirects are not followed)" if response.is_redirect else ""
    return f"HTTP {response.status_code}{redirect}"


def _post(client: httpx.Client, claimed: DueDelivery) -> DeliveryAttempt:
    """One attempt; every way it can fail becomes the attempt's error, never an exception."""
    if claimed.secret is None:
        return DeliveryAttempt(claimed.attempt, utc_now(), 0, None, SECRET_ERROR)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **signature_headers(
            claimed.secret, claimed.event_id, timestamp, claimed.payload, claimed.flavour
        ),
        EVENT_HEADER: claimed.event,
        DELIVERY_HEADER: claimed.event_id,
    }
    started_at = utc_now()
    started = time.perf_counter()
    status: int | None = None
    error: str | None = None
    try:
        # The body is never read: only the status counts, and it stays the receiver's.
        with client.stream("POST", claimed.url, content=claimed.payload, headers=headers) as r:
            status, error = r.status_code, _status_text(r)
    except TargetRefused:
        error = REFUSED_ERROR
    except httpx.TimeoutException:
        error = TIMEOUT_ERROR
    except Exception:  # whatever one receiver does fails its attempt, not the thread
        error = UNREACHABLE_ERROR
    duration_ms = round(1000 * (time.perf_counter() - started))
    return DeliveryAttempt(claimed.attempt, started_at, duration_ms, status, error)


class WebhookDispatcher:
    """Delivers the store's due webhook rows on a thread; see the module docstring.

    ``guard`` decides which addresses deliveries may reach (default: public ones only);
    ``concurrency`` bounds the attempts in flight; ``poll_interval`` is how often the
    store is asked for due rows when nothing is happening.
    """

    def __init__(
        self,
        store_path: Path | str,
        policy: RetryPolicy | None = None,
        *,
        guard: OutboundGuard | None = None,
        concurrency: int = 8,
        poll_interval: float = 0.25,
    ) -> None:
        self.store_path = Path(store_path)
        self.box = SecretBox(self.store_path)
        self.policy = RetryPolicy() if policy is None else policy
        self.guard = OutboundGuard() if guard is None else guard
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the dispatcher thread."""
        if self._thread is not None:
            raise RuntimeError("the webhook dispatcher is already started")
        self._thread = threading.Thread(target=self._run, name="splitedge-webhooks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop claiming, let the attempts in flight finish and record them. Returns False
        if the thread did not end within ``timeout`` (default: one attempt's timeout and
        a little); rows it still held are sent again once their claim lapses."""
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(self.policy.timeout + 5.0 if timeout is None else timeout)
        if self._thread.is_alive():
            log.warning("webhook dispatcher did not stop in time; its claims lapse later")
            return False
        return True

    def _run(self) -> None:
        store = Store(self.store_path)
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="splitedge-webhook")
        client = httpx.Client(
            transport=self.guard.transport(),
            trust_env=False,
            follow_redirects=False,
            timeout=self.policy.timeout,
        )
        inflight: dict[Future[DeliveryAttempt], DueDelivery] = {}
        try:
            while not self._stop.is_set():
                try:
                    self._settle(store, inflight)
                    free = self.concurrency - len(inflight)
                    claimed = self._claim(store, free) if free > 0 else []
                except sqlite3.Error:
                    # A locked or busy store is transient: the rows wait for the next pass.
                    log.exception("webhook dispatcher could not reach the store")
                    claimed = []
                for row in claimed:
                    inflight[pool.submit(_post, client, row)] = row
                if claimed:
                    continue
                if inflight:
                    wait(inflight, self.poll_interval, return_when=FIRST_COMPLETED)
                else:
                    self._stop.wait(self.poll_interval)
            wait(inflight, self.policy.timeout + 1.0)
            self._settle(store, inflight)
        except Exception:
            log.exception("webhook dispatcher failed; queued deliveries wait for a restart")
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            client.close()
            store.close()

    def _claim(self, store: Store, limit: int) -> list[DueDelivery]:
        now = time.time()
        with store.transaction():
            rows = [self._opened(row) for row in store.due_deliveries(now, limit)]
            store.lease_deliveries(rows, now + self.policy.lease)
        return rows

    def _opened(self, row: DueDelivery) -> DueDelivery:
        """``row`` with its secret decrypted, or None for it: one endpoint whose secret
        cannot be read fails its own attempts, not the dispatcher of every workspace."""
        assert row.secret is not None  # as the store holds it
        try:
            return msgspec.structs.replace(row, secret=self.box.open(row.secret))
        except SecretUnreadable as exc:
            log.error("webhook delivery %d not sent: %s", row.delivery_id, exc.message)
            return msgspec.structs.replace(row, secret=None)

    def _settle(self, store: Store, inflight: dict[Future[DeliveryAttempt], DueDelivery]) -> None:
        """Record the finished attempts, in one transaction."""
        done = [future for future in inflight if future.done()]
        if not done:
            return
        with store.transaction():
            for future in done:
                self._record(store, inflight.pop(future), future.result())

    def _record(self, store: Store, row: DueDelivery, attempt: DeliveryAttempt) -> None:
        next_at = time.time()
        status: DeliveryStatus
        if _delivered(attempt):
            status = "delivered"
        elif row.attempt >= self.policy.max_attempts:
            status = "failed"
        else:
            status, next_at = "pending", next_at + self.policy.delay(row.attempt)
        store.settle_delivery(row.delivery_id, attempt, status, next_at)
        if not _delivered(attempt):
            # The host only: a URL's path or query may hold the receiver's own token.
            log.warning(
                "webhook delivery %d attempt %d to %s failed: %s",
                row.delivery_id,
                row.attempt,
                urlsplit(row.url).hostname,
                attempt.error,
                extra={"delivery": row.delivery_id, "attempt": row.attempt, "next": status},
            )
