"""Serving workers: how Granian runs the edge, for the full server (`edge.server`) and
for an edge node (`edge.node.run`) alike.

Kept out of both so that a node, which serves no control plane, loads only Granian and
what its workers' app factory needs.
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

from granian import Granian
from granian.constants import HTTPModes, Interfaces, Loops
from granian.log import LogLevels

from edge.logs import logging_config
from edge.metrics import MULTIPROC_DIR_ENV, prepare_multiprocess_dir
from edge.processes import PARENT_PID_ENV, load_worker_app
from edge.settings import Settings

__all__ = ["granian_options", "serve_workers"]


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


def serve_workers(settings: Settings, target: str) -> None:
    """Run Granian's workers, each building its app with the factory ``target``, with
    ``settings`` in their environment, until SIGTERM or SIGINT."""
    os.environ.update(settings.to_env())
    os.environ[PARENT_PID_ENV] = str(os.getpid())
    os.environ[MULTIPROC_DIR_ENV] = str(prepare_multiprocess_dir(settings.run_dir))
    # Workers start fresh (spawn, not fork): this process runs the flusher's threads and
    # may hold embedded ClickHouse, neither of which a forked child may inherit.
    multiprocessing.set_start_method("spawn", force=True)
    Granian(
        target=target,
        factory=True,
        address=settings.host,
        port=settings.port,
        # Granian sets its own logger's level from log_level, over the dictconfig's.
        log_level=LogLevels(settings.log_level),
        log_dictconfig=logging_config(settings.log_level),
        **granian_options(settings.workers),
    ).serve(target_loader=load_worker_app)
