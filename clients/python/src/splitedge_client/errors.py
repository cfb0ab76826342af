"""The client's errors: one small hierarchy under `SplitedgeClientError`.

They are the client's own, not the server's: a server's error reaches the caller as an
`ApiError` carrying the status, code and message the server answered.
"""

from __future__ import annotations

__all__ = [
    "ApiError",
    "ClientClosed",
    "DeliveryTimeout",
    "InvalidRequest",
    "SplitedgeClientError",
    "Unreachable",
]


class SplitedgeClientError(Exception):
    """Base of every error the client raises on purpose; ``code`` is stable."""

    code: str = "client_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ApiError(SplitedgeClientError):
    """The server refused a request: its HTTP ``status``, error ``code`` and message,
    as it answered them (after the retries a 429 or 5xx gets)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class InvalidRequest(SplitedgeClientError, ValueError):
    """A call's arguments the server would refuse (a task event with a bad field, such as
    a negative ``cost``): raised before anything is sent. A `ValueError` too, so that a
    caller's ``except ValueError`` sees it."""

    code = "invalid_request"


class Unreachable(SplitedgeClientError):
    """The server could not be reached (refused, reset or timed out), retries included;
    raised by ``results`` and by a ``strict`` ``assign`` only."""

    code = "unreachable"


class DeliveryTimeout(SplitedgeClientError, TimeoutError):
    """``flush`` ran out of time with events still undelivered, or ``close`` did and had
    no ``spill_path`` to keep them in."""

    code = "delivery_timeout"


class ClientClosed(SplitedgeClientError):
    """The client was closed; make a new one."""

    code = "client_closed"
