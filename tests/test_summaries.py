"""Experiment summaries kept from the units that changed (`analytics.summaries`) against
the results query over every unit (`analytics.aggregates.fetch_summary`), in real chDB:
after every batch of a random stream of events, retried batches and late conversions
included, the refreshed summary gives the same arms and timeline."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from analytics import summaries, warehouse
from analytics.aggregates import ExperimentSpec, UnitSummary, fetch_summary
from analytics.summaries import Kept, SummaryReader, refresh, unit_summary
from tests.support import SPEC_WORKSPACE, EventWarehouse, agent_spec, web_spec

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


OLD = "exp_sum_v4"  # stored by a release of schema version 4


@pytest.fixture(scope="module")
def wh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EventWarehouse]:
    client = warehouse.connect(f"chdb://{tmp_path_factory.mktemp('summaries') / 'clickhouse'}")
    for statement in warehouse._bootstrap(None):
        client.command(statement)
    # A warehouse of version 4, and events stored by it.
    for migration in warehouse.MIGRATIONS[:4]:
        for statement in migration(None):
            client.command(statement)
    for version in range(1, 5):
        client.command(f"INSERT INTO {warehouse.MIGRATIONS_TABLE} (version) VALUES ({version})")
    assert "inserted_to" not in client.command(f"SHOW CREATE TABLE {warehouse.UNIT_STATE_TABLE}")
    db = EventWarehouse(client)
    db.insert(_agent_batch(random.Random(5), OLD, 30, 0))
    assert warehouse.migrate(client) == len(warehouse.MIGRATIONS)
    yield db
    client.close()


def _web_batch(rng: random.Random, exp: str, units: int, minute: int) -> list[dict[str, Any]]:
    rows = []
    for _ in range(units):
        unit = f"u{rng.randrange(400)}"
        at = T0 + timedelta(minutes=minute + rng.random() * 30)
        if rng.random() < 0.7:
            variant = rng.choice(("v_a", "v_b"))
            rows.append(dict(kind="exposure", experiment_id=exp, variant_id=variant,
                             unit_id=unit, received_at=at))  # fmt: skip
        if rng.random() < 0.4:
            goal = rng.choice(("g_signup", "g_buy"))
            value = round(rng.uniform(1, 80), 2) if goal == "g_buy" else None
            later = at + timedelta(minutes=rng.random() * 99)
            rows.append(dict(kind="goal", experiment_id=exp, goal_id=goal, unit_id=unit,
                             value=value, received_at=later))  # fmt: skip
    return rows


def _agent_batch(rng: random.Random, exp: str, units: int, minute: int) -> list[dict[str, Any]]:
    rows = []
    for _ in range(units):
        at = T0 + timedelta(minutes=minute + rng.random() * 30)
        rows.append(dict(
            kind="task", experiment_id=exp, variant_id=rng.choice(("v_a", "v_b")),
            unit_id=f"s{rng.randrange(300)}", received_at=at,
            outcome=rng.choice(("success", "failure", "success")),
            cost=round(rng.uniform(0.001, 0.2), 5), duration_ms=rng.uniform(100, 9000),
            turns=rng.randrange(1, 12),
        ))  # fmt: skip
    return rows


def _same(kept: Kept, spec: ExperimentSpec, full: UnitSummary, bucket: str = "day") -> None:
    """The summary's figures equal the full query's; p95s to the histogram's 0.1%."""
    mine = unit_summary(kept, spec, bucket)  # type: ignore[arg-type]
    assert mine.timeline == full.timeline
    assert len(mine.arms) == len(full.arms)
    for got, want in zip(mine.arms, full.arms, strict=True):
        assert (got.variant_id, got.units, got.converted, got.tasks, got.successful_tasks) == (
            want.variant_id, want.units, want.converted, want.tasks, want.successful_tasks
        )  # fmt: skip
        assert got.sums == pytest.approx(want.sums, rel=1e-9)
        assert got.sumsqs == pytest.approx(want.sumsqs, rel=1e-9)
        for name, p95 in want.p95s.items():
            assert got.p95s[name] == pytest.approx(p95, rel=1e-3)
        assert [g.goal_id for g in got.goals] == [g.goal_id for g in want.goals]
        for g, w in zip(got.goals, want.goals, strict=True):
            assert g.converted == w.converted
            assert (g.value_sum, g.value_sumsq) == pytest.approx((w.value_sum, w.value_sumsq))
            assert g.value_p95 == pytest.approx(w.value_p95, rel=1e-3)


def test_a_version_4_warehouse_is_migrated_and_summarised(wh: EventWarehouse) -> None:
    # The rows stored before keep their state (inserted_to from inserted_from); the view
    # writes the column from now on; a second migration does nothing.
    wh.insert(_agent_batch(random.Random(6), OLD, 30, 60))
    times = wh.client.query(
        f"SELECT countIf(inserted_to >= inserted_from), count() FROM {warehouse.UNIT_STATE_TABLE} "
        f"WHERE experiment_id = '{OLD}'"
    ).result_rows[0]
    assert times[0] == times[1] > 0
    assert warehouse.migrate(wh.client) == len(warehouse.MIGRATIONS)
    spec = agent_spec(OLD)
    kept = refresh(wh.client, spec, None)
    _same(kept, spec, fetch_summary(wh.run, spec))
    wh.insert(_agent_batch(random.Random(7), OLD, 30, 120))
    kept = refresh(wh.client, spec, kept)
    _same(kept, spec, fetch_summary(wh.run, spec))


@pytest.mark.parametrize("kind", ["web", "agent"])
def test_every_refresh_equals_the_query_over_every_unit(wh: EventWarehouse, kind: str) -> None:
    rng = random.Random(21 if kind == "web" else 22)
    exp = f"exp_sum_{kind}"
    spec = web_spec(exp) if kind == "web" else agent_spec(exp)
    batch = _web_batch if kind == "web" else _agent_batch
    kept = None
    for step in range(12):
        rows = batch(rng, exp, rng.randrange(1, 120), minute=step * 50)
        wh.insert(rows)
        if step % 4 == 3:
            wh.insert(rows, token=f"retry-{exp}-{step}")
            wh.insert(rows, token=f"retry-{exp}-{step}")  # a retried segment counts once
        kept = refresh(wh.client, spec, kept)
        _same(kept, spec, fetch_summary(wh.run, spec))
        _same(kept, spec, fetch_summary(wh.run, spec, "hour"), "hour")
    assert kept is not None
    # Written and read back, by the writer starting again and by a reader.
    again = summaries.kept_summary(wh.client, spec)
    assert again is not None and again.version == kept.version
    assert msgspec.to_builtins(again.counters) == msgspec.to_builtins(kept.counters)
    read = SummaryReader(wh.run, wait=0).read(spec)
    assert read is not None and read.version == kept.version
    _same(read, spec, fetch_summary(wh.run, spec))


def test_a_refresh_recounts_only_the_units_that_changed(wh: EventWarehouse) -> None:
    exp = "exp_sum_late"
    spec = web_spec(exp)
    day_ago = datetime.now(UTC) - timedelta(days=1)
    wh.insert([dict(kind="exposure", experiment_id=exp, variant_id="v_a", unit_id=f"u{i}",
                    received_at=T0) for i in range(50)], inserted_at=day_ago)  # fmt: skip
    kept = refresh(wh.client, spec, None)
    # Three days after they entered, ten of the fifty units convert.
    wh.insert([dict(kind="goal", experiment_id=exp, goal_id="g_signup", unit_id=f"u{i}",
                    received_at=T0 + timedelta(days=3)) for i in range(0, 50, 5)])  # fmt: skip
    kept = refresh(wh.client, spec, kept)
    recounted = wh.client.command(
        f"SELECT count() FROM {warehouse.SUMMARY_UNITS_TABLE} WHERE experiment_id = '{exp}' "
        f"AND version = {kept.version}"
    )
    assert int(recounted) == 10
    full = fetch_summary(wh.run, spec)
    _same(kept, spec, full)
    assert full.arms[0].goals[0].converted == 10


def test_an_unfinished_refresh_is_rebuilt_and_a_reader_waits_for_none(wh: EventWarehouse) -> None:
    exp = "exp_sum_crash"
    spec = agent_spec(exp)
    wh.insert(_agent_batch(random.Random(3), exp, 40, 0))
    kept = refresh(wh.client, spec, None)
    reader = SummaryReader(wh.run, wait=0)
    assert reader.read(spec) is not None
    # A refresh that wrote its pending row and died: the writer starts from every unit.
    died = msgspec.structs.replace(kept, version=kept.version + 5)
    summaries._write_summary(wh.client, (SPEC_WORKSPACE, exp), died, pending=True)
    assert summaries.kept_summary(wh.client, spec) is None
    # New events the summary does not cover: no answer rather than a stale one.
    wh.insert(_agent_batch(random.Random(4), exp, 10, 60))
    assert reader.read(spec) is None
    kept = refresh(wh.client, spec, None)
    _same(reader.read(spec) or kept, spec, fetch_summary(wh.run, spec))
    # A summary of other goals is not used, and is rebuilt by the next refresh.
    other = web_spec(exp)
    assert reader.read(other) is None


def test_a_summary_missing_under_one_percent_of_the_events_is_read_at_once(
    wh: EventWarehouse,
) -> None:
    exp = "exp_sum_lag"
    spec = agent_spec(exp)
    wh.insert(_agent_batch(random.Random(8), exp, 300, 0))
    kept = refresh(wh.client, spec, None)
    reader = SummaryReader(wh.run, wait=0)
    wh.insert(_agent_batch(random.Random(9), exp, 2, 40))  # 2 of 302 events: under 1%
    lagging = reader.read(spec)
    assert lagging is not None and lagging.version == kept.version
    wh.insert(_agent_batch(random.Random(10), exp, 3, 80))  # 5 of 305: over 1%
    assert reader.read(spec) is None
