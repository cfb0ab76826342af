"""The one error hierarchy of splitedge.

Every error a caller can cause is a `SplitedgeError` with a stable machine code, an
HTTP status and a message that says what to do next. The HTTP layer turns them into
``{"error": {"code", "message"}}``; nothing a client sends may surface as a bare 500.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Conflict",
    "DetailedConflict",
    "Forbidden",
    "InvalidRequest",
    "InvalidSetting",
    "InvalidUrlPattern",
    "NotFound",
    "PayloadTooLarge",
    "PlanLimitReached",
    "PlanRequired",
    "RateLimited",
    "ServiceUnavailable",
    "SplitedgeError",
    "Unauthorized",
]


class SplitedgeError(Exception):
    """Base of every error splitedge raises on purpose."""

    code: str = "error"
    status: int = 400
    # Seconds after which a retry may succeed; the HTTP layer sends it as Retry-After.
    retry_after: int | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(SplitedgeError):
    """The request is malformed, has a wrong type, or misses a required field."""

    code = "invalid_request"
    status = 400


class InvalidUrlPattern(InvalidRequest):
    """A url_pattern that the matcher cannot accept; raised where the pattern is created."""

    code = "invalid_url_pattern"


class Unauthorized(SplitedgeError):
    """No API key, or one that is unknown or revoked."""

    code = "unauthorized"
    status = 401


class Forbidden(SplitedgeError):
    """The credential is genuine but may not do this (e.g. a site's public key on the
    control-plane API)."""

    code = "forbidden"
    status = 403


class NotFound(SplitedgeError):
    """Unknown resource, or one that belongs to another workspace (never 403 with details)."""

    code = "not_found"
    status = 404


class Conflict(SplitedgeError):
    """The change contradicts the current state of the resource."""

    code = "conflict"
    status = 409


class DetailedConflict(Conflict):
    """A 409 whose error object carries more fields than code and message, e.g. the
    reference's ``existing_site`` on a duplicate domain."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


class PlanLimitReached(SplitedgeError):
    """The workspace's plan allows no more of something (sites, credits)."""

    code = "plan_limit_reached"
    status = 402


class PlanRequired(SplitedgeError):
    """The workspace's plan does not include the feature (e.g. continuous loops)."""

    code = "plan_required"
    status = 402


class RateLimited(SplitedgeError):
    """The API key has made as many requests as its plan allows this minute."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PayloadTooLarge(SplitedgeError):
    """The request body is over the documented limit."""

    code = "payload_too_large"
    status = 413


class ServiceUnavailable(SplitedgeError):
    """The process cannot answer yet (e.g. its config is still loading); retry shortly."""

    code = "not_ready"
    status = 503
    retry_after = 1


class InvalidSetting(SplitedgeError):
    """The server's own configuration (a flag, a file it names) cannot be used; raised
    at start-up, before anything is served."""

    code = "invalid_setting"
