"""Idea-generation schedules' records (`edge.control.schedules` runs them, and
`edge.control.store.schedules` reads and writes them): what a schedule does, a schedule
as the API shows it, and one claimed for a run."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from edge.control.idea_records import MAX_IDEAS_PER_RUN, OutputType

__all__ = [
    "MAX_TARGET_PAGES",
    "ClaimedSchedule",
    "Frequency",
    "Schedule",
    "ScheduleSettings",
]

Frequency = Literal["daily", "weekly", "monthly"]

MAX_TARGET_PAGES = 10
"""The most pages one schedule generates ideas for."""


class ScheduleSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a schedule does (the reference's fields and defaults): whether it runs, how
    often, on which day of the week (1 = Monday; unused by daily), how many ideas per page,
    their output type, and the pages (absolute URLs; none: the site's root)."""

    enabled: bool = False
    frequency: Frequency = "weekly"
    day_of_week: Annotated[int, msgspec.Meta(ge=1, le=7)] = 1
    ideas_per_run: Annotated[int, msgspec.Meta(ge=1, le=MAX_IDEAS_PER_RUN)] = 2
    output_type: OutputType = "html"
    target_pages: Annotated[
        tuple[Annotated[str, msgspec.Meta(max_length=2048)], ...],
        msgspec.Meta(max_length=MAX_TARGET_PAGES),
    ] = ()


class Schedule(msgspec.Struct, frozen=True):
    """A schedule as the API shows it; ``next_run_at`` is None while it is disabled."""

    id: str
    site_id: str
    enabled: bool
    frequency: Frequency
    day_of_week: int
    ideas_per_run: int
    output_type: OutputType
    target_pages: tuple[str, ...]
    next_run_at: str | None
    last_run_at: str | None
    created_at: str
    updated_at: str


class ClaimedSchedule(msgspec.Struct, frozen=True):
    """A schedule a scheduler has claimed for a run, with the workspace it runs in and the
    API key it is charged and audited to."""

    schedule: Schedule
    workspace_id: str
    key_id: str
