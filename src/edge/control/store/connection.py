"""The store's connection: one SQLite file in WAL mode, its transactions and its own
key/value table.

Writers take ``BEGIN IMMEDIATE`` transactions so two processes never interleave a
change; readers (every edge worker) never block writers. The queries of each aggregate
(sites, experiments, keys, ...) live in their own module of this package and are mixed
into `edge.control.store.Store`.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edge.control.store.schema import migrate

__all__ = ["StoreConnection", "new_id"]


def new_id() -> str:
    """A new row id (a random UUID)."""
    return str(uuid.uuid4())


class StoreConnection:
    """A connection to the store file. One per thread; cheap to open."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute("PRAGMA foreign_keys = ON")
        self.conn.execute("PRAGMA busy_timeout = 5000")
        migrate(self.conn)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds the write lock from its first statement.
        Inside another transaction it joins that one, so store methods compose."""
        if self.conn.in_transaction:
            yield self.conn
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def config_version(self) -> int:
        """The current config version; it grows with every change the edge serves."""
        (version,) = self.conn.execute("SELECT version FROM config_version").fetchone()
        return int(version)

    def get_meta(self, key: str) -> str | None:
        """A value of the store's own key/value table."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Set a value of the store's own key/value table."""
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    @contextmanager
    def read_snapshot(self) -> Iterator[None]:
        """Reads from one snapshot: a read transaction, or the caller's transaction."""
        if self.conn.in_transaction:
            yield
            return
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            self.conn.execute("COMMIT")
