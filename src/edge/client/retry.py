"""When the client tries a request again, and how long it waits first.

A connection error, a 429 and a 5xx may succeed later (a server restarting, a spool
over its cap, a plan's rate limit); any other answer will not. The wait doubles from
``backoff`` up to ``backoff_cap`` with equal jitter (half fixed, half random, so that a
fleet of agents does not retry in step), or is the server's Retry-After when it sent one.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

import msgspec

__all__ = ["RetryPolicy", "retry_after", "retryable"]


class RetryPolicy(msgspec.Struct, frozen=True):
    """How often and how patiently the client retries.

    ``attempts`` bound the tries of one batch of task events (the default retries for
    about a minute); ``request_attempts`` those of a call the caller waits for
    (``assign``, ``results``). ``retry_after_cap`` bounds how long a Retry-After may
    make it wait.
    """

    attempts: int = 10
    request_attempts: int = 3
    backoff: float = 0.25
    backoff_cap: float = 8.0
    retry_after_cap: float = 60.0

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the ``failures``-th failed try (1 for the first)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_cap)
        ceiling = min(self.backoff_cap, self.backoff * 2.0 ** (failures - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def retryable(status: int) -> bool:
    """Whether an answer with this status may succeed if the request is sent again."""
    return status == 429 or status >= 500


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The seconds of a Retry-After header, if it has them (an HTTP date is ignored)."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
