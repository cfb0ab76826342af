"""Starting the server: prepare the store and the warehouse once, then run Granian.

Preparation happens in the parent process, before any worker exists: migrations, the
first-start workspace and key, the demo site, and the ClickHouse database. The embedded
chDB directory is opened and closed again here, so that whichever process owns it later
can take its lock.
"""

from __future__ import annotations

import os
from typing import Any

from granian import Granian
from granian.constants import HTTPModes, Interfaces, Loops

from analytics import warehouse
from edge.control.bootstrap import first_start
from edge.control.store import Store
from edge.demo import ensure_demo_site
from edge.settings import Settings

__all__ = ["granian_options", "prepare", "run"]


def granian_options(workers: int) -> dict[str, Any]:
    """How Granian serves the edge (everything but the app and the address); the
    benchmark's bare baseline (bench/bare_app.py) runs with exactly these."""
    return {
        "interface": Interfaces.ASGI,
        "workers": workers,
        "loop": Loops.uvloop,
        "http": HTTPModes.http1,
        "websockets": False,
        "backlog": 2048,
        "backpressure": 512,
        "respawn_failed_workers": True,
        "workers_kill_timeout": 10,
    }


def prepare(settings: Settings) -> None:
    """Migrate the store, create what a first start needs, check the warehouse."""
    store = Store(settings.store_path)
    try:
        workspace, issued = first_start(store)
        base_url = f"http://{settings.host}:{settings.port}"
        demo_key = ensure_demo_site(store, workspace.id, base_url)
    finally:
        store.close()
    if issued is not None:
        print(
            "\n  splitedge: created workspace 'default'. Its admin API key, shown this once:\n\n"
            f"    {issued.key}\n\n  Store it now; only its hash is kept.\n",
            flush=True,
        )
    if demo_key is not None:
        print(f"  demo: {base_url}/demo  (snippet {base_url}/s/{demo_key}.js)\n", flush=True)
    client = warehouse.connect(settings.clickhouse_dsn)
    try:
        schema = warehouse.migrate(client, cluster=settings.clickhouse_cluster or None)
        version = warehouse.ping(client)
    finally:
        client.close()
    print(f"  ClickHouse {version} at {settings.clickhouse_dsn} (schema v{schema})", flush=True)


def run(settings: Settings) -> int:
    """Prepare, then serve until SIGTERM or SIGINT (Granian drains the workers)."""
    prepare(settings)
    os.environ.update(settings.to_env())
    Granian(
        target="edge.app:create_app",
        factory=True,
        address=settings.host,
        port=settings.port,
        **granian_options(settings.workers),
    ).serve()
    return 0
