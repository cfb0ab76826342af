"""The ClickHouse warehouse, through clickhouse-connect only.

``chdb:///path`` is embedded ClickHouse (one process may own the directory at a time);
``http://host:8123`` is a ClickHouse server. Both give the same `Client` API.
"""

from __future__ import annotations

from typing import Any

import clickhouse_connect

__all__ = ["DATABASE", "connect", "ensure_database"]

DATABASE = "splitedge"


def connect(dsn: str) -> Any:
    """A clickhouse-connect client for a DSN."""
    return clickhouse_connect.get_client(dsn=dsn)


def ensure_database(client: Any) -> str:
    """Create the splitedge database if it is missing; returns the server version."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
    return str(client.command("SELECT version()"))
