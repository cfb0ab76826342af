"""Rate windows: each API key's request count in its current window."""

from __future__ import annotations

from edge.control.store.connection import StoreConnection

__all__ = ["RateWindowQueries"]


class RateWindowQueries(StoreConnection):
    """The queries of the ``rate_windows`` table."""

    def count_request(self, key_id: str, window_start: int, weight: int = 1) -> int:
        """Count a request of ``key_id`` (as ``weight`` requests) in the window starting
        at ``window_start`` and return how many it has made in it (this one included).
        One statement, so concurrent workers never lose a count; a new window starts
        again at ``weight``."""
        (requests,) = self.conn.execute(
            "INSERT INTO rate_windows (key_id, window_start, requests) VALUES (?, ?, ?) "
            "ON CONFLICT (key_id) DO UPDATE SET "
            "requests = CASE WHEN window_start = excluded.window_start "
            "THEN requests + excluded.requests ELSE excluded.requests END, "
            "window_start = excluded.window_start "
            "RETURNING requests",
            (key_id, window_start, weight),
        ).fetchone()
        return int(requests)
