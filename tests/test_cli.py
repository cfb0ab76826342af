"""`splitedge serve`: settings from flags and env, first start, clean shutdown."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from edge.cli import main, serve_settings
from edge.control import sites_api
from edge.control.services import Services
from edge.control.snapshot import DEMO_SITE_META_KEY
from edge.control.store import Store
from edge.http import EXCEPTION_HANDLERS
from edge.settings import Settings
from tests.support import running_server

pytestmark = pytest.mark.server


def test_env_vars_set_what_flags_do(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPLITEDGE_HOST", "0.0.0.0")
    monkeypatch.setenv("SPLITEDGE_PORT", "9001")
    monkeypatch.setenv("SPLITEDGE_WORKERS", "3")
    monkeypatch.setenv("SPLITEDGE_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("SPLITEDGE_CLICKHOUSE", "http://ch:8123")
    monkeypatch.setenv("SPLITEDGE_CLICKHOUSE_CLUSTER", "prod")
    monkeypatch.setenv("SPLITEDGE_SPOOL_CAP_MB", "7")
    s = serve_settings([])
    assert s.clickhouse_cluster == "prod" and s.spool_cap_mb == 7
    assert (s.host, s.port, s.workers) == ("0.0.0.0", 9001, 3)
    assert s.data_dir == str(tmp_path / "d") and s.clickhouse_dsn == "http://ch:8123"
    s = serve_settings(["--port", "9002", "--workers", "1"])
    assert (s.port, s.workers) == (9002, 1)


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "HOST",
        "PORT",
        "WORKERS",
        "DATA_DIR",
        "CLICKHOUSE",
        "CLICKHOUSE_CLUSTER",
        "SPOOL_CAP_MB",
    ):
        monkeypatch.delenv("SPLITEDGE_" + name, raising=False)
    monkeypatch.chdir(tmp_path)
    s = serve_settings([])
    assert (s.host, s.port, s.workers) == ("127.0.0.1", 8000, 1)
    assert s.store_path == tmp_path / "data" / "splitedge.sqlite3"
    assert s.clickhouse_dsn == f"chdb://{tmp_path / 'data' / 'clickhouse'}"


@pytest.mark.parametrize(
    "argv", [["--workers", "0"], ["--port", "0"], ["--port", "x"], ["--spool-cap-mb", "0"]]
)
def test_bad_flags_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        serve_settings(argv)
    assert exc.value.code == 2


def test_settings_reach_workers_through_the_environment() -> None:
    s = Settings(host="::1", port=1234, workers=2, data_dir="/x", clickhouse="http://c:1")
    assert Settings.from_env(s.to_env()) == s


def test_first_start_prints_a_working_key_once_and_stops_cleanly(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_server(data) as server:
        keys = re.findall(r"sk_live_[\w-]{43}", server.output())
        assert len(keys) == 1
        demo = re.search(r"/s/([0-9a-f]{32})\.js", server.output())
        assert demo is not None
        ready = httpx.get(server.base_url + "/readyz").json()
        assert ready["sites"] == 1
        assert httpx.get(server.base_url + "/demo").status_code == 200
        store = Store(data / "splitedge.sqlite3")
        demo_site_id = store.get_meta(DEMO_SITE_META_KEY)
        store.close()
        r = httpx.post(
            server.base_url + "/v1/assign",
            json={"site_id": demo_site_id, "unit_id": "u1", "url": "/demo"},
            headers={"authorization": f"Bearer {keys[0]}"},
        )
        assert r.status_code == 200 and len(r.json()["data"]["assignments"]) == 1
        trail = httpx.get(
            server.base_url + "/v1/audit", headers={"authorization": f"Bearer {keys[0]}"}
        ).json()["data"]
        assert [(e["action"], e["key_id"]) for e in trail] == [("key.create", None)]
        code = server.stop()
    assert code == 0, server.output()
    assert (data / "splitedge.sqlite3").exists() and (data / "clickhouse").is_dir()
    store_files = list(data.glob("splitedge.sqlite3*"))  # the WAL too, if it is still there
    assert store_files
    for path in store_files:
        assert keys[0] not in path.read_bytes().decode("latin-1"), path

    with running_server(data) as again:
        assert "sk_live_" not in again.output()
        assert re.search(r"/s/[0-9a-f]{32}\.js", again.output()) is None  # demo exists
        assert httpx.get(again.base_url + "/readyz").json()["sites"] == 1
        assert again.stop() == 0


# -- splitedge keys --


def keys(capsys: pytest.CaptureFixture[str], data: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["keys", *argv, "--data-dir", str(data)])
    out, err = capsys.readouterr()
    return code, out, err


def sites_status(data: Path, key: str) -> int:
    """What the API says to ``key``: the real routes and store, in process."""
    app = Starlette(
        routes=sites_api.routes(Services.from_settings(Settings(data_dir=str(data)))),
        exception_handlers=dict(EXCEPTION_HANDLERS),
    )

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.get("/v1/sites", headers={"authorization": f"Bearer {key}"})

    return asyncio.run(send()).status_code


def test_keys_create_list_revoke(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = tmp_path / "data"
    code, out, err = keys(capsys, data, "create", "--workspace", "acme")
    assert code == 0 and re.fullmatch(r"sk_live_[\w-]{43}\n", out)
    first = out.strip()
    assert "created workspace 'acme'" in err and "shown this once" in err
    assert sites_status(data, first) == 200

    code, out, err = keys(capsys, data, "create", "--workspace", "acme", "--name", "ci")
    second = out.strip()
    assert code == 0 and second != first and "created workspace" not in err
    keys(capsys, data, "create", "--workspace", "other")

    code, out, _ = keys(capsys, data, "list", "--workspace", "acme")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == [
        "ID", "PREFIX", "WORKSPACE", "NAME", "CREATED", "LAST", "USED", "REVOKED"
    ]  # fmt: skip
    assert len(lines) == 3 and first not in out and second not in out
    assert lines[1].split()[1] == first[:16] + "..." and lines[1].split()[5] != "never"
    assert lines[2].split()[3:] == ["ci", lines[2].split()[4], "never", "-"]
    _, everyone, _ = keys(capsys, data, "list")
    assert len(everyone.splitlines()) == 4 and "other" in everyone

    code, _, err = keys(capsys, data, "revoke", first[:16] + "...")
    assert code == 0 and "revoked" in err
    assert sites_status(data, first) == 401 and sites_status(data, second) == 200
    _, out, _ = keys(capsys, data, "list", "--workspace", "acme")
    assert out.splitlines()[1].split()[-1] != "-"

    key_id = out.splitlines()[2].split()[0]
    assert keys(capsys, data, "revoke", key_id)[0] == 0
    assert sites_status(data, second) == 401
    code, _, err = keys(capsys, data, "revoke", key_id)
    assert code == 1 and "was revoked at" in err
    code, _, err = keys(capsys, data, "revoke", "sk_live_nothere")
    assert code == 1 and "no API key" in err
    code, _, err = keys(capsys, data, "list", "--workspace", "nope")
    assert code == 1 and "no workspace named 'nope'" in err
