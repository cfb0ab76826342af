"""Idea-generation schedules (edge.control.schedules and schedules_api): when they run
(09:00 UTC, daily, weekly, monthly), ``/v1/schedules`` CRUD against a real server, and
`run_due` with a simulated clock over a real store, the deterministic author and the HTML
fixture pages served on loopback: a due schedule runs once, its next run is computed, a
missed period is run once, two concurrent schedulers never run it twice, and a metered
run is charged per page, refunded for a page that fails, and skipped when it cannot pay."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from edge.authoring import DeterministicAuthor, PageFetcher
from edge.authoring.drafts import ElementType, IdeaDraft
from edge.control import credits
from edge.control.plans import PlanLimits
from edge.control.schedule_records import ScheduleSettings
from edge.control.schedules import (
    ScheduleRun,
    create_schedule,
    get_schedule,
    next_run,
    run_due,
)
from edge.control.store import Store
from tests.page_server import serve_pages
from tests.support import LOOPBACK_ALLOWED, Seed, Server, api_call, running_server, seed_store

SUNDAY_NOON = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MONDAY_9 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
METERED = PlanLimits({}, frozenset({"metered"}))


# -- when schedules run ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frequency", "day", "after", "expected"),
    [
        ("daily", 1, datetime(2026, 3, 1, 8, 59, tzinfo=UTC), datetime(2026, 3, 1, 9, tzinfo=UTC)),
        ("daily", 1, datetime(2026, 3, 1, 9, 0, tzinfo=UTC), datetime(2026, 3, 2, 9, tzinfo=UTC)),
        ("daily", 5, datetime(2026, 12, 31, 23, tzinfo=UTC), datetime(2027, 1, 1, 9, tzinfo=UTC)),
        ("weekly", 1, SUNDAY_NOON, MONDAY_9),
        ("weekly", 1, MONDAY_9, datetime(2026, 3, 9, 9, tzinfo=UTC)),
        ("weekly", 7, SUNDAY_NOON, datetime(2026, 3, 8, 9, tzinfo=UTC)),
        ("weekly", 7, datetime(2026, 3, 1, 8, tzinfo=UTC), datetime(2026, 3, 1, 9, tzinfo=UTC)),
        ("monthly", 1, SUNDAY_NOON, MONDAY_9),  # the first Monday of March 2026
        ("monthly", 1, MONDAY_9, datetime(2026, 4, 6, 9, tzinfo=UTC)),
        ("monthly", 3, datetime(2026, 12, 5, tzinfo=UTC), datetime(2027, 1, 6, 9, tzinfo=UTC)),
        # another time zone is the same instant
        (
            "daily",
            1,
            datetime(2026, 3, 1, 10, 30, tzinfo=timezone(timedelta(hours=2))),
            datetime(2026, 3, 1, 9, tzinfo=UTC),
        ),
    ],
)
def test_next_run_is_the_first_run_time_strictly_after(
    frequency: Any, day: int, after: datetime, expected: datetime
) -> None:
    assert next_run(frequency, day, after) == expected


# -- the routes ------------------------------------------------------------------------


class Env(msgspec.Struct):
    server: Server
    store_path: Path
    seed: Seed


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data = tmp_path_factory.mktemp("schedules") / "data"
    seed = seed_store(data / "splitedge.sqlite3")
    with running_server(data, args=["--allow-private-targets"]) as server:
        yield Env(server, data / "splitedge.sqlite3", seed)


def call(env: Env, method: str, path: str, body: Any = None) -> httpx.Response:
    return api_call(env.server, env.seed.key.key, method, path, body)


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    return str(response.json()["error"]["message"])


def test_create_with_the_reference_defaults(env: Env) -> None:
    created = call(env, "POST", "/v1/schedules", {"site_id": env.seed.site.id})
    assert created.status_code == 201, created.text
    schedule = created.json()["data"]
    assert {k: schedule[k] for k in ScheduleSettings.__struct_fields__} == {
        "enabled": False, "frequency": "weekly", "day_of_week": 1, "ideas_per_run": 2,
        "output_type": "html", "target_pages": [],
    }  # fmt: skip
    assert schedule["site_id"] == env.seed.site.id
    assert schedule["next_run_at"] is None and schedule["last_run_at"] is None


def test_an_enabled_schedule_runs_next_at_9_utc_on_its_day(env: Env) -> None:
    before = datetime.now(UTC)
    created = call(
        env, "POST", "/v1/schedules",
        {"site_id": env.seed.site.id, "enabled": True, "day_of_week": 3,
         "target_pages": ["https://shop.example.com/pricing", "https://shop.example.com/pricing"]},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    schedule = created.json()["data"]
    at = datetime.fromisoformat(schedule["next_run_at"])
    assert at == next_run("weekly", 3, before) or at == next_run("weekly", 3, datetime.now(UTC))
    assert (at.weekday(), at.hour, at.minute) == (2, 9, 0) and before < at
    assert at - before <= timedelta(days=7)
    assert schedule["target_pages"] == ["https://shop.example.com/pricing"]  # each once


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({}, 400, "site_id is required"),
        ({"site_id": "nope"}, 404, "No site 'nope' in this workspace"),
        ({"day_of_week": 8}, 400, "day_of_week"),
        ({"ideas_per_run": 11}, 400, "ideas_per_run"),
        ({"frequency": "hourly"}, 400, "frequency"),
        ({"output_type": "pdf"}, 400, "output_type"),
        ({"target_pages": ["/pricing"]}, 400, "target_pages[0] '/pricing' is not an absolute"),
        ({"target_pages": ["https://a.example/"] * 11}, 400, "target_pages"),
        ({"cron": "0 9 * * 1"}, 400, "unknown field `cron`"),
    ],
)
def test_create_refuses_what_it_cannot_run(
    env: Env, body: dict[str, Any], status: int, says: str
) -> None:
    if body and "site_id" not in body:
        body = {"site_id": env.seed.site.id, **body}
    assert says in error_of(call(env, "POST", "/v1/schedules", body), status)


def test_list_get_patch_delete(env: Env) -> None:
    other = api_call(
        env.server, env.seed.other_key.key, "POST", "/v1/schedules",
        {"site_id": env.seed.other_site.id},
    )  # fmt: skip
    assert other.status_code == 201, other.text
    ids = [
        call(
            env, "POST", "/v1/schedules", {"site_id": env.seed.site.id, "ideas_per_run": n}
        ).json()["data"]["id"]
        for n in (1, 2, 3)
    ]
    listed = call(env, "GET", "/v1/schedules?limit=2").json()
    assert [s["id"] for s in listed["data"]] == ids[::-1][:2]  # newest first
    total = listed["meta"]["total"]
    assert total >= 3 and listed["meta"]["limit"] == 2
    everything = call(env, "GET", "/v1/schedules?limit=100").json()["data"]
    assert other.json()["data"]["id"] not in {s["id"] for s in everything}
    none = call(env, "GET", f"/v1/schedules?site_id={env.seed.other_site.id}").json()
    assert none["data"] == [] and none["meta"]["total"] == 0

    one = ids[0]
    assert call(env, "GET", f"/v1/schedules/{one}").json()["data"]["ideas_per_run"] == 1
    # a partial change keeps the rest; enabling sets the next run
    changed = call(env, "PATCH", f"/v1/schedules/{one}", {"enabled": True, "frequency": "daily"})
    assert changed.status_code == 200, changed.text
    data = changed.json()["data"]
    assert (data["enabled"], data["frequency"], data["ideas_per_run"]) == (True, "daily", 1)
    at = datetime.fromisoformat(data["next_run_at"])
    assert at.hour == 9 and timedelta(0) < at - datetime.now(UTC) <= timedelta(days=1)
    # a change of something else leaves next_run_at alone; disabling clears it
    pages = call(env, "PATCH", f"/v1/schedules/{one}", {"ideas_per_run": 4}).json()["data"]
    assert pages["next_run_at"] == data["next_run_at"] and pages["ideas_per_run"] == 4
    off = call(env, "PATCH", f"/v1/schedules/{one}", {"enabled": False}).json()["data"]
    assert off["next_run_at"] is None
    assert "day_of_week" in error_of(
        call(env, "PATCH", f"/v1/schedules/{one}", {"day_of_week": 0}), 400
    )
    assert "No site 'gone'" in error_of(
        call(env, "PATCH", f"/v1/schedules/{one}", {"site_id": "gone"}), 404
    )

    deleted = call(env, "DELETE", f"/v1/schedules/{one}")
    assert deleted.json()["data"] == {"id": one, "deleted": True}
    for method in ("GET", "DELETE"):
        assert "GET /v1/schedules lists" in error_of(call(env, method, f"/v1/schedules/{one}"), 404)
    trail = call(env, "GET", f"/v1/audit?target_id={one}").json()["data"]
    assert [e["action"] for e in reversed(trail)] == [
        "schedule.create", "schedule.update", "schedule.update", "schedule.update",
        "schedule.delete",
    ]  # fmt: skip


def test_another_workspaces_schedule_is_404(env: Env) -> None:
    theirs = api_call(
        env.server, env.seed.other_key.key, "POST", "/v1/schedules",
        {"site_id": env.seed.other_site.id},
    ).json()["data"]["id"]  # fmt: skip
    for method, body in (("GET", None), ("PATCH", {"enabled": True}), ("DELETE", None)):
        assert error_of(call(env, method, f"/v1/schedules/{theirs}", body), 404)
    assert "No site" in error_of(
        call(env, "POST", "/v1/schedules", {"site_id": env.seed.other_site.id}), 404
    )


# -- running them ------------------------------------------------------------------------


class Runs(msgspec.Struct):
    store_path: Path
    pages: str  # the fixture pages' base URL
    workspace_id: str
    key_id: str
    site_id: str


@pytest.fixture(scope="module")
def pages() -> Iterator[str]:
    with serve_pages() as base:
        yield base


@pytest.fixture
def runs(tmp_path: Path, pages: str) -> Iterator[Runs]:
    store_path = tmp_path / "data" / "splitedge.sqlite3"
    store = Store(store_path)
    try:
        ws = store.create_workspace("acme", plan="metered")
        key = store.issue_api_key(ws.id)
        site = store.create_site(ws.id, pages + "/")
        # An endpoint subscribed to ideas.generated, so runs queue deliveries to read.
        store.conn.execute(
            "INSERT INTO webhooks (id, workspace_id, url, events, secret, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (str(uuid.uuid4()), ws.id, "https://127.0.0.1:9/hook", '["ideas.generated"]',
             "whsec_test", SUNDAY_NOON.isoformat()),
        )  # fmt: skip
    finally:
        store.close()
    yield Runs(store_path, pages, ws.id, key.record.id, site.id)


def schedule(runs: Runs, **settings: Any) -> str:
    store = Store(runs.store_path)
    try:
        made = create_schedule(
            store, runs.workspace_id, runs.key_id, runs.site_id,
            ScheduleSettings(enabled=True, **settings), SUNDAY_NOON,
        )  # fmt: skip
        return made.id
    finally:
        store.close()


def read(runs: Runs, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    store = Store(runs.store_path)
    try:
        return store.conn.execute(sql, args).fetchall()
    finally:
        store.close()


def announced(runs: Runs) -> list[dict[str, Any]]:
    """The ideas.generated bodies queued, oldest first."""
    return [
        json.loads(payload)
        for (payload,) in read(runs, "SELECT payload FROM webhook_deliveries ORDER BY id")
    ]


def balance(runs: Runs) -> int:
    store = Store(runs.store_path)
    try:
        return store.credit_balance(runs.workspace_id)
    finally:
        store.close()


def grant(runs: Runs, amount: int) -> None:
    store = Store(runs.store_path)
    try:
        credits.grant(store, runs.workspace_id, amount)
    finally:
        store.close()


def test_a_due_schedule_runs_once_and_moves_to_its_next_time(runs: Runs) -> None:
    author = DeterministicAuthor(PageFetcher(guard=LOOPBACK_ALLOWED))
    schedule_id = schedule(runs, target_pages=(runs.pages + "/pricing", runs.pages + "/landing"))
    assert run_due(runs.store_path, author, MONDAY_9 - timedelta(seconds=1)) == []

    (run,) = run_due(runs.store_path, author, MONDAY_9)
    assert run.schedule_id == schedule_id and run.errors == ()
    assert run.next_run_at == "2026-03-09T09:00:00+00:00"
    stored = read(runs, "SELECT id, source_url, output_type FROM ideas ORDER BY rowid")
    assert [row[0] for row in stored] == list(run.idea_ids)
    sources = {row[1] for row in stored}
    assert sources <= {runs.pages + "/pricing", runs.pages + "/landing"} and len(sources) == 2
    per_page = [sum(1 for row in stored if row[1] == s) for s in sources]
    assert all(1 <= n <= 2 for n in per_page)  # ideas_per_run for each page
    (event,) = announced(runs)
    assert event["event"] == "ideas.generated" and event["success"] is True
    assert event["schedule_id"] == schedule_id and event["site_id"] == runs.site_id
    assert [i["id"] for i in event["ideas"]] == list(run.idea_ids) and event["errors"] == []
    assert all(i["mockup_data"]["mutations"] for i in event["ideas"])

    # the same moment again, or later the same week: nothing is due
    assert run_due(runs.store_path, author, MONDAY_9) == []
    assert run_due(runs.store_path, author, MONDAY_9 + timedelta(days=6)) == []
    store = Store(runs.store_path)
    try:
        after = get_schedule(store, runs.workspace_id, schedule_id)
    finally:
        store.close()
    assert after.last_run_at == "2026-03-02T09:00:00+00:00"
    # the scheduler was down for two runs: the missed ones are one run, then the next Monday
    (late,) = run_due(runs.store_path, author, datetime(2026, 3, 20, 15, tzinfo=UTC))
    assert late.next_run_at == "2026-03-23T09:00:00+00:00"
    assert len(announced(runs)) == 2
    # unmetered (no limits): nothing was charged
    assert balance(runs) == 0


def test_a_disabled_schedule_never_runs(runs: Runs) -> None:
    schedule_id = schedule(runs)
    store = Store(runs.store_path)
    try:
        store.conn.execute("UPDATE schedules SET enabled = 0 WHERE id = ?", (schedule_id,))
    finally:
        store.close()
    assert (
        run_due(
            runs.store_path,
            DeterministicAuthor(PageFetcher(guard=LOOPBACK_ALLOWED)),
            MONDAY_9 + timedelta(days=30),
        )
        == []
    )


class HeldAuthor(DeterministicAuthor):
    """The deterministic author, whose idea generation waits for ``release`` (so that a
    second scheduler runs while the first is mid-run) and counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.calls = 0

    def generate_ideas(
        self,
        site_url: str,
        count: int,
        element_types: Sequence[ElementType] | None = None,
        target_url: str | None = None,
    ) -> list[IdeaDraft]:
        self.calls += 1
        assert self.release.wait(10)
        return super().generate_ideas(site_url, count, element_types, target_url)


def test_two_concurrent_schedulers_never_run_a_schedule_twice(runs: Runs) -> None:
    schedule(runs, target_pages=(runs.pages + "/pricing",))
    author = HeldAuthor()
    first: list[ScheduleRun] = []
    ticker = threading.Thread(
        target=lambda: first.extend(run_due(runs.store_path, author, MONDAY_9))
    )
    ticker.start()
    while author.calls == 0:  # the first scheduler has claimed it and is authoring
        assert ticker.is_alive()
        threading.Event().wait(0.01)
    second = run_due(runs.store_path, author, MONDAY_9)
    author.release.set()
    ticker.join(10)
    assert second == [] and len(first) == 1 and author.calls == 1
    assert len(announced(runs)) == 1


def test_a_metered_run_pays_per_page_refunds_a_failed_page_and_skips_when_short(
    runs: Runs,
) -> None:
    author = DeterministicAuthor(PageFetcher(guard=LOOPBACK_ALLOWED))
    grant(runs, 25)
    # one page that serves, one that does not: 20 charged, 10 given back
    schedule(runs, target_pages=(runs.pages + "/pricing", "http://127.0.0.1:9/gone"))
    (run,) = run_due(runs.store_path, author, MONDAY_9, METERED)
    assert run.idea_ids and [e.url for e in run.errors] == ["http://127.0.0.1:9/gone"]
    assert run.errors[0].code == "page_unavailable"
    assert balance(runs) == 15
    ledger = read(runs, "SELECT delta, reason, key_id FROM credit_ledger ORDER BY id")
    assert ledger == [
        (25, "grant", None), (-20, "generate_ideas", runs.key_id),
        (10, "refund:generate_ideas", None),
    ]  # fmt: skip
    (event,) = announced(runs)
    assert event["success"] is True and event["errors"][0]["code"] == "page_unavailable"

    # 15 cannot pay the next run's 20: skipped, announced, and the schedule moves on
    (skipped,) = run_due(runs.store_path, author, MONDAY_9 + timedelta(days=7), METERED)
    assert skipped.idea_ids == () and skipped.errors[0].code == "insufficient_credits"
    assert skipped.next_run_at == "2026-03-16T09:00:00+00:00"
    assert balance(runs) == 15
    failed = announced(runs)[-1]
    assert failed["success"] is False and failed["ideas"] == []
    assert "generate_ideas costs 20 credits" in failed["errors"][0]["message"]


def test_a_run_whose_every_page_fails_is_refunded_in_full(runs: Runs) -> None:
    grant(runs, 10)
    schedule(runs, target_pages=("http://127.0.0.1:9/down",))
    (run,) = run_due(
        runs.store_path, DeterministicAuthor(PageFetcher(guard=LOOPBACK_ALLOWED)), MONDAY_9, METERED
    )
    assert run.idea_ids == () and run.errors[0].code == "page_unavailable"
    assert balance(runs) == 10
    assert read(runs, "SELECT count(*) FROM ideas") == [(0,)]
    (event,) = announced(runs)
    assert event["success"] is False and event["errors"][0]["url"] == "http://127.0.0.1:9/down"


def test_a_scheduled_run_never_fetches_the_servers_own_network(runs: Runs) -> None:
    """The scheduler's author fetches through the production guard: a site on loopback
    (as if its name came to resolve there) yields a refusal, not its pages' ideas."""
    schedule(runs, target_pages=(runs.pages + "/pricing",))
    (run,) = run_due(runs.store_path, DeterministicAuthor(), MONDAY_9)
    assert run.idea_ids == () and run.errors[0].code == "page_unavailable"
    assert "non-public address" in run.errors[0].message
    assert read(runs, "SELECT count(*) FROM ideas") == [(0,)]
