"""The per-unit state against real chDB: the backfill of events stored before it, a retried
segment counted once, an ended experiment's window, and answers kept while nothing changed.

One chDB directory for the module (a process owns one at a time): it is migrated to
version 2 first, given events as an older release stored them, then migrated to the newest
version, as an upgrade does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec
import pytest

from analytics import warehouse
from analytics.aggregates import (
    ArmAggregates,
    ExperimentSpec,
    VersionedCache,
    data_version,
    fetch_aggregates,
    fetch_timeline,
)
from tests.support import EventWarehouse, agent_spec, web_spec

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def exposure(exp: str, unit: str, variant: str, minutes: float = 0) -> dict[str, Any]:
    return dict(kind="exposure", experiment_id=exp, variant_id=variant, unit_id=unit,
                received_at=at(minutes))  # fmt: skip


def goal(exp: str, unit: str, goal_id: str, value: float | None = None,
         minutes: float = 1) -> dict[str, Any]:  # fmt: skip
    return dict(kind="goal", experiment_id=exp, variant_id="v_a", unit_id=unit,
                goal_id=goal_id, value=value, received_at=at(minutes))  # fmt: skip


def task(exp: str, unit: str, variant: str, outcome: str, cost: float = 0.0,
         minutes: float = 0) -> dict[str, Any]:  # fmt: skip
    return dict(kind="task", experiment_id=exp, variant_id=variant, unit_id=unit,
                session_id=unit, outcome=outcome, cost=cost, received_at=at(minutes))  # fmt: skip


# Stored by the older release, before the state existed.
OLD = "exp_old"


@pytest.fixture(scope="module")
def wh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EventWarehouse]:
    client = warehouse.connect(f"chdb://{tmp_path_factory.mktemp('state') / 'clickhouse'}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(warehouse, "MIGRATIONS", warehouse.MIGRATIONS[:2])
        assert warehouse.migrate(client) == 2
    db = EventWarehouse(client)
    db.insert([exposure(OLD, "u1", "v_a"), goal(OLD, "u1", "g_signup", 4.0),
               exposure(OLD, "u2", "v_b", 2), exposure(OLD, "u2", "v_a", 3)])  # fmt: skip
    db.insert([goal(OLD, "u1", "g_signup", 1.0, minutes=5), exposure(OLD, "u3", "v_b")])
    assert warehouse.migrate(client) == len(warehouse.MIGRATIONS)
    yield db
    client.close()


def summary(arms: list[ArmAggregates]) -> dict[str, tuple[int, dict[str, tuple[int, float]]]]:
    return {
        a.variant_id: (a.units, {g.goal_id: (g.converted, g.value_sum) for g in a.goals})
        for a in arms
    }


OLD_RESULTS = {"v_a": (1, {"g_signup": (1, 5.0)}), "v_b": (2, {})}


def test_the_migration_fills_the_state_from_stored_events(wh: EventWarehouse) -> None:
    assert summary(fetch_aggregates(wh.run, web_spec(OLD))) == OLD_RESULTS
    backfilled = "SELECT count() FROM splitedge.unit_state WHERE backfill = 1"
    assert wh.count(backfilled) == 4  # three units, and the goal u1 converted on


def test_the_backfill_runs_again_without_counting_twice(wh: EventWarehouse) -> None:
    # A version whose record was lost runs again (a crash before the record), after the
    # view has seen inserts of its own: neither is counted twice.
    wh.insert([exposure(OLD, "u4", "v_a", 10), goal(OLD, "u1", "g_signup", 2.0, minutes=11)])
    expected = {"v_a": (2, {"g_signup": (1, 7.0)}), "v_b": (2, {})}
    assert summary(fetch_aggregates(wh.run, web_spec(OLD))) == expected
    wh.client.command("TRUNCATE TABLE splitedge.schema_migrations")
    assert warehouse.migrate(wh.client) == len(warehouse.MIGRATIONS)
    assert summary(fetch_aggregates(wh.run, web_spec(OLD))) == expected


def test_a_retried_segment_reaches_the_state_once(wh: EventWarehouse) -> None:
    exp = "exp_retry"
    rows = [exposure(exp, "u1", "v_a"), goal(exp, "u1", "g_signup", 3.0)]
    for _ in range(3):
        wh.insert(rows, token="segment-retry")
    assert summary(fetch_aggregates(wh.run, web_spec(exp))) == {"v_a": (1, {"g_signup": (1, 3.0)})}
    assert wh.count("SELECT sum(events) FROM splitedge.experiment_marks "
                    f"WHERE experiment_id = '{exp}'") == 2  # fmt: skip


def test_a_segment_stored_but_not_in_the_state_reaches_it_on_retry(wh: EventWarehouse) -> None:
    # The events table has the segment, the view missed it (a failure between the two
    # writes, made here by detaching the view): the retry, deduplicated in the events
    # table, still reaches the view, once.
    exp = "exp_lost"
    rows = [task(exp, "r1", "v_a", "success", cost=0.5)]
    wh.client.command("DETACH TABLE splitedge.unit_state_mv")
    try:
        wh.insert(rows, token="segment-lost")
    finally:
        wh.client.command("ATTACH TABLE splitedge.unit_state_mv")
    assert fetch_aggregates(wh.run, agent_spec(exp)) == []
    for _ in range(2):
        wh.insert(rows, token="segment-lost")
    assert wh.count(f"SELECT count() FROM splitedge.events WHERE experiment_id = '{exp}'") == 1
    [arm] = fetch_aggregates(wh.run, agent_spec(exp))
    assert (arm.units, arm.tasks, arm.converted, arm.sums["cost"]) == (1, 1, 1, 0.5)


def test_without_the_view_check_a_retry_counts_twice(wh: EventWarehouse) -> None:
    # Why insert_settings sets deduplicate_blocks_in_dependent_materialized_views: in
    # this ClickHouse, without it a deduplicated insert is still pushed to the views.
    exp = "exp_unchecked"
    rows = [task(exp, "r1", "v_a", "success")]
    for _ in range(2):
        wh.insert(rows, token="segment-unchecked",
                  deduplicate_blocks_in_dependent_materialized_views=0)  # fmt: skip
    assert wh.count(f"SELECT count() FROM splitedge.events WHERE experiment_id = '{exp}'") == 1
    assert [a.tasks for a in fetch_aggregates(wh.run, agent_spec(exp))] == [2]


def ended(spec: ExperimentSpec, since: float, until: float) -> ExperimentSpec:
    return msgspec.structs.replace(spec, status="completed", window=(at(since), at(until)))


def test_an_ended_experiment_counts_only_its_window(wh: EventWarehouse) -> None:
    exp = "exp_window"
    day = 24 * 60
    wh.insert(
        [
            exposure(exp, "inside", "v_a", 10),
            goal(exp, "inside", "g_signup", 2.0, minutes=day + 10),
            exposure(exp, "early", "v_b", -5),  # exposed before the start: not in the run
            goal(exp, "early", "g_signup", minutes=20),
            exposure(exp, "moved", "v_b", -5),  # first exposure in the run decides
            exposure(exp, "moved", "v_a", 30),
            goal(exp, "moved", "g_signup", 5.0, minutes=day + 40),
            goal(exp, "moved", "g_signup", 7.0, minutes=3 * day),  # after the end
            exposure(exp, "late", "v_b", 3 * day),  # a deployed winner's visitor
            goal(exp, "late", "g_signup", minutes=3 * day + 1),
        ]
    )
    spec = ended(web_spec(exp), 0, 2 * day)
    assert summary(fetch_aggregates(wh.run, spec)) == {"v_a": (2, {"g_signup": (2, 7.0)})}
    points = [(p.day, p.variant_id, p.entered, p.converted) for p in fetch_timeline(wh.run, spec)]
    assert points == [(date(2025, 6, 1), "v_a", 2, 0), (date(2025, 6, 2), "v_a", 0, 2)]
    # Running (no window), everything counts.
    running = summary(fetch_aggregates(wh.run, web_spec(exp)))
    assert running == {"v_a": (1, {"g_signup": (1, 2.0)}), "v_b": (3, {"g_signup": (3, 12.0)})}

    agent = "exp_window_agent"
    wh.insert([task(agent, "r1", "v_a", "failure", 1.0, minutes=-1),
               task(agent, "r1", "v_b", "success", 2.0, minutes=5),
               task(agent, "r2", "v_a", "success", 4.0, minutes=6),
               task(agent, "r2", "v_a", "success", 8.0, minutes=3 * day)])  # fmt: skip
    arms = {a.variant_id: a for a in fetch_aggregates(wh.run, ended(agent_spec(agent), 0, day))}
    assert {v: (a.units, a.tasks, a.converted, a.sums["cost"]) for v, a in arms.items()} == {
        "v_a": (1, 1, 1, 4.0),
        "v_b": (1, 1, 1, 2.0),
    }


def test_an_answer_is_kept_until_an_event_of_its_experiment_arrives(wh: EventWarehouse) -> None:
    exp = "exp_cached"
    wh.insert([exposure(exp, "u1", "v_a")])
    cache = VersionedCache(wh.run, settle_ms=0)
    computed: list[int] = []

    def compute() -> list[ArmAggregates]:
        computed.append(1)
        return fetch_aggregates(wh.run, web_spec(exp))

    # How long a repeat takes is bench/results_query.py's to measure; here, that it
    # computes nothing.
    first = cache.get("results", web_spec(exp), compute)
    assert cache.get("results", web_spec(exp), compute) == first
    assert (len(computed), cache.hits) == (1, 1)

    version = data_version(wh.run, web_spec(exp))[0]
    wh.insert([exposure("exp_cached_other", "u1", "v_a")])  # another experiment's event
    assert data_version(wh.run, web_spec(exp))[0] == version
    cache.get("results", web_spec(exp), compute)
    assert len(computed) == 1

    wh.insert([exposure(exp, "u2", "v_b")])
    assert data_version(wh.run, web_spec(exp))[0] != version
    again = cache.get("results", web_spec(exp), compute)
    assert len(computed) == 2 and summary(again) == {"v_a": (1, {}), "v_b": (1, {})}
    # Another experiment's spec, or the same experiment with another status, is its own
    # entry.
    cache.get("results", ended(web_spec(exp), 0, 60), compute)
    assert len(computed) == 3


def test_an_answer_computed_before_the_last_insert_settled_is_not_kept(
    wh: EventWarehouse,
) -> None:
    # The views write the marks and the state one after the other: until an insert has
    # settled, an answer may have seen its marks without all of its state.
    exp = "exp_cached_settle"
    cache = VersionedCache(wh.run, settle_ms=1_000)
    computed: list[int] = []

    def compute() -> list[ArmAggregates]:
        computed.append(1)
        return fetch_aggregates(wh.run, web_spec(exp))

    wh.insert([exposure(exp, "u1", "v_a")])
    cache.get("results", web_spec(exp), compute)
    cache.get("results", web_spec(exp), compute)
    assert len(computed) == 2  # given, not kept
    time.sleep(1.1)
    cache.get("results", web_spec(exp), compute)
    cache.get("results", web_spec(exp), compute)
    assert (len(computed), cache.hits) == (3, 1)


def test_the_cache_keeps_the_most_recently_used(wh: EventWarehouse) -> None:
    cache = VersionedCache(wh.run, size=2, settle_ms=0)
    specs = [web_spec(f"exp_lru_{n}") for n in range(3)]
    for spec in specs:
        cache.get("results", spec, list)
    cache.get("results", specs[1], list)
    assert cache.hits == 1
    cache.get("results", specs[0], list)  # dropped as the least recently used
    assert cache.hits == 1
