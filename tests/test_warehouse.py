"""The warehouse DDL and migrations against real embedded ClickHouse (chDB), and the
cluster DDL for shape (no cluster exists here; chDB still parses every statement)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from analytics import warehouse
from edge.ingest.schema import EVENT_SCHEMA

# chDB allows one data directory per process at a time: the whole module shares one.


class Chdb:
    """The module's chDB directory and its open client (reopened by the restart test)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.client: Any = warehouse.connect(f"chdb://{path}")

    def reopen(self) -> None:
        self.client.close()
        self.client = warehouse.connect(f"chdb://{self.path}")


@pytest.fixture(scope="module")
def chdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chdb]:
    db = Chdb(tmp_path_factory.mktemp("warehouse") / "clickhouse")
    yield db
    db.client.close()


@pytest.fixture(scope="module")
def migrated(chdb: Chdb) -> Chdb:
    assert warehouse.schema_version(chdb.client) == 0
    assert warehouse.migrate(chdb.client) == len(warehouse.MIGRATIONS)
    return chdb


EXPECTED_COLUMNS = [
    ("event_id", "String"),
    ("kind", "LowCardinality(String)"),
    ("workspace_id", "LowCardinality(String)"),
    ("site_id", "LowCardinality(String)"),
    ("experiment_id", "LowCardinality(String)"),
    ("variant_id", "LowCardinality(String)"),
    ("unit_id", "String"),
    ("session_id", "String"),
    ("goal_id", "LowCardinality(String)"),
    ("name", "LowCardinality(String)"),
    ("value", "Nullable(Float64)"),
    ("pathname", "LowCardinality(String)"),
    ("device", "LowCardinality(String)"),
    ("agent_id", "LowCardinality(String)"),
    ("outcome", "LowCardinality(String)"),
    ("cost", "Nullable(Float64)"),
    ("duration_ms", "Nullable(Float64)"),
    ("turns", "Nullable(Int32)"),
    ("metadata", "String"),
    ("client_ts", "DateTime64(3, 'UTC')"),
    ("received_at", "DateTime64(3, 'UTC')"),
    ("inserted_at", "DateTime64(3, 'UTC')"),
]


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _row(event_id: str, **fields: Any) -> dict[str, Any]:
    """One EVENT_SCHEMA row: '' for absent strings, None for absent numbers."""
    row: dict[str, Any] = {
        f.name: "" for f in EVENT_SCHEMA if pa.types.is_dictionary(f.type) or f.type == pa.string()
    }
    row.update(event_id=event_id)
    row.update(value=None, cost=None, duration_ms=None, turns=None)
    row.update(client_ts=_ts("2025-03-04 05:06:07.008"), received_at=_ts("2025-03-04 05:06:08"))
    row.update(fields)
    return row


def _events(prefix: str, received_at: list[str] | None = None) -> pa.Table:
    """Three web events and one agent task, as the ingest builds them."""
    rows = [
        _row(f"{prefix}-1", kind="exposure", workspace_id="ws1", site_id="site1",
             experiment_id="exp1", variant_id="control", unit_id="visitor-1",
             session_id="s-1", pathname="/pricing", device="desktop"),
        _row(f"{prefix}-2", kind="goal", workspace_id="ws1", site_id="site1",
             experiment_id="exp1", variant_id="control", unit_id="visitor-1",
             session_id="s-1", goal_id="signup", pathname="/pricing", device="desktop"),
        _row(f"{prefix}-3", kind="custom", workspace_id="ws1", site_id="site1",
             experiment_id="exp1", variant_id="b", unit_id="visiteur-é-😀",
             name="revenue", value=12.5, pathname="/checkout", device="mobile"),
        _row(f"{prefix}-4", kind="task", workspace_id="ws1", experiment_id="exp2",
             variant_id="prompt-v2", unit_id="run-9", session_id="run-9",
             agent_id="agent-7", outcome="partial", name="summarise", cost=0.25,
             metadata='{"model":"m1","retries":2}',
             client_ts=_ts("2025-03-04 05:06:07.999")),
    ]  # fmt: skip
    for row, when in zip(rows, received_at or [], strict=False):
        row["received_at"] = _ts(when)
    return pa.Table.from_pylist(rows, schema=EVENT_SCHEMA)


def _count(client: Any, prefix: str) -> int:
    sql = f"SELECT count() FROM {warehouse.EVENTS_TABLE} WHERE startsWith(event_id, {{p:String}})"
    return int(client.command(sql, parameters={"p": prefix + "-"}))


# --- migrations on chDB ------------------------------------------------------------------


def test_migrate_creates_the_events_table(migrated: Chdb) -> None:
    client = migrated.client
    columns = client.query(
        "SELECT name, type, default_kind, default_expression FROM system.columns "
        "WHERE database = 'splitedge' AND table = 'events' ORDER BY position"
    ).result_rows
    assert [(name, kind) for name, kind, _, _ in columns] == EXPECTED_COLUMNS
    assert [name for name, *_ in columns] == [*EVENT_SCHEMA.names, "inserted_at"]
    defaults = {name: (kind, expr) for name, _, kind, expr in columns if kind}
    assert defaults == {"inserted_at": ("DEFAULT", "now64(3)")}

    engine, partition_key, sorting_key, engine_full = client.query(
        "SELECT engine, partition_key, sorting_key, engine_full FROM system.tables "
        "WHERE database = 'splitedge' AND name = 'events'"
    ).result_rows[0]
    assert engine == "MergeTree"
    assert partition_key == "toYYYYMM(received_at)"
    assert sorting_key == "experiment_id, kind, variant_id, unit_id, received_at"
    assert "non_replicated_deduplication_window = 10000" in engine_full


def test_migrate_sets_the_merge_selector_base(migrated: Chdb) -> None:
    create = str(migrated.client.command(f"SHOW CREATE TABLE {warehouse.EVENTS_TABLE}"))
    assert f"merge_selector_base = {warehouse.MERGE_SELECTOR_BASE}" in create


def test_migrate_records_the_version_and_is_idempotent(migrated: Chdb) -> None:
    client = migrated.client
    log = "SELECT version, applied_at FROM splitedge.schema_migrations ORDER BY version"
    before = client.query(log).result_rows
    assert [version for version, _ in before] == list(range(1, len(warehouse.MIGRATIONS) + 1))
    table_sql = "SELECT create_table_query FROM system.tables WHERE database = 'splitedge'"
    tables = client.query(table_sql).result_rows

    assert warehouse.migrate(client) == len(warehouse.MIGRATIONS)
    assert warehouse.migrate(client) == len(warehouse.MIGRATIONS)
    assert client.query(log).result_rows == before
    assert client.query(table_sql).result_rows == tables
    assert warehouse.schema_version(client) == len(warehouse.MIGRATIONS)
    types = client.query(
        "SELECT name, type FROM system.columns "
        "WHERE database = 'splitedge' AND table = 'schema_migrations' ORDER BY position"
    ).result_rows
    assert types == [("version", "UInt32"), ("applied_at", "DateTime64(3, 'UTC')")]


def test_migrate_reapplies_a_version_whose_record_was_lost(migrated: Chdb) -> None:
    # A crash between a migration's DDL and its record: the DDL runs again, harmlessly.
    client = migrated.client
    client.command("TRUNCATE TABLE splitedge.schema_migrations")
    assert warehouse.schema_version(client) == 0
    assert warehouse.migrate(client) == len(warehouse.MIGRATIONS)
    assert warehouse.schema_version(client) == len(warehouse.MIGRATIONS)


def test_ping_returns_the_server_version(migrated: Chdb) -> None:
    assert re.fullmatch(r"\d+\.\d+[\d.]*", warehouse.ping(migrated.client))


def test_ping_raises_when_the_query_fails() -> None:
    class Broken:
        def command(self, sql: str) -> str:
            raise ConnectionError("ClickHouse is down")

    with pytest.raises(ConnectionError):
        warehouse.ping(Broken())  # type: ignore[arg-type]


# --- inserting what the ingest writes -----------------------------------------------------


def test_insert_arrow_reads_back_the_same_values(migrated: Chdb) -> None:
    client = migrated.client
    table = _events("rt")
    before = datetime.now(UTC) - timedelta(seconds=5)
    client.insert_arrow(warehouse.EVENTS_TABLE, table, settings=warehouse.insert_settings("rt"))

    names = ", ".join(EVENT_SCHEMA.names)
    back = client.query_arrow(
        f"SELECT {names}, inserted_at FROM {warehouse.EVENTS_TABLE} "
        "WHERE startsWith(event_id, 'rt-') ORDER BY event_id"
    )
    assert back.column_names == [*EVENT_SCHEMA.names, "inserted_at"]
    assert back.select(EVENT_SCHEMA.names).to_pylist() == table.to_pylist()
    assert back.schema.field("received_at").type == pa.timestamp("ms", tz="UTC")
    assert back.column("value").to_pylist() == [None, None, 12.5, None]
    assert back.column("turns").null_count == 4
    inserted = back.column("inserted_at").to_pylist()
    assert all(before <= at <= datetime.now(UTC) + timedelta(seconds=5) for at in inserted)

    # The dictionary columns stay LowCardinality: the agent row's empty site_id is ''.
    site = client.query(
        "SELECT toTypeName(site_id), site_id FROM splitedge.events WHERE event_id = 'rt-4'"
    ).result_rows
    assert site == [("LowCardinality(String)", "")]


def test_same_token_is_counted_once(migrated: Chdb) -> None:
    client = migrated.client
    table = _events("dup")
    for _ in range(2):
        client.insert_arrow(
            warehouse.EVENTS_TABLE, table, settings=warehouse.insert_settings("segment-dup")
        )
    assert _count(client, "dup") == 4


def test_different_tokens_are_counted_twice(migrated: Chdb) -> None:
    client = migrated.client
    table = _events("two")
    for token in ("segment-two-a", "segment-two-b"):
        client.insert_arrow(
            warehouse.EVENTS_TABLE, table, settings=warehouse.insert_settings(token)
        )
    assert _count(client, "two") == 8


def test_a_segment_over_two_months_is_deduplicated_across_a_restart(migrated: Chdb) -> None:
    # Two partitions written by one insert, then the same segment replayed after the
    # process reopened chDB (as the flusher does after a crash).
    months = ["2025-01-31 23:59:59.999", "2025-02-01 00:00:00", "2025-02-01 00:00:01"]
    table = _events("restart", received_at=months)
    settings = warehouse.insert_settings("segment-restart")
    migrated.client.insert_arrow(warehouse.EVENTS_TABLE, table, settings=settings)
    migrated.reopen()
    assert warehouse.migrate(migrated.client) == len(warehouse.MIGRATIONS)
    migrated.client.insert_arrow(warehouse.EVENTS_TABLE, table, settings=settings)
    assert _count(migrated.client, "restart") == 4
    partitions = migrated.client.query(
        "SELECT DISTINCT toYYYYMM(received_at) FROM splitedge.events "
        "WHERE startsWith(event_id, 'restart-') ORDER BY 1"
    ).result_rows
    assert partitions == [(202501,), (202502,), (202503,)]


def test_insert_settings_need_a_token() -> None:
    assert warehouse.insert_settings("seg-1")["insert_deduplication_token"] == "seg-1"
    with pytest.raises(ValueError):
        warehouse.insert_settings("")


# --- cluster DDL, for shape ----------------------------------------------------------------


def _statement(statements: list[str], prefix: str) -> str:
    found = [s for s in statements if s.startswith(prefix)]
    assert len(found) == 1, (prefix, statements)
    return found[0]


def _column_block(statement: str) -> str:
    return statement.split("\n(\n", 1)[1].split("\n)\n", 1)[0]


def _after_columns(statement: str) -> str:
    return statement.split("\n)\n", 1)[1]


def test_single_node_ddl_has_no_cluster_parts() -> None:
    statements = warehouse.ddl_statements()
    assert statements == warehouse.ddl_statements(None)
    text = "\n".join(statements)
    assert "ON CLUSTER" not in text
    assert "Replicated" not in text and "Distributed" not in text
    assert "events_local" not in text and "event_ids_local" not in text


def test_cluster_ddl_shape() -> None:
    single = warehouse.ddl_statements()
    statements = warehouse.ddl_statements("prod")
    # events_local and events for events, event_ids_local and event_ids for event_ids,
    # unit_state(_local) and experiment_marks(_local); version 5's two columns on both
    # unit_state tables, and its three tables, each _local and Distributed.
    assert len(statements) == len(single) + 9
    # Every statement but the backfills (INSERTs, through the Distributed tables).
    backfill = [s for s in statements if s.startswith("INSERT")]
    assert len(backfill) == 2
    assert all(" ON CLUSTER 'prod'" in s for s in statements if s not in backfill)
    assert statements[0] == "CREATE DATABASE IF NOT EXISTS splitedge ON CLUSTER 'prod'"

    single_events = _statement(single, "CREATE TABLE IF NOT EXISTS splitedge.events\n")
    local = _statement(statements, "CREATE TABLE IF NOT EXISTS splitedge.events_local ON")
    dist = _statement(statements, "CREATE TABLE IF NOT EXISTS splitedge.events ON")
    # The local table is created before the Distributed table that reads it.
    assert statements.index(local) < statements.index(dist)
    # Same columns, same types, same defaults in both modes and on both tables.
    assert _column_block(local) == _column_block(dist) == _column_block(single_events)

    assert _after_columns(local).startswith(
        "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/splitedge/events_local', "
        "'{replica}')\n"
    )
    layout = [
        "PARTITION BY toYYYYMM(received_at)",
        "ORDER BY (experiment_id, kind, variant_id, unit_id, received_at)",
    ]
    assert _after_columns(single_events).split("\n")[1:3] == layout
    assert _after_columns(local).split("\n")[1:3] == layout
    assert "replicated_deduplication_window = 10000" in local
    assert _after_columns(dist) == (
        "ENGINE = Distributed('prod', 'splitedge', 'events_local', cityHash64(unit_id))"
    )

    migrations = _statement(statements, "CREATE TABLE IF NOT EXISTS splitedge.schema_migrations")
    assert _column_block(migrations) == _column_block(
        _statement(single, "CREATE TABLE IF NOT EXISTS splitedge.schema_migrations")
    )
    assert (
        "ENGINE = ReplicatedMergeTree('/clickhouse/tables/splitedge/schema_migrations', "
        "'{shard}-{replica}')"
    ) in migrations


def test_cluster_unit_state_ddl_shape() -> None:
    single = warehouse.ddl_statements()
    statements = warehouse.ddl_statements("prod")
    for name, engine in (
        ("unit_state", "ReplicatedAggregatingMergeTree"),
        ("experiment_marks", "ReplicatedAggregatingMergeTree"),
    ):
        local = _statement(statements, f"CREATE TABLE IF NOT EXISTS splitedge.{name}_local ON")
        dist = _statement(statements, f"CREATE TABLE IF NOT EXISTS splitedge.{name} ON")
        one = _statement(single, f"CREATE TABLE IF NOT EXISTS splitedge.{name}\n")
        assert statements.index(local) < statements.index(dist)
        assert _column_block(local) == _column_block(dist) == _column_block(one)
        assert _after_columns(local).startswith(
            f"ENGINE = {engine}('/clickhouse/tables/{{shard}}/splitedge/{name}_local', "
            "'{replica}')\n"
        )
        # The same layout as on a single node; deduplicated like the events.
        assert _after_columns(local).split("\n")[1:] == _after_columns(one).split("\n")[1:-1] + [
            "SETTINGS replicated_deduplication_window = 10000, "
            "replicated_deduplication_window_seconds = 604800"
        ]
        assert _after_columns(one).startswith("ENGINE = AggregatingMergeTree\n")
        assert "non_replicated_deduplication_window = 10000" in one
    # A unit's state lives on the shard of its events (same sharding key).
    assert (
        _after_columns(_statement(statements, "CREATE TABLE IF NOT EXISTS splitedge.unit_state ON"))
        == "ENGINE = Distributed('prod', 'splitedge', 'unit_state_local', cityHash64(unit_id))"
    )
    # Each shard's views read its local events and write its local state.
    for view, target in (
        ("unit_state_mv", "unit_state"),
        ("experiment_marks_mv", "experiment_marks"),
    ):
        mv = _statement(statements, f"CREATE MATERIALIZED VIEW IF NOT EXISTS splitedge.{view} ON")
        assert f" ON CLUSTER 'prod' TO splitedge.{target}_local\n" in mv
        assert "FROM splitedge.events_local\n" in mv
        single_mv = _statement(single, f"CREATE MATERIALIZED VIEW IF NOT EXISTS splitedge.{view} ")
        assert f" TO splitedge.{target}\n" in single_mv and "FROM splitedge.events\n" in single_mv
    drop = _statement(statements, "ALTER TABLE splitedge.unit_state_local ON CLUSTER 'prod' DROP")
    assert drop.endswith(" DROP PARTITION 1")
    # The backfills read every shard's events and write through the Distributed tables.
    for target in ("unit_state", "experiment_marks"):
        fill = _statement(statements, f"INSERT INTO splitedge.{target}")
        assert "FROM splitedge.events\n" in fill and "distributed_foreground_insert = 1" in fill


def test_cluster_summaries_ddl_shape() -> None:
    single = warehouse.ddl_statements()
    statements = warehouse.ddl_statements("prod")
    for name, engine, shard in (
        ("unit_results", "ReplicatedReplacingMergeTree", "toUInt64(bitShiftRight(unit_key, 64))"),
        ("summary_units", "ReplicatedMergeTree", "toUInt64(bitShiftRight(unit_key, 64))"),
        ("experiment_summaries", "ReplicatedReplacingMergeTree", "rand()"),
    ):
        local = _statement(statements, f"CREATE TABLE IF NOT EXISTS splitedge.{name}_local ON")
        dist = _statement(statements, f"CREATE TABLE IF NOT EXISTS splitedge.{name} ON")
        one = _statement(single, f"CREATE TABLE IF NOT EXISTS splitedge.{name}\n")
        assert statements.index(local) < statements.index(dist)
        assert _column_block(local) == _column_block(dist) == _column_block(one)
        keeper = f"'/clickhouse/tables/{{shard}}/splitedge/{name}_local', '{{replica}}'"
        version = ", version" if "Replacing" in engine else ""
        assert _after_columns(local).startswith(f"ENGINE = {engine}({keeper}{version})\n")
        # The same layout as on a single node.
        assert _after_columns(local).split("\n")[1:] == _after_columns(one).split("\n")[1:]
        assert _after_columns(dist) == (
            f"ENGINE = Distributed('prod', 'splitedge', '{name}_local', {shard})"
        )
    # A unit's summary rows live on the shard of its events and its state.
    assert "cityHash64(unit_id)" in _statement(
        statements, "CREATE TABLE IF NOT EXISTS splitedge.unit_state ON"
    )
    # The new columns on both unit_state tables, and the view rewritten on every shard.
    for table in ("unit_state_local", "unit_state"):
        for column in ("inserted_to SimpleAggregateFunction(max", "events SimpleAggregateFunction"):
            prefix = f"ALTER TABLE splitedge.{table} ON CLUSTER 'prod' ADD COLUMN IF NOT EXISTS "
            assert column in _statement(statements, prefix + column.split()[0])
    view = _statement(statements, "ALTER TABLE splitedge.unit_state_mv ON CLUSTER 'prod' MODIFY")
    assert "max(inserted_at) AS inserted_to" in view and "count() AS events" in view
    assert "FROM splitedge.events_local\n" in view


def test_migrate_creates_the_unit_state(migrated: Chdb) -> None:
    rows = migrated.client.query(
        "SELECT name, engine, partition_key, sorting_key FROM system.tables "
        "WHERE database = 'splitedge' AND name IN ('unit_state', 'experiment_marks', "
        "'unit_state_mv', 'experiment_marks_mv') ORDER BY name"
    ).result_rows
    assert rows == [
        ("experiment_marks", "AggregatingMergeTree", "", "workspace_id, experiment_id, variant_id"),
        ("experiment_marks_mv", "MaterializedView", "", ""),
        (
            "unit_state",
            "AggregatingMergeTree",
            "backfill",
            "workspace_id, experiment_id, goal_id, unit_id",
        ),
        ("unit_state_mv", "MaterializedView", "", ""),
    ]
    assert warehouse.insert_settings("t")["deduplicate_blocks_in_dependent_materialized_views"] == 1


def test_event_ids_ddl_in_both_modes() -> None:
    single = _statement(
        warehouse.ddl_statements(), "CREATE TABLE IF NOT EXISTS splitedge.event_ids\n"
    )
    statements = warehouse.ddl_statements("prod")
    local = _statement(statements, "CREATE TABLE IF NOT EXISTS splitedge.event_ids_local ON")
    dist = _statement(statements, "CREATE TABLE IF NOT EXISTS splitedge.event_ids ON")
    assert statements.index(local) < statements.index(dist)
    assert _column_block(local) == _column_block(dist) == _column_block(single)
    layout = [
        "PARTITION BY toYYYYMMDD(recorded_at)",
        "ORDER BY (workspace_id, bucket, event_id)",
        f"TTL recorded_at + INTERVAL {warehouse.EVENT_ID_HORIZON_DAYS} DAY",
    ]
    assert _after_columns(single).split("\n")[1:4] == layout
    assert _after_columns(local).split("\n")[1:4] == layout
    assert _after_columns(single).startswith("ENGINE = MergeTree\n")
    assert "non_replicated_deduplication_window = 10000" in single
    for setting in ("index_granularity = 1024", "merge_selector_base = 20"):
        assert setting in single and setting in local
    assert _after_columns(local).startswith(
        "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/splitedge/event_ids_local', "
        "'{replica}')\n"
    )
    assert "replicated_deduplication_window = 10000" in local
    assert "ttl_only_drop_parts = 1" in local and "ttl_only_drop_parts = 1" in single
    assert _after_columns(dist) == (
        "ENGINE = Distributed('prod', 'splitedge', 'event_ids_local', "
        "cityHash64(workspace_id, event_id))"
    )


def _times(*ms: int) -> pa.Array:
    return pa.array(ms, pa.timestamp("ms", tz="UTC"))


def test_an_event_id_is_filed_under_the_second_of_its_own_time() -> None:
    t = 1_764_960_000_000  # a whole second
    client_ts = pa.chunked_array([_times(t + 999, t + 1_000, t + 5)])
    received = pa.chunked_array([_times(t + 90_000, t + 90_000, t + 5)])
    # The third came without its own time: the ingest gave it the receive time.
    assert warehouse.event_id_buckets(client_ts, received) == _times(t, t + 1_000, 0)


def _ids(rows: list[tuple[str, int, str]]) -> pa.Table:
    """Rows of the event ids table: (workspace, bucket in ms, event id)."""
    workspaces, buckets, event_ids = zip(*rows, strict=True) if rows else ((), (), ())
    return pa.table({
        "workspace_id": pa.array(workspaces, pa.string()),
        "bucket": _times(*buckets),
        "event_id": pa.array(event_ids, pa.string()),
    })  # fmt: skip


def test_recorded_event_ids_are_those_of_the_workspace_and_buckets(migrated: Chdb) -> None:
    t = 1_764_960_000_000
    recorded = [("ws-a", t, "e1"), ("ws-a", t, "e2"), ("ws-b", t, "e3"), ("ws-a", 0, "no-ts")]
    migrated.client.insert_arrow(warehouse.EVENT_IDS_TABLE, _ids(recorded))

    def lookup(rows: list[tuple[str, int, str]]) -> set[tuple[str, str]]:
        return warehouse.recorded_event_ids(migrated.client, _ids(rows))

    asked = [("ws-a", t, "e1"), ("ws-a", t, "e3"), ("ws-a", t, "x'"), ("ws-a", t, "no-ts")]
    assert lookup(asked) == {("ws-a", "e1"), ("ws-a", "no-ts")}
    # Two workspaces in one lookup, each with its own ids.
    assert lookup([("ws-b", t, "e3"), ("ws-b", t, "e1"), ("ws-a", t, "e2")]) == {
        ("ws-b", "e3"),
        ("ws-a", "e2"),
    }
    # Another second: only the epoch bucket (events without their own time) is read.
    assert lookup([("ws-a", t + 1_000, "e1"), ("ws-a", t + 1_000, "no-ts")]) == {("ws-a", "no-ts")}
    assert lookup([]) == set()


def test_a_lookup_takes_any_number_of_seconds(migrated: Chdb) -> None:
    # An import of old events: each in a second of its own.
    t = 1_764_960_000_000
    rows = [("ws-import", t + 1_000 * i, f"e{i}") for i in range(20_000)]
    migrated.client.insert_arrow(warehouse.EVENT_IDS_TABLE, _ids(rows[::2]))
    found = warehouse.recorded_event_ids(migrated.client, _ids(rows))
    assert found == {("ws-import", e) for _, _, e in rows[::2]}


def test_any_event_id_is_looked_up_exactly(migrated: Chdb) -> None:
    odd = ["a\nb", "x$ids$y", "nul\0", "it's", "back\\slash", "é😀", "x" * 128]
    t = 1_764_960_000_000
    migrated.client.insert_arrow(warehouse.EVENT_IDS_TABLE, _ids([("ws-a", t, e) for e in odd]))
    for wanted in (odd, odd[3:]):
        rows = [("ws-a", t, e) for e in [*wanted, "a", "b"]]
        found = warehouse.recorded_event_ids(migrated.client, _ids(rows))
        assert found == {("ws-a", e) for e in wanted}


def test_cluster_ddl_accepts_a_macro_and_rejects_injection() -> None:
    assert "ON CLUSTER '{cluster}'" in warehouse.ddl_statements("{cluster}")[0]
    for bad in ("", "a b", "x'; DROP TABLE t; --", "c`", "a\\b", "x" * 129):
        with pytest.raises(ValueError, match="cluster name"):
            warehouse.ddl_statements(bad)


@pytest.mark.parametrize("cluster", [None, "prod", "{cluster}"])
def test_every_statement_parses(migrated: Chdb, cluster: str | None) -> None:
    # formatQuery parses without executing: the cluster DDL is valid ClickHouse SQL even
    # though no cluster exists here.
    for statement in warehouse.ddl_statements(cluster):
        formatted = migrated.client.command(
            "SELECT formatQuery({q:String})", parameters={"q": statement}
        )
        assert str(formatted).startswith(("CREATE ", "ALTER ", "INSERT "))
