"""edge.authoring.fetch: one bounded GET of a page, against real local servers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from edge.authoring.fetch import PageFetcher, PageUnavailable, fetch_page
from tests.page_server import serve_pages
from tests.support import LOOPBACK_ALLOWED

PAGE = b"<!doctype html><html><head><title>ok</title></head><body><h1>Hi</h1></body></html>"


class Misbehaving(BaseHTTPRequestHandler):
    """Pages that break the rules: slow, huge, not HTML, redirect loops."""

    hits: dict[str, int] = {}

    def do_GET(self) -> None:
        Misbehaving.hits[self.path] = Misbehaving.hits.get(self.path, 0) + 1
        if self.path == "/slow":
            time.sleep(1.5)
            self._send(200, "text/html", PAGE)
        elif self.path == "/huge":  # no Content-Length: only the stream tells the size
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            chunk = b"<p>" + b"x" * 16_000 + b"</p>"
            try:
                for _ in range(200):
                    self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading at its cap, as it should
        elif self.path == "/declared-huge":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", "50000000")
            self.end_headers()
        elif self.path == "/json":
            self._send(200, "application/json", b'{"a": 1}')
        elif self.path == "/latin1":
            self._send(200, "text/html; charset=iso-8859-1", "<h1>Caf\u00e9</h1>".encode("latin-1"))
        elif self.path == "/loop":
            self._redirect("/loop")
        elif self.path.startswith("/hop/"):
            left = int(self.path.rsplit("/", 1)[1])
            if left:
                self._redirect(f"/hop/{left - 1}")
            else:
                self._send(200, "text/html", PAGE)
        elif self.path == "/ftp":
            self._redirect("ftp://127.0.0.1/file")
        elif self.path.startswith("/gone"):
            self._send(404, "text/html", b"<h1>Not found</h1>")
        else:
            self._send(200, "text/html", PAGE)

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout), as the test wants

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def bad() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Misbehaving)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_fetches_a_fixture_page_as_html() -> None:
    with serve_pages() as base:
        page = fetch_page(f"{base}/pricing", guard=LOOPBACK_ALLOWED)
    assert page.url == page.final_url == f"{base}/pricing"
    assert "plan--pro" in page.html and "__NEXT_DATA__" in page.html
    assert page.fetched_at.endswith("Z") and page.fetched_at[:2] == "20"


def test_follows_up_to_five_redirects_and_reports_where_it_ended(bad: str) -> None:
    page = fetch_page(f"{bad}/hop/5", guard=LOOPBACK_ALLOWED)
    assert page.final_url == f"{bad}/hop/0"
    with pytest.raises(PageUnavailable, match="redirects more than 5 times"):
        fetch_page(f"{bad}/hop/6", guard=LOOPBACK_ALLOWED)
    with pytest.raises(PageUnavailable, match="redirects more than 5 times"):
        fetch_page(f"{bad}/loop", guard=LOOPBACK_ALLOWED)


def test_a_slow_page_times_out_with_an_actionable_422(bad: str) -> None:
    started = time.monotonic()
    with pytest.raises(PageUnavailable) as caught:
        fetch_page(f"{bad}/slow", timeout=0.3, guard=LOOPBACK_ALLOWED)
    assert time.monotonic() - started < 1.2
    assert caught.value.status == 422 and caught.value.code == "page_unavailable"
    assert "did not answer within 0.3 s" in caught.value.message
    assert "reachable from this server" in caught.value.message


def test_a_huge_page_stops_at_the_size_cap(bad: str) -> None:
    with pytest.raises(PageUnavailable, match="over the 100,000-byte limit"):
        fetch_page(f"{bad}/huge", max_bytes=100_000, guard=LOOPBACK_ALLOWED)
    with pytest.raises(PageUnavailable, match="50,000,000 bytes, over the 2,000,000-byte limit"):
        fetch_page(f"{bad}/declared-huge", guard=LOOPBACK_ALLOWED)


def test_only_html_is_accepted(bad: str) -> None:
    with pytest.raises(PageUnavailable, match="is application/json, not an HTML page"):
        fetch_page(f"{bad}/json", guard=LOOPBACK_ALLOWED)


def test_the_declared_charset_decodes_the_page(bad: str) -> None:
    assert "Caf\u00e9" in fetch_page(f"{bad}/latin1", guard=LOOPBACK_ALLOWED).html


def test_error_statuses_unreachable_hosts_and_bad_urls_are_422(bad: str) -> None:
    with pytest.raises(PageUnavailable, match="answered HTTP 404; check that the page exists"):
        fetch_page(f"{bad}/gone", guard=LOOPBACK_ALLOWED)
    with pytest.raises(PageUnavailable, match="redirects to a URL that is not http"):
        fetch_page(f"{bad}/ftp", guard=LOOPBACK_ALLOWED)
    with serve_pages() as closed:
        pass  # the port is free again: nothing listens there
    with pytest.raises(PageUnavailable, match="could not be fetched .*reachable from this server"):
        fetch_page(closed, guard=LOOPBACK_ALLOWED)
    for url in ("ftp://example.com/", "/pricing", "http://host:99999/"):
        with pytest.raises(PageUnavailable, match="http"):
            fetch_page(url, guard=LOOPBACK_ALLOWED)


def test_the_fetcher_caches_successes_for_its_ttl_only(bad: str) -> None:
    now = [100.0]
    fetcher = PageFetcher(guard=LOOPBACK_ALLOWED, ttl=60, max_entries=2, clock=lambda: now[0])
    url = f"{bad}/cached"
    first = fetcher.fetch(url)
    assert fetcher.fetch(url) is first and Misbehaving.hits["/cached"] == 1
    now[0] += 61
    assert fetcher.fetch(url) is not first and Misbehaving.hits["/cached"] == 2
    # Bounded: the least recently used page leaves first.
    fetcher.fetch(f"{bad}/a")
    fetcher.fetch(f"{bad}/b")
    fetcher.fetch(url)
    assert Misbehaving.hits["/cached"] == 3
    # Failures are not cached: each try asks again.
    for _ in range(2):
        with pytest.raises(PageUnavailable):
            fetcher.fetch(f"{bad}/gone-uncached")
    assert Misbehaving.hits["/gone-uncached"] == 2
