"""The client's errors, in splitedge's one hierarchy (`edge.errors.SplitedgeError`)."""

from __future__ import annotations

from edge.errors import SplitedgeError

__all__ = ["ApiError", "ClientClosed", "DeliveryTimeout", "QueueFull", "Unreachable"]


class ApiError(SplitedgeError):
    """The server refused a request: its HTTP ``status``, error ``code`` and message,
    as it answered them (after the retries a 429 or 5xx gets)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class Unreachable(SplitedgeError):
    """The server could not be reached (refused, reset or timed out), retries included."""

    code = "unreachable"
    status = 503


class QueueFull(SplitedgeError):
    """``track_task`` waited ``queue_timeout`` seconds for room in the event queue: the
    server has not taken events as fast as they come (or at all, see ``stats``)."""

    code = "queue_full"
    status = 503


class DeliveryTimeout(SplitedgeError, TimeoutError):
    """``flush`` or ``close`` ran out of time with events still undelivered."""

    code = "delivery_timeout"
    status = 504


class ClientClosed(SplitedgeError):
    """The client was closed; make a new one."""

    code = "client_closed"
