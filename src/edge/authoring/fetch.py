"""Fetching the page an author works on: one bounded HTTP GET.

The page is a customer's, fetched from the server, so every fetch is bounded: a total
timeout, a size cap checked while the body streams in (a huge page is never held in
memory), at most five redirects, http(s) only, and HTML only. Every connection, redirect
hops included, goes through the outbound guard (`edge.outbound`): a page on the server's
own network is not fetched. Anything else is a `PageUnavailable` (422) telling the caller
what to check.

`PageFetcher` adds a small in-process cache: the authors fetch the same page several
times in one flow (clarification, variant, ideas), and the reference caches the DOM too
(for 7 days; here 10 minutes, so an edited page is seen soon).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
import msgspec

from edge.errors import SplitedgeError
from edge.outbound import OutboundGuard, TargetRefused

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_TIMEOUT",
    "FetchedPage",
    "PageFetcher",
    "PageUnavailable",
    "fetch_page",
]

DEFAULT_TIMEOUT = 10.0
"""Seconds a whole fetch may take, redirects and body included."""

DEFAULT_MAX_BYTES = 2_000_000
"""Largest page body accepted, in bytes."""

MAX_REDIRECTS = 5
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_USER_AGENT = "splitedge-authoring/0.1 (+https://github.com/splitedge; variant authoring)"


class PageUnavailable(SplitedgeError):
    """The target page could not be fetched as HTML: unreachable, too slow, too large,
    not HTML, or an error status. Nothing was authored."""

    code = "page_unavailable"
    status = 422


class FetchedPage(msgspec.Struct, frozen=True):
    """A fetched page: the URL asked for, the URL it ended at after redirects, its HTML
    and when it was fetched (ISO 8601, UTC)."""

    url: str
    final_url: str
    html: str
    fetched_at: str


def _check_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # raises ValueError for a port that is not a number from 0 to 65535
    except ValueError:
        raise PageUnavailable(
            f"{url[:200]!r} is not a valid URL; pass an absolute http(s) URL such as "
            "https://example.com/pricing"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PageUnavailable(
            f"{url[:200]!r} is not an absolute http(s) URL; pass one such as "
            "https://example.com/pricing"
        )


def _decode(body: bytes, charset: str | None) -> str:
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know: the page is most likely UTF-8
        return body.decode("utf-8", errors="replace")


def _read(response: httpx.Response, url: str, max_bytes: int, deadline: float) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise PageUnavailable(
            f"{url} is {int(declared):,} bytes, over the {max_bytes:,}-byte limit for a "
            "page to author on; target a lighter page (or the page's own URL, not a file)"
        )
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise PageUnavailable(
                f"{url} is over the {max_bytes:,}-byte limit for a page to author on; "
                "target a lighter page (or the page's own URL, not a file)"
            )
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("the whole fetch took too long")
        chunks.append(chunk)
    return b"".join(chunks)


def fetch_page(
    url: str,
    *,
    guard: OutboundGuard,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> FetchedPage:
    """GET ``url`` as HTML through ``guard``, within ``timeout`` seconds in all and
    ``max_bytes`` of body.

    Raises `PageUnavailable` when the page cannot be had."""
    _check_url(url)
    deadline = time.monotonic() + timeout
    headers = {"user-agent": _USER_AGENT, "accept": "text/html,application/xhtml+xml"}
    try:
        with (
            httpx.Client(
                transport=guard.transport(),
                trust_env=False,
                follow_redirects=True,
                max_redirects=MAX_REDIRECTS,
                timeout=httpx.Timeout(timeout),
                headers=headers,
            ) as client,
            client.stream("GET", url) as response,
        ):
            final_url = str(response.url)
            if response.status_code >= 400:
                raise PageUnavailable(
                    f"{final_url} answered HTTP {response.status_code}; check that the page "
                    "exists and is public (no login), then retry"
                )
            media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if media_type not in _HTML_TYPES:
                raise PageUnavailable(
                    f"{final_url} is {media_type or 'of no declared content type'}, not an "
                    "HTML page; target the URL of a web page (text/html)"
                )
            body = _read(response, final_url, max_bytes, deadline)
            html = _decode(body, response.charset_encoding)
    except TargetRefused:
        # The same words whether the URL or a redirect hop led inside: which one (and
        # what answered there) is nothing a tenant needs to learn.
        raise PageUnavailable(
            f"{url} leads to a non-public address (loopback, private, link-local or "
            "another internal range; directly, through DNS or through a redirect), which "
            "this server does not fetch; target a public page"
        ) from None
    except httpx.InvalidURL:  # e.g. 0177.0.0.1, which httpx will not read as IPv4
        raise PageUnavailable(
            f"{url[:200]!r} (or a URL it redirects to) is not a valid URL; pass an absolute "
            "http(s) URL such as https://example.com/pricing"
        ) from None
    except httpx.TooManyRedirects:
        raise PageUnavailable(
            f"{url} redirects more than {MAX_REDIRECTS} times; pass the URL it ends at"
        ) from None
    except httpx.UnsupportedProtocol:
        raise PageUnavailable(
            f"{url} redirects to a URL that is not http(s); pass an http(s) page URL"
        ) from None
    except httpx.TimeoutException:
        raise PageUnavailable(
            f"{url} did not answer within {timeout:g} s; check that the page is reachable "
            "from this server and fast enough, then retry"
        ) from None
    except httpx.HTTPError:
        # No detail of the failure: refused, reset or a failed TLS handshake would tell
        # open ports from closed ones.
        raise PageUnavailable(
            f"{url} could not be fetched (no connection, or the connection failed); check "
            "that the URL is right and reachable from this server (DNS, firewall), then "
            "retry"
        ) from None
    fetched_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return FetchedPage(url, final_url, html, fetched_at)


class PageFetcher:
    """`fetch_page` through ``guard`` (default: the strict one, public addresses only)
    with a small cache: a page fetched successfully is reused for ``ttl`` seconds; at most
    ``max_entries`` pages are kept (least recently used go first). Failures are never
    cached. Thread-safe."""

    def __init__(
        self,
        *,
        guard: OutboundGuard | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        ttl: float = 600.0,
        max_entries: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.guard = OutboundGuard() if guard is None else guard
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._pages: OrderedDict[str, tuple[float, FetchedPage]] = OrderedDict()
        self._lock = threading.Lock()

    def fetch(self, url: str) -> FetchedPage:
        """The page at ``url``, from the cache when fresh. Raises `PageUnavailable`."""
        now = self._clock()
        with self._lock:
            cached = self._pages.get(url)
            if cached is not None and now - cached[0] < self.ttl:
                self._pages.move_to_end(url)
                return cached[1]
        # Fetched outside the lock: one slow page must not hold up the others.
        page = fetch_page(url, guard=self.guard, timeout=self.timeout, max_bytes=self.max_bytes)
        with self._lock:
            self._pages[url] = (now, page)
            self._pages.move_to_end(url)
            while len(self._pages) > self.max_entries:
                self._pages.popitem(last=False)
        return page
