"""Shared fixtures: a real SQLite store file, a spool and a chDB directory per test, real servers,
real Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from edge.control.store import Store
from tests.browser import BrowserEdge, SiteServer, browser_edge_on, chromium
from tests.support import Seed, Server, running_server, seed_store


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def dsn(tmp_path: Path) -> str:
    """An embedded ClickHouse (chDB) directory of this test's own."""
    return f"chdb://{tmp_path / 'clickhouse'}"


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "splitedge.sqlite3"


@pytest.fixture
def store(store_path: Path) -> Iterator[Store]:
    s = Store(store_path)
    yield s
    s.close()


@pytest.fixture(scope="session")
def edge_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Seed]]:
    """One real server (1 worker) over a seeded store, shared by the HTTP tests."""
    data = tmp_path_factory.mktemp("edge") / "data"
    seed = seed_store(data / "splitedge.sqlite3")
    with running_server(data) as server:
        yield server, seed


@pytest.fixture(scope="session")
def browser_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserEdge]:
    """A real server of its own: the browser tests start experiments in its store."""
    with browser_edge_on(tmp_path_factory.mktemp("browser-edge") / "data") as edge:
        yield edge


@pytest.fixture(scope="session")
def site() -> Iterator[SiteServer]:
    server = SiteServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium for one test module. Not for the session: Playwright's sync API keeps an
    event loop running in the main thread while it is started, and later tests call
    asyncio.run."""
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh visitor: a new browser context (no storage, no cookies) and its page."""
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()
