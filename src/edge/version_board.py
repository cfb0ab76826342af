"""The version board: the latest config version a worker of this server wrote, shared by
its workers through one memory-mapped 8-byte file in the run directory.

Each worker follows the store by polling (`edge.kv.ConfigFollower`), so without help a
site just created would be a 404 on the other workers until their next poll. A worker
that answers a control-plane write first posts the store's version here
(`edge.serving.KVCatchUp.after_write`); the edge routes compare it with their KV's
version, a read of shared memory with no lock and no system call, and catch up when the
board is ahead. Posting takes an exclusive ``flock`` (writes are rare), so two workers
posting at once cannot leave the smaller version on the board.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["BOARD_FILE", "VersionBoard"]

BOARD_FILE = "config-version"
"""The board's file name under the server's run directory (emptied at every start)."""

_VERSION = struct.Struct("<q")


class VersionBoard:
    """One worker's view of the server's board at ``path``, created (zero) if missing."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(self._fd).st_size < _VERSION.size:
            # Workers starting together may both extend it: zeros either way.
            os.ftruncate(self._fd, _VERSION.size)
        self._map = mmap.mmap(self._fd, _VERSION.size)

    def version(self) -> int:
        """The latest version posted; 0 before any."""
        return int(_VERSION.unpack_from(self._map)[0])

    def publish(self, version: int) -> None:
        """Post ``version`` unless a later one is on the board."""
        with self._locked():
            if version > self.version():
                _VERSION.pack_into(self._map, 0, version)

    def correct(self, store_version: Callable[[], int]) -> None:
        """Bring the board down to the store's version when it is ahead of it. The
        store's version only grows, so that is a board left over from another store (one
        restored under a run directory that was not emptied); without this, every request
        would wait for a reload that cannot reach it. The store is read under the lock,
        after any version a worker posts was read: a write just posted stays."""
        with self._locked():
            version = store_version()
            if self.version() > version:
                _VERSION.pack_into(self._map, 0, version)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Unmap and close the file."""
        self._map.close()
        os.close(self._fd)
