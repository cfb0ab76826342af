"""``POST /v1/collect``: browser events from the snippet, authenticated by the site's
public key, which can write only that site's events.

Like ``/v1/events`` (`edge.ingest.events_route`), an event may name an experiment of this
site that ended (completed, deployed or archived) less than ``late_event_grace`` ago
(`edge.config.ExperimentConfig.takes_events`): the conversion of a visitor who loaded the
page while it ran. It is stored, and counts in no result (those of an ended experiment
are of its run, up to its end).

Beacons come as ``application/json`` or ``text/plain`` (navigator.sendBeacon), plain or
gzip. An event that names an experiment, variant or goal that is not a running (or late)
one of this site is dropped and counted by reason; the rest of its batch is accepted (a batch
with nothing left is a 400 that says why). Every
answer carries CORS headers, errors included, so a page's script can read them.
"""

from __future__ import annotations

import time

import msgspec
from starlette.types import Receive, Scope, Send

from edge.errors import InvalidRequest, NotFound, ServiceUnavailable, SplitedgeError
from edge.http import decode_body, error_body, header, send_response
from edge.ingest.body import read_event_body
from edge.ingest.buffer import BrowserChunk, EventBuffer
from edge.ingest.counters import IngestCounters
from edge.ingest.schema import BrowserEvent, CollectRequest
from edge.kv import CompiledExperiment, ConfigKV, KVHolder, SiteBundle
from edge.operation import Operation

__all__ = [
    "COLLECT_OPERATION",
    "MAX_COLLECT_BODY",
    "MAX_COLLECT_JSON",
    "PREFLIGHT_OPERATION",
    "CollectEndpoint",
    "ScreenedBatch",
    "screen_events",
]

MAX_COLLECT_BODY = 256 * 1024
MAX_COLLECT_JSON = 1 << 20

_CORS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"POST, OPTIONS"),
    (b"access-control-allow-headers", b"content-type, content-encoding"),
    (b"access-control-max-age", b"86400"),
]
_JSON = [(b"content-type", b"application/json"), (b"cache-control", b"no-store"), *_CORS]
_CONTENT_TYPES = (b"", b"application/json", b"text/plain")

_decoder = msgspec.json.Decoder(CollectRequest)


class EventsRejected(InvalidRequest):
    """A whole batch named experiments, variants or goals this site does not run."""

    code = "events_rejected"


class ScreenedBatch(msgspec.Struct):
    """How many events of the batch were accepted, and how many were dropped by reason
    (``unknown_experiment``, ``unknown_variant``, ``unknown_goal``, ``missing_experiment``,
    ``exposure_without_variant``)."""

    accepted: int
    rejected: int
    rejected_reasons: dict[str, int]


class _Answer(msgspec.Struct):
    data: ScreenedBatch


COLLECT_OPERATION = Operation(
    summary="Browser events from the snippet, by the site's public key",
    description="Sent as application/json or, by navigator.sendBeacon, text/plain; plain "
    "or gzip. Events naming no running experiment, variant or goal of the site (or of one "
    "that ended less than 24 h ago: a late event, stored and counted in no result) are "
    "dropped and counted; a batch with nothing left is a 400. Not metered; CORS allows any "
    "origin.",
    body=_decoder,
    data=ScreenedBatch,
    errors=(404, 503),
    auth="none",
    example={
        "public_key": "61d94cdccd0641ef99d1d2fd9525704a",
        "events": [
            {
                "event_id": "5f0c8e2d-1a4e-4c2a-9d7a-3b1fe0e3f741",
                "type": "pageview",
                "visitor_id": "visitor-42",
                "ts": 1767225600000,
                "pathname": "/pricing",
                "device": "desktop",
            }
        ],
    },
)
PREFLIGHT_OPERATION = Operation(
    summary="The CORS preflight of /v1/collect", statuses=(204,), auth="none"
)


def _late(
    kv: ConfigKV, bundle: SiteBundle, experiment_id: str, since: float
) -> CompiledExperiment | None:
    """The web experiment of the bundle's site that ``experiment_id`` names, if it ended
    at ``since`` or later (a late event's)."""
    found = kv.assignable_by_id.get(experiment_id)
    if found is None:
        return None
    config = found[1][0].config
    if config.kind != "web" or config.site_id != bundle.site.id:
        return None
    return found[1][0] if config.takes_events(since) else None


def screen_events(
    kv: ConfigKV, bundle: SiteBundle, events: list[BrowserEvent], since: float
) -> tuple[list[BrowserEvent], dict[str, int]]:
    """The events this site may write, and the count of the others by reason; an
    experiment that ended at ``since`` or later takes late events."""
    kept: list[BrowserEvent] = []
    rejected: dict[str, int] = {}
    experiments = bundle.experiments_by_id
    for event in events:
        reason = None
        if event.experiment_id:
            experiment = experiments.get(event.experiment_id) or _late(
                kv, bundle, event.experiment_id, since
            )
            if experiment is None:
                reason = "unknown_experiment"
            elif event.variant_id and event.variant_id not in experiment.variant_ids:
                reason = "unknown_variant"
            elif event.goal_id and event.goal_id not in experiment.goal_ids:
                reason = "unknown_goal"
        elif event.variant_id or event.goal_id:
            reason = "missing_experiment"
        if reason is None and event.type == "exposure" and not event.variant_id:
            reason = "exposure_without_variant"
        if reason is None:
            kept.append(event)
        else:
            rejected[reason] = rejected.get(reason, 0) + 1
    return kept, rejected


class CollectEndpoint:
    """Raw ASGI endpoint for browser beacons."""

    def __init__(
        self,
        holder: KVHolder,
        buffer: EventBuffer,
        counters: IngestCounters,
        late_event_grace: float = 86_400.0,
    ) -> None:
        self.holder = holder
        self.buffer = buffer
        self.counters = counters
        self.late_event_grace = late_event_grace

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "OPTIONS":
            await send_response(send, 204, _CORS)
            return
        try:
            answer = await self._collect(scope, receive)
        except SplitedgeError as exc:
            self.counters.reject("request_" + exc.code)
            headers = list(_JSON)
            if isinstance(exc, ServiceUnavailable):
                headers.append((b"retry-after", str(exc.retry_after).encode()))
            await send_response(send, exc.status, headers, error_body(exc.code, exc.message))
            return
        await send_response(send, 200, _JSON, msgspec.json.encode(answer))

    async def _collect(self, scope: Scope, receive: Receive) -> _Answer:
        content_type = header(scope, b"content-type") or b""
        if content_type.split(b";")[0].strip().lower() not in _CONTENT_TYPES:
            raise InvalidRequest("send events as application/json or text/plain")
        text = await read_event_body(scope, receive, MAX_COLLECT_BODY, MAX_COLLECT_JSON)
        request = decode_body(_decoder, text, "event batch")
        kv = self.holder.require()
        bundle = kv.by_public_key.get(request.public_key)
        if bundle is None:
            raise NotFound("no site has that public_key; check the snippet tag of this site")
        self.counters.receive("browser", len(request.events))
        since = time.time() - self.late_event_grace
        kept, rejected = screen_events(kv, bundle, request.events, since)
        for reason, count in rejected.items():
            self.counters.reject(reason, count)
        if not kept:
            reasons = ", ".join(f"{reason}: {count}" for reason, count in rejected.items())
            raise EventsRejected(
                f"none of the {len(request.events)} events belongs to a running experiment "
                f"of this site ({reasons}); send the ids the snippet assigned"
            )
        chunk = BrowserChunk(
            workspace_id=bundle.site.workspace_id,
            site_id=bundle.site.id,
            received_ms=time.time_ns() // 1_000_000,
            events=kept,
        )
        await self.buffer.add(chunk)
        self.counters.accept("browser", len(kept))
        return _Answer(ScreenedBatch(len(kept), len(request.events) - len(kept), rejected))
