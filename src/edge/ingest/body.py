"""Request bodies of the ingest routes: bounded reads, optional gzip, bounded inflation."""

from __future__ import annotations

import zlib

from starlette.types import Receive, Scope

from edge.errors import InvalidRequest, PayloadTooLarge
from edge.http import header, read_body

__all__ = ["GZIP_MAGIC", "read_event_body"]

GZIP_MAGIC = b"\x1f\x8b"


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
