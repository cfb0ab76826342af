"""Running an edge node: the first snapshot (from the control plane, else from disk, else
none: the workers answer 503 until the puller gets one), the puller and the event sink in
this process, then Granian's workers.

The sink takes the spool's finished segments: with ``--clickhouse`` the flusher inserts
them into that ClickHouse (a server or cluster, migrated on connect); without it the
relay posts them to the control plane, whose flusher inserts them (exactly once, by their
segment token).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from analytics import warehouse
from edge.ingest.flusher import Flusher
from edge.ingest.relay import SegmentRelay
from edge.node.puller import SnapshotPuller
from edge.node.snapshot_file import SnapshotFile
from edge.processes import require_free_port, secure_data_dir
from edge.settings import Settings
from edge.workers import serve_workers

__all__ = ["run_node"]

log = logging.getLogger("splitedge.node")


def run_node(settings: Settings) -> int:
    """Serve as an edge node until SIGTERM or SIGINT. Raises
    `edge.processes.PortInUse` before anything else when the address is taken."""
    require_free_port(settings.host, settings.port)
    secure_data_dir(Path(settings.data_dir), settings.store_path)
    file = SnapshotFile(settings.data_dir)
    puller = SnapshotPuller(settings.control_url, settings.edge_token, file)
    puller.first()
    puller.start()
    shutil.rmtree(settings.run_dir, ignore_errors=True)
    settings.run_dir.mkdir(parents=True)
    cluster = settings.clickhouse_cluster or None
    sink: Flusher | SegmentRelay
    if settings.clickhouse:
        sink = Flusher(
            settings.spool_dir,
            settings.clickhouse,
            prepare=lambda client: warehouse.migrate(client, cluster=cluster),
        )
    else:
        sink = SegmentRelay(settings.spool_dir, settings.control_url, settings.edge_token)
    sink.start()
    version = file.version() if file.exists() else "none yet"
    print(f"  edge node of {settings.control_url}, config version {version} "
          f"({puller.source})", flush=True)  # fmt: skip
    try:
        serve_workers(settings, "edge.node.app:create_node_app")
    finally:
        sink.stop()
        puller.stop()
    return 0
