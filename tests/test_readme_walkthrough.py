"""The README's walk-through, run as a reader runs it: its shell blocks, in order, in one
directory, against a real ``splitedge serve`` started on a fresh data directory.

The blocks are the fenced ``sh`` blocks under the README's "Walk-through" heading. An
HTML comment before a block says what it is: ``env`` (the variables the reader sets from
what ``make run`` printed: the test puts its own server's URL and first-start key in their
places), ``background`` (a server the reader leaves running in another terminal) or
``expected`` (the JSON the results step shows). Every other block runs as written, with
the variables of the earlier ones, and the test fails if any of them fails. Then the
figures the README states are checked against the results and the report page the
commands reached, and the preview URL is opened in Chromium while the experiment is
still a draft.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from tests.browser import chromium
from tests.support import Server, free_port, running_server

pytestmark = [pytest.mark.server, pytest.mark.browser]

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAKE_RUN_URL = "http://127.0.0.1:8000"
"""Where ``make run`` serves (``splitedge serve``'s default host and port)."""
KEY_PLACEHOLDER = "sk_live_..."
SHOP_PORT = "8080"
STATE_FILE = "walkthrough.state"
RESULTS_PATIENCE = 30.0
"""Seconds the results step is run again while the flusher has not yet stored every
event (the README tells the reader to run it again)."""


class Block(msgspec.Struct, frozen=True):
    """One fenced block of the walk-through: ``kind`` is its marker (``run`` without one)."""

    kind: str
    code: str


def walkthrough_blocks() -> list[Block]:
    section = README.read_text().split("\n## Walk-through", 1)[1].split("\n## ", 1)[0]
    found = re.finditer(r"(?:<!-- walkthrough: (\w+) -->\n)?```(sh|json)\n(.*?)```", section, re.S)
    return [Block(m[1] or "run", m[3]) for m in found]


def variable_names(blocks: list[Block]) -> list[str]:
    """The shell variables the blocks set, in the order they are first set."""
    names: list[str] = []
    for block in blocks:
        for name in re.findall(r"^(?:export )?([A-Z_]+)=", block.code, re.M):
            if name not in names:
                names.append(name)
    return names


def first_start_key(server: Server) -> str:
    found = re.search(r"shown this once:\s+(sk_live_\S+)", server.output())
    assert found, f"the first start printed no admin key:\n{server.output()}"
    return found[1]


class Shell:
    """Runs blocks one at a time in ``workdir``, each with the variables the earlier ones
    set (kept in a state file, as the reader's terminal keeps them)."""

    def __init__(self, workdir: Path, names: list[str]) -> None:
        self.workdir = workdir
        self.names = names
        (workdir / STATE_FILE).write_text("")

    def run(self, code: str) -> str:
        script = (
            f"set -euo pipefail\nsource {STATE_FILE}\n{code}\n"
            f"{{ declare -p {' '.join(self.names)} 2>/dev/null || true; }} > {STATE_FILE}\n"
        )
        done = subprocess.run(
            ["bash", "-c", script], cwd=self.workdir, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"README block failed:\n{code}\n{done.stdout}{done.stderr}"
        # curl exits 0 on a 4xx: an error answer shows in what the block saved or printed.
        for saved in self.workdir.glob("*.json"):
            assert "error" not in json.loads(saved.read_text()), saved.read_text()
        assert "null" not in done.stdout.splitlines(), f"{code}\n{done.stdout}"
        return done.stdout

    def value(self, name: str) -> str:
        return self.run(f'printf %s "${{{name}-}}"')


@contextmanager
def background(code: str, workdir: Path) -> Iterator[None]:
    proc = subprocess.Popen(
        ["bash", "-c", code],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def wait_answering(url: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def preview_headline(url: str) -> str:
    with chromium() as browser:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_function(
            "document.querySelector('h1').textContent !== 'Plans for every team'"
        )
        return page.inner_text("h1")


def units(results: dict[str, Any]) -> int:
    return sum(arm["units"] for arm in results["data"]["variants"].values())


def test_the_readme_walkthrough_reaches_its_own_results(tmp_path: Path) -> None:
    blocks = walkthrough_blocks()
    kinds = [b.kind for b in blocks]
    assert kinds.count("env") == 1 and kinds.count("expected") == 1, kinds
    assert re.search(
        r"^run:.*\n\t\$\(BIN\)/splitedge serve ", (ROOT / "Makefile").read_text(), re.M
    )
    env_block = next(b.code for b in blocks if b.kind == "env")
    assert MAKE_RUN_URL in env_block and KEY_PLACEHOLDER in env_block
    workdir = tmp_path / "clone"
    workdir.mkdir()
    (workdir / "examples").symlink_to(ROOT / "examples")
    shop_port = str(free_port())
    shell = Shell(workdir, variable_names(blocks))
    with running_server(tmp_path / "data") as server:
        key = first_start_key(server)
        assert httpx.get(server.base_url + "/demo", timeout=10).status_code == 200
        with_server = env_block.replace(MAKE_RUN_URL, server.base_url)
        shell.run(with_server.replace(KEY_PLACEHOLDER, key))
        traffic_output = ""
        results: dict[str, Any] = {}
        with ExitStack() as stack:
            for block in blocks:
                code = block.code.replace(SHOP_PORT, shop_port)
                if block.kind == "background":
                    stack.enter_context(background(code, workdir))
                    wait_answering(f"http://localhost:{shop_port}/")
                elif block.kind == "run" and "/results" in code:
                    results = run_results_step(shell, code, expected_units(blocks))
                elif block.kind == "run":
                    output = shell.run(code)
                    if '"action": "launch"' in code:
                        assert output.strip() == "running", output
                    if "examples/traffic.py" in code:
                        traffic_output = output
                    if "preview_urls" in code:
                        # Still a draft: the preview applies the variant, nothing counted.
                        preview = shell.value("PREVIEW")
                        assert "sk_preview=" in preview
                        assert preview_headline(preview) == "Ship the page that wins"
            report = httpx.get(shell.value("REPORT"), timeout=30)
    expected = msgspec.json.decode(next(b.code for b in blocks if b.kind == "expected"))
    check_results(results, expected, json.loads(traffic_output.strip().splitlines()[-1]))
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    for name, arm in results["data"]["variants"].items():
        assert name in report.text and str(arm["units"]) in report.text


def expected_units(blocks: list[Block]) -> int:
    """The visitors the README's traffic command sends."""
    command = next(b.code for b in blocks if "examples/traffic.py" in b.code)
    found = re.search(r"--visitors (\d+)", command)
    assert found, command
    return int(found[1])


def run_results_step(shell: Shell, code: str, visitors: int) -> dict[str, Any]:
    deadline = time.monotonic() + RESULTS_PATIENCE
    while True:
        shell.run(code)
        results: dict[str, Any] = json.loads((shell.workdir / "results.json").read_text())
        if units(results) >= visitors or time.monotonic() > deadline:
            return results
        time.sleep(1)


def check_results(results: dict[str, Any], expected: dict[str, Any], sent: dict[str, Any]) -> None:
    """The README's figures: the status and winner it shows, its total of units, about
    its units per arm and its conversion rates; and exactly what the script sent."""
    data = results["data"]
    assert data["status"] == expected["status"] and data["winner"] == expected["winner"]
    shown, got = expected["variants"], data["variants"]
    assert set(got) == set(shown) == set(sent["arms"])
    assert units(results) == sent["visitors"] == sum(arm["units"] for arm in shown.values())
    for name, arm in got.items():
        assert arm["units"] == sent["arms"][name]["units"]
        assert abs(arm["units"] - shown[name]["units"]) <= 0.1 * shown[name]["units"]
        conversions = sent["arms"][name]["conversions"]
        rate = 0.10 if arm["is_control"] else 0.20
        assert conversions == math.floor(arm["units"] * rate)
        assert arm["completion"] == pytest.approx(conversions / arm["units"])
        assert abs(arm["completion"] - shown[name]["completion"]) <= 0.02
