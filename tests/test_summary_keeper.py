"""The summary keeper (`edge.control.summary_keeper`) with a real SQLite store and chDB:
it keeps running and paused experiments' summaries current as events arrive, readers
get them, and it leaves ended experiments to the query over their run."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from analytics import warehouse
from analytics.aggregates import fetch_summary
from analytics.summaries import SummaryReader, unit_summary
from edge.control.results_api import experiment_spec
from edge.control.store import Store
from edge.control.summary_keeper import SummaryKeeper
from edge.ingest.schema import EVENT_SCHEMA
from tests.support import Seed, add_experiment, seed_store


class World:
    def __init__(self, tmp: Path) -> None:
        self.store_path = tmp / "store.db"
        self.seed: Seed = seed_store(self.store_path)
        self.dsn = f"chdb://{tmp / 'clickhouse'}"
        self.client = warehouse.connect(self.dsn)
        warehouse.migrate(self.client)

    def run(self, sql: str, parameters: dict[str, Any]) -> pa.Table:
        return self.client.query_arrow(sql, parameters=parameters)

    def tasks(self, experiment_id: str, variants: list[str], units: int, seed: int) -> None:
        rng = random.Random(seed)
        now = datetime.now(UTC)
        rows = []
        for i in range(units):
            base: dict[str, Any] = {
                f.name: None if f.nullable else "" for f in EVENT_SCHEMA if f.name != "client_ts"
            }
            at = now - timedelta(minutes=rng.random() * 90)
            base.update(
                event_id=uuid.uuid4().hex, kind="task", workspace_id=self.seed.workspace_id,
                experiment_id=experiment_id, variant_id=rng.choice(variants),
                unit_id=f"run-{rng.randrange(units * 2)}", received_at=at, client_ts=at,
                outcome=rng.choice(("success", "failure")), cost=rng.uniform(0.01, 0.2),
                duration_ms=rng.uniform(100, 5000), turns=rng.randrange(1, 9),
            )  # fmt: skip
            rows.append(base)
        table = pa.Table.from_pylist(rows, schema=EVENT_SCHEMA)
        self.client.insert_arrow(
            warehouse.EVENTS_TABLE, table, settings=warehouse.insert_settings(uuid.uuid4().hex)
        )

    def spec(self, experiment_id: str) -> Any:
        store = Store(self.store_path)
        try:
            record = store.experiment_record(experiment_id, self.seed.workspace_id)
        finally:
            store.close()
        assert record is not None
        return experiment_spec(record)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("keeper"))
    yield w
    w.client.close()


def _current(reader: SummaryReader, spec: Any) -> Any:
    """The summary once the keeper wrote one; a read waits for it to cover the events."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        kept = reader.read(spec)
        if kept is not None:
            return kept
        time.sleep(0.05)  # the first summary is not written yet
    raise AssertionError(f"no current summary of {spec.id}")


def test_the_keeper_keeps_live_experiments_current(world: World) -> None:
    store = Store(world.store_path)
    try:
        running, run_variants, _ = add_experiment(store, world.seed, "Prompt", ["A", "B"],
                                                  kind="agent")  # fmt: skip
        paused, paused_variants, _ = add_experiment(store, world.seed, "Tools", ["A", "B"],
                                                    kind="agent")  # fmt: skip
        ended, ended_variants, _ = add_experiment(store, world.seed, "Old", ["A", "B"],
                                                  kind="agent")  # fmt: skip
    finally:
        store.close()
    keeper = SummaryKeeper(world.store_path, world.dsn, interval=0.05)
    keeper.start()
    reader = SummaryReader(world.run)
    try:
        for batch in range(4):
            world.tasks(running, run_variants, 60, seed=batch)
            world.tasks(paused, paused_variants, 30, seed=100 + batch)
            if batch == 2:
                store = Store(world.store_path)
                try:
                    store.set_experiment_status(paused, "paused")
                    store.set_experiment_status(ended, "completed")
                finally:
                    store.close()
            for experiment_id in (running, paused):
                spec = world.spec(experiment_id)
                kept = _current(reader, spec)
                full = fetch_summary(world.run, spec)
                mine = unit_summary(kept, spec)
                assert [(a.variant_id, a.units, a.tasks) for a in mine.arms] == [
                    (a.variant_id, a.units, a.tasks) for a in full.arms
                ]
                assert mine.timeline == full.timeline
        # Nothing new: the keeper does not refresh again (once settled).
        time.sleep(2.5)
        settled = keeper.refreshes
        time.sleep(0.5)
        assert keeper.refreshes == settled
    finally:
        keeper.stop()
    # An experiment that never ran while the keeper watched has no summary.
    world.tasks(ended, ended_variants, 10, seed=7)
    assert reader.read(world.spec(ended)) is None


def test_a_failing_refresh_is_retried_after_a_growing_wait(world: World) -> None:
    store = Store(world.store_path)
    try:
        for other in store.live_experiment_records():  # only this one fails below
            store.set_experiment_status(other.id, "completed")
        experiment, variants, _ = add_experiment(store, world.seed, "Flaky", ["A", "B"],
                                                 kind="agent")  # fmt: skip
    finally:
        store.close()
    world.tasks(experiment, variants, 20, seed=11)
    # The table a refresh writes is away: every refresh fails.
    world.client.command(f"RENAME TABLE {warehouse.UNIT_RESULTS_TABLE} TO splitedge.away")
    keeper = SummaryKeeper(world.store_path, world.dsn, interval=0.05)
    keeper.start()
    try:
        time.sleep(3.2)
        # At 1 s then 2 s, not every pass: the first try and two retries at most.
        assert 1 <= keeper.failures <= 3
        world.client.command(f"RENAME TABLE splitedge.away TO {warehouse.UNIT_RESULTS_TABLE}")
        _current(SummaryReader(world.run), world.spec(experiment))
    finally:
        keeper.stop()
        if keeper.failures and not world.client.command(
            f"EXISTS TABLE {warehouse.UNIT_RESULTS_TABLE}"
        ):
            world.client.command(f"RENAME TABLE splitedge.away TO {warehouse.UNIT_RESULTS_TABLE}")
