"""Continuous loops over simulated months (edge.control.loops, edge.control.scheduler).

A real store, the deterministic author on the HTML fixture pages served on loopback, and
the real decisions (analytics.loop_decisions); the traffic is synthetic, with known true
rates: every simulated hour, each running round's experiment gets an hour of visitors
per arm, and their conversions are drawn from the true rate of the changes that arm
shows. A promoted challenger's rate becomes the champion's. The clock is injected, so
`tick_once` runs every simulated hour of 60 days in seconds.

Then the same loop end to end: created over REST on a real server, its visitors sent
through /v1/collect into embedded ClickHouse, ticked by ``splitedge tick`` and by
`tick_once` reading ClickHouse through the server's gateway.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from analytics.gateway import query_runner
from analytics.loop_decisions import ArmCounts, RoundData
from edge.authoring import DeterministicAuthor, PageFetcher
from edge.control import loops
from edge.control.loop_records import Loop, LoopConfig, LoopGoal, Round
from edge.control.loops import create_loop
from edge.control.records import ExperimentRecord
from edge.control.results_api import ResultsSource
from edge.control.scheduler import Scheduler, TickReport, tick_once
from edge.control.store import Store
from tests.page_server import serve_pages
from tests.support import (
    LOOPBACK_ALLOWED,
    api_call,
    collect,
    running_server,
    wait_flushed,
    wait_served,
)

START = datetime(2026, 1, 5, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAYS = 60
VISITORS_PER_HOUR = 10  # per arm: 240 a day, 1,680 by the first look on day 7
BASE_RATE = 0.10

ChallengerRate = Callable[[float, int], float]
"""A scenario: the true rate of round N's challenger, given its champion's."""


def better_first(champion: float, round_number: int) -> float:
    """Round 1's challenger converts 50% better; later ones are the champion's equals."""
    return champion * 1.5 if round_number == 1 else champion


def twice_as_good(champion: float, round_number: int) -> float:
    """Far better: promoted at the first look whatever the draw."""
    return champion * 2


def always_worse(champion: float, round_number: int) -> float:
    return champion * 0.5


def always_equal(champion: float, round_number: int) -> float:
    return champion


class Traffic:
    """Synthetic visitors of every loop's running round, drawn an hour at a time, and the
    counts so far (what ClickHouse would answer), keyed by experiment."""

    def __init__(self, scenarios: dict[str, ChallengerRate], seed: int) -> None:
        self.scenarios = scenarios  # by loop name
        # One generator per loop, so that every run draws the same visitors for it
        # whatever order the loops are listed in.
        self.rngs = {name: np.random.default_rng([seed, n]) for n, name in enumerate(scenarios)}
        self.rates: dict[str, dict[bytes, float]] = {name: {b"[]": BASE_RATE} for name in scenarios}
        self.counts: dict[str, list[int]] = {}  # experiment id: units, conv (champion, challenger)
        self.true_rates: dict[str, tuple[float, float]] = {}

    def hour(self, store: Store) -> None:
        """One hour of visitors for each round whose experiment is running."""
        for loop in store.list_loops(_workspace(store), 100, 0)[0]:
            [current] = store.loop_rounds(loop.id, 1)
            assert current.experiment_id is not None
            record = store.experiment_record(current.experiment_id, loop.workspace_id)
            assert record is not None
            if record.status != "running":
                continue
            rates = self._rates(loop, current, record)
            counts = self.counts.setdefault(record.id, [0, 0, 0, 0])
            for arm, rate in enumerate(rates):
                counts[2 * arm] += VISITORS_PER_HOUR
                counts[2 * arm + 1] += int(self.rngs[loop.name].binomial(VISITORS_PER_HOUR, rate))

    def _rates(self, loop: Loop, current: Round, record: ExperimentRecord) -> tuple[float, float]:
        known = self.rates[loop.name]
        champion, challenger = (msgspec.json.encode(v.changes) for v in record.variants[:2])
        if challenger not in known:
            known[challenger] = self.scenarios[loop.name](known[champion], current.round_number)
        self.true_rates[record.id] = (known[champion], known[challenger])
        return known[champion], known[challenger]

    def results(self, record: ExperimentRecord) -> RoundData:
        units_a, conv_a, units_b, conv_b = self.counts.get(record.id, [0, 0, 0, 0])
        return RoundData(ArmCounts(units_a, conv_a), ArmCounts(units_b, conv_b))


def _workspace(store: Store) -> str:
    (workspace_id,) = store.conn.execute("SELECT id FROM workspaces").fetchone()
    return str(workspace_id)


def loop_config(name: str, site_id: str, target_url: str, **rules: Any) -> LoopConfig:
    return LoopConfig(
        name=name,
        site_id=site_id,
        target_url=target_url,
        element_types=("headline",),
        primary_goal=LoopGoal(name="Choose a plan", type="click", selector=".cta"),
        **rules,
    )


class World(msgspec.Struct):
    store_path: Path
    author: DeterministicAuthor
    traffic: Traffic
    loop_ids: dict[str, str]


@pytest.fixture(scope="module")
def pages() -> Iterator[str]:
    with serve_pages() as base_url:
        yield base_url


def make_world(
    tmp_path: Path, pages: str, scenarios: dict[str, ChallengerRate], seed: int, **rules: Any
) -> World:
    store_path = tmp_path / "splitedge.sqlite3"
    author = DeterministicAuthor(PageFetcher(guard=LOOPBACK_ALLOWED))
    store = Store(store_path)
    try:
        workspace = store.create_workspace("loops")
        site = store.create_site(workspace.id, pages)
        ids = {}
        for name in scenarios:
            config = loop_config(name, site.id, pages + "/pricing", **rules)
            draft = author.challenger(config.target_url, config.element_types, (), [])
            loop, _ = create_loop(
                store, workspace.id, None, config, draft.mutations, draft.hypothesis, START
            )
            ids[name] = loop.id
    finally:
        store.close()
    return World(store_path, author, Traffic(scenarios, seed), ids)


def simulate(world: World, start: datetime, hours: int) -> list[tuple[datetime, TickReport]]:
    """Run ``hours`` simulated hours from ``start``: traffic, then a scheduler pass."""
    reports = []
    for n in range(1, hours + 1):
        now = start + n * HOUR
        store = Store(world.store_path)
        try:
            world.traffic.hour(store)
        finally:
            store.close()
        report = tick_once(world.store_path, world.traffic.results, world.author, now)
        if report.loops:
            reports.append((now, report))
    return reports


def history(world: World, name: str) -> list[Round]:
    """The loop's rounds, oldest first (by name, or by id)."""
    store = Store(world.store_path)
    try:
        loop_id = world.loop_ids.get(name, name)
        return list(reversed(store.loop_rounds(loop_id, 100)))
    finally:
        store.close()


def loop_of(world: World, name: str) -> Loop:
    store = Store(world.store_path)
    try:
        loop = store.get_loop(world.loop_ids[name])
        assert loop is not None
        return loop
    finally:
        store.close()


def experiment(world: World, experiment_id: str | None) -> ExperimentRecord:
    assert experiment_id is not None
    store = Store(world.store_path)
    try:
        record = store.experiment_record(experiment_id, None)
        assert record is not None
        return record
    finally:
        store.close()


def days_after(start: str, decided: str | None) -> float:
    assert decided is not None
    return (datetime.fromisoformat(decided) - datetime.fromisoformat(start)).total_seconds() / 86400


@pytest.mark.simulation
def test_sixty_days_promote_a_better_challenger_and_hold_worse_ones(
    tmp_path: Path, pages: str
) -> None:
    world = make_world(tmp_path, pages, {"better": better_first, "worse": always_worse}, seed=7)
    reports = simulate(world, START, DAYS * 24)

    better = history(world, "better")
    first = better[0]
    assert first.outcome == "challenger_promoted"
    assert first.final_prob_to_win is not None and first.final_prob_to_win > 0.999
    # O'Brien-Fleming spends little early, but a 50% lift is clear at the first look.
    assert days_after(first.started_at, first.decided_at) == pytest.approx(7, abs=1 / 24)
    promoted = experiment(world, first.experiment_id)
    assert promoted.status == "completed"
    # The winner's changes are the next round's champion (its control arm).
    second = experiment(world, better[1].experiment_id)
    assert second.variants[0].changes == first.challenger_changes != ()
    assert second.variants[1].changes not in ((), first.challenger_changes)
    assert better[1].round_number == 2
    # Later challengers are no better: they are not promoted in the rest of the 60 days.
    assert all(r.outcome != "challenger_promoted" for r in better[1:])

    worse = history(world, "worse")
    assert len(worse) >= 6  # a hold every week or so
    decided = [r for r in worse if r.outcome != "pending"]
    assert {r.outcome for r in decided} == {"champion_held"}
    assert all(days_after(r.started_at, r.decided_at) < 10 for r in decided)
    # The champion stays the page as it is; each challenger is new.
    for r in worse:
        assert experiment(world, r.experiment_id).variants[0].changes == ()
    assert len({msgspec.json.encode(r.challenger_changes) for r in worse}) == len(worse)
    assert loop_of(world, "worse").status == loop_of(world, "better").status == "running"
    # Every decision reached the report of the tick that took it, once.
    ticked = [(t.loop_id, t.decision) for _, report in reports for t in report.loops]
    decisions = [d for _, d in ticked if d != "wait"]
    assert len(decisions) == sum(len([r for r in history(world, n) if r.decided_at])
                                 for n in ("better", "worse"))  # fmt: skip


def trailing_inconclusive(rounds: list[Round]) -> int:
    decided = [r.outcome for r in rounds if r.outcome != "pending"]
    return len(decided) - len("".join("x" if o != "inconclusive" else "i" for o in decided)
                              .rstrip("i"))  # fmt: skip


@pytest.mark.simulation
def test_equal_arms_go_inconclusive_pause_after_three_rounds_and_resume(
    tmp_path: Path, pages: str
) -> None:
    # Six loops of equal arms: each round ends inconclusive unless chance crosses a
    # boundary (about 5% each way), so most loops see three inconclusive rounds in a row
    # (and pause) and any that does not shows that a decided round restarts the streak.
    scenarios: dict[str, ChallengerRate] = {f"equal-{n}": always_equal for n in range(6)}
    world = make_world(tmp_path, pages, scenarios, seed=11, min_round_days=7, max_round_days=10)
    simulate(world, START, 31 * 24)
    outcomes = [r.outcome for name in scenarios for r in history(world, name)]
    decided = [o for o in outcomes if o != "pending"]
    assert decided.count("inconclusive") >= 0.75 * len(decided), decided
    paused = []
    for name in scenarios:
        rounds, loop = history(world, name), loop_of(world, name)
        streak = trailing_inconclusive(rounds)
        assert loop.consecutive_inconclusive == streak
        assert (loop.status == "paused") == (streak == 3), (name, [r.outcome for r in rounds])
        for r in rounds:
            if r.outcome == "inconclusive":  # inconclusive only when the round runs out
                assert days_after(r.started_at, r.decided_at) == pytest.approx(10, abs=1 / 24)
        if loop.status == "paused":
            paused.append((loop, rounds))
    assert paused, "no loop had three inconclusive rounds in a row"
    loop, rounds = paused[0]
    assert loop.pause_reason is not None and "3 inconclusive" in loop.pause_reason
    # The round after the third exists, its experiment paused with the loop: no visitors.
    nxt = rounds[-1]
    assert nxt.outcome == "pending" and nxt.round_number == len(rounds)
    assert experiment(world, nxt.experiment_id).status == "paused"
    assert world.traffic.counts.get(nxt.experiment_id or "", [0, 0, 0, 0]) == [0, 0, 0, 0]
    # A paused loop is never due.
    assert all(loop.id not in [t.loop_id for t in report.loops]
               for _, report in simulate(world, START + 31 * 24 * HOUR, 48))  # fmt: skip
    resumed_at = START + 33 * 24 * HOUR
    store = Store(world.store_path)
    try:
        toggle = loops.resume_loop(store, loop.workspace_id, None, loop.id, resumed_at)
        again = loops.resume_loop(store, loop.workspace_id, None, loop.id, resumed_at)
    finally:
        store.close()
    assert toggle.no_op is False and toggle.experiment_id == nxt.experiment_id
    assert again.no_op is True and again.experiment_id is None
    assert toggle.loop.status == "running" and toggle.loop.consecutive_inconclusive == 0
    assert datetime.fromisoformat(toggle.loop.next_tick_at) == resumed_at
    assert experiment(world, nxt.experiment_id).status == "running"
    # Due at once after the resume; the round's runtime excludes the pause.
    reports = simulate(world, resumed_at - HOUR, 11 * 24)
    assert loop.id in [t.loop_id for t in reports[0][1].loops] and reports[0][0] == resumed_at
    nxt = next(r for r in history(world, rounds[0].loop_id) if r.id == nxt.id)
    paused_days = nxt.paused_seconds / 86400
    assert nxt.outcome != "pending" and paused_days > 2
    if nxt.outcome == "inconclusive":
        runtime = days_after(nxt.started_at, nxt.decided_at) - paused_days
        assert runtime == pytest.approx(10, abs=1 / 24)
    # The streak restarted at 0: one more round does not pause the loop again.
    assert loop_of(world, names_of(world)[loop.id]).status == "running"


def names_of(world: World) -> dict[str, str]:
    return {loop_id: name for name, loop_id in world.loop_ids.items()}


def test_two_concurrent_tickers_never_advance_a_loop_twice(tmp_path: Path, pages: str) -> None:
    scenarios: dict[str, ChallengerRate] = {f"loop-{n}": twice_as_good for n in range(8)}
    world = make_world(tmp_path, pages, scenarios, seed=3)
    # Seven days of traffic with no ticks: every loop is due, and decides to promote.
    store = Store(world.store_path)
    try:
        for _ in range(7 * 24):
            world.traffic.hour(store)
    finally:
        store.close()
    now = START + 7 * 24 * HOUR + HOUR
    barrier = threading.Barrier(2)
    reports: list[TickReport] = []

    def ticker() -> None:
        barrier.wait()
        reports.append(tick_once(world.store_path, world.traffic.results, world.author, now))

    threads = [threading.Thread(target=ticker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    advanced = sorted(t.loop_id for report in reports for t in report.loops)
    assert advanced == sorted(world.loop_ids.values())
    assert all(report.failed_loops == 0 for report in reports)
    for name in scenarios:
        rounds = history(world, name)
        assert [(r.round_number, r.outcome) for r in rounds] == [
            (1, "challenger_promoted"),
            (2, "pending"),
        ]
    # A third pass at the same instant finds nothing due.
    assert tick_once(world.store_path, world.traffic.results, world.author, now).loops == ()


# -- end to end: REST, ClickHouse, the tick command ------------------------------------


def test_a_loop_over_rest_and_clickhouse_is_promoted_by_a_tick(tmp_path: Path, pages: str) -> None:
    data = tmp_path / "data"
    store = Store(data / "splitedge.sqlite3")
    try:
        workspace = store.create_workspace("e2e")
        key = store.issue_api_key(workspace.id).key
        site = store.create_site(workspace.id, pages)
    finally:
        store.close()
    with running_server(
        data, env={"SPLITEDGE_TICK_INTERVAL": "0"}, args=["--allow-private-targets"]
    ) as server:
        base = {"site_id": site.id, "target_url": pages + "/pricing", "element_types": ["headline"]}
        seeds = api_call(server, key, "POST", "/v1/loops", base)
        assert seeds.status_code == 200, seeds.text
        idea = seeds.json()["data"]["ideas"][0]
        launched = api_call(server, key, "POST", "/v1/loops", {
            **base, "selected_idea_id": idea["id"], "name": "Pricing headline loop",
            "primary_goal": {"name": "Choose a plan", "type": "click", "selector": ".cta"},
        })  # fmt: skip
        assert launched.status_code == 201, launched.text
        loop_id = launched.json()["data"]["loop"]["id"]
        experiment_id = launched.json()["data"]["round"]["experiment_id"]
        record = api_call(server, key, "GET", f"/v1/experiments/{experiment_id}").json()["data"][
            "experiment"
        ]
        champion, challenger = (v["id"] for v in record["variants"])
        [goal] = [g["id"] for g in record["goals"]]

        # 600 visitors per arm: 10% convert on the champion, 20% on the challenger.
        events = []
        stamp = int(START.timestamp() * 1000)
        for arm, (variant, rate) in enumerate(((champion, 0.10), (challenger, 0.20))):
            for n in range(600):
                visitor = f"v{arm}-{n}"
                common = {"visitor_id": visitor, "ts": stamp, "experiment_id": experiment_id,
                          "variant_id": variant}  # fmt: skip
                events.append({"event_id": f"x-{visitor}", "type": "exposure", **common})
                if n < 600 * rate:
                    events.append(
                        {"event_id": f"g-{visitor}", "type": "goal", "goal_id": goal, **common}
                    )
        wait_served(server, site.public_key, experiment_id)
        assert collect(server, site.public_key, events) == len(events)
        wait_flushed(server, len(events))

        # The tick command: the loop is not due for an hour yet, so it does nothing.
        ticked = subprocess.run(
            [sys.executable, "-m", "edge.cli", "tick", "--data-dir", str(data)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert ticked.returncode == 0, ticked.stderr
        assert msgspec.json.decode(ticked.stdout) == {
            "loops": [], "schedules": [], "failed_loops": 0
        }  # fmt: skip

        # A week on, a pass over the server's ClickHouse (through its gateway) promotes.
        runner = query_runner(f"chdb://{(data / 'clickhouse').resolve()}", data / "run")
        results = loops.source_results(ResultsSource(data / "splitedge.sqlite3", runner))
        week = datetime.now(UTC) + timedelta(days=7, hours=1)
        report = tick_once(
            data / "splitedge.sqlite3",
            results,
            DeterministicAuthor(PageFetcher(guard=LOOPBACK_ALLOWED)),
            week,
        )
        assert [(t.loop_id, t.decision) for t in report.loops] == [(loop_id, "promote")]

        status = api_call(server, key, "GET", f"/v1/loops/{loop_id}").json()["data"]
        [first, second] = sorted(status["history"], key=lambda r: r["round_number"])
        assert first["outcome"] == "challenger_promoted" and first["final_prob_to_win"] > 0.99
        assert status["current_round"]["id"] == second["id"]
        assert second["champion_variant_id"] == status["loop"]["current_champion_variant_id"]
        done = api_call(server, key, "GET", f"/v1/experiments/{experiment_id}").json()["data"][
            "experiment"
        ]
        assert done["status"] == "completed"
        nxt = api_call(server, key, "GET", f"/v1/experiments/{second['experiment_id']}")
        assert nxt.json()["data"]["experiment"]["status"] == "running"
        assert (
            nxt.json()["data"]["experiment"]["variants"][0]["changes"]
            == record["variants"][1]["changes"]
        )


@pytest.mark.server
def test_the_tick_command_advances_a_due_loop_once_beside_another(tmp_path: Path) -> None:
    """Two ``splitedge tick`` processes at once on a stopped server's data directory
    (embedded ClickHouse opened by the command itself): the due loop is ticked once."""
    with serve_pages() as pages:
        data = tmp_path / "data"
        store = Store(data / "splitedge.sqlite3")
        try:
            workspace = store.create_workspace("cron")
            site = store.create_site(workspace.id, pages)
            author = DeterministicAuthor(PageFetcher(guard=LOOPBACK_ALLOWED))
            config = loop_config("cron", site.id, pages + "/pricing")
            draft = author.challenger(config.target_url, config.element_types, (), [])
            now = datetime.now(UTC)
            loop, _ = create_loop(
                store, workspace.id, None, config, draft.mutations, draft.hypothesis,
                now - timedelta(hours=2),
            )  # fmt: skip
        finally:
            store.close()
        with running_server(data, env={"SPLITEDGE_TICK_INTERVAL": "0"}):
            pass  # creates the ClickHouse schema, then stops
        command = [sys.executable, "-m", "edge.cli", "tick", "--data-dir", str(data)]
        procs = [
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    ticks = [t for out, _ in outputs for t in msgspec.json.decode(out)["loops"]]
    assert ticks == [{"loop_id": loop.id, "decision": "wait"}]
    store = Store(data / "splitedge.sqlite3")
    try:
        after = store.get_loop(loop.id)
    finally:
        store.close()
    assert after is not None and datetime.fromisoformat(after.next_tick_at) > now


def test_the_server_scheduler_ticks_due_loops_on_its_interval(tmp_path: Path, pages: str) -> None:
    """The thread `splitedge serve` runs: its first pass at once, then one per interval,
    each at its clock's time."""
    world = make_world(tmp_path, pages, {"a": twice_as_good}, seed=5)
    store = Store(world.store_path)
    try:
        for _ in range(8 * 24):
            world.traffic.hour(store)
    finally:
        store.close()
    times = iter([START + 2 * HOUR, START + 8 * 24 * HOUR])
    seen: list[datetime] = []

    def clock() -> datetime:
        seen.append(next(times, START + 8 * 24 * HOUR + 2 * HOUR))
        return seen[-1]

    scheduler = Scheduler(world.store_path, world.traffic.results, world.author, 0.2, None, clock)
    scheduler.start()
    try:
        deadline = time.monotonic() + 30
        while len(history(world, "a")) < 2:
            assert time.monotonic() < deadline, "the scheduler did not promote in 30 s"
            time.sleep(0.05)
    finally:
        scheduler.stop()
    first, second = history(world, "a")
    assert first.outcome == "challenger_promoted" and second.outcome == "pending"
    # The first pass (2 hours in) only waited; the promote came at the 8-day pass.
    assert first.decided_at == (START + 8 * 24 * HOUR).isoformat()
    assert first.last_look == 1 and len(seen) >= 2  # day 8's look (no tick took day 7's)
    with pytest.raises(ValueError, match="positive"):
        Scheduler(world.store_path, world.traffic.results, world.author, 0)
