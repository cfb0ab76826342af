"""The summary keeper: keeps every running experiment's summary (`analytics.summaries`)
up to date, on a thread of the server's parent process, the one writer of summaries.

Each pass reads every experiment's marks (one small query) and refreshes the running
experiments whose events changed since their summary, and once more `SETTLE_MS` after
the last insert it saw, for an insert that was still in flight during the refresh.
Results readers (`analytics.summaries.SummaryReader`) wait for it, so a refresh costs
what changed, and a read costs the summary."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from analytics import summaries, warehouse
from analytics.summaries import Kept
from edge.control.results_api import experiment_spec
from edge.control.store import Store
from edge.periodic import PeriodicPass

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["SETTLE_MS", "SummaryKeeper"]

log = logging.getLogger("splitedge.server")

SETTLE_MS = 2_000
"""How long after an insert began it is surely visible: a summary refreshed sooner after
the last insert is refreshed again once this has passed."""

_MARKS = (
    "SELECT workspace_id, experiment_id, sum(events), "
    "toUnixTimestamp64Milli(max(last_inserted_at)), toUnixTimestamp64Milli(now64(3)) "
    f"FROM {warehouse.EXPERIMENT_MARKS_TABLE} GROUP BY workspace_id, experiment_id"
)


class SummaryKeeper(PeriodicPass):
    """Refreshes the running experiments' summaries every ``interval`` seconds, with its
    own ClickHouse client (opened at the first pass, again after a failure)."""

    def __init__(self, store_path: Path, dsn: str, interval: float = 0.25) -> None:
        super().__init__("summary keeper", interval, at_start=True)
        self.store_path = store_path
        self.dsn = dsn
        self.refreshes = 0
        self._client: Any = None
        self._kept: dict[tuple[str, str], Kept | None] = {}

    def run_pass(self) -> None:
        if self._client is None:
            client = warehouse.connect(self.dsn)
            # The flusher migrates the schema when it first connects; until then, wait.
            if warehouse.schema_version(client) < len(warehouse.MIGRATIONS):
                warehouse.close_quietly(client)
                return
            self._client = client
        try:
            self.keep_up(self._client)
        except Exception:
            warehouse.close_quietly(self._client)
            self._client = None
            raise

    def keep_up(self, client: Any) -> None:
        """One pass: refresh each running experiment whose summary is behind its events;
        one experiment's failure is logged and does not stop the others."""
        marks = {
            (ws, exp): (events, last_inserted, now)
            for ws, exp, events, last_inserted, now in client.query(_MARKS).result_rows
        }
        store = Store(self.store_path)
        try:
            records = store.running_experiment_records()
        finally:
            store.close()
        for record in records:
            key = (record.workspace_id, record.id)
            if key not in marks:
                continue  # no event yet
            spec = experiment_spec(record)
            if key not in self._kept:
                self._kept[key] = summaries.kept_summary(client, spec)
            kept = self._kept[key]
            events, last_inserted, now = marks[key]
            if kept is not None and kept.layout == summaries.layout_of(spec):
                settled = kept.version >= last_inserted + SETTLE_MS
                if kept.events >= events and (settled or now < last_inserted + SETTLE_MS):
                    continue
            try:
                self._kept[key] = summaries.refresh(client, spec, kept)
                self.refreshes += 1
            except Exception:
                self._kept.pop(key, None)  # read again from ClickHouse next pass
                log.exception("summary of experiment %s failed; it is refreshed again next "
                              "pass", record.id)  # fmt: skip
