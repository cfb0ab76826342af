"""Shared fixtures: a real SQLite store file per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.control.store import Store


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "splitedge.sqlite3"


@pytest.fixture
def store(store_path: Path) -> Iterator[Store]:
    s = Store(store_path)
    yield s
    s.close()
