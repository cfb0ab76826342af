"""The ClickHouse warehouse: the client, the events table and its versioned migrations.

ClickHouse is reached through clickhouse-connect only. ``chdb:///path`` is embedded
ClickHouse (one process may own the directory at a time); ``http://host:8123`` is a
ClickHouse server. Both give the same `Client` API, and the SQL here runs on both.

One table, ``splitedge.events``, holds web and agent events; its columns follow the Arrow
schema of the ingest (``edge.ingest.schema.EVENT_SCHEMA``) plus ``inserted_at``, which
ClickHouse fills. The flusher writes a spool segment with::

    client.insert_arrow(EVENTS_TABLE, table, settings=insert_settings(segment_name))

and a segment that is inserted again (a retry after a lost answer, a replay after a
crash) is not counted twice: the segment name is the insert's deduplication token, and
the table keeps the tokens of its last `DEDUPLICATION_WINDOW` inserted blocks, across
restarts. A token names the data, so a name must never be reused for other events: an
insert whose token the table has seen is dropped whatever it contains.

Materialized views on the events table keep ``splitedge.unit_state`` (per experiment and
unit, what the results count: `UNIT_STATE_COLUMNS`) and ``splitedge.experiment_marks``
(per experiment, how many events and when the last arrived); `analytics.aggregates` reads
them instead of the raw events. A retried segment reaches the views once, as it reaches
the table (`insert_settings`).

`migrate` creates the database and brings the schema to the newest version; every step
is recorded in ``splitedge.schema_migrations``. With ``cluster="NAME"`` (the
``--clickhouse-cluster`` option) the same steps run ``ON CLUSTER`` and the events table
becomes a ``Distributed`` table over a ``ReplicatedMergeTree`` table on every shard, so
inserts and queries name ``splitedge.events`` in both modes. The cluster's
``remote_servers`` entry must set ``internal_replication`` to true (the replicated table
copies the data to its replicas, not the Distributed table), and every host must define
the ``{shard}`` and ``{replica}`` macros.

Exactly once per event id
    A client that retries a batch whose answer it lost sends the same event ids in a new
    request, which lands in another segment with another token. So the flusher inserts
    only events whose ``(workspace_id, event_id)`` is not yet in ``splitedge.event_ids``
    (`recorded_event_ids`), then records their ids there, in that order and each insert
    under a token of the segment (`event_ids_token`): a crash between the two inserts
    recomputes the same events on replay, whose insert the token drops. The ids are kept
    `EVENT_ID_HORIZON_DAYS` days, the horizon within which a retry is recognised.

    An id is filed under the second of the event's own time (`event_id_buckets`), which a
    retry repeats: the SDK and the snippet fix ``ts`` when the event is made. A lookup
    reads only the seconds of its batch, so its cost grows with the events recorded in
    those seconds, not with the horizon. An agent event sent without ``ts`` gets the
    receive time, which a retry would not repeat, so its id is filed under the epoch
    instead, and every lookup reads that bucket too. A retry is therefore recognised when
    it carries the ``ts`` of the first send, or none when the first send had none; the
    same id sent again with another ``ts`` can be stored again (it is found only when the
    second it was filed under is among the seconds of the new batch).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import clickhouse_connect
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = [
    "DATABASE",
    "DEDUPLICATION_WINDOW",
    "EVENTS_TABLE",
    "EVENT_IDS_TABLE",
    "EVENT_ID_HORIZON_DAYS",
    "MERGE_SELECTOR_BASE",
    "MIGRATIONS",
    "ENTRY_KEY",
    "EXPERIMENT_MARKS_TABLE",
    "MIGRATIONS_TABLE",
    "SUMMARIES_TABLE",
    "SUMMARY_UNITS_TABLE",
    "UNIT_RESULTS_TABLE",
    "Migration",
    "UNIT_STATE_COLUMNS",
    "UNIT_KEY",
    "UNIT_STATE_TABLE",
    "close_quietly",
    "connect",
    "ddl_statements",
    "event_id_buckets",
    "event_ids_token",
    "insert_settings",
    "migrate",
    "ping",
    "recorded_event_ids",
    "schema_version",
    "unit_state_select",
]

log = logging.getLogger("splitedge.warehouse")

DATABASE = "splitedge"
EVENTS_TABLE = f"{DATABASE}.events"
MIGRATIONS_TABLE = f"{DATABASE}.schema_migrations"
UNIT_STATE_TABLE = f"{DATABASE}.unit_state"
EXPERIMENT_MARKS_TABLE = f"{DATABASE}.experiment_marks"
EVENT_IDS_TABLE = f"{DATABASE}.event_ids"
UNIT_RESULTS_TABLE = f"{DATABASE}.unit_results"
SUMMARY_UNITS_TABLE = f"{DATABASE}.summary_units"
SUMMARIES_TABLE = f"{DATABASE}.experiment_summaries"

EVENT_ID_HORIZON_DAYS = 30
"""How long a stored event's id is remembered: a retry of it within this many days is
dropped as a duplicate, a later one is stored again."""

# How many recent insert blocks the events table remembers for deduplication.
# A segment is retried within seconds of a failure and replayed at the next start, so
# the window only has to outlast the inserts made in between; 10,000 segments of ~10k
# rows each is 100M events.
DEDUPLICATION_WINDOW = 10_000
# How long a replicated table (cluster mode) keeps those tokens. ClickHouse's default is
# one hour; a node that crashed and comes back the next day must still find them.
_REPLICATED_DEDUPLICATION_SECONDS = 7 * 24 * 3600

Migration = Callable[[str | None], list[str]]
"""One schema version: given the cluster name (None on a single node), the SQL statements
that bring the schema from the previous version to this one."""

# A cluster name is a name from the server's remote_servers config, or a macro such as
# {cluster}; nothing that could close a quoted string.
_CLUSTER_NAME = re.compile(r"[A-Za-z0-9_.\-{}]{1,128}")


def connect(dsn: str) -> Any:
    """A clickhouse-connect client for a DSN (``chdb:///abs/dir`` or ``http://host:8123``).

    Raises what clickhouse-connect raises when the server cannot be reached.
    """
    return clickhouse_connect.get_client(dsn=dsn)


def close_quietly(client: Client) -> None:
    """Close a client whose connection may already be broken: a failure to close is only
    logged (at debug), since the caller is already dropping it."""
    try:
        client.close()
    except Exception:
        log.debug("closing a ClickHouse client failed", exc_info=True)


def ping(client: Client) -> str:
    """The server's version, proving that a query round-trips; raises when it does not.

    Errors are clickhouse-connect's (``OperationalError`` when the server is unreachable,
    ``DatabaseError`` when it refuses the query).
    """
    version = str(client.command("SELECT version()")).strip()
    if not version:
        raise RuntimeError("ClickHouse answered SELECT version() with an empty result")
    return version


def insert_settings(token: str) -> dict[str, str | int]:
    """The settings of one idempotent insert into `EVENTS_TABLE`, in both modes.

    ``token`` names the data (the spool segment): inserting the same token again is a
    no-op. ``distributed_foreground_insert`` makes an insert into the cluster's
    Distributed table return only after every shard has written its rows (and
    deduplicated them by the token), so a segment is never deleted while its rows wait
    in a node's local queue; on a single node it changes nothing.
    """
    if not token:
        raise ValueError("an insert deduplication token must not be empty")
    return {
        "insert_deduplication_token": token,
        "distributed_foreground_insert": 1,
        # The materialized views (unit state, experiment marks) check the token as well:
        # a segment whose rows reached the events table but not a view (a failure between
        # the two writes) reaches the view on its retry, and one that reached both reaches
        # neither again. The default of ClickHouse 26.9 (chDB 4.4), stated so that another
        # server version or profile cannot turn a retry into a double count in the state.
        "deduplicate_blocks_in_dependent_materialized_views": 1,
    }


def event_ids_token(token: str) -> str:
    """The deduplication token of the insert into `EVENT_IDS_TABLE` that records the ids
    of the events inserted under ``token``."""
    return f"{token}.ids"


def event_id_buckets(client_ts: pa.ChunkedArray, received_at: pa.ChunkedArray) -> pa.Array:
    """The bucket of each event in `EVENT_IDS_TABLE`, from a segment's ``client_ts`` and
    ``received_at`` columns: the second of the event's own time, or the epoch for an
    event the ingest gave its receive time (an agent event without ``ts``)."""
    own = pc.not_equal(client_ts, received_at).combine_chunks()
    second = pc.floor_temporal(client_ts, 1, "second").combine_chunks()
    epoch = pa.scalar(0, type=client_ts.type)
    return pc.if_else(own, second, epoch)


def recorded_event_ids(client: Client, ids: pa.Table) -> set[tuple[str, str]]:
    """Those of the ``(workspace_id, event_id)`` pairs of ``ids`` (distinct pairs, in rows
    of `EVENT_IDS_TABLE`: workspace_id, bucket, event_id) that the table holds in one of
    the buckets of ``ids`` or in the epoch bucket. One query, whatever the workspaces.

    The rows go into a temporary table of the client's session by ``insert_arrow``, which
    costs a fraction of binding them into the query (clickhouse-connect escapes a bound
    string in Python, and ClickHouse formats a large constant into the names of the
    query's columns), and holds any number of buckets; ``GLOBAL IN`` sends it to every
    shard of a cluster. ClickHouse narrows the sorting key by the sets of those subqueries
    (workspaces, then buckets) before it reads a granule.
    """
    # A name of its own: a lookup never meets the ids of one whose DROP failed.
    lookup = f"event_id_lookup_{uuid.uuid4().hex}"
    client.command(
        f"CREATE TEMPORARY TABLE {lookup} (workspace_id String, bucket DateTime('UTC'), "
        "event_id String) ENGINE = Memory"
    )
    try:
        client.insert_arrow(lookup, ids)
        result = client.query(
            f"SELECT workspace_id, event_id FROM {EVENT_IDS_TABLE} "
            f"WHERE workspace_id GLOBAL IN (SELECT workspace_id FROM {lookup}) "
            f"AND (bucket GLOBAL IN (SELECT bucket FROM {lookup}) OR bucket = toDateTime(0)) "
            f"AND (workspace_id, event_id) GLOBAL IN (SELECT workspace_id, event_id FROM {lookup})"
        )
    finally:
        client.command(f"DROP TEMPORARY TABLE IF EXISTS {lookup}")
    return {(str(workspace_id), str(event_id)) for workspace_id, event_id in result.result_rows}


# --- the DDL ---------------------------------------------------------------------------

# The events table, version 1. One row per event, web and agent alike. Strings that
# repeat are LowCardinality(String) whether the Arrow column is a plain string or a
# dictionary (ClickHouse converts either on insert); a nullable Arrow number stays
# Nullable here. Strings a client may omit are '' (never NULL), so that they can be
# in the sorting key and compare without NULL rules.
_EVENT_COLUMNS_V1: tuple[tuple[str, str], ...] = (
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
    # When ClickHouse accepted the row; not sent by the ingest, so insert_arrow (which
    # names the Arrow columns) leaves it to this default.
    ("inserted_at", "DateTime64(3, 'UTC') DEFAULT now64(3)"),
)

# Every analytics query reads one experiment, so experiment_id comes first and an
# experiment is one contiguous range of each part: the primary index skips every other
# experiment's rows. Within it, kind: the results query (analytics.aggregates) reads the
# exposures (who was exposed to which variant) and the conversions (goal and task events)
# as two sides of a per-unit join, and each side is again one range. Then variant_id,
# unit_id, received_at: repeated ids compress well and a unit's rows sit together. The
# query itself groups by unit in a hash table (bench/results_query.py measured the cost:
# counting distinct units, not reading rows). Rows without an experiment (plain
# pageviews) share the '' range, which the experiment queries skip.
_EVENTS_ORDER_BY = "(experiment_id, kind, variant_id, unit_id, received_at)"
_EVENTS_PARTITION_BY = "toYYYYMM(received_at)"


_MIGRATION_COLUMNS: tuple[tuple[str, str], ...] = (
    ("version", "UInt32"),
    ("applied_at", "DateTime64(3, 'UTC') DEFAULT now64(3)"),
)


def _on_cluster(cluster: str | None) -> str:
    return "" if cluster is None else f" ON CLUSTER '{cluster}'"


def _columns(columns: tuple[tuple[str, str], ...]) -> str:
    return "(\n" + ",\n".join(f"    {name} {kind}" for name, kind in columns) + "\n)"


def _check_cluster(cluster: str | None) -> None:
    if cluster is not None and not _CLUSTER_NAME.fullmatch(cluster):
        raise ValueError(
            f"invalid ClickHouse cluster name {cluster!r}: use the name of a cluster in the "
            "server's remote_servers config (letters, digits, _ . - or a {macro})"
        )


def _bootstrap(cluster: str | None) -> list[str]:
    """The database and the migrations log, which exist before any version is applied.

    On a cluster the log is one ReplicatedMergeTree table with a single Keeper path for
    the whole cluster (no ``{shard}`` in it): every host of every shard is a replica of
    it, so whichever host runs `migrate` next sees what any other host applied. A plain
    MergeTree ON CLUSTER would record a version only on the host that ran the migration,
    and every other host would run the (idempotent) DDL again.
    """
    on = _on_cluster(cluster)
    if cluster is None:
        engine = "MergeTree"
    else:
        # Replica names must be unique across the whole path, and {replica} is often
        # only unique within a shard (replica1, replica2 on every shard).
        engine = (
            f"ReplicatedMergeTree('/clickhouse/tables/{DATABASE}/schema_migrations', "
            "'{shard}-{replica}')"
        )
    return [
        f"CREATE DATABASE IF NOT EXISTS {DATABASE}{on}",
        f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE}{on}\n"
        + _columns(_MIGRATION_COLUMNS)
        + f"\nENGINE = {engine}\nORDER BY version",
    ]


def _v1_events(cluster: str | None) -> list[str]:
    """Version 1: the events table.

    Single node: a MergeTree that deduplicates inserts by token. Cluster: the rows live in
    ``events_local`` (ReplicatedMergeTree, one Keeper path per shard) and ``events`` is a
    Distributed table over it, sharded by unit id, so that all the events of one visitor
    or agent session are on one shard and per-unit aggregation needs no shuffle.
    """
    columns = _columns(_EVENT_COLUMNS_V1)
    layout = f"PARTITION BY {_EVENTS_PARTITION_BY}\nORDER BY {_EVENTS_ORDER_BY}"
    if cluster is None:
        return [
            f"CREATE TABLE IF NOT EXISTS {EVENTS_TABLE}\n{columns}\nENGINE = MergeTree\n"
            f"{layout}\nSETTINGS non_replicated_deduplication_window = {DEDUPLICATION_WINDOW}"
        ]
    on = _on_cluster(cluster)
    local = f"{DATABASE}.events_local"
    replicated = (
        f"ReplicatedMergeTree('/clickhouse/tables/{{shard}}/{DATABASE}/events_local', "
        "'{replica}')"
    )
    return [
        f"CREATE TABLE IF NOT EXISTS {local}{on}\n{columns}\nENGINE = {replicated}\n{layout}\n"
        f"SETTINGS replicated_deduplication_window = {DEDUPLICATION_WINDOW}, "
        f"replicated_deduplication_window_seconds = {_REPLICATED_DEDUPLICATION_SECONDS}",
        f"CREATE TABLE IF NOT EXISTS {EVENTS_TABLE}{on}\n{columns}\n"
        f"ENGINE = Distributed('{cluster}', '{DATABASE}', 'events_local', cityHash64(unit_id))",
    ]


# How many parts of similar size the merge selector lets gather before it merges them
# (ClickHouse's default is 5). The flusher inserts a part every half second under load,
# and with the default the background merges rewrote each row several times over: 75%
# of the ingesting process's ClickHouse CPU. At 20 a row is rewritten about half as often
# (2.8 against 4.5 ms of CPU per 1k rows inserted and merged, bench/RESULTS.md), for
# somewhat more active parts between merges, which the queries of one experiment's range
# do not notice.
MERGE_SELECTOR_BASE = 20


def _v2_merge_selector(cluster: str | None) -> list[str]:
    """Version 2: fewer, larger merges of the events table (`MERGE_SELECTOR_BASE`)."""
    table = EVENTS_TABLE if cluster is None else f"{DATABASE}.events_local"
    return [
        f"ALTER TABLE {table}{_on_cluster(cluster)} "
        f"MODIFY SETTING merge_selector_base = {MERGE_SELECTOR_BASE}"
    ]


# The ids of the stored events (see "Exactly once per event id" above), by workspace so
# that one tenant's ids never hide another's events, then by bucket (the second of the
# event's own time, or the epoch): a lookup names its workspaces, the few buckets of its
# batch and a set of ids, and reads the granules of those buckets that may hold one. The
# granules are small (1,024 rows) because the ids within a bucket are random: each id
# looked up costs one granule. A day's ids are one partition, dropped whole once all its
# rows are past the horizon (ttl_only_drop_parts): no merge rewrites them.
_EVENT_ID_COLUMNS: tuple[tuple[str, str], ...] = (
    ("workspace_id", "LowCardinality(String)"),
    ("bucket", "DateTime('UTC')"),
    ("event_id", "String"),
    ("recorded_at", "DateTime('UTC') DEFAULT now()"),
)
_EVENT_ID_GRANULE_ROWS = 1024


def _event_id_settings() -> str:
    """The event ids table's settings in both modes: small granules, whole partitions
    dropped, and the events table's fewer, larger merges (it gets a part per segment)."""
    return (
        f"index_granularity = {_EVENT_ID_GRANULE_ROWS}, ttl_only_drop_parts = 1, "
        f"merge_selector_base = {MERGE_SELECTOR_BASE}"
    )


def _v3_event_ids(cluster: str | None) -> list[str]:
    """Version 3: the event ids table. Cluster: ``event_ids_local`` (ReplicatedMergeTree,
    one Keeper path per shard) under a Distributed ``event_ids``, as for the events."""
    columns = _columns(_EVENT_ID_COLUMNS)
    layout = (
        "PARTITION BY toYYYYMMDD(recorded_at)\nORDER BY (workspace_id, bucket, event_id)\n"
        f"TTL recorded_at + INTERVAL {EVENT_ID_HORIZON_DAYS} DAY"
    )
    if cluster is None:
        return [
            f"CREATE TABLE IF NOT EXISTS {EVENT_IDS_TABLE}\n{columns}\nENGINE = MergeTree\n"
            f"{layout}\nSETTINGS {_event_id_settings()}, "
            f"non_replicated_deduplication_window = {DEDUPLICATION_WINDOW}"
        ]
    on = _on_cluster(cluster)
    local = f"{DATABASE}.event_ids_local"
    replicated = (
        f"ReplicatedMergeTree('/clickhouse/tables/{{shard}}/{DATABASE}/event_ids_local', "
        "'{replica}')"
    )
    return [
        f"CREATE TABLE IF NOT EXISTS {local}{on}\n{columns}\nENGINE = {replicated}\n{layout}\n"
        f"SETTINGS {_event_id_settings()}, "
        f"replicated_deduplication_window = {DEDUPLICATION_WINDOW}, "
        f"replicated_deduplication_window_seconds = {_REPLICATED_DEDUPLICATION_SECONDS}",
        f"CREATE TABLE IF NOT EXISTS {EVENT_IDS_TABLE}{on}\n{columns}\n"
        f"ENGINE = Distributed('{cluster}', '{DATABASE}', 'event_ids_local', "
        "cityHash64(workspace_id, event_id))",
    ]


# --- per-unit state (version 4) ------------------------------------------------------------

# A moment after every event: the value of a "first time" column on a row that has none,
# so that min() over a unit's rows ignores it.
_NEVER = "toDateTime64('2299-12-31 23:59:59.999', 3, 'UTC')"
_ENTRY = "kind IN ('exposure', 'task')"
# A unit's first entry as one number: its time (epoch milliseconds) in the high 64 bits and
# cityHash64 of its variant id in the low ones, so that min() gives the variant of the
# earliest entry (same-millisecond entries to two variants: the lower hash). A min of two
# integers merges ~10x faster than argMin's state or a (time, string) tuple, and the
# queries map the hash back to the id (`EXPERIMENT_MARKS_TABLE` holds every variant id).
ENTRY_KEY = (
    "bitShiftLeft(toUInt128(toUnixTimestamp64Milli(received_at)), 64) + cityHash64(variant_id)"
)
_NO_ENTRY = "toUInt128('340282366920938463463374607431768211455')"
UNIT_KEY = "bitShiftLeft(toUInt128(cityHash64(unit_id)), 64) + xxHash64(unit_id)"

UNIT_STATE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("workspace_id", "LowCardinality(String)", "workspace_id"),
    ("experiment_id", "LowCardinality(String)", "experiment_id"),
    # '' on the unit's row (its exposures or tasks), a goal's id on a row of that goal's
    # conversions: every column below is a number, which merges fast.
    ("goal_id", "LowCardinality(String)", "if(kind = 'goal', goal_id, '')"),
    ("unit_id", "String", "unit_id"),
    # The unit id as two 64-bit hashes, which the queries group by: grouping 2.2M units
    # by this stored number took 60% of the time of hashing their ids at query time.
    # Distinct ids of one experiment collide with odds of about n² / 2^129.
    ("unit_key", "SimpleAggregateFunction(any, UInt128)", f"any({UNIT_KEY})"),
    # Entries: exposures (web) and tasks (agent); an experiment gets one of the two.
    ("entries", "SimpleAggregateFunction(sum, UInt64)", f"countIf({_ENTRY})"),
    (
        "first_entry",
        "SimpleAggregateFunction(min, UInt128)",
        f"min(if({_ENTRY}, {ENTRY_KEY}, {_NO_ENTRY}))",
    ),
    # Every counted row's time, for an ended experiment's window.
    ("first_at", "SimpleAggregateFunction(min, DateTime64(3, 'UTC'))", "min(received_at)"),
    ("last_at", "SimpleAggregateFunction(max, DateTime64(3, 'UTC'))", "max(received_at)"),
    # A goal row: the summed value of the goal's rows (a missing value adds 0).
    ("value", "SimpleAggregateFunction(sum, Float64)", "sum(ifNull(value, 0.))"),
    # Agent: successful tasks, the first one's time, and the per-unit sums.
    ("successes", "SimpleAggregateFunction(sum, UInt64)", "countIf(outcome = 'success')"),
    (
        "succeeded_at",
        "SimpleAggregateFunction(min, DateTime64(3, 'UTC'))",
        f"min(if(outcome = 'success', received_at, {_NEVER}))",
    ),
    ("cost", "SimpleAggregateFunction(sum, Float64)", "sum(ifNull(cost, 0.))"),
    ("duration_ms", "SimpleAggregateFunction(sum, Float64)", "sum(ifNull(duration_ms, 0.))"),
    ("turns", "SimpleAggregateFunction(sum, Int64)", "sum(toInt64(ifNull(turns, 0)))"),
    # When the earliest of these rows reached ClickHouse: the backfill copies only the
    # events inserted before the view's first (see _v4_unit_state).
    ("inserted_from", "SimpleAggregateFunction(min, DateTime64(3, 'UTC'))", "min(inserted_at)"),
    # When the latest did: the units whose state changed since a summary was kept
    # (`analytics.summaries`) are those with a later one. Version 5 added it.
    ("inserted_to", "SimpleAggregateFunction(max, DateTime64(3, 'UTC'))", "max(inserted_at)"),
    # How many events the row folds in: a summary covers the experiment's events once
    # their state is visible, whatever other tables show (version 5 added it).
    ("events", "SimpleAggregateFunction(sum, UInt64)", "count()"),
)
"""The per-unit state of `UNIT_STATE_TABLE`: (name, type, expression over event rows
grouped by workspace, experiment, goal and unit). ``analytics.aggregates`` reads it."""

# Only rows of an experiment that the results count: exposures, goals and tasks.
_STATE_ROWS = "experiment_id != '' AND kind IN ('exposure', 'goal', 'task')"


# Version 4 created the state with these; version 5 added inserted_to and events.
_V4_STATE_COLUMNS = UNIT_STATE_COLUMNS[:-2]


def unit_state_select(
    source: str, where: str = "", columns: tuple[tuple[str, str, str], ...] = UNIT_STATE_COLUMNS
) -> str:
    """The per-unit state of the event rows of ``source`` (the events table's name) that
    the results count and ``where`` selects: what the view writes per inserted block, the
    migration per stored event, and an ended experiment's window per unit."""
    exprs = ",\n    ".join(f"{expr} AS {name}" for name, _, expr in columns)
    condition = _STATE_ROWS + (f" AND {where}" if where else "")
    return (
        f"SELECT\n    {exprs}\nFROM {source}\nWHERE {condition}\n"
        "GROUP BY workspace_id, experiment_id, goal_id, unit_id"
    )


# The backfill of existing events goes to partition 1 and the view writes partition 0, so
# the migration can drop its own earlier, interrupted backfill and start again.
_UNIT_STATE_EXTRA = (("backfill", "UInt8 DEFAULT 0"),)
# An experiment's unit rows are one range, each goal's rows another.
_UNIT_STATE_ORDER_BY = "(workspace_id, experiment_id, goal_id, unit_id)"

_MARK_COLUMNS: tuple[tuple[str, str], ...] = (
    ("workspace_id", "LowCardinality(String)"),
    ("experiment_id", "LowCardinality(String)"),
    ("variant_id", "LowCardinality(String)"),
    ("events", "SimpleAggregateFunction(sum, UInt64)"),
    ("last_inserted_at", "SimpleAggregateFunction(max, DateTime64(3, 'UTC'))"),
)
_MARKS_SELECT = (
    "SELECT workspace_id, experiment_id, variant_id, count() AS events, max(inserted_at) AS "
    "last_inserted_at\nFROM {source}\nWHERE experiment_id != ''{where}\n"
    "GROUP BY workspace_id, experiment_id, variant_id"
)


_BEFORE_THE_VIEW = (
    f"inserted_at < (SELECT ifNull(minOrNull(inserted_from), {_NEVER}) "
    f"FROM {UNIT_STATE_TABLE} WHERE backfill = 0)"
)


def _v4_unit_state(cluster: str | None) -> list[str]:
    """Version 4: per-unit state kept by a materialized view, and per-experiment marks.

    ``unit_state`` (AggregatingMergeTree) holds, once merged, one row per unit of an
    experiment and one per goal it converted on; `analytics.aggregates` computes results and
    timeline from it, so their cost follows units, not events. ``experiment_marks`` counts
    each experiment's rows and their last insert time: a point query that tells a cache
    whether anything changed. Both are fed by views on the events table, deduplicated like
    it (a retried segment reaches them once, `insert_settings`). The events stored before
    the view are copied into the state (partition ``backfill = 1``, dropped first if an
    earlier run was cut short), and counted in the marks.

    Cluster: like the events, ``*_local`` replicated tables on every shard fed by views
    on ``events_local`` (a unit's events are all on its shard, so its state is too) and
    Distributed tables of the same names as on a single node for reading.
    """
    on = _on_cluster(cluster)
    state_columns = _columns(
        tuple((name, kind) for name, kind, _ in _V4_STATE_COLUMNS) + _UNIT_STATE_EXTRA
    )
    marks_columns = _columns(_MARK_COLUMNS)
    state_layout = f"PARTITION BY backfill\nORDER BY {_UNIT_STATE_ORDER_BY}"
    marks_layout = "ORDER BY (workspace_id, experiment_id, variant_id)"
    if cluster is None:
        dedup = f"SETTINGS non_replicated_deduplication_window = {DEDUPLICATION_WINDOW}"
        state, marks, events = UNIT_STATE_TABLE, EXPERIMENT_MARKS_TABLE, EVENTS_TABLE
        tables = [
            f"CREATE TABLE IF NOT EXISTS {state}\n{state_columns}\n"
            f"ENGINE = AggregatingMergeTree\n{state_layout}\n{dedup}",
            f"CREATE TABLE IF NOT EXISTS {marks}\n{marks_columns}\n"
            f"ENGINE = AggregatingMergeTree\n{marks_layout}\n{dedup}",
        ]
    else:
        dedup = (
            f"SETTINGS replicated_deduplication_window = {DEDUPLICATION_WINDOW}, "
            f"replicated_deduplication_window_seconds = {_REPLICATED_DEDUPLICATION_SECONDS}"
        )
        state, marks = f"{UNIT_STATE_TABLE}_local", f"{EXPERIMENT_MARKS_TABLE}_local"
        events = f"{DATABASE}.events_local"

        def replicated(name: str) -> str:
            return (
                f"ReplicatedAggregatingMergeTree('/clickhouse/tables/{{shard}}/{DATABASE}/"
                f"{name}', '{{replica}}')"
            )

        def distributed(name: str) -> str:
            return f"Distributed('{cluster}', '{DATABASE}', '{name}', cityHash64(unit_id))"

        tables = [
            f"CREATE TABLE IF NOT EXISTS {state}{on}\n{state_columns}\n"
            f"ENGINE = {replicated('unit_state_local')}\n{state_layout}\n{dedup}",
            f"CREATE TABLE IF NOT EXISTS {UNIT_STATE_TABLE}{on}\n{state_columns}\n"
            f"ENGINE = {distributed('unit_state_local')}",
            f"CREATE TABLE IF NOT EXISTS {marks}{on}\n{marks_columns}\n"
            f"ENGINE = {replicated('experiment_marks_local')}\n{marks_layout}\n{dedup}",
            # The views write each shard's marks; a read adds them up.
            f"CREATE TABLE IF NOT EXISTS {EXPERIMENT_MARKS_TABLE}{on}\n{marks_columns}\n"
            f"ENGINE = Distributed('{cluster}', '{DATABASE}', 'experiment_marks_local', rand())",
        ]
    names = ", ".join(name for name, _, _ in _V4_STATE_COLUMNS)
    return [
        *tables,
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {DATABASE}.unit_state_mv{on} TO {state}\n"
        f"AS {unit_state_select(events, columns=_V4_STATE_COLUMNS)}",
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {DATABASE}.experiment_marks_mv{on} TO {marks}\n"
        f"AS {_MARKS_SELECT.format(source=events, where='')}",
        # The backfill, idempotent: a migration cut short runs again from the drop. It
        # copies the events inserted before the earliest insert the view saw (all of
        # them while it saw none), so neither an insert since the view was created nor a
        # second run counts anything twice.
        f"ALTER TABLE {state}{on} DROP PARTITION 1",
        # Not deduplicated: a second run after a drop writes the same blocks again (26.9
        # leaves INSERT SELECT undeduplicated anyway; older servers need the setting).
        # In a cluster the Distributed table routes each unit's state to its shard, and
        # the statement returns once every shard has it.
        f"INSERT INTO {UNIT_STATE_TABLE} ({names}, backfill)\n"
        "SETTINGS insert_deduplicate = 0, distributed_foreground_insert = 1\n"
        "SELECT *, 1 FROM ("
        + unit_state_select(EVENTS_TABLE, _BEFORE_THE_VIEW, _V4_STATE_COLUMNS)
        + ")",
        # The marks of the same events: their variant ids name the state's hashes. A
        # second run adds them again, which only changes the version (read again).
        f"INSERT INTO {EXPERIMENT_MARKS_TABLE}\n"
        "SETTINGS insert_deduplicate = 0, distributed_foreground_insert = 1\n"
        + _MARKS_SELECT.format(source=EVENTS_TABLE, where=f" AND {_BEFORE_THE_VIEW}"),
    ]


# What one unit counts for in its experiment's summary, as last counted
# (`analytics.summaries`): its arm (the hash of its variant id), when it entered and first
# converted (epoch milliseconds), its goal bits, and its sums: per goal (web) or its tasks,
# successes, cost, duration and turns (agent). ``version`` is the refresh that wrote it.
UNIT_RESULT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("workspace_id", "LowCardinality(String)"),
    ("experiment_id", "LowCardinality(String)"),
    ("unit_key", "UInt128"),
    ("version", "UInt64"),
    ("arm", "UInt64"),
    ("entered_ms", "UInt64"),
    ("converted_ms", "UInt64"),
    ("goal_bits", "UInt64"),
    ("goal_values", "Array(Float64)"),
    ("tasks", "UInt64"),
    ("successes", "UInt64"),
    ("cost", "Float64"),
    ("duration_ms", "Float64"),
    ("turns", "Float64"),
)
# The units one refresh recounts, written before it reads their previous contributions.
_SUMMARY_UNIT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("workspace_id", "LowCardinality(String)"),
    ("experiment_id", "LowCardinality(String)"),
    ("version", "UInt64"),
    ("unit_key", "UInt128"),
)
# An experiment's summary as of a refresh: ``events`` is the count of its state's events
# it covers (the sum of `UNIT_STATE_TABLE`'s ``events``),
# ``refresh_ms`` how long its refresh took (a reader waits for the next about that long),
# ``layout`` its kind and goals, ``state`` its counters (msgpack); ``pending`` marks a
# refresh that began and has not finished (a crash in between: rebuilt from scratch).
_SUMMARY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("workspace_id", "LowCardinality(String)"),
    ("experiment_id", "LowCardinality(String)"),
    ("version", "UInt64"),
    ("pending", "UInt8"),
    ("events", "UInt64"),
    ("refresh_ms", "UInt32"),
    ("layout", "String"),
    ("state", "String"),
)
# A unit's shard is its events' (the high half of UNIT_KEY is cityHash64(unit_id)).
_UNIT_SHARD = "toUInt64(bitShiftRight(unit_key, 64))"


def _v5_summaries(cluster: str | None) -> list[str]:
    """Version 5: experiment summaries kept up to date from the units that changed.

    ``unit_state`` gains ``inserted_to`` and ``events`` (its view now writes them): a
    refresh finds the units with rows inserted since the previous one, and a summary
    says how many of the state's events it covers. ``unit_results``
    (ReplacingMergeTree by refresh version) holds what each unit last counted for,
    ``summary_units`` the units of each refresh (kept a day), and
    ``experiment_summaries`` each experiment's counters: a refresh subtracts the changed
    units' previous contributions and adds their new ones (`analytics.summaries`), so
    reading results costs what changed, not the experiment's size.

    Cluster: ``*_local`` replicated tables on every shard, a unit's rows on the shard of
    its events, and Distributed tables of the same names for reading and writing.
    """
    on = _on_cluster(cluster)
    state_tables = (
        [UNIT_STATE_TABLE] if cluster is None else [f"{UNIT_STATE_TABLE}_local", UNIT_STATE_TABLE]
    )
    events = EVENTS_TABLE if cluster is None else f"{DATABASE}.events_local"
    # Rows written before this version count as inserted when they first were, and as
    # no event: a summary and its readers count the same rows.
    statements = [
        f"ALTER TABLE {table}{on} ADD COLUMN IF NOT EXISTS {column}"
        for table in state_tables
        for column in (
            "inserted_to SimpleAggregateFunction(max, DateTime64(3, 'UTC')) DEFAULT inserted_from",
            "events SimpleAggregateFunction(sum, UInt64) DEFAULT 0",
        )
    ]
    statements.append(
        f"ALTER TABLE {DATABASE}.unit_state_mv{on} MODIFY QUERY {unit_state_select(events)}"
    )
    layouts = (
        # Small granules: a refresh reads the rows of a few thousand units among millions.
        (UNIT_RESULTS_TABLE, UNIT_RESULT_COLUMNS, "ReplacingMergeTree", "(version)",
         "ORDER BY (workspace_id, experiment_id, unit_key)\nSETTINGS index_granularity = 256",
         _UNIT_SHARD),
        (SUMMARY_UNITS_TABLE, _SUMMARY_UNIT_COLUMNS, "MergeTree", "",
         "ORDER BY (workspace_id, experiment_id, version)\n"
         "TTL toDateTime(intDiv(version, 1000)) + INTERVAL 1 DAY", _UNIT_SHARD),
        (SUMMARIES_TABLE, _SUMMARY_COLUMNS, "ReplacingMergeTree", "(version)",
         "ORDER BY (workspace_id, experiment_id)", "rand()"),
    )  # fmt: skip
    for name, columns, engine, arguments, layout, shard in layouts:
        block = _columns(columns)
        if cluster is None:
            statements.append(
                f"CREATE TABLE IF NOT EXISTS {name}\n{block}\nENGINE = {engine}{arguments}\n"
                f"{layout}"
            )
            continue
        local = name.split(".")[1] + "_local"
        keeper = f"'/clickhouse/tables/{{shard}}/{DATABASE}/{local}', '{{replica}}'"
        version = f", {arguments[1:-1]}" if arguments else ""
        statements += [
            f"CREATE TABLE IF NOT EXISTS {name}_local{on}\n{block}\n"
            f"ENGINE = Replicated{engine}({keeper}{version})\n{layout}",
            f"CREATE TABLE IF NOT EXISTS {name}{on}\n{block}\n"
            f"ENGINE = Distributed('{cluster}', '{DATABASE}', '{local}', {shard})",
        ]
    return statements


# The schema versions, oldest first: MIGRATIONS[i] is version i + 1. Append, never edit
# or reorder a released one. Every statement must be safe to run twice (IF NOT EXISTS,
# ADD COLUMN IF NOT EXISTS, ...): a crash between a migration's DDL and its record in
# schema_migrations runs it again. In cluster mode a change to the events columns must
# alter both events_local and events, ON CLUSTER.
MIGRATIONS: tuple[Migration, ...] = (
    _v1_events,
    _v2_merge_selector,
    _v3_event_ids,
    _v4_unit_state,
    _v5_summaries,
)


def ddl_statements(cluster: str | None = None) -> list[str]:
    """Every DDL statement `migrate` would run on an empty server, in order.

    ``cluster`` is a cluster name from the server's config (None on a single node).
    Raises ValueError for a name that is not one.
    """
    _check_cluster(cluster)
    statements = _bootstrap(cluster)
    for migration in MIGRATIONS:
        statements.extend(migration(cluster))
    return statements


# --- applying it -----------------------------------------------------------------------


def _applied_versions(client: Client) -> set[int]:
    result = client.query(f"SELECT DISTINCT version FROM {MIGRATIONS_TABLE}")
    return {int(row[0]) for row in result.result_rows}


def schema_version(client: Client) -> int:
    """The newest schema version recorded in the warehouse; 0 before the first `migrate`."""
    exists = client.command(f"EXISTS TABLE {MIGRATIONS_TABLE}")
    if str(exists).strip() != "1":
        return 0
    return max(_applied_versions(client), default=0)


def migrate(client: Client, cluster: str | None = None) -> int:
    """Create the database if it is missing and apply the migrations not yet applied.

    Each applied version is recorded in ``splitedge.schema_migrations``; running it again
    does nothing. Returns the schema version now in the warehouse (which is newer than
    ``len(MIGRATIONS)`` when a newer release has already migrated it). ``cluster`` runs
    every statement ``ON CLUSTER`` with replicated and distributed tables; raises
    ValueError for an invalid name and clickhouse-connect's errors when ClickHouse
    refuses a statement.
    """
    _check_cluster(cluster)
    for statement in _bootstrap(cluster):
        client.command(statement)
    applied = _applied_versions(client)
    for version, migration in enumerate(MIGRATIONS, start=1):
        if version in applied:
            continue
        for statement in migration(cluster):
            client.command(statement)
        client.command(f"INSERT INTO {MIGRATIONS_TABLE} (version) VALUES ({version})")
        applied.add(version)
    return max(applied, default=0)
