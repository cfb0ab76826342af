"""Webhooks: the endpoints a workspace registered, their queued deliveries and every
attempt at them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal, get_args

import msgspec

from edge.api_keys import Flavour
from edge.control.records import utc_now
from edge.control.store.connection import StoreConnection, new_id

__all__ = [
    "EVENTS",
    "Delivery",
    "DeliveryAttempt",
    "DeliveryStatus",
    "DueDelivery",
    "EventName",
    "StoredSecret",
    "Webhook",
    "WebhookQueries",
]

EventName = Literal[
    "experiment.launched",
    "experiment.started",
    "experiment.completed",
    "experiment.sample_reached",
    "experiment.winner_declared",
    "experiment.no_winner",
    "experiment.stopped",
    "variant.promoted",
    "ideas.generated",
    "idea.status_changed",
    "loop.round_decided",
    "loop.paused",
]
EVENTS: tuple[str, ...] = get_args(EventName)

DeliveryStatus = Literal["pending", "delivering", "delivered", "failed", "cancelled"]


class Webhook(msgspec.Struct, frozen=True):
    """An endpoint as listed (the reference's shape); the secret is never shown again."""

    id: str
    url: str
    events: list[EventName]
    is_active: bool
    created_at: str


class DeliveryAttempt(msgspec.Struct, frozen=True):
    """One POST of a delivery: when, how long (ms), and the status or the error."""

    number: int
    started_at: str
    duration_ms: int
    status_code: int | None
    error: str | None


class Delivery(msgspec.Struct, frozen=True):
    """One event for one endpoint: ``status`` is pending (``next_attempt_at`` says
    when), delivering, delivered, failed (attempts exhausted) or cancelled (the endpoint
    was deleted); ``payload`` is the exact body sent."""

    id: int
    event_id: str
    event: str
    status: str
    attempts: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    created_at: str
    updated_at: str
    delivered_at: str | None
    payload: msgspec.Raw
    attempt_log: list[DeliveryAttempt]


class DueDelivery(msgspec.Struct, frozen=True):
    """A delivery due for its attempt number ``attempt``, with its endpoint's URL,
    signing secret (as stored, sealed; the dispatcher opens it) and flavour."""

    delivery_id: int
    attempt: int
    event_id: str
    event: str
    payload: bytes
    url: str
    secret: str | None
    """None when it cannot be decrypted: the attempt then fails without sending."""
    flavour: Flavour = "splitedge"


class StoredSecret(msgspec.Struct, frozen=True):
    """An endpoint's signing secret as the store holds it."""

    webhook_id: str
    secret: str


_WEBHOOK_COLUMNS = "id, url, events, deleted_at IS NULL, created_at"
_events = msgspec.json.Decoder(list[EventName])


def _webhook(row: tuple[str, str, str, int, str]) -> Webhook:
    id_, url, events, active, created_at = row
    return Webhook(id_, url, _events.decode(events), bool(active), created_at)


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat()


class WebhookQueries(StoreConnection):
    """The queries of the ``webhooks``, ``webhook_deliveries`` and ``webhook_attempts``
    tables."""

    def create_webhook(
        self,
        workspace_id: str,
        url: str,
        events: list[EventName],
        sealed_secret: str,
        flavour: Flavour = "splitedge",
    ) -> Webhook:
        """Register an active endpoint; ``sealed_secret`` is its secret as stored,
        ``flavour`` the flavour of the key that registered it."""
        webhook = Webhook(new_id(), url, events, True, utc_now())
        self.conn.execute(
            "INSERT INTO webhooks (id, workspace_id, url, events, secret, created_at, flavour) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (webhook.id, workspace_id, url, msgspec.json.encode(events).decode(), sealed_secret,
             webhook.created_at, flavour),
        )  # fmt: skip
        return webhook

    def find_webhook(self, webhook_id: str, workspace_id: str) -> Webhook | None:
        """A workspace's endpoint, active or deleted; None when it has no such endpoint
        (another workspace's is not there either)."""
        row = self.conn.execute(
            f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE id = ? AND workspace_id = ?",
            (webhook_id, workspace_id),
        ).fetchone()
        return None if row is None else _webhook(row)

    def list_webhooks(
        self, workspace_id: str, limit: int, offset: int
    ) -> tuple[list[Webhook], int]:
        """A page of a workspace's active endpoints, newest first, and how many it has."""
        active = "FROM webhooks WHERE workspace_id = ? AND deleted_at IS NULL"
        (total,) = self.conn.execute(f"SELECT count(*) {active}", (workspace_id,)).fetchone()
        rows = self.conn.execute(
            f"SELECT {_WEBHOOK_COLUMNS} {active} ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
            (workspace_id, limit, offset),
        )
        return [_webhook(row) for row in rows], int(total)

    def deactivate_webhook(self, webhook_id: str) -> None:
        """Soft-delete an endpoint and cancel its queued deliveries, in one transaction."""
        now = utc_now()
        with self.transaction() as conn:
            conn.execute("UPDATE webhooks SET deleted_at = ? WHERE id = ?", (now, webhook_id))
            conn.execute(
                "UPDATE webhook_deliveries SET status = 'cancelled', updated_at = ? "
                "WHERE webhook_id = ? AND status IN ('pending', 'delivering')",
                (now, webhook_id),
            )

    def subscribed_webhooks(self, workspace_id: str, event: str) -> list[str]:
        """The ids of the workspace's active endpoints subscribed to ``event``."""
        return [
            webhook_id
            for (webhook_id,) in self.conn.execute(
                "SELECT id FROM webhooks WHERE workspace_id = ? AND deleted_at IS NULL "
                "AND EXISTS (SELECT 1 FROM json_each(webhooks.events) WHERE value = ?)",
                (workspace_id, event),
            )
        ]

    def queue_deliveries(
        self, webhook_ids: Sequence[str], event_id: str, event: str, body: bytes
    ) -> None:
        """Queue one pending delivery of ``body`` per endpoint, due now."""
        now, due = utc_now(), time.time()
        self.conn.executemany(
            "INSERT INTO webhook_deliveries (webhook_id, event_id, event, payload, "
            "next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(webhook_id, event_id, event, body, due, now, now) for webhook_id in webhook_ids],
        )

    def list_deliveries(
        self, webhook_id: str, limit: int, offset: int
    ) -> tuple[list[Delivery], int]:
        """A page of an endpoint's deliveries, newest first, each with every attempt, and
        how many it has."""
        (total,) = self.conn.execute(
            "SELECT count(*) FROM webhook_deliveries WHERE webhook_id = ?", (webhook_id,)
        ).fetchone()
        rows = self.conn.execute(
            "SELECT id, event_id, event, status, attempts, next_attempt_at, last_status_code, "
            "last_error, created_at, updated_at, delivered_at, payload FROM webhook_deliveries "
            "WHERE webhook_id = ? ORDER BY id DESC LIMIT ? OFFSET ?",
            (webhook_id, limit, offset),
        ).fetchall()
        attempts: dict[int, list[DeliveryAttempt]] = {row[0]: [] for row in rows}
        if attempts:
            marks = ", ".join("?" * len(attempts))
            for delivery_id, *attempt in self.conn.execute(
                "SELECT delivery_id, number, started_at, duration_ms, status_code, error "
                f"FROM webhook_attempts WHERE delivery_id IN ({marks}) ORDER BY number",
                list(attempts),
            ):
                attempts[delivery_id].append(DeliveryAttempt(*attempt))
        deliveries = [
            Delivery(
                id=id_,
                event_id=event_id,
                event=event,
                status=status,
                attempts=count,
                next_attempt_at=_iso(next_at) if status == "pending" else None,
                last_status_code=code,
                last_error=error,
                created_at=created_at,
                updated_at=updated_at,
                delivered_at=delivered_at,
                payload=msgspec.Raw(bytes(payload)),
                attempt_log=attempts[id_],
            )
            for (id_, event_id, event, status, count, next_at, code, error, created_at,
                 updated_at, delivered_at, payload) in rows
        ]  # fmt: skip
        return deliveries, int(total)

    def due_deliveries(self, now: float, limit: int) -> list[DueDelivery]:
        """Up to ``limit`` deliveries of active endpoints due at ``now`` (pending ones, and
        claims that lapsed), the longest due first."""
        return [
            DueDelivery(*row)
            for row in self.conn.execute(
                "SELECT d.id, d.attempts + 1, d.event_id, d.event, d.payload, w.url, w.secret, "
                "w.flavour "
                "FROM webhook_deliveries AS d JOIN webhooks AS w ON w.id = d.webhook_id "
                "WHERE d.status IN ('pending', 'delivering') AND d.next_attempt_at <= ? "
                "AND w.deleted_at IS NULL ORDER BY d.next_attempt_at LIMIT ?",
                (now, limit),
            )
        ]

    def lease_deliveries(self, deliveries: Sequence[DueDelivery], until: float) -> None:
        """Claim deliveries for their attempt: ``delivering`` until ``until``, when an
        unsettled claim lapses."""
        now = utc_now()
        self.conn.executemany(
            "UPDATE webhook_deliveries SET status = 'delivering', attempts = ?, "
            "next_attempt_at = ?, updated_at = ? WHERE id = ?",
            [(d.attempt, until, now, d.delivery_id) for d in deliveries],
        )

    def settle_delivery(
        self,
        delivery_id: int,
        attempt: DeliveryAttempt,
        status: DeliveryStatus,
        next_attempt_at: float,
    ) -> None:
        """Append ``attempt`` to a delivery's log and record where the delivery stands
        after it (``delivered`` stamps it now). The delivery changes only while the claim
        is still that attempt's: a delete (cancelled) or a lapsed and re-claimed row (a
        higher attempt number) is left as it is."""
        now = utc_now()
        delivered_at = now if status == "delivered" else None
        self.conn.execute(
            "INSERT INTO webhook_attempts (delivery_id, number, started_at, "
            "duration_ms, status_code, error) VALUES (?, ?, ?, ?, ?, ?)",
            (delivery_id, attempt.number, attempt.started_at, attempt.duration_ms,
             attempt.status_code, attempt.error),
        )  # fmt: skip
        self.conn.execute(
            "UPDATE webhook_deliveries SET status = ?, next_attempt_at = ?, "
            "last_status_code = ?, last_error = ?, updated_at = ?, delivered_at = ? "
            "WHERE id = ? AND status = 'delivering' AND attempts = ?",
            (status, next_attempt_at, attempt.status_code, attempt.error, now, delivered_at,
             delivery_id, attempt.number),
        )  # fmt: skip

    def unsealed_webhook_secrets(self, sealed_prefix: str) -> list[StoredSecret]:
        """The endpoints' secrets stored without ``sealed_prefix`` (plain text)."""
        return [
            StoredSecret(*row)
            for row in self.conn.execute(
                "SELECT id, secret FROM webhooks WHERE secret NOT LIKE ?", (sealed_prefix + "%",)
            )
        ]

    def set_webhook_secrets(self, secrets: Sequence[StoredSecret]) -> None:
        """Store these endpoints' secrets as given."""
        self.conn.executemany(
            "UPDATE webhooks SET secret = ? WHERE id = ?",
            [(s.secret, s.webhook_id) for s in secrets],
        )
