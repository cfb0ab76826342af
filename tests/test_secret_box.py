"""Secrets at rest (edge.control.secret_box): sealed under a private key file, which
concurrent first uses agree on, and a broken key file is an error, not a hang."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from edge.control.secret_box import KEY_FILE, SecretBox, SecretUnreadable


def test_sealed_secrets_open_with_the_key_beside_the_store(tmp_path: Path) -> None:
    store_path = tmp_path / "splitedge.sqlite3"
    sealed = SecretBox(store_path).seal("whsec_1")
    assert sealed.startswith("fernet:") and "whsec_1" not in sealed
    assert SecretBox(store_path).open(sealed) == "whsec_1"
    assert SecretBox(store_path).open("whsec_plain") == "whsec_plain"  # an earlier version's
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [KEY_FILE]  # no temporary left
    (tmp_path / "other").mkdir()  # a copy of the store without its key file
    with pytest.raises(SecretUnreadable, match="restore the key file"):
        SecretBox(tmp_path / "other" / "splitedge.sqlite3").open(sealed)


def test_first_uses_at_once_agree_on_one_key(tmp_path: Path) -> None:
    store_path = tmp_path / "splitedge.sqlite3"
    start = threading.Barrier(8)
    sealed: list[str] = []

    def seal(n: int) -> None:
        start.wait()
        sealed.append(SecretBox(store_path).seal(f"whsec_{n}"))

    threads = [threading.Thread(target=seal, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    opened = sorted(SecretBox(store_path).open(s) for s in sealed)
    assert opened == sorted(f"whsec_{n}" for n in range(8))
    assert sorted(p.name for p in tmp_path.iterdir()) == [KEY_FILE]


def test_an_empty_key_file_is_an_error_at_once(tmp_path: Path) -> None:
    """What a crash between creating the key file and writing it could leave."""
    (tmp_path / KEY_FILE).touch(mode=0o600)
    failed: list[BaseException] = []

    def seal() -> None:
        try:
            SecretBox(tmp_path / "splitedge.sqlite3").seal("whsec_1")
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=seal, daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), "waited for a key that will never come"
    assert len(failed) == 1 and isinstance(failed[0], SecretUnreadable)
    assert "holds no valid key" in failed[0].message
