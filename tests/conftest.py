"""Shared fixtures: a real SQLite store file per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.control.store import Store
from tests.support import Seed, Server, running_server, seed_store


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
