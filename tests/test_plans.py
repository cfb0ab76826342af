"""Plans (edge.control.plans): the per-key rate limit (429 with Retry-After, shared by every
worker process), the plan's site limit (402, nothing created), ``--limits off`` never
limiting, and a bad plans file failing start-up with a message that says what is wrong."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from edge.control import plans
from edge.control.store import Store
from edge.errors import PlanRequired, RateLimited
from tests.support import Server, running_server

# A plan small enough to exhaust in a test; "enterprise" is left out of the table, so an
# enterprise workspace has no limits.
TINY = {"tiny": {"requests_per_minute": 3, "sites": 1}}


class Env(msgspec.Struct):
    server: Server
    store_path: Path


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A server with two workers and the tiny plans table."""
    root = tmp_path_factory.mktemp("plans")
    plans_file = root / "plans.json"
    plans_file.write_text(json.dumps(TINY))
    data = root / "data"
    Store(data / "splitedge.sqlite3").close()
    with running_server(data, workers=2, args=["--limits", str(plans_file)]) as server:
        yield Env(server, data / "splitedge.sqlite3")


def new_key(store_path: Path, plan: str) -> str:
    """A key of a new workspace on ``plan``."""
    store = Store(store_path)
    try:
        workspace = store.create_workspace(f"ws-{time.monotonic_ns()}", plan=plan)
        return store.issue_api_key(workspace.id).key
    finally:
        store.close()


def get_sites(server: Server, key: str) -> httpx.Response:
    # A client per request: a new connection each time, so the workers share the requests.
    return httpx.get(
        server.base_url + "/v1/sites", headers={"authorization": f"Bearer {key}"}, timeout=30
    )


def post_site(server: Server, key: str, url: str) -> httpx.Response:
    return httpx.post(
        server.base_url + "/v1/sites",
        headers={"authorization": f"Bearer {key}"},
        json={"url": url},
        timeout=30,
    )


def same_window() -> None:
    """Wait out the current minute when little of it is left, so that a test's requests
    fall in one rate window."""
    left = plans.WINDOW_SECONDS - time.time() % plans.WINDOW_SECONDS
    if left < 5:
        time.sleep(left + 0.05)


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    return error


def test_the_request_over_the_limit_is_429_with_retry_after(limited: Env) -> None:
    key, other = new_key(limited.store_path, "tiny"), new_key(limited.store_path, "tiny")
    same_window()
    for _ in range(3):
        assert get_sites(limited.server, key).status_code == 200
    over = get_sites(limited.server, key)
    error = error_of(over, 429, "rate_limited")
    retry_after = int(over.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert error["message"] == (
        "rate limit reached: the tiny plan allows 3 requests per minute per API key; "
        f"retry in {retry_after} s (Retry-After)"
    )
    # Another workspace's key counts its own requests.
    assert get_sites(limited.server, other).status_code == 200


def test_the_workers_share_one_count(limited: Env) -> None:
    key = new_key(limited.store_path, "tiny")
    same_window()
    # Twelve concurrent requests over two workers: a count per process would let up to six
    # through; the shared count lets exactly three.
    with ThreadPoolExecutor(12) as pool:
        statuses = sorted(
            r.status_code for r in pool.map(lambda _: get_sites(limited.server, key), range(12))
        )
    assert statuses == [200] * 3 + [429] * 9


def test_a_plan_the_table_does_not_name_is_unlimited(limited: Env) -> None:
    key = new_key(limited.store_path, "enterprise")
    assert all(get_sites(limited.server, key).status_code == 200 for _ in range(8))
    for n in range(3):
        assert post_site(limited.server, key, f"e{n}.example").status_code == 201


def sites_rows(store_path: Path) -> list[tuple[Any, ...]]:
    store = Store(store_path)
    try:
        return store.conn.execute("SELECT * FROM sites ORDER BY id").fetchall()
    finally:
        store.close()


def test_the_site_limit_is_402_and_creates_nothing(limited: Env) -> None:
    key = new_key(limited.store_path, "tiny")
    same_window()
    assert post_site(limited.server, key, "one.example").status_code == 201
    before = sites_rows(limited.store_path)
    error = error_of(post_site(limited.server, key, "two.example"), 402, "plan_limit_reached")
    assert "the tiny plan allows 1 site(s)" in error["message"]
    assert sites_rows(limited.store_path) == before


def test_off_never_limits(tmp_path: Path) -> None:
    data = tmp_path / "data"
    key = new_key(data / "splitedge.sqlite3", "starter")
    with running_server(data) as server:
        assert all(get_sites(server, key).status_code == 200 for _ in range(70))
        for n in range(3):
            assert post_site(server, key, f"s{n}.example").status_code == 201


def serve(tmp_path: Path, limits: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable, "-m", "edge.cli", "serve", "--port", "1",
        "--data-dir", str(tmp_path / "data"), "--limits", limits,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (
            '{"pro": {"requests_per_minute": 0}}',
            "Expected `int` >= 1 - at `$[...].requests_per_minute`",
        ),
        ('{"pro": {"rpm": 60}}', "Object contains unknown field `rpm` - at `$[...]`"),
        ("{}", "names no plans; use 'off' for no limits"),
        ("{", "is not JSON"),
    ],
)
def test_a_bad_plans_file_fails_start_up(tmp_path: Path, content: str, says: str) -> None:
    bad = tmp_path / "plans.json"
    bad.write_text(content)
    done = serve(tmp_path, str(bad))
    assert done.returncode == 2
    assert "--limits: " in done.stderr and says in done.stderr, done.stderr


def test_a_missing_plans_file_fails_start_up(tmp_path: Path) -> None:
    done = serve(tmp_path, "nowhere.json")
    assert done.returncode == 2
    assert "limits must be 'off', 'reference' or a plans JSON file; cannot read" in done.stderr
    assert "No such file or directory" in done.stderr


def test_the_reference_plans() -> None:
    reference = plans.load_plans("reference")
    assert reference is plans.REFERENCE_PLANS
    limits = plans.plan_limits(reference)
    assert limits is not None
    assert limits.sites == {"free": 1, "starter": 1, "pro": 10, "team": 10, "enterprise": 25}
    assert limits.per_minute == {
        "free": 30, "starter": 60, "pro": 300, "team": 600, "enterprise": 1200
    }  # fmt: skip
    assert limits.without_loops == {"free"}
    assert limits.metered == {"free", "starter", "pro", "team"}
    assert plans.load_plans("off") is None
    assert plans.plan_limits(None) is None


def test_retry_after_is_the_rest_of_the_window() -> None:
    limits = plans.PlanLimits({"tiny": 3})
    now = 1_700_000_017.4  # the window is [1_699_999_980, 1_700_000_040)
    assert plans.window_start(now) == 1_699_999_980
    limits.check("tiny", 3, now)
    limits.check("unnamed", 10_000, now)
    with pytest.raises(RateLimited) as raised:
        limits.check("tiny", 4, now)
    assert raised.value.retry_after == 23  # 22.6 s, rounded up
    with pytest.raises(RateLimited) as raised:
        limits.check("tiny", 4, 1_700_000_039.99)
    assert raised.value.retry_after == 1


def test_the_count_restarts_each_window_and_leaves_the_config_version(store: Store) -> None:
    workspace = store.create_workspace("counted")
    key_id = store.issue_api_key(workspace.id).record.id
    version = store.config_version()
    assert [store.count_request(key_id, 60) for _ in range(3)] == [1, 2, 3]
    assert store.count_request(key_id, 120) == 1
    assert store.config_version() == version


def test_a_plan_without_loops_is_402_plan_required(tmp_path: Path) -> None:
    table = tmp_path / "plans.json"
    table.write_text('{"free": {"loops": false}, "pro": {"sites": 3}}')
    limits = plans.plan_limits(plans.load_plans(str(table)))
    assert limits is not None and limits.without_loops == {"free"}
    limits.check_loops("pro")
    limits.check_loops("unnamed")
    with pytest.raises(PlanRequired) as raised:
        limits.check_loops("free")
    assert raised.value.status == 402 and raised.value.code == "plan_required"
    assert "free plan" in raised.value.message and "--plan" in raised.value.message
    # A table whose only limit is the loop gate still has limits.
    only = tmp_path / "only.json"
    only.write_text('{"free": {"loops": false}}')
    assert plans.plan_limits(plans.load_plans(str(only))) is not None
