"""Starting the server: prepare the store and the warehouse once, then run Granian.

Preparation happens in the parent process, before any worker exists: migrations, the
first-start workspace and key, the demo site, and the ClickHouse schema. The parent then
runs the flusher, the one owner of ClickHouse (and of an embedded chDB directory): the
workers only write spool segments, so any number of them can ingest in embedded mode.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from analytics import warehouse
from analytics.gateway import SOCKET_NAME, WarehouseGateway, query_runner
from analytics.summaries import SummaryReader
from edge.authoring import configured_author
from edge.control import loops, plans
from edge.control.bootstrap import first_start
from edge.control.decisions import Decider
from edge.control.results_api import ResultsSource
from edge.control.scheduler import Scheduler
from edge.control.secret_box import SecretBox, seal_stored_secrets
from edge.control.store import Store
from edge.control.summary_keeper import SummaryKeeper
from edge.control.webhook_dispatch import RetryPolicy, WebhookDispatcher
from edge.demo import ensure_demo_site
from edge.ingest.flusher import Flusher
from edge.outbound import OutboundGuard
from edge.processes import require_free_port, secure_data_dir
from edge.settings import Settings
from edge.workers import serve_workers

__all__ = ["prepare", "run"]

log = logging.getLogger("splitedge.server")


def prepare(settings: Settings) -> None:
    """Migrate the store, create what a first start needs, check the warehouse."""
    store = Store(settings.store_path)
    try:
        seal_stored_secrets(store, SecretBox(settings.store_path))
        workspace, issued = first_start(store)
        base_url = settings.public_url or f"http://{settings.host}:{settings.port}"
        demo_key = ensure_demo_site(store, workspace.id, base_url)
    finally:
        store.close()
    if issued is not None:
        print(
            "\n  splitedge: created workspace 'default'. Its admin API key, shown this once:\n\n"
            f"    {issued.key}\n\n  Store it now; only its hash is kept.\n",
            flush=True,
        )
    if demo_key is not None:
        print(f"  demo: {base_url}/demo  (snippet {base_url}/s/{demo_key}.js)\n", flush=True)
    try:
        client = warehouse.connect(settings.clickhouse_dsn)
        try:
            schema = warehouse.migrate(client, cluster=settings.clickhouse_cluster or None)
            version = warehouse.ping(client)
        finally:
            client.close()
    except Exception as exc:  # the edge serves and spools while ClickHouse is away
        log.warning("ClickHouse at %s is unavailable (%s); events are spooled until it is "
                    "back", settings.clickhouse_dsn, exc)  # fmt: skip
        return
    print(f"  ClickHouse {version} at {settings.clickhouse_dsn} (schema v{schema})", flush=True)


def run(settings: Settings) -> int:
    """Prepare, start the flusher (and, for embedded chDB, the workers' query gateway),
    then serve until SIGTERM or SIGINT. Granian drains the workers (each spools what it
    holds); then the gateway stops and the flusher makes a last pass and stops.

    Raises `edge.processes.PortInUse` before touching anything when another process
    listens on the address."""
    require_free_port(settings.host, settings.port)
    secure_data_dir(Path(settings.data_dir), settings.store_path)
    prepare(settings)
    shutil.rmtree(settings.run_dir, ignore_errors=True)
    settings.run_dir.mkdir(parents=True)
    cluster = settings.clickhouse_cluster or None
    flusher = Flusher(
        settings.spool_dir,
        settings.clickhouse_dsn,
        prepare=lambda client: warehouse.migrate(client, cluster=cluster),
    )
    flusher.start()
    # Webhooks are sent from this process only, whatever the number of workers.
    guard = OutboundGuard.from_settings(settings)
    dispatcher = WebhookDispatcher(
        settings.store_path, RetryPolicy.from_settings(settings), guard=guard
    )
    dispatcher.start()
    # Workers cannot open an embedded chDB directory this process holds: they query
    # through it (analytics.gateway).
    gateway = None
    if settings.clickhouse_dsn.startswith("chdb:"):
        gateway = WarehouseGateway(settings.run_dir / SOCKET_NAME, settings.clickhouse_dsn)
        gateway.start()
    # Running experiments' summaries, written from this process only; results read them.
    smallest = settings.summary_from_events
    keeper = SummaryKeeper(settings.store_path, settings.clickhouse_dsn, smallest)
    keeper.start()
    # Conclusions and guardrail stops, decided once per server, queried like a worker.
    run = query_runner(settings.clickhouse_dsn, settings.run_dir)
    source = ResultsSource(settings.store_path, run, summaries=SummaryReader(run, smallest))
    decider = Decider(source, settings.decision_interval)
    decider.start()
    # Loops and idea schedules, ticked once per server like the decisions.
    scheduler = None
    if settings.tick_interval > 0:
        scheduler = Scheduler(
            settings.store_path,
            loops.source_results(source),
            configured_author(guard),
            settings.tick_interval,
            plans.plan_limits(plans.load_plans(settings.limits)),
        )
        scheduler.start()
    try:
        serve_workers(settings, "edge.app:create_app")
    finally:
        decider.stop()
        keeper.stop()
        if scheduler is not None:
            scheduler.stop()
        if gateway is not None:
            gateway.stop()
        flusher.stop()
        dispatcher.stop()
    return 0
