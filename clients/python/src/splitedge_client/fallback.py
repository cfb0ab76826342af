"""What ``assign`` answers when the server cannot, and when it stops asking it.

An agent's call to ``assign`` never fails by default: on a timeout, a connection error, a
429, a 5xx or a 4xx answer it returns the last good answer the client got for that
experiment (``source="cache"``) or else the caller's ``default`` (``source="default"``).
A `CircuitBreaker` opens at the first connection error, timeout, 429 or 5xx: while it is
open, ``assign`` answers from memory without a request (microseconds), and one request in
the background probes the server each cooldown (doubling up to a cap) until it answers.

Sans-IO and shared by the sync and the async client: they make the requests and report
how each went.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from splitedge_client.retry import retryable
from splitedge_client.wire import AssignedVariant, api_error, assigned, assigned_batch

__all__ = ["Admission", "AssignFallback", "CircuitBreaker"]

log = logging.getLogger("splitedge.client")


class Admission(enum.Enum):
    """What an ``assign`` does now: ask the server, answer from memory and probe the
    server in the background, or only answer from memory."""

    CALL = "call"
    PROBE = "probe"
    SKIP = "skip"


class CircuitBreaker:
    """Whether the server is worth a request: closed (yes) until a failure, then open
    for ``cooldown`` seconds (doubling with each failed probe, up to ``cooldown_cap``),
    when one probe is let through. Thread-safe; ``clock`` is injectable for tests."""

    def __init__(
        self,
        cooldown: float = 0.5,
        cooldown_cap: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cooldown = cooldown
        self.cooldown_cap = cooldown_cap
        self.clock = clock
        self._lock = threading.Lock()
        self.is_open = False
        self._failures = 0
        self._probing = False
        self._retry_at = 0.0

    def admit(self) -> Admission:
        """What the next ``assign`` may do."""
        if not self.is_open:  # the common case reads one attribute, no lock
            return Admission.CALL
        with self._lock:
            if self._probing or self.clock() < self._retry_at:
                return Admission.SKIP
            self._probing = True
            return Admission.PROBE

    def succeeded(self) -> None:
        """The server answered (any answer but a 429 or 5xx)."""
        if self.is_open or self._failures:
            with self._lock:
                if self.is_open:
                    log.warning("the splitedge server answers again; assign asks it again")
                self.is_open = self._probing = False
                self._failures = 0

    def failed(self, error: str) -> None:
        """The server did not answer usefully: a connection error, a timeout, 429, 5xx."""
        with self._lock:
            if not self.is_open:
                log.warning(
                    "assign answers from its cache or default: %s; the server is probed "
                    "in the background",
                    error,
                )
            self._failures += 1
            wait = min(self.cooldown_cap, self.cooldown * 2.0 ** min(self._failures - 1, 32))
            self._retry_at = self.clock() + wait
            self.is_open = True
            self._probing = False


class AssignFallback:
    """How a non-strict ``assign`` reads what happened to its request, and what it
    answers without the server: the last good answer per experiment, else the caller's
    ``default``. The cache is a dict read and written whole: safe across threads."""

    def __init__(self, base_url: str, breaker: CircuitBreaker | None = None) -> None:
        self.base_url = base_url
        self.breaker = CircuitBreaker() if breaker is None else breaker
        self._last: dict[str, AssignedVariant] = {}
        # The refusals logged already, (status, code): one line each, not one per call.
        self._logged: set[tuple[int, str]] = set()

    def unreachable(self, exc: Exception) -> None:
        """The request got no answer (a connection error or a timeout)."""
        self.breaker.failed(f"{exc!r} from {self.base_url}")

    def answered(self, status: int, content: bytes) -> bytes | None:
        """The body of a good answer; None when ``assign`` answers without the server."""
        if retryable(status):
            self.breaker.failed(str(api_error(status, content)))
            return None
        self.breaker.succeeded()
        if 200 <= status < 300:
            return content
        error = api_error(status, content)
        if (status, error.code) not in self._logged:
            self._logged.add((status, error.code))
            log.warning("assign answers from its cache or default: %s", error)
        return None

    def one(
        self, experiment_id: str, unit_id: str, content: bytes | None, default: Any
    ) -> AssignedVariant | None:
        """``assign``'s answer: the server's (None outside the experiment's coverage),
        else the fallback."""
        if content is not None:
            try:
                variant = assigned(content)
            except msgspec.DecodeError as exc:
                log.warning("assign answers from its cache or default: %s", exc)
            else:
                if variant is not None:
                    self._last[experiment_id] = variant
                return variant
        return self.answer(experiment_id, unit_id, default)

    def many(
        self, experiment_id: str, unit_ids: Sequence[str], content: bytes | None, default: Any
    ) -> list[AssignedVariant | None]:
        """``assign_many``'s answers for one batch of ``unit_ids``."""
        if content is not None:
            try:
                variants = assigned_batch(content)
            except msgspec.DecodeError as exc:
                log.warning("assign answers from its cache or default: %s", exc)
            else:
                for variant in variants:
                    if variant is not None:
                        self._last[experiment_id] = variant
                return variants
        return [self.answer(experiment_id, unit_id, default) for unit_id in unit_ids]

    def answer(self, experiment_id: str, unit_id: str, default: Any) -> AssignedVariant:
        """The cached answer for the experiment, given to ``unit_id``, or else one with
        ``default`` as its payload. Neither is counted in the experiment."""
        cached = self._last.get(experiment_id)
        if cached is not None:
            return msgspec.structs.replace(
                cached, unit_id=unit_id, in_experiment=False, source="cache"
            )
        return AssignedVariant(
            experiment_id, unit_id, "", "", True, default, False, in_experiment=False,
            source="default",
        )  # fmt: skip
