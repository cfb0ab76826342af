"""When the client tries a request again, and how long it waits first.

A connection error, a 429 and a 5xx may succeed later (a server restarting, a spool
over its cap, a plan's rate limit); any other answer will not. The wait doubles from
``backoff`` up to ``backoff_cap`` with equal jitter (half fixed, half random, so that a
fleet of agents does not retry in step), or is the server's Retry-After when it sent one.
A batch of task events is retried on that schedule for as long as its client lives; a
call the caller waits for (``assign`` with ``strict=True``, ``results``) a few times.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import TYPE_CHECKING

import msgspec

from splitedge_client.errors import Unreachable
from splitedge_client.wire import api_error

if TYPE_CHECKING:
    import httpx

__all__ = ["CallTries", "RetryPolicy", "retry_after", "retryable"]


class RetryPolicy(msgspec.Struct, frozen=True):
    """How patiently the client retries.

    A batch of task events is tried until the server answers it (there is no last try);
    ``request_attempts`` bound the tries of a call the caller waits for (``assign`` with
    ``strict=True``, ``results``). ``retry_after_cap`` bounds how long a Retry-After may
    make it wait.
    """

    request_attempts: int = 3
    backoff: float = 0.25
    backoff_cap: float = 8.0
    retry_after_cap: float = 60.0

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the ``failures``-th failed try (1 for the first)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_cap)
        # The exponent is bounded: a batch retried for hours counts thousands of failures,
        # and 2.0 ** 1024 overflows.
        ceiling = min(self.backoff_cap, self.backoff * 2.0 ** min(failures - 1, 64))
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


class CallTries:
    """The tries of one call the caller waits for (``assign``, ``results``), for the sync
    and the async client alike: after each failure, the seconds to wait before the next
    try, or the error to raise once the policy's ``request_attempts`` are used up (or the
    answer will not change)."""

    def __init__(self, policy: RetryPolicy, what: str, base_url: str) -> None:
        self.policy = policy
        self.what = what
        self.base_url = base_url
        self.failures = 0

    def unreachable(self, exc: httpx.TransportError) -> float:
        """The wait after a connection error; `Unreachable` after the last try."""
        self.failures += 1
        if self.failures >= self.policy.request_attempts:
            raise Unreachable(
                f"{self.what}: {exc!r} after {self.failures} tries; is the server at "
                f"{self.base_url} up?"
            ) from exc
        return self.policy.delay(self.failures)

    def refused(self, response: httpx.Response) -> float:
        """The wait after a non-2xx answer; its `ApiError` when it is final."""
        self.failures += 1
        status = response.status_code
        if self.failures >= self.policy.request_attempts or not retryable(status):
            raise api_error(status, response.content)
        return self.policy.delay(self.failures, retry_after(response.headers))
