"""The control-plane store: one SQLite file, and the only code that holds SQL.

`Store` is a connection (`edge.control.store.connection`) with the queries of every
aggregate mixed in, one module each: workspaces, API keys, sites, experiments, rate
windows, loops, schedules, ideas, webhooks, credits, audit, edge tokens and console
sessions. A caller opens one per thread and calls typed methods that take and return
Structs. What the edge serves is read through `edge.control.snapshot.load_snapshot`; the
schema's triggers (`edge.control.store.schema`) bump the config version on every change
that affects it.
"""

from __future__ import annotations

from edge.control.store.api_keys import ApiKeyQueries
from edge.control.store.audit import AuditQueries
from edge.control.store.console_sessions import ConsoleSessionQueries
from edge.control.store.credits import CreditQueries
from edge.control.store.edge_tokens import EdgeTokenQueries
from edge.control.store.experiments import ExperimentQueries
from edge.control.store.ideas import IdeaQueries
from edge.control.store.loops import LoopQueries
from edge.control.store.rate_windows import RateWindowQueries
from edge.control.store.schedules import ScheduleQueries
from edge.control.store.sites import SiteQueries, normalize_site_url
from edge.control.store.webhooks import WebhookQueries
from edge.control.store.workspaces import WorkspaceQueries

__all__ = ["Store", "normalize_site_url"]


class Store(
    WorkspaceQueries,
    ApiKeyQueries,
    SiteQueries,
    ExperimentQueries,
    RateWindowQueries,
    LoopQueries,
    ScheduleQueries,
    IdeaQueries,
    WebhookQueries,
    CreditQueries,
    AuditQueries,
    EdgeTokenQueries,
    ConsoleSessionQueries,
):
    """A connection to the store file with every aggregate's queries. One per thread;
    cheap to open."""
