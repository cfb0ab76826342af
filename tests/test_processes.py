"""The server's processes (edge.processes), on real servers: workers die with their
parent, a busy port is refused, nothing runs from the working directory, the data
directory is private, and a worker with no flusher behind it is not ready."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from edge.control.store import Store
from edge.health import FLUSHER_GONE_SECONDS, Readiness
from edge.ingest.status import ClickHouseState, FlusherStatus
from edge.kv import KVHolder
from edge.processes import PortInUse, require_free_port
from tests.support import MCP_INITIALIZE, Server, free_port, running_server, seed_store, wait_ready

pytestmark = pytest.mark.server

SPLITEDGE = str(Path(sys.executable).with_name("splitedge"))


def children_of(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_sigkill_of_the_parent_leaves_no_listener_within_two_seconds(tmp_path: Path) -> None:
    port = free_port()
    with running_server(tmp_path / "data", workers=2, port=port) as server:
        workers = children_of(server.proc.pid)
        pids = {httpx.get(server.base_url + "/readyz").json()["pid"] for _ in range(20)}
        assert pids <= set(workers) and workers
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait()
        killed_at = time.monotonic()
        while listening(port) or any(alive(w) for w in workers):
            assert time.monotonic() - killed_at < 2.0, "a worker outlived its parent"
            time.sleep(0.02)


def test_a_second_server_on_a_busy_port_exits_non_zero(tmp_path: Path) -> None:
    port = free_port()
    with running_server(tmp_path / "first", port=port) as first:
        second = subprocess.run(
            [sys.executable, "-m", "edge.cli", "serve", "--host", "127.0.0.1", "--port",
             str(port), "--data-dir", str(tmp_path / "second")],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        assert second.returncode != 0
        assert f"127.0.0.1:{port} is already in use" in second.stderr
        assert not (tmp_path / "second").exists()  # refused before touching anything
        assert httpx.get(first.base_url + "/readyz").status_code == 200
    # and free again once the first stopped
    require_free_port("127.0.0.1", port)


def test_a_listener_of_any_other_process_is_refused() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        with pytest.raises(PortInUse, match="already in use"):
            require_free_port("127.0.0.1", other.getsockname()[1])


def test_nothing_runs_from_the_working_directory(tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    for name in ("mcp", "edge", "analytics", "starlette"):
        (cwd / f"{name}.py").write_text(
            f"open({str(cwd / (name + '.ran'))!r}, 'w').close()\n"
            f"raise SystemExit('{name}.py from the working directory ran')\n"
        )
    data, port = tmp_path / "data", free_port()
    seed = seed_store(data / "splitedge.sqlite3")
    log = tmp_path / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [SPLITEDGE, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
             str(data)],
            cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        server = Server(proc, f"http://127.0.0.1:{port}", log)  # type: ignore[arg-type]
        wait_ready(server)
        answer = httpx.post(
            server.base_url + "/mcp",
            json=MCP_INITIALIZE,
            headers={
                "Accept": "application/json, text/event-stream",
                "Authorization": f"Bearer {seed.key.key}",
            },
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["result"]["serverInfo"]["name"] == "splitedge"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert sorted(p.name for p in cwd.glob("*.ran")) == []


def test_the_data_dir_and_the_store_are_private_whatever_the_umask(tmp_path: Path) -> None:
    data = tmp_path / "data"
    Store(data / "splitedge.sqlite3").close()  # made by an earlier version: 0755 / 0644
    data.chmod(0o755)
    (data / "splitedge.sqlite3").chmod(0o644)
    old = os.umask(0o022)
    try:
        with running_server(data):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "splitedge.sqlite3").stat().st_mode) == 0o600
    for path in data.rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


class _Loaded:
    version = 1
    built_at = 0.0
    by_public_key: dict[str, object] = {}


def test_a_worker_is_not_ready_when_no_flusher_reports() -> None:
    holder = KVHolder()
    holder.kv = _Loaded()  # type: ignore[assignment]
    now = time.time()

    def answer(updated_at: float, state: ClickHouseState = "ok") -> tuple[int, str]:
        status = FlusherStatus(clickhouse=state, updated_at=updated_at)
        sent: list[dict[str, object]] = []

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        asyncio.run(Readiness(holder, lambda: status)({"type": "http"}, None, send))  # type: ignore[arg-type]
        return int(sent[0]["status"]), bytes(sent[1]["body"]).decode()  # type: ignore[call-overload]

    assert answer(now)[0] == 200
    code, body = answer(now - FLUSHER_GONE_SECONDS - 1)
    assert code == 503 and '"status":"unready"' in body and "no flusher" in body
    assert answer(now, "stopped")[0] == 503  # fresh, but its thread has ended
    assert answer(now, "unavailable")[0] == 200  # ClickHouse down: events are spooled
