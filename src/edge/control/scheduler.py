"""The scheduler: one pass (`tick_once`) advances every due continuous loop
(`edge.control.loops.advance`) and runs every due idea schedule
(`edge.control.schedules.run_due`).

The server runs a pass every ``tick_interval`` seconds (hourly by default; 0 turns it off)
on a thread of its parent process (`Scheduler`), beside the decider; ``splitedge tick``
runs one pass, for cron. Both may run at once, and several servers may share a store:
each loop is claimed in a transaction before it is advanced, and each schedule before it
runs, so no loop or schedule is ever advanced twice for one due time.

Every pass takes its clock, ``now``, so that tests simulate months of ticks in seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from analytics.loop_decisions import Decision
from edge.authoring.author import Author
from edge.control import loops, schedules
from edge.control.plans import PlanLimits
from edge.control.store import Store
from edge.periodic import PeriodicPass

__all__ = ["LoopTick", "Scheduler", "TickReport", "tick_once"]

log = logging.getLogger(__name__)


class LoopTick(msgspec.Struct, frozen=True):
    """What a pass did to one loop."""

    loop_id: str
    decision: Decision


class TickReport(msgspec.Struct, frozen=True):
    """What one pass did: the loops it advanced, the schedules it ran, and how many due
    loops failed (logged; each is retried once its claim expires)."""

    loops: tuple[LoopTick, ...]
    schedules: tuple[schedules.ScheduleRun, ...]
    failed_loops: int = 0


def tick_once(
    store_path: Path,
    results: loops.RoundResults,
    author: Author,
    now: datetime,
    limits: PlanLimits | None = None,
) -> TickReport:
    """Advance each loop due at ``now`` (an aware datetime) and run each due schedule.
    Blocks while the author fetches pages; a loop another ticker holds is left to it."""
    ticks: list[LoopTick] = []
    failed = 0
    store = Store(store_path)
    try:
        for loop_id in loops.due_loops(store, now):
            try:
                decision = loops.advance(store, loop_id, results, author, now)
            except Exception:  # one loop's failure (its page, ClickHouse) must not stop the rest
                log.exception("loop %s: tick failed; retried once its claim expires", loop_id)
                failed += 1
                continue
            if decision is not None:
                ticks.append(LoopTick(loop_id, decision.decision))
    finally:
        store.close()
    runs = schedules.run_due(store_path, author, now, limits)
    return TickReport(tuple(ticks), tuple(runs), failed)


class Scheduler(PeriodicPass):
    """Runs `tick_once` every ``interval`` seconds on a thread until stopped; the first
    pass runs at once, so that ticks missed while the server was down are caught up."""

    def __init__(
        self,
        store_path: Path,
        results: loops.RoundResults,
        author: Author,
        interval: float,
        limits: PlanLimits | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__("scheduler", interval, at_start=True)
        self.store_path = store_path
        self.results = results
        self.author = author
        self.limits = limits
        self.clock = clock

    def run_pass(self) -> None:
        report = tick_once(self.store_path, self.results, self.author, self.clock(), self.limits)
        if report.loops or report.schedules:
            log.info("tick: %d loops advanced, %d schedules run", len(report.loops),
                     len(report.schedules))  # fmt: skip
