"""Sinks: where the spool's drain (`edge.ingest.flusher.SpoolDrain`) delivers segments.

A sink stores the rows of one finished segment under the segment's name, its token, and
stores a token only once: delivering it again (a retry after a lost answer, a replay
after a crash) is a no-op. `ClickHouseSink` inserts into ClickHouse with the token as
the insert's ``insert_deduplication_token`` (settings from
`analytics.warehouse.insert_settings`); an edge node without ClickHouse relays to the
control plane instead (`edge.ingest.relay.SegmentRelay`).

`ClickHouseSink` also stores an event id only once: before the insert it drops the rows
whose ``(workspace_id, event_id)`` repeats within the segment or is already recorded in
``splitedge.event_ids``, and records the ids of the rows it inserted after the insert
(see "Exactly once per event id" in `analytics.warehouse`). A retried client batch,
which arrives in another segment, is then stored once.

A sink that refuses a segment for good (its content is wrong, retrying cannot help)
raises `SegmentRejected`; one that asks to be retried later raises `SinkBusy`; any other
error is a failure the drain retries with backoff.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client

from analytics import warehouse
from edge.errors import SplitedgeError

__all__ = ["ClickHouseSink", "SegmentRejected", "SegmentSink", "SinkBusy"]


class SegmentRejected(SplitedgeError):
    """The sink refuses this segment for good: its content is at fault, not the sink's
    state, so no retry can succeed."""

    code = "segment_rejected"


class SinkBusy(SplitedgeError):
    """The sink answers but asks to be retried in ``delay`` seconds (e.g. an HTTP 503 or
    429 with Retry-After; fractions kept, unlike the whole seconds of ``retry_after``)."""

    code = "sink_busy"

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


class SegmentSink(Protocol):
    """Where a `SpoolDrain` sends the spool's segments. The drain calls it from one thread
    at a time: `open` before the first `deliver`, and again after any failure (which
    `close`s it first); `check` when nothing was delivered for a while."""

    def describe(self) -> str:
        """Where the segments go, for logs, without secrets (``ClickHouse at http://ch``)."""
        ...

    def open(self) -> None:
        """Connect; raise when the sink cannot be reached."""
        ...

    def deliver(self, table: pa.Table, token: str) -> int:
        """Store the rows of the segment named ``token``; return only once they are
        durable there. Delivering a token again must be a no-op (exactly once). Returns
        how many rows were not stored because their event was stored already."""
        ...

    def check(self) -> None:
        """Raise when the sink no longer answers."""
        ...

    def close(self) -> None:
        """Drop the connection."""
        ...


class ClickHouseSink:
    """Inserts segments into a ClickHouse table with ``insert_arrow``, idempotently.

    ``prepare(client)`` runs after every (re)connect, before the first insert on that
    client (pass ``warehouse.migrate``). ``connect(dsn)`` makes a client
    (clickhouse-connect by default); ``insert_settings(token)`` gives the settings of the
    idempotent insert of the segment named ``token``.
    """

    def __init__(
        self,
        dsn: str,
        *,
        table: str = warehouse.EVENTS_TABLE,
        prepare: Callable[[Client], object] | None = None,
        insert_settings: Callable[[str], Mapping[str, object]] = warehouse.insert_settings,
        connect: Callable[[str], Client] = warehouse.connect,
    ) -> None:
        self.dsn = dsn
        self.table = table
        self.prepare = prepare
        self.insert_settings = insert_settings
        self._connect = connect
        self._client: Client | None = None

    def describe(self) -> str:
        """ClickHouse and its DSN without a password."""
        scheme, sep, rest = self.dsn.partition("://")
        if "@" in rest:
            rest = rest.rsplit("@", 1)[1]
        return f"ClickHouse at {scheme}{sep}{rest}"

    def open(self) -> None:
        client = self._connect(self.dsn)
        try:
            if self.prepare is not None:
                self.prepare(client)
        except BaseException:
            warehouse.close_quietly(client)
            raise
        self._client = client

    def deliver(self, table: pa.Table, token: str) -> int:
        client = self._opened()
        fresh, ids = _unrecorded_rows(client, table)
        if fresh.num_rows:
            # Events first, then their ids: ids recorded without their events would lose
            # the events, while events without their ids are found again on a replay and
            # inserted under the same token, which ClickHouse drops.
            client.insert_arrow(self.table, fresh, settings=dict(self.insert_settings(token)))
            client.insert_arrow(
                warehouse.EVENT_IDS_TABLE,
                ids,
                settings=dict(self.insert_settings(warehouse.event_ids_token(token))),
            )
        return int(table.num_rows - fresh.num_rows)

    def check(self) -> None:
        if not self._opened().ping():
            raise ConnectionError(f"{self.describe()} does not answer a ping")

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            warehouse.close_quietly(client)

    def _opened(self) -> Client:
        if self._client is None:
            raise ConnectionError(f"{self.describe()} is not connected")
        return self._client


def _unrecorded_rows(client: Client, table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """The rows of a segment whose event is not stored yet, and their rows of
    ``splitedge.event_ids``: the first of each ``(workspace_id, event_id)`` in the
    segment, unless that pair is recorded. The result depends only on the segment and the
    ids recorded, so a replay computes it again exactly. Event ids are never empty (the
    ingest requires or makes one)."""
    table = _first_of_each_id(table)
    ids = pa.table({
        "workspace_id": table["workspace_id"].cast(pa.string()),
        "bucket": warehouse.event_id_buckets(table["client_ts"], table["received_at"]),
        "event_id": table["event_id"],
    })  # fmt: skip
    found = warehouse.recorded_event_ids(client, ids)
    if not found:
        return table, ids
    # Workspace ids hold no NUL, so the joined pair names one (workspace, event id).
    pairs = pc.binary_join_element_wise(ids["workspace_id"], ids["event_id"], "\0")
    recorded = pc.is_in(pairs, value_set=pa.array([f"{w}\0{e}" for w, e in found]))
    keep = pc.invert(recorded)
    return table.filter(keep), ids.filter(keep)


def _first_of_each_id(table: pa.Table) -> pa.Table:
    """The segment without its repeated events: the first row of each ``(workspace_id,
    event_id)``, in the segment's order."""
    if pc.count_distinct(table.column("event_id")).as_py() == table.num_rows:
        return table  # no id twice, whatever the workspaces: the usual case
    keys = pa.table({
        "workspace_id": table.column("workspace_id").cast(pa.string()),
        "event_id": table.column("event_id"),
        "row": pa.array(np.arange(table.num_rows, dtype=np.int64)),
    })  # fmt: skip
    first = keys.group_by(["workspace_id", "event_id"], use_threads=False).aggregate(
        [("row", "min")]
    )
    rows = first.column("row_min")
    return table.take(rows.take(pc.sort_indices(rows)))
