"""Test support: seeded stores, and real servers (`splitedge serve` on loopback, stopped by PID)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import msgspec

from edge.config import MutationConfig
from edge.control.store import IssuedKey, NewExperiment, NewGoal, NewVariant, Site, Store


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
) -> Iterator[Server]:
    """Start ``splitedge serve`` on a free loopback port; wait for /readyz; stop it after."""
    port = free_port()
    log = data_dir.parent / f"server-{port}.log"
    cmd = [
        sys.executable, "-m", "edge.cli", "serve",
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


def clickhouse_rows(data_dir: Path, sql: str) -> list[tuple[object, ...]]:
    """Run a query on a stopped server's embedded ClickHouse."""
    from analytics import warehouse

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
