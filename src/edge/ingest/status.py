"""The flusher's status file: the one thing the serving workers (``/readyz``,
``/metrics``) need from the flusher, which runs in another process.

The drain (`edge.ingest.flusher.SpoolDrain`) writes ``<spool>/flusher.status.json`` with
`write_status` every 0.5 s and on every change of its sink's state; workers read it with
`read_status`. Kept apart from the flusher so that readers load neither ClickHouse's
client nor the warehouse.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Literal

import msgspec

__all__ = ["STATUS_FILE", "ClickHouseState", "FlusherStatus", "read_status", "write_status"]

STATUS_FILE = "flusher.status.json"

ClickHouseState = Literal["starting", "ok", "unavailable", "stopped"]


class FlusherStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What the flusher last published (times are Unix seconds). ``clickhouse`` and the
    errors are those of its sink: ClickHouse, or on a relaying edge node the control
    plane."""

    clickhouse: ClickHouseState
    """``starting`` until the first connection, ``ok`` while inserts succeed,
    ``unavailable`` after an error until a retry succeeds, ``stopped`` after `stop`."""
    last_error: str = ""
    last_error_at: float | None = None
    segments_flushed: int = 0
    rows_flushed: int = 0
    rows_duplicate: int = 0
    """Events taken from the spool but not stored: their event id was stored already (a
    client's retry)."""
    segments_rejected: int = 0
    """Segments the sink refused for good, moved aside as ``.rejected``."""
    errors: int = 0
    last_flush_seconds: float | None = None
    """How long the last segment took: read, insert and delete."""
    pending_segments: int = 0
    pending_bytes: int = 0
    """Segments (open and finished) and bytes in the spool, of every process."""
    pid: int = 0
    updated_at: float = 0.0
    """When this was written. The flusher rewrites it every 0.5 s while it runs, so an old
    value (more than a few seconds) means no flusher is running."""

    def age(self, now: float | None = None) -> float:
        """Seconds since the flusher wrote this status."""
        return (time.time() if now is None else now) - self.updated_at


def read_status(spool_dir: Path | str) -> FlusherStatus | None:
    """The flusher's last status for a spool directory; None if there is none (yet)."""
    try:
        data = (Path(spool_dir) / STATUS_FILE).read_bytes()
        return msgspec.json.decode(data, type=FlusherStatus)
    except (OSError, msgspec.DecodeError):
        return None


def write_status(spool_dir: Path, status: FlusherStatus) -> None:
    """Replace the status file atomically (tmp + rename), so a reader never sees half of
    it. Raises OSError when the file cannot be written."""
    target = spool_dir / STATUS_FILE
    tmp = target.with_name(f".{STATUS_FILE}.{os.getpid()}.tmp")
    tmp.write_bytes(msgspec.json.encode(status))
    os.replace(tmp, target)
