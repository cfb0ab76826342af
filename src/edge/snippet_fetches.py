"""When each site's snippet was last fetched: half of a site's installation check
(``installation.snippet_fetched_at`` of ``GET /v1/sites/{site_id}``).

The snippet route is the hot path, so a fetch writes nothing: it sets the time in a dict
of its worker (`FetchLog.seen`). Each worker's `FetchLog.publish_every` task hands what
changed, at most every `PUBLISH_INTERVAL` seconds and only when something did, to
`merge_fetch_times`, which folds it into one small JSON file shared by the server's
workers, ``<data-dir>/snippet-fetches.json`` (site id → Unix seconds), under an exclusive
``flock`` so that workers publishing at once keep each other's times. The control plane
reads it (`read_fetch_times`). The file sits beside the store, outside the run directory
that every start empties, so the check still knows an installed site after a restart.

A remote edge node's fetches are not recorded: it has no store to be read beside.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import msgspec

from edge.settings import Settings

__all__ = [
    "FETCHES_FILE",
    "PUBLISH_INTERVAL",
    "FetchLog",
    "fetch_times_path",
    "merge_fetch_times",
    "read_fetch_times",
]

log = logging.getLogger("splitedge.app")

FETCHES_FILE = "snippet-fetches.json"
"""The shared file's name under the data directory."""

PUBLISH_INTERVAL = 2.0
"""Seconds between two publications of one worker's fetch times (at most)."""

_decoder = msgspec.json.Decoder(dict[str, float])


def fetch_times_path(settings: Settings) -> Path:
    """The shared file of a server's fetch times: beside its store."""
    return settings.store_path.parent / FETCHES_FILE


def read_fetch_times(path: Path) -> dict[str, float]:
    """Every site's last snippet fetch (Unix seconds) in the file at ``path``; empty
    before any. A file that cannot be read or decoded is empty too: the next publication
    writes it whole again."""
    try:
        return _decoder.decode(path.read_bytes())
    except (FileNotFoundError, msgspec.DecodeError):
        return {}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def merge_fetch_times(path: Path, fresh: dict[str, float]) -> None:
    """Fold ``fresh`` (site id → Unix seconds) into the file at ``path``, keeping the later
    time of each site. The file is replaced whole (a reader never sees half of it)."""
    with _locked(path):
        times = read_fetch_times(path)
        for site_id, at in fresh.items():
            if at > times.get(site_id, 0.0):
                times[site_id] = at
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_bytes(msgspec.json.encode(times))
        os.replace(temporary, path)


class FetchLog:
    """One worker's last snippet fetch per site, published to the file at ``path``."""

    __slots__ = ("path", "seen")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: dict[str, float] = {}
        """Site id → Unix seconds of its last fetch since the last publication; the
        snippet route sets it."""

    async def publish(self) -> None:
        """Merge the fetches seen since the last publication into the file (on a thread).
        A failure is logged and the times are kept for the next try."""
        if not self.seen:
            return
        fresh, self.seen = self.seen, {}
        try:
            await asyncio.to_thread(merge_fetch_times, self.path, fresh)
        except OSError:
            log.exception("publishing the snippet fetch times failed")
            for site_id, at in fresh.items():
                self.seen[site_id] = max(at, self.seen.get(site_id, 0.0))

    async def publish_every(self, interval: float = PUBLISH_INTERVAL) -> None:
        """`publish` every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            await self.publish()
