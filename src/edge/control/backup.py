"""``splitedge backup`` and ``splitedge restore``: the control-plane store, copied online.

The store is one SQLite file in WAL mode (`edge.control.store.connection`), so a copy of
the file alone, taken while the server writes, can miss what is still in the WAL or catch
a page mid-write. The backup goes through SQLite's online backup API instead: one step,
inside one read transaction, so it is a consistent snapshot of a single moment while the
server's writers carry on (WAL readers never block writers). The copy is checked
(``PRAGMA integrity_check``) and renamed into place only when whole.

Webhook signing secrets are sealed under ``secrets.key`` beside the store
(`edge.control.secret_box`), which a backup does not copy: keep that file apart, and hand
it to ``restore --secrets-key``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path

import msgspec

from edge.control.keys_cli import data_dir_parent
from edge.control.secret_box import KEY_FILE
from edge.processes import secure_data_dir
from edge.settings import Settings

__all__ = [
    "BackupError",
    "Copied",
    "add_parser",
    "backup_store",
    "restore_store",
    "run",
]


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why and what to do."""


class Copied(msgspec.Struct, frozen=True):
    """What a backup or restore wrote: the file, its config version (what ``/readyz``
    reports once a server runs on it), its size and how long the copy took."""

    path: str
    config_version: int
    bytes: int
    seconds: float


def _sidecars(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def _copy(source: sqlite3.Connection, target: Path) -> int:
    """Copy ``source`` into a new file ``target`` (one backup step: a single snapshot),
    as a self-contained rollback-journal file; its config version. The caller removes
    ``target`` on failure."""
    dest = sqlite3.connect(target, isolation_level=None)
    try:
        source.backup(dest)
        dest.execute("PRAGMA journal_mode = DELETE")
        (check,) = dest.execute("PRAGMA integrity_check").fetchone()
        if check != "ok":
            raise BackupError(f"the copy failed SQLite's integrity check: {check}")
        return _config_version(dest)
    finally:
        dest.close()


def _config_version(conn: sqlite3.Connection) -> int:
    try:
        (version,) = conn.execute("SELECT version FROM config_version").fetchone()
    except sqlite3.DatabaseError:
        raise BackupError("it is not a splitedge store (it has no config version)") from None
    return int(version)


def _open_existing(path: Path, what: str) -> sqlite3.Connection:
    if not path.is_file():
        raise BackupError(f"no {what} at {path}")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    # A writer holds the lock for a moment at a time; wait for it rather than fail.
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def _place(partial: Path, target: Path, source: sqlite3.Connection) -> int:
    """Copy ``source`` to ``partial``, then rename it to ``target``; the config version."""
    try:
        version = _copy(source, partial)
        with partial.open("rb") as file:
            os.fsync(file.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return version


def backup_store(store_path: Path, target: Path) -> Copied:
    """Copy the store at ``store_path`` to ``target`` (0600, replaced if it exists) while
    servers may be writing to it."""
    started = time.monotonic()
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    target.parent.mkdir(parents=True, exist_ok=True)
    source = _open_existing(store_path, "store")
    old_umask = os.umask(0o077)  # the store holds key digests and sealed secrets
    try:
        version = _place(partial, target, source)
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{store_path} could not be read: {exc}") from None
    finally:
        os.umask(old_umask)
        source.close()
    return Copied(str(target), version, target.stat().st_size, time.monotonic() - started)


def restore_store(
    backup: Path, data_dir: Path, secrets_key: Path | None = None, replace: bool = False
) -> Copied:
    """Make ``backup`` the store of ``data_dir``, with ``secrets_key`` as its key file
    when given. No server may run on ``data_dir``; an existing store is replaced only
    when ``replace``, and its WAL goes with it."""
    started = time.monotonic()
    store_path = Settings(data_dir=str(data_dir)).store_path
    if secrets_key is not None and not secrets_key.is_file():
        raise BackupError(f"no secrets key at {secrets_key}")
    if store_path.exists() and not replace:
        raise BackupError(
            f"{data_dir} already has a store; stop its server and pass --force to replace it, "
            "or restore into an empty --data-dir"
        )
    source = _open_existing(backup, "backup")
    try:
        secure_data_dir(data_dir, store_path)
        version = _place(data_dir / f".restore-{os.getpid()}.sqlite3", store_path, source)
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{backup} is not a readable SQLite file: {exc}") from None
    finally:
        source.close()
    # The replaced store's WAL would be replayed onto the restored file.
    for sidecar in _sidecars(store_path):
        sidecar.unlink(missing_ok=True)
    if secrets_key is not None:
        shutil.copyfile(secrets_key, data_dir / KEY_FILE)
        (data_dir / KEY_FILE).chmod(0o600)
    return Copied(str(store_path), version, store_path.stat().st_size, time.monotonic() - started)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``backup`` and ``restore`` commands."""
    backup = sub.add_parser(
        "backup",
        parents=[data_dir_parent()],
        help="copy the control-plane store to a file, online (the server may be running)",
        description="A consistent copy through SQLite's backup API, safe while servers write. "
        f"It does not include {KEY_FILE} (the key of webhook signing secrets): keep that "
        "file apart.",
    )
    backup.add_argument("--to", required=True, metavar="FILE", help="the backup file to write")
    restore = sub.add_parser(
        "restore",
        parents=[data_dir_parent()],
        help="make a backup the store of a data dir (its server stopped)",
    )
    restore.add_argument("--from", dest="source", required=True, metavar="FILE",
                         help="a file written by `splitedge backup`")  # fmt: skip
    restore.add_argument(
        "--secrets-key",
        metavar="FILE",
        help=f"the {KEY_FILE} of the backed-up data dir, so webhook secrets stay readable",
    )
    restore.add_argument(
        "--force",
        action="store_true",
        help="replace the data dir's existing store (stop its server first)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``backup`` or ``restore``; prints what was written, as one JSON line."""
    data_dir = Path(args.data_dir).resolve()
    try:
        if args.command == "backup":
            copied = backup_store(Settings(data_dir=str(data_dir)).store_path, Path(args.to))
        else:
            key = None if args.secrets_key is None else Path(args.secrets_key)
            copied = restore_store(Path(args.source), data_dir, key, replace=args.force)
    except (BackupError, OSError) as exc:
        print(f"splitedge {args.command}: {exc}", file=sys.stderr)
        return 1
    print(msgspec.json.encode(copied).decode())
    return 0
