"""A pass run every so often on a daemon thread of the server's parent process (the
decider, the scheduler), whose failure is logged and retried at the next pass."""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod

__all__ = ["PeriodicPass"]

log = logging.getLogger("splitedge.server")


class PeriodicPass(ABC):
    """Runs `run_pass` every ``interval`` seconds on a thread named ``name`` until
    stopped; with ``at_start``, the first pass runs at once."""

    def __init__(self, name: str, interval: float, at_start: bool = False) -> None:
        if interval <= 0:
            raise ValueError(f"the {name} interval must be positive, got {interval}")
        self.name = name
        self.interval = interval
        self.at_start = at_start
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @abstractmethod
    def run_pass(self) -> None:
        """One pass: what the subclass (the decider, the scheduler) does each interval."""

    def start(self) -> None:
        """Start the thread."""
        if self._thread is not None:
            raise RuntimeError(f"the {self.name} is already started")
        self._thread = threading.Thread(
            target=self._run, name=f"splitedge-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the pass in progress, if any."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        if not self.at_start and self._stop.wait(self.interval):
            return
        while True:
            try:
                self.run_pass()
            except Exception:  # the next pass retries; the server keeps serving
                log.exception("%s pass failed", self.name)
            if self._stop.wait(self.interval):
                return
