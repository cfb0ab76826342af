"""Idea-generation schedules of a workspace's sites (`edge.control.schedules` runs them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from edge.control.schedule_records import ClaimedSchedule, Schedule, ScheduleSettings
from edge.control.store.connection import StoreConnection
from edge.control.store.schema import insert_sql

__all__ = ["ScheduleQueries"]

_COLUMNS = (
    "id, site_id, enabled, frequency, day_of_week, ideas_per_run, output_type, target_pages, "
    "next_run_at, last_run_at, created_at, updated_at"
)
_pages_decoder = msgspec.json.Decoder(tuple[str, ...])


def _schedule(row: Sequence[Any]) -> Schedule:
    (id_, site_id, enabled, frequency, day_of_week, per_run, output_type, pages, next_at,
     last_at, created_at, updated_at) = row  # fmt: skip
    return Schedule(
        id_, site_id, bool(enabled), frequency, day_of_week, per_run, output_type,
        _pages_decoder.decode(pages), next_at, last_at, created_at, updated_at,
    )  # fmt: skip


class ScheduleQueries(StoreConnection):
    """The queries of the ``schedules`` table."""

    def insert_schedule(
        self,
        schedule_id: str,
        workspace_id: str,
        key_id: str,
        site_id: str,
        settings: ScheduleSettings,
        next_run_at: str | None,
        stamp: str,
    ) -> None:
        """Store a new schedule of a site, whose runs are charged to ``key_id``."""
        self.conn.execute(
            insert_sql(
                "schedules",
                "id, workspace_id, site_id, key_id, enabled, frequency, day_of_week, "
                "ideas_per_run, output_type, target_pages, next_run_at, created_at, updated_at",
            ),
            (
                schedule_id, workspace_id, site_id, key_id, int(settings.enabled),
                settings.frequency, settings.day_of_week, settings.ideas_per_run,
                settings.output_type, msgspec.json.encode(settings.target_pages).decode(),
                next_run_at, stamp, stamp,
            ),
        )  # fmt: skip

    def find_schedule(self, workspace_id: str, schedule_id: str) -> Schedule | None:
        """The workspace's schedule; None when it has no such schedule (another
        workspace's is not there either)."""
        row = self.conn.execute(
            f"SELECT {_COLUMNS} FROM schedules WHERE id = ? AND workspace_id = ?",
            (schedule_id, workspace_id),
        ).fetchone()
        return None if row is None else _schedule(row)

    def schedule_by_id(self, schedule_id: str) -> Schedule | None:
        """The schedule ``schedule_id`` of any workspace (the scheduler's view)."""
        row = self.conn.execute(
            f"SELECT {_COLUMNS} FROM schedules WHERE id = ?", (schedule_id,)
        ).fetchone()
        return None if row is None else _schedule(row)

    def list_schedules(
        self, workspace_id: str, site_id: str | None, limit: int, offset: int
    ) -> tuple[list[Schedule], int]:
        """A page of the workspace's schedules (of one site, unless None), newest first,
        and how many there are in all."""
        where = "workspace_id = ? AND (? IS NULL OR site_id = ?)"
        args = (workspace_id, site_id, site_id)
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM schedules WHERE {where} "
            "ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
            (*args, limit, offset),
        ).fetchall()
        (total,) = self.conn.execute(
            f"SELECT count(*) FROM schedules WHERE {where}", args
        ).fetchone()
        return [_schedule(row) for row in rows], int(total)

    def set_schedule(
        self,
        schedule_id: str,
        site_id: str,
        settings: ScheduleSettings,
        next_run_at: str | None,
        updated_at: str,
    ) -> None:
        """Give a schedule a site, settings and next run time."""
        self.conn.execute(
            "UPDATE schedules SET site_id = ?, enabled = ?, frequency = ?, day_of_week = ?, "
            "ideas_per_run = ?, output_type = ?, target_pages = ?, next_run_at = ?, "
            "updated_at = ? WHERE id = ?",
            (
                site_id, int(settings.enabled), settings.frequency, settings.day_of_week,
                settings.ideas_per_run, settings.output_type,
                msgspec.json.encode(settings.target_pages).decode(), next_run_at, updated_at,
                schedule_id,
            ),
        )  # fmt: skip

    def delete_schedule(self, workspace_id: str, schedule_id: str) -> bool:
        """Delete the workspace's schedule; whether it had one."""
        cursor = self.conn.execute(
            "DELETE FROM schedules WHERE id = ? AND workspace_id = ?", (schedule_id, workspace_id)
        )
        return cursor.rowcount > 0

    def claim_due_schedules(self, until: str, now: str) -> list[ClaimedSchedule]:
        """Claim, until ``until``, every enabled schedule due at ``now`` whose claim (if
        any) has expired, in one statement; the schedules claimed, in no order."""
        rows = self.conn.execute(
            "UPDATE schedules SET claimed_until = ? WHERE enabled = 1 AND next_run_at <= ? "
            "AND (claimed_until IS NULL OR claimed_until <= ?) "
            f"RETURNING {_COLUMNS}, workspace_id, key_id",
            (until, now, now),
        ).fetchall()
        return [ClaimedSchedule(_schedule(row[:-2]), row[-2], row[-1]) for row in rows]

    def finish_schedule_run(
        self, schedule_id: str, last_run_at: str, next_run_at: str | None
    ) -> None:
        """Record a schedule's run, set its next one and drop its claim."""
        self.conn.execute(
            "UPDATE schedules SET last_run_at = ?, next_run_at = ?, claimed_until = NULL "
            "WHERE id = ?",
            (last_run_at, next_run_at, schedule_id),
        )
