"""Test support: seeded stores, real servers (`splitedge serve` on loopback, stopped by PID),
the events the API tests send them, and the experiment specs of the results tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import httpx
import msgspec
import pyarrow as pa

from analytics import warehouse
from analytics.aggregates import (
    ArmAggregates,
    ExperimentSpec,
    GoalAggregates,
    GoalSpec,
    VariantSpec,
)
from analytics.results import ExperimentResults, compute_results
from edge.config import MutationConfig
from edge.control.records import IssuedKey, NewExperiment, NewGoal, NewVariant, Site
from edge.control.store import Store
from edge.ingest.schema import EVENT_SCHEMA
from edge.outbound import OutboundGuard

LOOPBACK_ALLOWED = OutboundGuard(allow_private=True)
"""The guard of a server run with --allow-private-targets: the in-process tests fetch
fixture pages on loopback."""


MCP_INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}
"""An MCP client's first request, as a JSON-RPC body for a plain HTTP POST."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A running ``splitedge serve`` process."""

    def __init__(self, proc: subprocess.Popen[str], base_url: str, log: Path) -> None:
        self.proc = proc
        self.base_url = base_url
        self.log = log

    def output(self) -> str:
        return self.log.read_text()

    def kill(self) -> None:
        """SIGKILL the server and its workers (its whole process group), no goodbyes."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM by PID and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"server ignored SIGTERM:\n{self.output()}") from None
        return self.proc.returncode


@contextmanager
def running_server(
    data_dir: Path,
    workers: int = 1,
    env: dict[str, str] | None = None,
    args: Sequence[str] = (),
    port: int | None = None,
    command: str = "serve",
    until_ready: bool = True,
) -> Iterator[Server]:
    """Start ``splitedge serve`` (or ``command``, e.g. ``edge``) on a free loopback port
    (or ``port``: a restart on the port of an earlier run); wait for /readyz (unless not
    ``until_ready``); stop it after."""
    port = free_port() if port is None else port
    log = data_dir.parent / f"server-{port}.log"
    cmd = [
        sys.executable, "-m", "edge.cli", command,
        "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers), "--data-dir", str(data_dir), *args,
    ]  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    try:
        if until_ready:
            wait_ready(server)
        yield server
    finally:
        server.stop()


def wait_ready(server: Server, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise AssertionError(f"server exited early:\n{server.output()}")
        try:
            if httpx.get(server.base_url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server not ready in {timeout}s:\n{server.output()}")


class Seed(msgspec.Struct):
    """What `seed_store` created."""

    workspace_id: str
    key: IssuedKey
    site: Site
    experiment_id: str
    other_key: IssuedKey
    other_site: Site
    variant_ids: list[str]
    goal_id: str
    other_experiment_id: str


def pricing_experiment(workspace_id: str, site_id: str, url_pattern: str | None) -> NewExperiment:
    return NewExperiment(
        workspace_id=workspace_id,
        site_id=site_id,
        name="Pricing headline",
        url_pattern=url_pattern,
        variants=(
            NewVariant(name="Control", weight=50),
            NewVariant(
                name="Bold",
                weight=50,
                changes=(
                    MutationConfig(selector="h1", action="set_content", payload="</script><b>"),
                ),
            ),
        ),
        goals=(NewGoal(name="Buy", type="click", selector=".buy"),),
    )


def variant_and_goal_ids(store: Store, experiment_id: str) -> tuple[list[str], list[str]]:
    """The ids of an experiment's variants (control first) and goals, in their order."""
    return tuple(  # type: ignore[return-value]
        [
            row[0]
            for row in store.conn.execute(
                f"SELECT id FROM {table} WHERE experiment_id = ? ORDER BY position",
                (experiment_id,),
            )
        ]
        for table in ("variants", "goals")
    )


def seed_store(path: Path) -> Seed:
    """A workspace with a site and one running experiment on /pricing, and a second
    workspace with a site and a running experiment of its own."""
    store = Store(path)
    try:
        ws = store.create_workspace("acme")
        key = store.issue_api_key(ws.id)
        site = store.create_site(ws.id, "shop.example.com")
        exp = store.create_experiment(pricing_experiment(ws.id, site.id, "/pricing"))
        store.set_experiment_status(exp, "running")
        other = store.create_workspace("other")
        other_key = store.issue_api_key(other.id)
        other_site = store.create_site(other.id, "https://other.example.org")
        other_exp = store.create_experiment(pricing_experiment(other.id, other_site.id, None))
        store.set_experiment_status(other_exp, "running")
        variants, (goal,) = variant_and_goal_ids(store, exp)
        return Seed(ws.id, key, site, exp, other_key, other_site, variants, goal, other_exp)
    finally:
        store.close()


class EventWarehouse:
    """A chDB client a test inserts events into and queries (its `run` is a
    `analytics.aggregates.QueryRunner`). Rows are given as column -> value: ``defaults``,
    then '' / null for the other columns; each gets a new event id."""

    def __init__(self, client: Any, defaults: dict[str, Any] | None = None) -> None:
        self.client = client
        self.defaults = {"workspace_id": SPEC_WORKSPACE, **(defaults or {})}

    def run(self, sql: str, parameters: dict[str, Any]) -> pa.Table:
        return self.client.query_arrow(sql, parameters=parameters)

    def table(self, rows: list[dict[str, Any]]) -> pa.Table:
        """The rows as an `EVENT_SCHEMA` table (the client's time is the server's)."""
        full = []
        for row in rows:
            base: dict[str, Any] = {f.name: None if f.nullable else "" for f in EVENT_SCHEMA}
            base.update(event_id=uuid.uuid4().hex, **self.defaults)
            base.update(row)
            base["client_ts"] = base["received_at"]
            full.append(base)
        return pa.Table.from_pylist(full, schema=EVENT_SCHEMA)

    def insert(
        self,
        rows: list[dict[str, Any]],
        token: str | None = None,
        inserted_at: datetime | None = None,
        **settings: Any,
    ) -> None:
        """Insert as the flusher does (``token`` names the segment: the same token again
        is a retry); ``inserted_at`` stamps the rows as if ClickHouse took them then."""
        table = self.table(rows)
        if inserted_at is not None:
            stamp = pa.array([inserted_at] * table.num_rows, pa.timestamp("ms", tz="UTC"))
            table = table.append_column("inserted_at", stamp)
        settings = warehouse.insert_settings(token or uuid.uuid4().hex) | settings
        self.client.insert_arrow(warehouse.EVENTS_TABLE, table, settings=settings)

    def count(self, sql: str) -> int:
        return int(self.client.command(sql))


def clickhouse_rows(data_dir: Path, sql: str) -> list[tuple[object, ...]]:
    """Run a query on a stopped server's embedded ClickHouse."""
    client = warehouse.connect(f"chdb://{data_dir.resolve() / 'clickhouse'}")
    try:
        return [tuple(row) for row in client.query(sql).result_rows]
    finally:
        client.close()


def metric(server: Server, name: str) -> float:
    """One unlabelled value of the server's /metrics, 0 when absent."""
    for line in httpx.get(server.base_url + "/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def wait_flushed(server: Server, rows: int, timeout: float = 60) -> None:
    """Wait until the flusher reports ``rows`` events inserted."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metric(server, "splitedge_events_flushed_total") >= rows:
            return
        time.sleep(0.2)
    raise AssertionError(
        f"not flushed in {timeout}s:\n{httpx.get(server.base_url + '/metrics').text}"
    )


def add_experiment(
    store: Store,
    seed: Seed,
    name: str,
    variants: Sequence[str],
    goals: Sequence[NewGoal] = (),
    *,
    kind: Literal["web", "agent"] = "web",
    url_pattern: str | None = None,
    hypothesis: str | None = None,
    start: bool = True,
) -> tuple[str, list[str], list[str]]:
    """An experiment on the seeded site, its variants weighted equally, started unless
    ``start`` is False: its id, and the ids of its variants and goals in their order."""
    experiment_id = store.create_experiment(
        NewExperiment(
            workspace_id=seed.workspace_id,
            site_id=seed.site.id,
            kind=kind,
            name=name,
            url_pattern=url_pattern,
            hypothesis=hypothesis,
            variants=tuple(NewVariant(v, 50) for v in variants),
            goals=tuple(goals),
        )
    )
    if start:
        store.set_experiment_status(experiment_id, "running")
    variant_ids, goal_ids = variant_and_goal_ids(store, experiment_id)
    return experiment_id, variant_ids, goal_ids


# --- events sent through the API ----------------------------------------------------------

# The client timestamp of the events sent: an hour before the run.
SENT_AT_MS = int(time.time() * 1000) - 3_600_000


def exposures(experiment_id: str, variant_id: str, visitors: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "event_id": uuid.uuid4().hex,
            "type": "exposure",
            "visitor_id": visitor,
            "ts": SENT_AT_MS + i,
            "experiment_id": experiment_id,
            "variant_id": variant_id,
            "pathname": "/pricing",
        }
        for i, visitor in enumerate(visitors)
    ]


def goals(
    experiment_id: str, goal_id: str, visitors: list[str], value: float | None = None
) -> list[dict[str, Any]]:
    return [
        {
            "event_id": uuid.uuid4().hex,
            "type": "goal",
            "visitor_id": visitor,
            "ts": SENT_AT_MS + 60_000 + i,
            "experiment_id": experiment_id,
            "goal_id": goal_id,
            "value": value,
            "pathname": "/pricing",
        }
        for i, visitor in enumerate(visitors)
    ]


def web_events(experiment_id: str, variants: list[str], goal_id: str, plan: list[tuple[int, int]],
               prefix: str) -> list[dict[str, Any]]:  # fmt: skip
    """Per variant (units, converted units): exposures, and goals for the first units
    (each converting twice, which counts once)."""
    events: list[dict[str, Any]] = []
    for variant_id, (units, converted) in zip(variants, plan, strict=True):
        visitors = [f"{prefix}-{variant_id[:8]}-{i}" for i in range(units)]
        events += exposures(experiment_id, variant_id, visitors)
        events += goals(experiment_id, goal_id, visitors[:converted], 10.0)
        events += goals(experiment_id, goal_id, visitors[:converted], 5.0)
    return events


def collect(server: Server, public_key: str, events: list[dict[str, Any]]) -> int:
    """Send browser events in batches of 500; returns how many were accepted."""
    accepted = 0
    for i in range(0, len(events), 500):
        answer = httpx.post(
            server.base_url + "/v1/collect",
            json={"public_key": public_key, "events": events[i : i + 500]},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        accepted += answer.json()["data"]["accepted"]
    return accepted


def wait_served(edge: Server, public_key: str, experiment_id: str, timeout: float = 5) -> None:
    """Wait until the edge's snippet for ``public_key`` carries ``experiment_id``: a change
    reaches the workers' config within about a second, not at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if experiment_id in httpx.get(f"{edge.base_url}/s/{public_key}.js").text:
            return
        time.sleep(0.05)
    raise AssertionError(f"the edge did not start serving {experiment_id} in {timeout}s")


def api_get(server: Server, path: str, key: str | None) -> httpx.Response:
    """GET ``path`` with ``key`` as the bearer API key (None: no Authorization header)."""
    return api_call(server, key, "GET", path)


def api_call(
    server: Server, key: str | None, method: str, path: str, body: Any = None
) -> httpx.Response:
    """``method path`` with ``key`` as the bearer API key (None: no Authorization header)
    and ``body``, if any, as JSON."""
    headers = {} if key is None else {"authorization": f"Bearer {key}"}
    return httpx.request(method, server.base_url + path, headers=headers, json=body, timeout=30)


# --- experiment specs of the results tests ------------------------------------------------

SPEC_WORKSPACE = "ws_results"
CONTROL = VariantSpec("v_a", "Control", True, 5000)
BOLD = VariantSpec("v_b", "Bold", False, 5000)
SIGNUP, BUY = GoalSpec("g_signup", "Signup", "click"), GoalSpec("g_buy", "Buy", "custom")


def web_spec(
    exp: str, variants: tuple[VariantSpec, ...] = (CONTROL, BOLD), **kw: Any
) -> ExperimentSpec:
    options: dict[str, Any] = {"status": "running", "goals": (SIGNUP, BUY), **kw}
    return ExperimentSpec(
        id=exp, workspace_id=SPEC_WORKSPACE, kind="web", variants=variants, **options
    )


def agent_spec(exp: str, **kw: Any) -> ExperimentSpec:
    options: dict[str, Any] = {"status": "running", **kw}
    return ExperimentSpec(
        id=exp, workspace_id=SPEC_WORKSPACE, kind="agent", variants=(CONTROL, BOLD), **options
    )


def web_arms(*arms: tuple[int, int]) -> list[ArmAggregates]:
    """(units, signups) per arm, in the order of the spec's variants."""
    ids = ("v_a", "v_b", "v_c")
    return [
        ArmAggregates(ids[i], units, (GoalAggregates("g_signup", conv, 0.0, 0.0, None),))
        for i, (units, conv) in enumerate(arms)
    ]


def decide(*arms: tuple[int, int], **spec: Any) -> ExperimentResults:
    """The results of a web experiment with these (units, signups) per arm."""
    return compute_results(web_spec("exp_rules", **spec), web_arms(*arms))
