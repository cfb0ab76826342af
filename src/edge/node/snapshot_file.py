"""The node's config snapshot on disk: what its workers serve, and what a cold start
serves while the control plane is away.

``<data-dir>/snapshot/`` holds ``snapshot.json`` (the control plane's answer, as sent),
``version`` (its config version, the one thing the workers poll) and ``state.json`` (when
the control plane last confirmed it current, and the last pull error). Each is replaced
atomically (a temporary file, fsync, rename, then the directory's fsync), the snapshot
before its version, so a worker that sees a version finds that snapshot or a newer one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Literal

import msgspec

from edge.config import ConfigSnapshot
from edge.health import SnapshotState

__all__ = ["FileSource", "SnapshotFile", "SnapshotSync"]

_decoder = msgspec.json.Decoder(ConfigSnapshot)


class SnapshotSync(msgspec.Struct, frozen=True):
    """``state.json``: when the control plane last confirmed the snapshot (Unix seconds),
    where the node's current one came from, and the last pull error."""

    confirmed_at: float
    source: Literal["control", "disk"]
    error: str = ""


def _replace(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SnapshotFile:
    """The snapshot directory of a node's data dir."""

    def __init__(self, data_dir: Path | str) -> None:
        self.directory = Path(data_dir) / "snapshot"
        self.body = self.directory / "snapshot.json"
        self.version_file = self.directory / "version"
        self.state_file = self.directory / "state.json"

    def exists(self) -> bool:
        return self.version_file.exists() and self.body.exists()

    def write(self, body: bytes) -> ConfigSnapshot:
        """Store the control plane's answer ``body`` (checked to be a snapshot first:
        `msgspec.ValidationError` or `DecodeError` otherwise, and nothing changes)."""
        snapshot = _decoder.decode(body)
        self.directory.mkdir(parents=True, exist_ok=True)
        _replace(self.body, body)
        _replace(self.version_file, str(snapshot.version).encode())
        return snapshot

    def version(self) -> int:
        return int(self.version_file.read_bytes())

    def snapshot(self) -> ConfigSnapshot:
        return _decoder.decode(self.body.read_bytes())

    def record(self, sync: SnapshotSync) -> None:
        """Record a pull's outcome for /readyz."""
        self.directory.mkdir(parents=True, exist_ok=True)
        _replace(self.state_file, msgspec.json.encode(sync))

    def sync(self) -> SnapshotSync | None:
        """The last pull's outcome, None before one is recorded."""
        try:
            return msgspec.json.decode(self.state_file.read_bytes(), type=SnapshotSync)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            return None

    def state(self) -> SnapshotState | None:
        """/readyz's view: None before the first pull's outcome is recorded; no version
        and age while the node has no snapshot."""
        sync = self.sync()
        if sync is None:
            return None
        try:
            version = self.version()
        except (OSError, ValueError):
            return SnapshotState(None, None, sync.source, sync.error)
        age = max(0.0, time.time() - sync.confirmed_at)
        return SnapshotState(version, round(age, 3), sync.source, sync.error)


class FileSource:
    """`SnapshotFile` as a worker's `edge.kv.SnapshotSource`."""

    def __init__(self, file: SnapshotFile) -> None:
        self.file = file

    def version(self) -> int:
        return self.file.version()

    def snapshot(self) -> ConfigSnapshot:
        return self.file.snapshot()
