"""``splitedge backup`` and ``splitedge restore``: a backup taken while a real server
writes is a consistent snapshot, and a fresh data dir restored from it serves that same
config version and the same snippets."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.control.backup import BackupError, backup_store, restore_store
from edge.control.secret_box import KEY_FILE, SecretBox
from edge.control.store import Store
from tests.support import Server, running_server, seed_store


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True, timeout=120
    )


def copied(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def ready_version(server: Server) -> int:
    return int(httpx.get(server.base_url + "/readyz", timeout=5).json()["config_version"])


class SiteWriter(threading.Thread):
    """Creates sites through the API, one after another, until stopped."""

    def __init__(self, server: Server, key: str) -> None:
        super().__init__(daemon=True)
        self.server, self.key = server, key
        self.created: list[tuple[float, str]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.server.base_url, timeout=30) as client:
            while not self.halt.is_set():
                response = client.post(
                    "/v1/sites",
                    json={"url": f"site{len(self.created)}.example.com"},
                    headers={"authorization": f"Bearer {self.key}"},
                )
                assert response.status_code == 201, response.text
                self.created.append((time.monotonic(), response.json()["data"]["public_key"]))


@pytest.mark.server
def test_a_backup_during_writes_restores_to_a_server_with_the_same_config(
    tmp_path: Path,
) -> None:
    data, restored = tmp_path / "data", tmp_path / "restored"
    seed = seed_store(data / "splitedge.sqlite3")
    SecretBox(data / "splitedge.sqlite3").seal("made so that the key file exists")
    backup = tmp_path / "backups" / "splitedge-backup.sqlite3"
    with running_server(data, workers=2) as server:
        writer = SiteWriter(server, seed.key.key)
        writer.start()
        while len(writer.created) < 5:
            time.sleep(0.05)
        started = time.monotonic()
        taken = copied(cli("backup", "--data-dir", str(data), "--to", str(backup)))
        ended = time.monotonic()
        while not any(at > ended for at, _ in writer.created):
            time.sleep(0.05)
        writer.halt.set()
        writer.join()
        assert any(at < started for at, _ in writer.created)

        # One self-contained file, whole, of one moment between the writes.
        assert taken["path"] == str(backup) and taken["bytes"] == backup.stat().st_size
        assert not Path(f"{backup}-wal").exists() and backup.stat().st_mode & 0o077 == 0
        with sqlite3.connect(backup) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
            (version,) = conn.execute("SELECT version FROM config_version").fetchone()
            backed_up = {k for (k,) in conn.execute("SELECT public_key FROM sites")}
        # The server's config follows the writes after the backup (within its 1 s bound).
        deadline = time.monotonic() + 5
        while ready_version(server) <= version and time.monotonic() < deadline:
            time.sleep(0.05)
        assert version == taken["config_version"] < ready_version(server)
        written = [key for _, key in writer.created]
        # The sites in the backup are exactly the writer's first ones (and the seeded ones).
        cut = sum(key in backed_up for key in written)
        assert 5 <= cut < len(written)
        assert set(written[:cut]) <= backed_up and not set(written[cut:]) & backed_up

        done = copied(
            cli(
                "restore",
                "--from",
                str(backup),
                "--data-dir",
                str(restored),
                "--secrets-key",
                str(data / KEY_FILE),
            )  # fmt: skip
        )
        assert done["config_version"] == version
        assert (restored / KEY_FILE).read_bytes() == (data / KEY_FILE).read_bytes()
        again = cli("restore", "--from", str(backup), "--data-dir", str(restored))
        assert again.returncode == 1 and "already has a store" in again.stderr

        with running_server(restored) as second:
            assert ready_version(second) == version
            for key in (seed.site.public_key, written[cut - 1]):
                ours = httpx.get(f"{server.base_url}/s/{key}.js", timeout=5)
                theirs = httpx.get(f"{second.base_url}/s/{key}.js", timeout=5)
                assert ours.status_code == theirs.status_code == 200
                assert ours.content == theirs.content
            assert httpx.get(f"{second.base_url}/s/{written[cut]}.js", timeout=5).status_code == 404
            # The restored workspace's key works.
            listed = httpx.get(
                second.base_url + "/v1/sites?limit=1",
                headers={"authorization": f"Bearer {seed.key.key}"},
                timeout=10,
            )
            assert listed.status_code == 200, listed.text


def test_an_open_write_transaction_is_neither_waited_for_nor_copied(tmp_path: Path) -> None:
    store_path = tmp_path / "data" / "splitedge.sqlite3"
    seed = seed_store(store_path)
    writer = Store(store_path)
    try:
        before = writer.config_version()
        writer.conn.execute("BEGIN IMMEDIATE")
        writer.conn.execute("UPDATE sites SET name = 'uncommitted' WHERE id = ?", (seed.site.id,))
        started = time.monotonic()
        taken = backup_store(store_path, tmp_path / "b.sqlite3")
        assert time.monotonic() - started < 2
        writer.conn.execute("COMMIT")
    finally:
        writer.close()
    assert taken.config_version == before
    with sqlite3.connect(tmp_path / "b.sqlite3") as conn:
        (name,) = conn.execute("SELECT name FROM sites WHERE id = ?", (seed.site.id,)).fetchone()
    assert name == seed.site.name


def test_restore_replaces_only_when_forced_and_drops_the_old_wal(tmp_path: Path) -> None:
    seed_store(tmp_path / "a" / "splitedge.sqlite3")
    backup_store(tmp_path / "a" / "splitedge.sqlite3", tmp_path / "a.bak")
    target = tmp_path / "b"
    other = Store(target / "splitedge.sqlite3")  # a store with a WAL of its own
    other.create_workspace("newer")
    with pytest.raises(BackupError, match="already has a store"):
        restore_store(tmp_path / "a.bak", target)
    other.close()
    Path(f"{target / 'splitedge.sqlite3'}-wal").write_bytes(b"stale")
    restore_store(tmp_path / "a.bak", target, replace=True)
    assert not Path(f"{target / 'splitedge.sqlite3'}-wal").exists()
    restored = Store(target / "splitedge.sqlite3")
    try:
        found = [restored.workspace_by_name(name) for name in ("acme", "other", "newer")]
    finally:
        restored.close()
    assert [ws is not None for ws in found] == [True, True, False]


def test_what_is_not_a_store_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not sqlite")
    with sqlite3.connect(tmp_path / "empty.sqlite3") as conn:
        conn.execute("CREATE TABLE t (x)")
    no_key = cli("restore", "--from", str(tmp_path / "empty.sqlite3"), "--data-dir",
                 str(tmp_path / "r"), "--secrets-key", str(tmp_path / "none.key"))  # fmt: skip
    assert no_key.returncode == 1 and "no secrets key at" in no_key.stderr
    missing = cli("backup", "--data-dir", str(tmp_path / "nowhere"), "--to", "x.sqlite3")
    assert missing.returncode == 1 and "no store at" in missing.stderr
    for source, message in (("notes.txt", "not a readable SQLite file"),
                            ("empty.sqlite3", "not a splitedge store")):  # fmt: skip
        result = cli("restore", "--from", str(tmp_path / source), "--data-dir", str(tmp_path / "r"))
        assert result.returncode == 1 and message in result.stderr, result.stderr
        assert not (tmp_path / "r" / "splitedge.sqlite3").exists()
