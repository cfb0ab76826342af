"""Browser-test support: Debian's Chromium through Playwright, a site server on loopback
that serves the test pages (the snippet comes from the real edge server), and running
experiments made in the real store.

Chromium is ``/usr/bin/chromium`` (``.ci/run`` installs Debian's package); Playwright
never downloads a browser here. The flags keep Chromium off the network: this machine
refuses outside connections, and a background request would only slow every start.
"""

from __future__ import annotations

import json
import mimetypes
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec
from playwright.sync_api import Browser, Page, Playwright, Request, sync_playwright

from edge.config import MutationConfig
from edge.control.records import NewExperiment, NewGoal, NewVariant, Site
from edge.control.store import Store
from tests.support import (
    Seed,
    Server,
    running_server,
    seed_store,
    variant_and_goal_ids,
    wait_served,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parent.parent

# A page part: its HTML, or (seconds to wait first, HTML) for a page that arrives in
# pieces, so that elements are parsed after the snippet ran (and after a first paint).
Part = str | tuple[float, str]


def launch_chromium(playwright: Playwright) -> Browser:
    if not Path(CHROMIUM).exists():
        raise AssertionError(f"{CHROMIUM} is missing: install Debian's chromium (see .ci/run)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            yield browser
        finally:
            browser.close()


class SiteServer:
    """The customer's website: test pages on a loopback port of their own (a different
    origin from the edge, as on a real site), plus the runtime's sources and the shared
    vectors for the in-browser JS tests."""

    def __init__(self) -> None:
        self.pages: dict[str, Sequence[Part]] = {}
        self.requests: list[str] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server API)
                site.requests.append(self.path)
                path = self.path.split("?")[0]
                if path in site.pages:
                    self._send_page(site.pages[path])
                elif path.startswith(("/snippet/src/", "/tests/vectors/")):
                    self._send_file(ROOT / path.lstrip("/"))
                else:
                    self.send_error(404)

            def _send_page(self, parts: Sequence[Part]) -> None:
                # No content-length: HTTP/1.0, the body ends when the connection closes, and
                # Chromium renders each part as it arrives.
                self.send_response(200)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("cache-control", "no-store")
                self.end_headers()
                for part in parts:
                    delay, html = part if isinstance(part, tuple) else (0.0, part)
                    time.sleep(delay)
                    self.wfile.write(html.encode())
                    self.wfile.flush()

            def _send_file(self, file: Path) -> None:
                if not file.is_file():
                    self.send_error(404)
                    return
                body = file.read_bytes()
                kind = "text/javascript" if file.suffix == ".js" else mimetypes.guess_type(file)[0]
                self.send_response(200)
                self.send_header("content-type", kind or "application/octet-stream")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def add(self, path: str, *parts: Part) -> str:
        """Serve a page at ``path``; returns its URL."""
        self.pages[path] = parts
        return self.base_url + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class BrowserEdge(msgspec.Struct):
    """The real edge the browser tests load the snippet from, with its seeded store."""

    server: Server
    seed: Seed
    store_path: Path


@contextmanager
def browser_edge_on(data: Path) -> Iterator[BrowserEdge]:
    """Seed a store in ``data`` and run the edge over it until the block ends."""
    store_path = data / "splitedge.sqlite3"
    seed = seed_store(store_path)
    with running_server(data) as server:
        yield BrowserEdge(server, seed, store_path)


def page_html(edge: BrowserEdge, body: str, head: str = "", site: Site | None = None) -> str:
    """A page with the snippet of ``site`` (the seeded one by default) first in <head>,
    as the install instructions say."""
    public_key = (site or edge.seed.site).public_key
    return (
        "<!doctype html><html><head>"
        f'<script src="{edge.server.base_url}/s/{public_key}.js"></script>{head}'
        f"</head><body>{body}</body></html>"
    )


class Launched(msgspec.Struct):
    """A running web experiment: its id, its variant ids (control first), its goal ids."""

    id: str
    variant_ids: list[str]
    goal_ids: list[str]


# A launched web experiment has a goal (the API refuses to launch one without), and the
# runtime exposes only experiments with goals: without a test's own, this inert one.
INERT_GOAL = NewGoal(name="inert", type="click", selector="#no-such-element")


def launch(
    edge: BrowserEdge,
    url_pattern: str | None,
    variants: Sequence[NewVariant],
    goals: Sequence[NewGoal] = (INERT_GOAL,),
    site: Site | None = None,
) -> Launched:
    """Create and start an experiment on ``site`` (the seeded one by default); return
    once the edge serves it."""
    site = site or edge.seed.site
    store = Store(edge.store_path)
    try:
        experiment_id = store.create_experiment(
            NewExperiment(
                workspace_id=site.workspace_id,
                site_id=site.id,
                name="browser test",
                url_pattern=url_pattern,
                variants=tuple(variants),
                goals=tuple(goals),
            )
        )
        store.set_experiment_status(experiment_id, "running")
        variant_ids, goal_ids = variant_and_goal_ids(store, experiment_id)
    finally:
        store.close()
    wait_served(edge.server, site.public_key, experiment_id)
    return Launched(experiment_id, variant_ids, goal_ids)


def change(selector: str, action: str, payload: str = "", **extra: str) -> MutationConfig:
    return MutationConfig(selector=selector, action=action, payload=payload, **extra)  # type: ignore[arg-type]


def two_arms(*changes: MutationConfig) -> list[NewVariant]:
    return [
        NewVariant(name="Control", weight=50),
        NewVariant(name="Variant", weight=50, changes=tuple(changes)),
    ]


def only_variant(*changes: MutationConfig) -> list[NewVariant]:
    """Every visitor in the (non-control) variant: the control keeps weight 0."""
    return [
        NewVariant(name="Control", weight=0),
        NewVariant(name="Variant", weight=1, changes=changes),
    ]


class Beacons:
    """The event batches a page sent to the edge's /v1/collect (the real requests, seen
    from the browser)."""

    def __init__(self, page: Page) -> None:
        self.batches: list[dict[str, Any]] = []
        page.context.on("request", self._seen)

    def _seen(self, request: Request) -> None:
        if request.url.endswith("/v1/collect") and request.method == "POST":
            self.batches.append(json.loads(request.post_data or "{}"))

    @property
    def events(self) -> list[dict[str, Any]]:
        return [event for batch in self.batches for event in batch.get("events", [])]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["type"] == kind]

    def wait_for(
        self, page: Page, test: Callable[[list[dict[str, Any]]], bool], timeout: float = 5
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if test(self.events):
                return
            page.wait_for_timeout(50)
        raise AssertionError(f"no such beacon in {timeout}s; sent: {self.events}")
