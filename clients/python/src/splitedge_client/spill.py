"""The spill file: task events a closing client could not deliver, kept on disk for the
next client on the same path, which sends them before its own.

One encoded event per line, appended in one write and fsync'd before ``close`` returns.
The next client claims the file by renaming it (``<path>.sending-<pid>-<random>``), so
that events spilled meanwhile go to a new file, and removes its claim once every event in
it is settled. A client that dies while sending leaves its claim behind, and the next one
claims that too: events may be sent twice, never lost, and the server stores an event id
once. A line torn by a crash during a write is skipped.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from splitedge_client.wire import valid_event

__all__ = ["claim", "keep", "release", "write"]

log = logging.getLogger("splitedge.client")

_CLAIMED = ".sending-"


def claim(path: Path) -> tuple[list[Path], list[bytes]]:
    """Claim the spill file at ``path`` and any claim a dead client left: the claimed
    files, and their events, oldest file first."""
    claimed: list[Path] = []
    candidates = sorted(path.parent.glob(path.name + _CLAIMED + "*"), key=_mtime) + [path]
    for candidate in candidates:
        mine = path.with_name(f"{path.name}{_CLAIMED}{os.getpid()}-{os.urandom(4).hex()}")
        try:
            candidate.rename(mine)
        except FileNotFoundError:  # no spill file, or another client claimed it first
            continue
        claimed.append(mine)
    events: list[bytes] = []
    for file in claimed:
        events += (line for line in file.read_bytes().splitlines() if valid_event(line))
    return claimed, events


def write(path: Path, events: list[bytes]) -> None:
    """Append ``events`` to the spill file and make them durable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as out:
        out.write(b"".join(event + b"\n" for event in events))
        out.flush()
        os.fsync(out.fileno())
    # The file's directory entry must survive a crash too (POSIX; not on Windows).
    with contextlib.suppress(OSError):
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def keep(path: Path | None, events: list[bytes]) -> bool:
    """Spill what a closing client is leaving behind; False when it is lost (no spill
    file, or it could not be written)."""
    if path is None:
        return False
    try:
        write(path, events)
    except OSError:
        log.exception("could not write %d task events to %s", len(events), path)
        return False
    log.info("%d task events written to %s for the next client", len(events), path)
    return True


def release(claimed: list[Path]) -> None:
    """Remove claimed files whose events are all settled."""
    for file in claimed:
        file.unlink(missing_ok=True)


def _mtime(file: Path) -> float:
    try:
        return file.stat().st_mtime
    except FileNotFoundError:
        return 0.0
