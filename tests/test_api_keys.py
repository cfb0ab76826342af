"""Key flavours (edge.api_keys): each flavour's scheme, the CLI that mints them, and the
control plane accepting every flavour with the flavour on the caller's `Auth`."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from edge.api_keys import FLAVOURS, flavour_of_key, key_prefix, new_api_key
from edge.cli import main
from edge.control.api import Auth, authenticate
from edge.control.services import Services
from edge.control.store import Store
from edge.errors import Unauthorized
from edge.settings import Settings

SCHEMES = {"splitedge": "sk_live_", "clawsplit": "cs_live_", "clawtrait": "ct_", "crewkit": "ck_"}


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_key_names_its_flavour(flavour: str) -> None:
    key = new_api_key(flavour)  # type: ignore[arg-type]
    assert re.fullmatch(re.escape(SCHEMES[flavour]) + r"[\w-]{43}", key)
    assert flavour_of_key(key) == flavour
    assert len(key_prefix(key)) == 16 and key.startswith(key_prefix(key))


def test_a_string_no_key_starts_like_has_no_flavour() -> None:
    assert flavour_of_key("pk_abc") is None
    assert flavour_of_key("") is None
    assert flavour_of_key("SK_LIVE_" + "x" * 43) is None


def caller(data: Path, key: str) -> Auth:
    """`authenticate` on a request with ``key``, against the real store."""
    services = Services.from_settings(Settings(data_dir=str(data)))
    scope = {"type": "http", "headers": [(b"authorization", f"Bearer {key}".encode())]}
    return asyncio.run(authenticate(services, scope))


def test_keys_create_mints_each_flavour_and_the_api_takes_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    minted = {}
    for flavour in FLAVOURS:
        argv = ["keys", "create", "--workspace", "acme", "--flavour", flavour]
        assert main([*argv, "--data-dir", str(data)]) == 0
        minted[flavour] = capsys.readouterr().out.strip()
    assert main(["keys", "create", "--workspace", "acme", "--data-dir", str(data)]) == 0
    default = capsys.readouterr().out.strip()
    assert default.startswith("sk_live_")

    for flavour, key in minted.items():
        assert key.startswith(SCHEMES[flavour])
        auth = caller(data, key)
        assert auth.flavour == flavour
    assert caller(data, default).flavour == "splitedge"
    workspaces = {caller(data, key).workspace_id for key in minted.values()}
    assert len(workspaces) == 1

    store = Store(data / "splitedge.sqlite3")
    try:
        listed = {k.prefix[:8] for k in store.list_api_keys()}
        stored = " ".join(str(row) for row in store.conn.execute("SELECT * FROM api_keys"))
    finally:
        store.close()
    assert {"sk_live_", "cs_live_", "ct_" + minted["clawtrait"][3:8]} <= listed
    assert all(key not in stored for key in minted.values())  # only digests are kept

    with pytest.raises(Unauthorized):
        caller(data, "cs_live_" + "x" * 43)
    with pytest.raises(SystemExit):
        main(["keys", "create", "--workspace", "acme", "--flavour", "optimizely"])
    assert "invalid choice" in capsys.readouterr().err
