"""Soak with faults: one control plane and two edge nodes on loopback under the Locust mix
(bench/locustfile.py) for a bounded time, with faults injected midway, then checks.

Faults, at fractions of the run:

- at 20%: **ClickHouse unavailable** for a minute (at most 20% of the run). The control
  plane restarts with its embedded ClickHouse held by another process, so its flusher
  cannot insert. The edge nodes relay into the control plane's spool meanwhile.
- at 50%: **an edge node SIGKILLed** and restarted on the same port and data directory.
- at 60%: **config changes**: an experiment of a second site is launched and another
  paused.

Checks, at the end:

- no client saw a 5xx other than a documented 503 with Retry-After (locust's failures);
- every event a client saw acknowledged is in ClickHouse exactly once (by event id);
- both nodes converged on the control plane's final config version.

    .venv/bin/python bench/soak.py [--duration 300] [--users 20] [--dir DIR]

Prints a JSON report and exits 1 when a check fails. ``tests/test_soak.py`` runs a
60-second version.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import msgspec

# Appended, not first: bench/edge.py must not shadow the edge package.
sys.path.append(str(Path(__file__).resolve().parent))
from seed_load import seed  # noqa: E402

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
LOCKER = """
import sys, time, clickhouse_connect
client = clickhouse_connect.get_client(dsn=sys.argv[1])
print("locked", flush=True)
time.sleep(3600)
"""


class SoakReport(msgspec.Struct):
    """What the soak measured and whether each check held."""

    duration_s: float
    requests: int
    failures_5xx: int
    connection_errors: int
    failures_4xx: int
    acknowledged: int
    in_clickhouse_once: int
    missing: int
    duplicated: int
    control_version: int
    node_versions: list[int]
    faults: list[str]
    ok: bool


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A ``splitedge`` server process on a fixed port, in its own process group."""

    def __init__(self, root: Path, name: str, args: list[str], env: dict[str, str]) -> None:
        self.root, self.name, self.args, self.env = root, name, args, env
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "edge.cli", *self.args, "--host", "127.0.0.1",
               "--port", str(self.port)]  # fmt: skip
        env = {**os.environ, **self.env}
        with (self.root / f"{self.name}.log").open("ab") as log:  # the child keeps a copy
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: see {self.root / self.name}.log")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready in 90 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _cli(data: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "edge.cli", *args, "--data-dir", str(data)],
                          capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    return done.stdout.strip()


def _hold_clickhouse(data: Path) -> subprocess.Popen[str]:
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, f"chdb://{(data / 'clickhouse').resolve()}"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
    return locker


def _release(locker: subprocess.Popen[str]) -> None:
    locker.kill()
    locker.wait()
    if locker.stdout is not None:
        locker.stdout.close()


def _drained(server: Process) -> bool:
    ready = httpx.get(server.url + "/readyz", timeout=5).json()
    return bool(ready["spool_segments"] == 0 and ready["clickhouse"] == "ok")


def run_soak(root: Path, duration: float = 300, users: int = 20) -> SoakReport:
    """Run the soak in ``root`` (its servers' data and logs); the report."""
    control_data = root / "control"
    key = _cli(control_data, "keys", "create", "--workspace", "soak")
    token = _cli(control_data, "edge-tokens", "create", "--name", "soak-nodes")
    control = Process(root, "control", ["serve", "--data-dir", str(control_data)], {})
    control.start()
    seeded = seed(control.url, key)
    auth = {"authorization": f"Bearer {key}"}
    # The config changes run on a second site, which the load does not target.
    other = httpx.post(control.url + "/v1/sites", headers=auth, timeout=30,
                       json={"url": "https://changes.example.com"}).json()["data"]  # fmt: skip
    other_site = other.get("site", other)["id"]
    changes = []
    for name in ("to launch", "to pause"):
        body = {"site_id": other_site, "name": name, "auto_launch": name == "to pause",
                "variants": [{"name": "B", "changes": [
                    {"selector": "h1", "action": "set_content", "payload": "B"}]}],
                "goals": [{"name": "Buy", "type": "click", "selector": ".buy"}]}  # fmt: skip
        made = httpx.post(control.url + "/v1/experiments", headers=auth, json=body, timeout=30)
        changes.append(made.json()["data"]["experiment"]["id"])
    node_env = {"SPLITEDGE_EDGE_TOKEN": token}
    nodes = [
        Process(
            root,
            f"node{n}",
            ["edge", "--control-url", control.url, "--data-dir", str(root / f"node{n}")],
            node_env,
        )  # fmt: skip
        for n in range(2)
    ]
    for node in nodes:
        node.start()
    acked, failures = root / "acked.txt", root / "failures.jsonl"
    load_env = {
        **os.environ, **seeded,
        "SPLITEDGE_LOAD_HOSTS": ",".join(n.url for n in nodes),
        "SPLITEDGE_LOAD_CONTROL": control.url,
        "SPLITEDGE_LOAD_ACKED": str(acked), "SPLITEDGE_LOAD_FAILURES": str(failures),
        "SPLITEDGE_LOAD_WAIT": "0.2",
    }  # fmt: skip
    locust_cmd = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(users),
        "-r", str(max(1, users // 2)), "-t", f"{int(duration)}s", "--host", nodes[0].url,
        "--only-summary", "--csv", str(root / "locust"), "--exit-code-on-error", "0",
    ]  # fmt: skip
    started = time.monotonic()
    with (root / "locust.log").open("w") as load_log:
        load = subprocess.Popen(locust_cmd, env=load_env, stdout=load_log,
                                stderr=subprocess.STDOUT)  # fmt: skip
    faults: list[str] = []
    locker = None

    def at(fraction: float) -> None:
        time.sleep(max(0.0, started + fraction * duration - time.monotonic()))

    try:
        at(0.2)
        outage = min(60.0, 0.2 * duration)
        control.stop()
        locker = _hold_clickhouse(control_data)
        control.start()
        faults.append(f"{time.monotonic() - started:.0f}s: ClickHouse unavailable {outage:.0f}s")
        time.sleep(outage)
        _release(locker)
        locker = None
        at(0.5)
        nodes[1].kill()
        nodes[1].start()
        faults.append(f"{time.monotonic() - started:.0f}s: node1 SIGKILLed and restarted")
        at(0.6)
        for experiment_id, action in zip(changes, ("launch", "pause"), strict=True):
            httpx.patch(f"{control.url}/v1/experiments/{experiment_id}", headers=auth,
                        json={"action": action}, timeout=30).raise_for_status()  # fmt: skip
        faults.append(f"{time.monotonic() - started:.0f}s: launched and paused experiments")
        load.wait(duration + 120)
        elapsed = time.monotonic() - started
        deadline = time.monotonic() + 120
        while not all(_drained(s) for s in (*nodes, control)):
            if time.monotonic() > deadline:
                raise RuntimeError("the spools did not drain in 120 s")
            time.sleep(0.5)
        snapshot = httpx.get(control.url + "/v1/edge/snapshot", timeout=30,
                             headers={"authorization": f"Bearer {token}"})  # fmt: skip
        control_version = int(snapshot.json()["version"])
        time.sleep(1.0)
        node_versions = [httpx.get(n.url + "/readyz", timeout=5).json()["config_version"]
                         for n in nodes]  # fmt: skip
    finally:
        if locker is not None:
            _release(locker)
        if load.poll() is None:
            load.kill()
        for server in (*nodes, control):
            server.stop()
    rows = _event_counts(control_data)
    ids = acked.read_text().split() if acked.exists() else []
    counted = Counter({event_id: rows.get(event_id, 0) for event_id in ids})
    failed = (
        [json.loads(line) for line in failures.read_text().splitlines()]
        if failures.exists()
        else []
    )
    fivexx = [f for f in failed if f["status"] >= 500]
    # Status 0: the connection failed (the SIGKILLed node, while it was down).
    refused = [f for f in failed if f["status"] == 0]
    requests = _requests(root / "locust_stats.csv")
    report = SoakReport(
        duration_s=round(elapsed, 1),
        requests=requests,
        failures_5xx=len(fivexx),
        connection_errors=len(refused),
        failures_4xx=len(failed) - len(fivexx) - len(refused),
        acknowledged=len(ids),
        in_clickhouse_once=sum(1 for n in counted.values() if n == 1),
        missing=sum(1 for n in counted.values() if n == 0),
        duplicated=sum(1 for n in counted.values() if n > 1),
        control_version=control_version,
        node_versions=node_versions,
        faults=faults,
        ok=False,
    )
    report.ok = (
        not fivexx and not report.failures_4xx and bool(ids) and report.missing == 0
        and report.duplicated == 0
        and all(v == control_version for v in node_versions)
    )  # fmt: skip
    return report


def _event_counts(data: Path) -> dict[str, int]:
    """Rows per event id in the stopped control plane's embedded ClickHouse."""
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=f"chdb://{(data / 'clickhouse').resolve()}")
    try:
        result = client.query("SELECT event_id, count() FROM splitedge.events GROUP BY event_id")
        return {str(event_id): int(n) for event_id, n in result.result_rows}
    finally:
        client.close()


def _requests(stats: Path) -> int:
    if not stats.exists():
        return 0
    for line in stats.read_text().splitlines():
        if ",Aggregated," in line:
            return int(line.split(",")[2])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="splitedge soak with faults")
    parser.add_argument("--duration", type=float, default=300, help="seconds of load")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--dir", type=Path, default=None, help="keep data and logs here")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="splitedge-soak-"))
    root.mkdir(parents=True, exist_ok=True)
    report = run_soak(root, args.duration, args.users)
    print(json.dumps(msgspec.to_builtins(report), indent=2))
    print(f"data and logs: {root}", file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
