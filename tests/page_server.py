"""A real local web server for the authoring tests: it serves the HTML fixture pages in
tests/fixtures/pages/ on 127.0.0.1 (a free port), so the authors fetch them over HTTP
exactly as they fetch a customer's site."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["FIXTURES", "serve_pages"]

FIXTURES = Path(__file__).parent / "fixtures" / "pages"


class _PageHandler(SimpleHTTPRequestHandler):
    """Serves files, with extensionless paths mapped to ``.html`` (``/pricing`` serves
    pricing.html) as real sites route them, and ``/`` serving index.html."""

    def translate_path(self, path: str) -> str:
        translated = Path(super().translate_path(path))
        if not translated.suffix and not translated.is_dir():
            html = translated.with_suffix(".html")
            if html.is_file():
                return str(html)
        return str(translated)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve_pages(directory: Path = FIXTURES) -> Iterator[str]:
    """Serve ``directory`` on loopback; yields the base URL (``http://127.0.0.1:PORT``,
    no trailing slash) and stops the server on exit."""
    handler = functools.partial(_PageHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
