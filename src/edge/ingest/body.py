"""Request bodies of the ingest routes: bounded reads, optional gzip, bounded inflation,
and the decoding of agent task events."""

from __future__ import annotations

import zlib
from typing import Annotated, cast

import msgspec
from msgspec import Meta
from starlette.types import Receive, Scope

from edge.errors import InvalidRequest, PayloadTooLarge
from edge.http import decode_body, header, read_body
from edge.ingest.schema import MAX_EVENTS_PER_BATCH, AgentTaskEvent, StrictAgentTaskEvent

__all__ = ["AGENT_EVENTS_DECODER", "GZIP_MAGIC", "decode_agent_events", "read_event_body"]

GZIP_MAGIC = b"\x1f\x8b"

_Batch = Annotated[list[AgentTaskEvent], Meta(min_length=1, max_length=MAX_EVENTS_PER_BATCH)]
AGENT_EVENTS_DECODER: msgspec.json.Decoder[AgentTaskEvent | _Batch] = msgspec.json.Decoder(
    AgentTaskEvent | _Batch
)
"""One agent task event or a batch of them, unknown fields ignored (the documented body)."""

_StrictBatch = Annotated[
    list[StrictAgentTaskEvent], Meta(min_length=1, max_length=MAX_EVENTS_PER_BATCH)
]
_strict: msgspec.json.Decoder[StrictAgentTaskEvent | _StrictBatch] = msgspec.json.Decoder(
    StrictAgentTaskEvent | _StrictBatch
)
_Keys = dict[str, msgspec.Raw]
_keys: msgspec.json.Decoder[_Keys | list[_Keys]] = msgspec.json.Decoder(_Keys | list[_Keys])
_KNOWN = frozenset(AgentTaskEvent.__struct_encode_fields__)


async def read_event_body(
    scope: Scope, receive: Receive, wire_limit: int, json_limit: int
) -> bytes:
    """The JSON text of a request: at most ``wire_limit`` bytes as sent and, when gzipped
    (by Content-Encoding, or by its magic bytes since sendBeacon cannot set headers), at
    most ``json_limit`` bytes inflated. A gzip bomb stops at the limit, never in memory."""
    raw = await read_body(scope, receive, wire_limit)
    encoding = (header(scope, b"content-encoding") or b"").strip().lower()
    if encoding not in (b"", b"identity", b"gzip"):
        raise InvalidRequest("Content-Encoding must be gzip or absent")
    if encoding != b"gzip" and not raw.startswith(GZIP_MAGIC):
        return raw
    inflater = zlib.decompressobj(wbits=31)
    try:
        text = inflater.decompress(raw, json_limit + 1)
    except zlib.error as exc:
        raise InvalidRequest(f"the gzip body is corrupt ({exc}); send valid gzip or plain JSON")
    if len(text) > json_limit:
        raise PayloadTooLarge(f"the body inflates to over {json_limit} bytes; send smaller batches")
    if not inflater.eof:
        raise InvalidRequest("the gzip body is truncated; send the whole stream")
    return text


def decode_agent_events(text: bytes) -> tuple[AgentTaskEvent | list[AgentTaskEvent], int]:
    """The agent task event or batch of ``text``, and how many fields it held that no
    event has (ignored, never a reason to refuse the batch: a newer SDK may send them).
    Anything else wrong is a 400 that says where (`edge.http.decode_body`)."""
    try:
        # A list of the subclass is a list of events to every reader (none appends to it).
        return cast("AgentTaskEvent | list[AgentTaskEvent]", _strict.decode(text)), 0
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        # The slow path, taken only by a body that is wrong or has an unknown field: the
        # lenient decode says what is wrong, or succeeds and the keys are counted.
        decoded = decode_body(AGENT_EVENTS_DECODER, text, "task event")
    found = _keys.decode(text)
    events = found if isinstance(found, list) else [found]
    return decoded, sum(len(event.keys() - _KNOWN) for event in events)
