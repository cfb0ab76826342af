"""The console's results page, end to end: experiments created through the API on a real
server, events sent through /v1/collect and /v1/events into embedded ClickHouse, the page
read over HTTP by a signed-in session (and at 390 px in Chromium). It shows the verdict,
every goal or agent metric with its interval and a plot of its lift, the timeline (hourly
while young), the health panel and the device breakdown, all figures the API's own; a
guardrail stop shows its reason; another workspace's experiment is a 404; names render
as text."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
from markupsafe import escape
from playwright.sync_api import Page

from tests.console_support import signed_in
from tests.support import (
    Seed,
    Server,
    api_call,
    api_get,
    collect,
    exposures,
    goals,
    running_server,
    seed_store,
    wait_flushed,
)

pytestmark = [pytest.mark.server]

SCRIPT = "<script>window.pwned = 1</script>"
IMG = '"><img src=x onerror=x>'
LINE = "Line\u2028separated"
GOALS = [
    {"name": f"Buy {SCRIPT}", "type": "click", "selector": ".buy"},
    {"name": f"View {LINE}", "type": "pageview", "url_pattern": "/pricing"},
    {"name": f"Order {IMG}", "type": "custom"},
]
# Per arm: units, clicks, pageviews, orders (value 20 each); even visitors on mobile.
PLAN = [(200, 20, 80, 10), (200, 36, 70, 16)]
# Per arm: units, successful units, cost, duration (ms) and turns per task.
AGENT_PLAN = [(120, 70, 0.010, 1200.0, 4), (120, 80, 0.016, 900.0, 5)]


class Scenario(msgspec.Struct):
    server: Server
    seed: Seed
    web: dict[str, Any]
    agent: dict[str, Any]
    guarded: dict[str, Any]


def create(server: Server, key: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = api_call(server, key, "POST", "/v1/experiments", body | {"auto_launch": True})
    assert answer.status_code == 201, answer.text
    experiment: dict[str, Any] = answer.json()["data"]["experiment"]
    return experiment


def web_events(experiment: dict[str, Any]) -> list[dict[str, Any]]:
    click, view, order = (g["id"] for g in experiment["goals"])
    events: list[dict[str, Any]] = []
    for variant, (units, clicks, views, orders) in zip(experiment["variants"], PLAN):
        visitors = [f"c-{variant['id'][:8]}-{i}" for i in range(units)]
        shown = exposures(experiment["id"], variant["id"], visitors)
        for i, event in enumerate(shown):
            event["device"] = "mobile" if i % 2 == 0 else "desktop"
        events += shown
        events += goals(experiment["id"], click, visitors[:clicks])
        events += goals(experiment["id"], view, visitors[-views:])
        events += goals(experiment["id"], order, visitors[:orders], 20.0)
    return events


def agent_tasks(experiment: dict[str, Any]) -> list[dict[str, Any]]:
    tasks = []
    for variant, (units, wins, cost, duration, turns) in zip(experiment["variants"], AGENT_PLAN):
        for unit in range(units):
            spread = 1 + (unit % 5 - 2) / 10
            tasks.append({
                "agentId": "agent-1", "task": "triage", "cost": cost * spread,
                "durationMs": duration * spread, "turns": turns + unit % 3,
                "outcome": "success" if unit < wins else "failure",
                "experiment_id": experiment["id"], "variant_id": variant["id"],
                "session_id": f"run-{experiment['id'][:6]}-{variant['id'][:8]}-{unit}",
            })  # fmt: skip
    return tasks


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    data = tmp_path_factory.mktemp("console-results") / "data"
    seed = seed_store(data / "splitedge.sqlite3")
    key = seed.key.key
    with running_server(data, env={"SPLITEDGE_DECISION_INTERVAL": "0.5"}) as server:
        variants = [{"name": f"Bold {IMG}", "changes": [
            {"selector": "h1", "action": "set_content", "payload": "B"}]}]  # fmt: skip
        web = create(server, key, {"site_id": seed.site.id, "name": f"Checkout {SCRIPT}",
                                   "variants": variants, "goals": GOALS})  # fmt: skip
        arms = [{"name": "control", "config": {}}, {"name": f"terse {LINE}", "config": {}}]
        agent = create(server, key, {"kind": "agent", "name": "Terse prompt", "variants": arms})
        guarded_body = {"kind": "agent", "name": "Guarded prompt", "variants": arms}
        guarded = create(server, key, guarded_body | {"guardrail_metrics": ["cost"]})
        sent = collect(server, seed.site.public_key, web_events(web))
        tasks = agent_tasks(agent) + agent_tasks(guarded)
        for i in range(0, len(tasks), 200):
            answer = httpx.post(server.base_url + "/v1/events", json=tasks[i : i + 200],
                                headers={"authorization": f"Bearer {key}"}, timeout=10)  # fmt: skip
            assert answer.status_code == 201, answer.text
        wait_flushed(server, sent + len(tasks))
        yield Scenario(server, seed, web, agent, guarded)


def results_page(scenario: Scenario, experiment_id: str, key: str | None = None) -> httpx.Response:
    with signed_in(scenario.server, key or scenario.seed.key.key) as client:
        return client.get(f"/console/experiments/{experiment_id}/results")


def api_results(scenario: Scenario, experiment_id: str) -> dict[str, Any]:
    path = f"/v1/experiments/{experiment_id}/results"
    answer = api_get(scenario.server, path, scenario.seed.key.key)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


def metric_blocks(page: str) -> list[tuple[str, str]]:
    """Each metric's key and its rows' HTML, in page order."""
    return re.findall(r'<tbody class="metric [a-z]+" data-metric-key="([^"]*)">(.*?)</tbody>',
                      page, re.S)  # fmt: skip


def text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def test_a_web_experiment_shows_its_verdict_and_every_goal(scenario: Scenario) -> None:
    answer = results_page(scenario, scenario.web["id"])
    assert answer.status_code == 200, answer.text
    page = answer.text
    api = api_results(scenario, scenario.web["id"])
    # The verdict first: 200 units per arm is under the 500 a decision needs.
    assert page.index('id="verdict"') < page.index('id="metrics"')
    title = re.search(r'<h2 id="verdict-title">(.*?)</h2>', page, re.S)
    detail = re.search(r'<p id="verdict-detail">(.*?)</p>', page, re.S)
    assert title is not None and detail is not None
    assert text(title.group(1)) == "Still collecting"
    assert f"{api['samples_needed']:,} more units per arm" in text(detail.group(1))
    # Every goal, the primary first, with the API's figures.
    blocks = metric_blocks(page)
    assert [key for key, _ in blocks] == [m["key"] for m in api["metrics"]]
    goal_ids = [g["id"] for g in scenario.web["goals"]]
    assert [key for key, _ in blocks][:3] == goal_ids
    assert 'class="metric primary"' in page and page.count('class="metric secondary"') == 3
    for n, (_, rows) in enumerate(blocks[:3]):
        conversions = re.findall(r'<td class="conversions">(\d+)</td>', rows)
        assert conversions == [str(plan[n + 1]) for plan in PLAN]
        # The challenger's lift interval, drawn.
        assert rows.count('<svg class="lift-plot"') == 1
    # The secondary goals point to the multiple-comparisons note.
    assert page.count('href="#metrics-note"') == 3
    assert "not corrected" in text(page[page.index('id="metrics-note"') :])
    # Updated N s ago, from the results' computed time.
    assert re.search(r'<span id="updated">updated \d+ s ago</span>', page)


def test_the_health_panel_and_the_device_breakdown(scenario: Scenario) -> None:
    path = f"/v1/experiments/{scenario.web['id']}/results"

    def meta() -> dict[str, Any]:
        found: dict[str, Any] = api_get(scenario.server, path, scenario.seed.key.key).json()["meta"]
        return found

    before = meta()
    page = results_page(scenario, scenario.web["id"]).text
    after = meta()
    srm = page[page.index('id="srm"') : page.index('id="config"')]
    assert "The split matches the weights" in srm
    # The version the edge served then: the latest, or (the decider just completed an
    # experiment) one it is catching up from.
    config = text(page[page.index('id="config"') : page.index("Units per day")])
    shown = re.search(r"serves version (\d+)(, the latest|; the latest is (\d+))", config)
    assert shown is not None, config
    served = int(shown.group(1))
    assert before["served_config_version"] <= served <= after["served_config_version"]
    if shown.group(3) is not None:
        assert served < int(shown.group(3)) <= after["config_version"]
    start = page.index('id="units-per-day"')
    days = page[start : page.index("</table>", start)]
    units = re.findall(r'<td class="day-units" data-label="[^"]*">(\d+)</td>', days)
    assert units == ["200", "200"]
    devices = page[page.index('id="devices"') :]
    rows = re.findall(r'<td class="device">(\w+)</td><td class="units">(\d+)</td>'
                      r'<td class="conversions">(\d+)</td>', devices)  # fmt: skip
    # Even visitors (mobile) include the first clicks' converters: 10 and 18 of them.
    assert rows == [("desktop", "100", "10"), ("mobile", "100", "10"),
                    ("desktop", "100", "18"), ("mobile", "100", "18")]  # fmt: skip


def test_a_young_experiment_has_an_hourly_timeline(scenario: Scenario) -> None:
    page = results_page(scenario, scenario.web["id"]).text
    assert "<h2>Cumulative conversion rate per hour</h2>" in page
    chart = page[page.index('<svg id="timeline"') :]
    assert chart.count('class="timeline"') == 2
    assert re.search(r">\d\d-\d\d \d\d:00</text>", chart)


def test_an_agent_experiment_shows_cost_duration_and_turns_with_intervals(
    scenario: Scenario,
) -> None:
    page = results_page(scenario, scenario.agent["id"]).text
    blocks = dict(metric_blocks(page))
    assert list(blocks) == ["task_completion", "cost", "duration", "turns"]
    api = {m["key"]: m for m in api_results(scenario, scenario.agent["id"])["metrics"]}
    for key in ("cost", "duration", "turns"):
        values = re.findall(r'<td class="value">(.*?)</td>', blocks[key], re.S)
        assert len(values) == 2
        for shown, arm in zip(values, api[key]["arms"], strict=True):
            low, high = arm["interval"]
            assert re.fullmatch(r"[\d.e+-]+ \([\d.e+-]+ to [\d.e+-]+\)", text(shown)), shown
            assert text(shown).startswith(f"{arm['value']:.4g} (")
            assert f"({low:.4g} to {high:.4g})" in text(shown)
        lift = re.search(r'<td class="lift">(.*?)</td>', blocks[key].split("</tr>")[1], re.S)
        assert lift is not None and re.search(r"\(.+ to .+\)", text(lift.group(1)))
        assert blocks[key].count('<svg class="lift-plot"') == 1
        assert "lower is better" in blocks[key]


def test_a_guardrail_stop_shows_its_reason(scenario: Scenario) -> None:
    guarded = scenario.guarded
    deadline = time.monotonic() + 30
    while True:
        path = f"/v1/experiments/{guarded['id']}"
        status = api_get(scenario.server, path, scenario.seed.key.key).json()["data"][
            "experiment"]["status"]  # fmt: skip
        if status == "completed":
            break
        assert time.monotonic() < deadline, "the decider did not stop the experiment in 30 s"
        time.sleep(0.2)
    api = api_results(scenario, guarded["id"])
    assert api["status"] == "guardrail" and api["guardrail_reason"]
    page = results_page(scenario, guarded["id"]).text
    title = re.search(r'<h2 id="verdict-title">(.*?)</h2>', page, re.S)
    detail = re.search(r'<p id="verdict-detail">(.*?)</p>', page, re.S)
    assert title is not None and detail is not None
    assert text(title.group(1)) == f"Stopped by a guardrail: {api['guardrail']}"
    assert text(detail.group(1)) == api["guardrail_reason"]
    assert 'class="verdict guardrail"' in page
    assert list(dict(metric_blocks(page))) == ["task_completion", "cost", "duration", "turns"]


def test_another_workspaces_results_are_a_404(scenario: Scenario) -> None:
    seed = scenario.seed
    theirs = results_page(scenario, scenario.web["id"], seed.other_key.key)
    assert theirs.status_code == 404
    assert SCRIPT not in theirs.text and "Checkout" not in theirs.text
    for experiment_id in (seed.other_experiment_id, "0" * 36):
        assert results_page(scenario, experiment_id).status_code == 404


def test_names_render_as_text(scenario: Scenario) -> None:
    for experiment in (scenario.web, scenario.agent):
        answer = results_page(scenario, experiment["id"])
        page = answer.text
        assert SCRIPT not in page and "<img src=x" not in page
        assert ' style="' not in page and "<script>" not in page.replace('<script src="', "")
        policy = answer.headers["content-security-policy"]
        assert "unsafe-inline" not in policy
        assert len(answer.content) < 150_000
    web = results_page(scenario, scenario.web["id"]).text
    assert escape(f"Checkout {SCRIPT}") in web
    assert escape(f"Bold {IMG}") in web
    assert f"View {LINE}" in web
    agent = results_page(scenario, scenario.agent["id"]).text
    assert f"terse {LINE}" in agent


@pytest.mark.browser
def test_the_page_fits_390_px(scenario: Scenario, page: Page, tmp_path: Any) -> None:
    with signed_in(scenario.server, scenario.seed.key.key) as client:
        cookies = [
            {"name": c.name, "value": c.value or "", "url": scenario.server.base_url}
            for c in client.cookies.jar
        ]
    page.context.add_cookies(cookies)  # type: ignore[arg-type]
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    # Every resource the page loads (its styles, its script) is found.
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status >= 400 else None)
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        for experiment in (scenario.web, scenario.agent):
            page.goto(f"{scenario.server.base_url}/console/experiments/{experiment['id']}/results")
            assert page.locator("#verdict").is_visible()
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            shot = tmp_path / f"{experiment['kind']}-{width}.png"
            page.screenshot(path=str(shot), full_page=True)
    assert page.evaluate("window.pwned") is None
    assert missing == []
    # Chromium's own favicon request (not one of the page's) logs a failed load.
    assert [e for e in errors if not e.startswith("Failed to load resource")] == []
