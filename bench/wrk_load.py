"""Servers under wrk load, shared by bench/edge.py and bench/ingest.py: a server process
on a free loopback port, a request scenario, a wrk run and its parsed figures."""

from __future__ import annotations

import argparse
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

READY_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0


@dataclass(frozen=True)
class Scenario:
    """One request shape, sent identically to every server."""

    name: str
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class WrkRun:
    """What one wrk run measured."""

    rps: float
    p99_ms: float
    requests: int
    errors: str


class ServerProcess:
    """A server subprocess in its own process group, stopped by PID (SIGTERM, then kill)."""

    def __init__(self, name: str, cmd: list[str], port: int, log: Path, env: dict[str, str]):
        self.name = name
        self.port = port
        self.log = log
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.output()}")
            try:
                if fetch(self.port, Scenario("ready", "GET", "/readyz"))[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready in {timeout:.0f}s:\n{self.output()}")

    def stop(self) -> None:
        """SIGTERM the server (Granian drains its workers); kill its group if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                print(f"  {self.name} ignored SIGTERM; killing it", file=sys.stderr)
        # The session we started has the server's PID as its id; this reaches its workers
        # even if the server itself is gone.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()


@contextmanager
def running(
    name: str, cmd: list[str], port: int, log: Path, env: dict[str, str]
) -> Iterator[ServerProcess]:
    server = ServerProcess(name, cmd, port, log, env)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fetch(port: int, scenario: Scenario) -> tuple[int, dict[str, str], bytes]:
    """One request, with no content decoding: status, headers, raw body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(scenario.method, scenario.path, scenario.body or None, scenario.headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_wrk(output: str) -> WrkRun:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
    total = re.search(r"^\s+(\d+) requests in", output, re.M)
    if rps is None or p99 is None or total is None:
        raise RuntimeError(f"cannot parse wrk output:\n{output}")
    errors = [
        m.group(0).strip()
        for m in re.finditer(r"^\s+(Socket errors:.*|Non-2xx or 3xx responses:.*)$", output, re.M)
    ]
    return WrkRun(
        rps=float(rps.group(1)),
        p99_ms=float(p99.group(1)) * _UNITS_MS[p99.group(2)],
        requests=int(total.group(1)),
        errors="; ".join(errors),
    )


def run_wrk(args: argparse.Namespace, port: int, path: str, script: Path, seconds: float) -> WrkRun:
    cmd = [
        "wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds:g}s",
        "--latency", "--timeout", "5s", "-s", str(script), f"http://127.0.0.1:{port}{path}",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return parse_wrk(done.stdout)
