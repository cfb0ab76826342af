"""The snapshot puller: one thread in an edge node's parent process that keeps the
node's `SnapshotFile` on the control plane's latest config.

It long-polls ``GET {control}/v1/edge/snapshot?wait=N`` with the version it has as
``If-None-Match``: the control plane answers at once when the config changes, so a launch
reaches the node within a second, and otherwise 304 after ``wait`` seconds, which confirms
the snapshot current. An error (the control plane down, a refused token) keeps the last
snapshot serving, is recorded for /readyz, and is retried after a capped, jittered
backoff.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Literal

import httpx
import msgspec

from edge.errors import SplitedgeError
from edge.node.snapshot_file import SnapshotFile, SnapshotSync

__all__ = ["SnapshotPuller", "SnapshotUnavailable"]

log = logging.getLogger("splitedge.node")


class SnapshotUnavailable(SplitedgeError):
    """The control plane did not give a snapshot; the message says why."""

    code = "snapshot_unavailable"


class SnapshotPuller:
    """Pulls snapshots from ``control_url`` into ``file`` with ``edge_token``."""

    def __init__(
        self,
        control_url: str,
        edge_token: str,
        file: SnapshotFile,
        wait: int = 30,
        backoff: float = 0.2,
        backoff_cap: float = 5.0,
    ) -> None:
        self.url = control_url.rstrip("/") + "/v1/edge/snapshot"
        self.file = file
        self.wait = wait
        self.backoff = backoff
        self.backoff_cap = backoff_cap
        self.source: Literal["control", "disk"] = "control"
        # The last pull failed: the next one asks without waiting, so a control plane
        # back at the same version clears the error at once, not a long poll later.
        self.failing = False
        self._client = httpx.Client(headers={"authorization": f"Bearer {edge_token}"})
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def pull(self, wait: int = 0, timeout: float = 5.0) -> bool:
        """One request: whether the snapshot changed. `SnapshotUnavailable` on failure."""
        headers = {}
        if self.file.exists():
            headers["if-none-match"] = f'"{self.file.version()}"'
        try:
            answer = self._client.get(
                self.url, params={"wait": wait}, headers=headers, timeout=timeout + wait
            )
        except httpx.HTTPError as exc:
            raise SnapshotUnavailable(f"control plane at {self.url} unreachable: {exc!r}") from exc
        if answer.status_code == 304:
            changed = False
        elif answer.status_code == 200:
            try:
                snapshot = self.file.write(answer.content)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                raise SnapshotUnavailable(f"the control plane sent no snapshot: {exc}") from exc
            log.info("config snapshot version %d pulled", snapshot.version)
            changed = True
            self.source = "control"
        else:
            raise SnapshotUnavailable(
                f"the control plane answered {answer.status_code}: {answer.text[:300]}"
            )
        self.file.record(SnapshotSync(time.time(), self.source))
        self.failing = False
        return changed

    def first(self, timeout: float = 5.0) -> None:
        """The start-up pull. Without the control plane, a snapshot on disk serves (a cold
        start); with neither, the node listens anyway, its /readyz a 503 saying why,
        until the puller's thread gets one."""
        try:
            self.pull(0, timeout)
        except SnapshotUnavailable as exc:
            if self.file.exists():
                log.warning("%s; serving the snapshot on disk (version %d)", exc,
                            self.file.version())  # fmt: skip
                self.source = "disk"
            else:
                log.warning("%s; no snapshot on disk either: not ready until one arrives", exc)
            self._fail(exc)

    def _delay(self, failures: int) -> float:
        ceiling = min(self.backoff_cap, self.backoff * 2.0 ** (failures - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _fail(self, exc: Exception) -> None:
        """Record ``exc``, keeping when the control plane last confirmed the snapshot (on
        a cold start, as the previous run recorded it, else when the file was written)."""
        sync = self.file.sync()
        if sync is not None:
            since = sync.confirmed_at
        elif self.file.exists():
            since = self.file.body.stat().st_mtime
        else:
            since = 0.0
        self.file.record(SnapshotSync(since, self.source, str(exc)[:500]))
        self.failing = True

    def start(self) -> None:
        """Follow the control plane on a thread."""
        self._thread = threading.Thread(target=self._run, name="snapshot-puller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._client.close()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self.pull(0 if self.failing else self.wait)
                failures = 0
            except SnapshotUnavailable as exc:
                if self._stop.is_set():
                    return
                failures += 1
                log.warning("%s; serving version %s meanwhile", exc,
                            self.file.version() if self.file.exists() else "none")  # fmt: skip
                self._fail(exc)
                self._stop.wait(self._delay(failures))
            except Exception:  # the node keeps serving what it has
                log.exception("snapshot pull failed")
                failures += 1
                self._stop.wait(self._delay(failures))
