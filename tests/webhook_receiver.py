"""A real local HTTP receiver of webhooks for the tests: it verifies every delivery's
signature with the Python snippet of docs/webhooks.md, exactly as users are told to, and
answers each path with the statuses a test plans (then 200)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec

DOCS = Path(__file__).parents[1] / "docs" / "webhooks.md"


def documented_verifier() -> Callable[[str, Any, bytes], bool]:
    """``verify_webhook`` exactly as docs/webhooks.md shows it to users."""
    snippet = re.search(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    assert snippet is not None
    namespace: dict[str, Any] = {}
    exec(snippet.group(1), namespace)
    verify: Callable[[str, Any, bytes], bool] = namespace["verify_webhook"]
    return verify


class Received(msgspec.Struct):
    path: str
    headers: Message  # case-insensitive, as HTTP header names are
    body: bytes
    verified: bool
    at: float


class Receiver:
    """A local HTTP endpoint: per path, the secret to verify with, the statuses to answer
    (then 200), and how long to wait before answering."""

    def __init__(self) -> None:
        self.verify = documented_verifier()
        self.secrets: dict[str, str] = {}
        self.answers: dict[str, list[int]] = {}
        self.delays: dict[str, float] = {}
        self.received: list[Received] = []
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                secret = receiver.secrets.get(self.path, "")
                verified = receiver.verify(secret, self.headers, body)
                time.sleep(receiver.delays.get(self.path, 0.0))
                with receiver.changed:
                    planned = receiver.answers.get(self.path) or [200]
                    status = planned.pop(0) if len(planned) > 1 else planned[0]
                    receiver.received.append(
                        Received(self.path, self.headers, body, verified, time.monotonic())
                    )
                    receiver.changed.notify_all()
                payload = b"boom" if status >= 400 else b"ok"
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 64  # the dispatcher opens up to 8 connections at once per process

        self.http = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}{path}"

    def at(self, path: str) -> list[Received]:
        with self.changed:
            return [r for r in self.received if r.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 15) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(got := [r for r in self.received if r.path == path]) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"{path}: {len(got)} of {count} deliveries in {timeout}s"
                self.changed.wait(left)
            return got
