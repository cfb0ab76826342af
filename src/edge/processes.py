"""The server's processes: what the parent claims before it serves (its port, a private
data directory) and what each Granian worker does before it builds its app.

- **One server per port.** Granian's workers share their port with SO_REUSEPORT, which
  would as gladly share it with another server's workers: two stores answering at
  random. So before anything else the parent binds the address itself, without
  SO_REUSEPORT, and refuses to start (`PortInUse`) if anything listens there.
- **Private files.** The data directory holds the store (key digests, webhook secrets,
  the report-link secret) and the events: the parent sets its umask to 077, so all it
  and its workers create is the owner's alone, and tightens an existing directory and
  store to 0700 and 0600.
- **Workers die with their parent.** A worker whose parent is gone has no flusher and no
  decisions behind it, yet would keep listening and acknowledging. Each worker asks the
  kernel to kill it when its parent dies (PR_SET_PDEATHSIG), and exits at once if the
  parent is already gone.
- **No code from the working directory.** Granian's own loader puts the current
  directory first on ``sys.path``, so a file named ``mcp.py`` there would shadow the MCP
  SDK. `load_worker_app` imports the app without it.
"""

from __future__ import annotations

import ctypes
import errno
import importlib
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from edge.errors import SplitedgeError

__all__ = ["PARENT_PID_ENV", "PortInUse", "load_worker_app", "require_free_port", "secure_data_dir"]

PARENT_PID_ENV = "SPLITEDGE_SERVER_PID"
"""The serving parent's pid, as its workers see it in their environment."""

_PR_SET_PDEATHSIG = 1


class PortInUse(SplitedgeError):
    """Another process already listens on the address the server was told to serve."""

    code = "port_in_use"


def require_free_port(host: str, port: int) -> None:
    """Raise `PortInUse` when any process listens on ``host:port``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR only: a listener blocks the bind, a closed server's TIME_WAIT not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise PortInUse(
                f"{host}:{port} is already in use by another process (another splitedge "
                "server, or its orphaned workers?); stop it, or serve on another --port"
            ) from None


def secure_data_dir(data_dir: Path, store_path: Path) -> None:
    """Make ``data_dir`` the owner's alone: umask 077 for every file this process and its
    workers create from now on, the directory 0700 and the store file 0600."""
    os.umask(0o077)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    for path in (
        store_path,
        *(store_path.with_name(store_path.name + s) for s in ("-wal", "-shm")),
    ):
        if path.exists():
            path.chmod(0o600)


def _die_with_parent() -> None:
    expected = os.environ.get(PARENT_PID_ENV)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    # The parent may have died before the request above: the kernel would not tell.
    if expected is not None and os.getppid() != int(expected):
        os._exit(1)


def load_worker_app(target: str) -> Any:
    """The ASGI app of ``target`` (``module:factory``) for a Granian worker: the worker
    first binds its life to its parent's and leaves the working directory off its
    import path (Granian calls this in each worker, instead of its own loader)."""
    _die_with_parent()
    cwd = os.getcwd()
    sys.path[:] = [entry for entry in sys.path if entry not in ("", ".", cwd)]
    module_name, _, factory = target.partition(":")
    return getattr(importlib.import_module(module_name), factory)()
