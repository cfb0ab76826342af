"""``GET /s/{public_key}.js``: a site's snippet, straight from the config KV."""

from __future__ import annotations

from time import time

from starlette.types import Receive, Scope, Send

from edge.http import send_response
from edge.kv import CatchUp, KVHolder
from edge.operation import Operation
from edge.snippet import JS_CONTENT_TYPE, SnippetBody
from edge.snippet_fetches import FetchLog

__all__ = ["SNIPPET_OPERATION", "SnippetEndpoint", "accepts_gzip", "etag_matches"]

_UNKNOWN_KEY_HEADERS = [
    (b"content-type", JS_CONTENT_TYPE),
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
]
_UNKNOWN_KEY_BODY = b"/* splitedge: unknown site key; check the snippet tag of this site */\n"
_NOT_READY_BODY = b"/* splitedge: starting up; retry in a second */\n"

SNIPPET_OPERATION = Operation(
    summary="A site's snippet: the runtime and the site's running experiments",
    description="Gzip when accepted; 304 when If-None-Match names its ETag. An unknown key "
    "is a 404 whose body is a JavaScript comment, so a page's script tag fails quietly.",
    data=str,
    envelope=False,
    statuses=(200, 304),
    errors=(404, 503),
    auth="none",
    media_type=JS_CONTENT_TYPE.split(b";")[0].decode(),
)


def accepts_gzip(accept_encoding: bytes) -> bool:
    """Whether an Accept-Encoding value admits gzip (``gzip`` or ``*`` with q > 0)."""
    for item in accept_encoding.split(b","):
        name, _, params = item.partition(b";")
        if name.strip().lower() not in (b"gzip", b"*"):
            continue
        params = params.strip().lower()
        if not params.startswith(b"q="):
            return True
        try:
            return float(params[2:]) > 0
        except ValueError:
            return False
    return False


def etag_matches(if_none_match: bytes, snippet: SnippetBody) -> bool:
    """Weak comparison (RFC 9110 §13.1.2) against either representation's ETag."""
    if if_none_match == snippet.etag or if_none_match == snippet.gzip_etag:
        return True
    for tag in if_none_match.split(b","):
        tag = tag.strip()
        if tag == b"*":
            return True
        tag = tag.removeprefix(b"W/")
        if tag == snippet.etag or tag == snippet.gzip_etag:
            return True
    return False


class SnippetEndpoint:
    """Raw ASGI endpoint: every byte it sends was prepared when the config was built.
    ``catch_up`` brings the KV up to this server's latest write, and looks an unknown
    key up again in the store's latest version (`edge.serving.KVCatchUp`). ``fetches``
    (the control plane's workers) notes each site's last fetch in memory, for the
    installation check (`edge.snippet_fetches`)."""

    def __init__(
        self, holder: KVHolder, catch_up: CatchUp | None = None, fetches: FetchLog | None = None
    ) -> None:
        self.holder = holder
        self.catch_up = catch_up
        self.fetches = fetches

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kv = self.holder.kv
        if kv is None:
            headers = [*_UNKNOWN_KEY_HEADERS, (b"retry-after", b"1")]
            await send_response(send, 503, headers, _NOT_READY_BODY)
            return
        catch_up = self.catch_up
        if catch_up is not None and kv.version < catch_up.board_version():
            kv = await catch_up.current(kv)
        public_key = scope["path_params"]["public_key"]
        bundle = kv.by_public_key.get(public_key)
        if bundle is None and catch_up is not None:
            bundle = (await catch_up.after_miss(kv)).by_public_key.get(public_key)
        if bundle is None:
            await send_response(send, 404, _UNKNOWN_KEY_HEADERS, _UNKNOWN_KEY_BODY)
            return
        if self.fetches is not None:
            self.fetches.seen[bundle.site.id] = time()
        snippet = bundle.snippet
        gzip = False
        if_none_match = None
        for name, value in scope["headers"]:
            if name == b"accept-encoding":
                gzip = accepts_gzip(value)
            elif name == b"if-none-match":
                if_none_match = value
        if if_none_match is not None and etag_matches(if_none_match, snippet):
            headers = snippet.gzip_not_modified_headers if gzip else snippet.not_modified_headers
            await send_response(send, 304, headers)
        elif scope["method"] == "HEAD":
            await send_response(send, 200, snippet.gzip_headers if gzip else snippet.headers)
        elif gzip:
            await send_response(send, 200, snippet.gzip_headers, snippet.gzip_body)
        else:
            await send_response(send, 200, snippet.headers, snippet.body)
