"""Idea-generation schedules: a site's recurring runs of the idea author (the reference's
``/v1/schedules``; their records are `edge.control.schedule_records`), and `run_due`, which
the scheduler calls to run the ones that are due.

A schedule runs ``daily``, ``weekly`` on ``day_of_week`` (1 = Monday ... 7 = Sunday) or
``monthly`` on the first ``day_of_week`` of the month, at `RUN_HOUR_UTC` o'clock UTC.
``next_run_at`` is when it runs next (None while it is disabled); after a run it is the
next such time after the run, so a scheduler that was down runs a missed schedule once,
not once per missed period.

A run asks the author for ``ideas_per_run`` ideas of each page in ``target_pages`` (the
site's root when there are none), stores them and queues the ``ideas.generated`` webhook
with them (``schedule_id`` set), as `edge.control.ideas` does for ``POST /v1/ideas/generate``.
On a metered plan a run pays generate_ideas for each page it generates for, before the
author runs, in the name of the key that created the schedule; a page that fails is
refunded. A run the balance cannot pay is skipped (a warning in the log, and an
``ideas.generated`` with ``success: false`` and the ``insufficient_credits`` error) and the
schedule moves on to its next time.

Two schedulers (two processes, or a ``splitedge tick`` beside a server) never run one
schedule twice: `run_due` claims the due schedules in one transaction (``claimed_until``,
`CLAIM_SECONDS` ahead) before running any. A run that dies with its process is retried
once the claim has expired.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from edge.authoring.author import Author
from edge.authoring.drafts import IdeaDraft
from edge.control import audit, credits
from edge.control.experiment_input import http_url
from edge.control.ideas import (
    REFUND_REASON,
    GenerationError,
    error_of,
    record_failed,
    record_generated,
)
from edge.control.plans import PlanLimits
from edge.control.records import SiteRecord, utc_now
from edge.control.schedule_records import ClaimedSchedule, Frequency, Schedule, ScheduleSettings
from edge.control.sites_api import require_site
from edge.control.store import Store
from edge.errors import NotFound, SplitedgeError

__all__ = [
    "CLAIM_SECONDS",
    "RUN_HOUR_UTC",
    "ScheduleRun",
    "create_schedule",
    "delete_schedule",
    "get_schedule",
    "next_run",
    "run_due",
    "update_schedule",
]

log = logging.getLogger("splitedge.schedules")

RUN_HOUR_UTC = 9
"""The hour (UTC) at which schedules run: 09:00, the start of a European working day and
before an American one."""

CLAIM_SECONDS = 1800
"""How long a claimed run is a scheduler's own before another may retry it: longer than a
run takes (ten pages, each fetched within the author's timeout)."""


class ScheduleRun(msgspec.Struct, frozen=True):
    """What one run of a schedule did: the ideas it stored, the errors of the pages that
    gave none (or why it was skipped), and when the schedule runs next."""

    schedule_id: str
    workspace_id: str
    site_id: str
    idea_ids: tuple[str, ...]
    errors: tuple[GenerationError, ...]
    next_run_at: str | None


def _stamp(moment: datetime) -> str:
    # Whole seconds in one format, so that the store compares the stamps as text.
    if moment.tzinfo is None:
        raise ValueError("schedule times must be timezone-aware (e.g. datetime.now(UTC))")
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def next_run(frequency: Frequency, day_of_week: int, after: datetime) -> datetime:
    """The first run time strictly after ``after`` (aware): `RUN_HOUR_UTC` o'clock UTC of
    the next day (daily), of the next ``day_of_week`` (weekly), or of the first
    ``day_of_week`` of a month (monthly)."""
    after = after.astimezone(UTC)
    at = after.replace(hour=RUN_HOUR_UTC, minute=0, second=0, microsecond=0)
    if frequency == "daily":
        return at if at > after else at + timedelta(days=1)
    if frequency == "weekly":
        at += timedelta(days=(day_of_week - 1 - at.weekday()) % 7)
        return at if at > after else at + timedelta(days=7)
    month = at.replace(day=1)
    while True:
        first = month + timedelta(days=(day_of_week - 1 - month.weekday()) % 7)
        if first > after:
            return first
        month = (month + timedelta(days=32)).replace(day=1)


def _pages(pages: Sequence[str]) -> tuple[str, ...]:
    checked = (http_url(page, f"target_pages[{i}]") for i, page in enumerate(pages))
    return tuple(dict.fromkeys(checked))  # each once, in the order given


def _next_at(settings: ScheduleSettings, now: datetime) -> str | None:
    if not settings.enabled:
        return None
    return _stamp(next_run(settings.frequency, settings.day_of_week, now))


def _not_found(schedule_id: str) -> NotFound:
    return NotFound(
        f"no schedule {schedule_id[:100]!r} in the workspace of this API key; GET "
        "/v1/schedules lists its schedules"
    )


def get_schedule(store: Store, workspace_id: str, schedule_id: str) -> Schedule:
    """The workspace's schedule; a 404 saying where they are listed otherwise."""
    schedule = store.find_schedule(workspace_id, schedule_id)
    if schedule is None:
        raise _not_found(schedule_id)
    return schedule


def create_schedule(
    store: Store,
    workspace_id: str,
    key_id: str,
    site_id: str,
    settings: ScheduleSettings,
    now: datetime,
) -> Schedule:
    """A new schedule of the workspace's site, audited, in one transaction; its runs are
    charged to ``key_id``'s workspace in that key's name."""
    settings = msgspec.structs.replace(settings, target_pages=_pages(settings.target_pages))
    schedule_id = str(uuid.uuid4())
    stamp = utc_now()
    with store.transaction():
        require_site(store, workspace_id, site_id)
        store.insert_schedule(
            schedule_id, workspace_id, key_id, site_id, settings, _next_at(settings, now), stamp
        )
        audit.record(
            store, workspace_id, key_id, "schedule.create", "schedule", schedule_id,
            {"site_id": site_id, **msgspec.to_builtins(settings)},
        )  # fmt: skip
        return get_schedule(store, workspace_id, schedule_id)


def update_schedule(
    store: Store,
    workspace_id: str,
    key_id: str,
    schedule_id: str,
    changes: Mapping[str, Any],
    now: datetime,
) -> Schedule:
    """Apply ``changes`` (``site_id`` and any `ScheduleSettings` field) to the workspace's
    schedule, audited, in one transaction. A change of ``enabled``, ``frequency`` or
    ``day_of_week`` sets ``next_run_at`` afresh from ``now``."""
    with store.transaction():
        current = get_schedule(store, workspace_id, schedule_id)
        site_id = changes.get("site_id", current.site_id)
        if site_id != current.site_id:
            require_site(store, workspace_id, site_id)
        settings = ScheduleSettings(
            **{
                name: changes.get(name, getattr(current, name))
                for name in ScheduleSettings.__struct_fields__
            }
        )
        settings = msgspec.structs.replace(settings, target_pages=_pages(settings.target_pages))
        next_at = current.next_run_at
        if {"enabled", "frequency", "day_of_week"} & changes.keys():
            next_at = _next_at(settings, now)
        store.set_schedule(schedule_id, site_id, settings, next_at, utc_now())
        audit.record(
            store, workspace_id, key_id, "schedule.update", "schedule", schedule_id,
            msgspec.to_builtins(dict(changes)),
        )  # fmt: skip
        return get_schedule(store, workspace_id, schedule_id)


def delete_schedule(store: Store, workspace_id: str, key_id: str, schedule_id: str) -> None:
    """Delete the workspace's schedule, audited, in one transaction (a run under way
    still stores its ideas)."""
    with store.transaction():
        if not store.delete_schedule(workspace_id, schedule_id):
            raise _not_found(schedule_id)
        audit.record(store, workspace_id, key_id, "schedule.delete", "schedule", schedule_id)


# -- running them ------------------------------------------------------------------------


def _claim(store: Store, now: datetime) -> list[ClaimedSchedule]:
    with store.transaction():
        claimed = store.claim_due_schedules(
            _stamp(now + timedelta(seconds=CLAIM_SECONDS)), _stamp(now)
        )
    return sorted(claimed, key=lambda c: (c.schedule.next_run_at or "", c.schedule.id))


def _finish(store: Store, schedule_id: str, now: datetime) -> str | None:
    """Release the claim and set the next run from the schedule as it is now (it may have
    been changed during the run); the next run time, None when it is disabled or gone."""
    schedule = store.schedule_by_id(schedule_id)
    if schedule is None:
        return None
    next_at = (
        _stamp(next_run(schedule.frequency, schedule.day_of_week, now))
        if schedule.enabled
        else None
    )
    store.finish_schedule_run(schedule_id, _stamp(now), next_at)
    return next_at


def _metered(store: Store, workspace_id: str, limits: PlanLimits | None) -> bool:
    return limits is not None and store.get_workspace(workspace_id).plan in limits.metered


def _skip(
    store: Store, claimed: ClaimedSchedule, site: SiteRecord, exc: SplitedgeError, now: datetime
) -> ScheduleRun:
    schedule = claimed.schedule
    log.warning("schedule %s skipped its run: %s", schedule.id, exc.message)
    errors = (GenerationError(site.url, exc.code, exc.message),)
    with store.transaction():
        record_failed(store, claimed.workspace_id, site.id, errors, 0, schedule.id)
        next_at = _finish(store, schedule.id, now)
    return ScheduleRun(schedule.id, claimed.workspace_id, site.id, (), errors, next_at)


def _run(
    store: Store, claimed: ClaimedSchedule, author: Author, now: datetime, limits: PlanLimits | None
) -> ScheduleRun:
    schedule, workspace_id = claimed.schedule, claimed.workspace_id
    site = require_site(store, workspace_id, schedule.site_id)
    pages: Sequence[str | None] = schedule.target_pages or (None,)
    per_page = credits.TOOL_COSTS["generate_ideas"] if _metered(store, workspace_id, limits) else 0
    if per_page:
        try:
            with store.transaction():
                credits.debit(
                    store, workspace_id, claimed.key_id, "generate_ideas",
                    extra=per_page * (len(pages) - 1),
                )  # fmt: skip
        except credits.InsufficientCredits as exc:
            return _skip(store, claimed, site, exc, now)
    drafts: list[IdeaDraft] = []
    errors: list[GenerationError] = []
    for page in pages:
        try:
            made = author.generate_ideas(site.url, schedule.ideas_per_run, target_url=page)
        except Exception as exc:
            if not isinstance(exc, SplitedgeError):
                log.exception("schedule %s: the author failed on %s", schedule.id, page)
            errors.append(error_of(page or site.url, exc))
            continue
        drafts += made[: schedule.ideas_per_run]
    with store.transaction():
        if drafts:
            if errors and per_page:
                credits.grant(store, workspace_id, per_page * len(errors), REFUND_REASON)
            ideas = record_generated(
                store, workspace_id, claimed.key_id, site, drafts, schedule.output_type,
                schedule.id, errors,
            )  # fmt: skip
        else:
            ideas = []
            record_failed(store, workspace_id, site.id, errors, per_page * len(pages), schedule.id)
        next_at = _finish(store, schedule.id, now)
    for error in errors:
        log.warning("schedule %s: no ideas for %s: %s", schedule.id, error.url, error.message)
    return ScheduleRun(
        schedule.id, workspace_id, site.id, tuple(i.id for i in ideas), tuple(errors), next_at
    )


def run_due(
    store_path: Path, author: Author, now: datetime, limits: PlanLimits | None = None
) -> list[ScheduleRun]:
    """Run every enabled schedule whose ``next_run_at`` is at or before ``now`` (an aware
    datetime: the scheduler's clock, which tests move by hand), each once however many
    schedulers call this at the same time; what each run did. Blocks while the author
    fetches pages: call it on the scheduler's thread. ``limits`` say which plans pay in
    credits (None: none)."""
    store = Store(store_path)
    try:
        runs = []
        for claimed in _claim(store, now):
            try:
                runs.append(_run(store, claimed, author, now, limits))
            except Exception:  # one schedule's failure must not stop the others
                log.exception("schedule %s failed; retried after its claim", claimed.schedule.id)
        return runs
    finally:
        store.close()
