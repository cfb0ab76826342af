"""``splitedge --version``, ``--log-level`` (applied to the server's and its workers'
loggers, through real servers) and the checks of ``--public-url`` and
``--forwarded-allow-ips``."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from edge.cli import serve_settings
from edge.logs import logging_config
from tests.support import running_server


def test_version_comes_from_the_package_metadata() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edge.cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert result.stdout == f"splitedge {importlib.metadata.version('splitedge')}\n"


def test_log_level_flag_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert serve_settings([]).log_level == "info"
    assert serve_settings(["--log-level", "debug"]).log_level == "debug"
    monkeypatch.setenv("SPLITEDGE_LOG_LEVEL", "WARNING")
    assert serve_settings([]).log_level == "warning"
    assert serve_settings(["--log-level", "error"]).log_level == "error"
    with pytest.raises(SystemExit):
        serve_settings(["--log-level", "verbose"])
    monkeypatch.setenv("SPLITEDGE_LOG_LEVEL", "verbose")
    with pytest.raises(SystemExit):
        serve_settings([])


def test_logging_config_sets_every_server_logger() -> None:
    config = logging_config("warning")
    assert config["root"]["level"] == "WARNING"
    assert config["loggers"]["_granian"]["level"] == "WARNING"
    assert config["loggers"]["granian.access"]["level"] == "WARNING"
    assert logging_config("error")["loggers"]["httpx"]["level"] == "ERROR"
    assert logging_config("debug")["loggers"]["httpx"]["level"] == "WARNING"


def test_public_url_and_forwarded_allow_ips(monkeypatch: pytest.MonkeyPatch) -> None:
    assert serve_settings(["--public-url", "https://ab.example.com/"]).public_url == (
        "https://ab.example.com"
    )
    assert serve_settings(["--public-url", "https://x.example/edge/"]).public_url == (
        "https://x.example/edge"
    )
    monkeypatch.setenv("SPLITEDGE_PUBLIC_URL", "http://10.0.0.5:8080")
    monkeypatch.setenv("SPLITEDGE_FORWARDED_ALLOW_IPS", "10.0.0.0/8")
    settings = serve_settings([])
    assert (settings.public_url, settings.forwarded_allow_ips) == (
        "http://10.0.0.5:8080",
        "10.0.0.0/8",
    )
    assert serve_settings(["--forwarded-allow-ips", "127.0.0.1, ::1, *"]).forwarded_allow_ips
    for bad in (
        ["--public-url", "ab.example.com"],
        ["--public-url", "ftp://ab.example.com"],
        ["--public-url", "https://ab.example.com/?x=1"],
        ["--forwarded-allow-ips", "proxy.local"],
    ):
        with pytest.raises(SystemExit):
            serve_settings(bad)


def levels(output: str) -> set[str]:
    """The levels of the JSON log lines of a server's output."""
    found = set()
    for line in output.splitlines():
        if line.startswith("{"):
            found.add(json.loads(line)["level"])
    return found


@pytest.mark.server
def test_log_level_reaches_the_server_and_its_workers(tmp_path: Path) -> None:
    with running_server(tmp_path / "quiet", workers=2, args=["--log-level", "warning"]) as quiet:
        httpx.get(quiet.base_url + "/v1/assign", timeout=5)
    with running_server(tmp_path / "chatty", env={"SPLITEDGE_LOG_LEVEL": "debug"}) as chatty:
        httpx.get(chatty.base_url + "/v1/assign", timeout=5)
    # Each worker logs its readiness at info, the parent its start: none at warning.
    assert "ready at config version" not in quiet.output()
    assert levels(quiet.output()) <= {"warning", "error"}
    assert "ready at config version" in chatty.output()
    assert {"info", "debug"} <= levels(chatty.output())
