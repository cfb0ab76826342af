"""The results page in Chromium: a real server with real events, the signed link from
``/results``, the table, both plots, the SRM banner, a screenshot; and the link rules."""

from __future__ import annotations

import html
import struct
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import msgspec
import pytest
from playwright.sync_api import Page

from analytics import sequential
from analytics.aggregates import ArmAggregates, GoalAggregates, TimelinePoint
from analytics.results import compute_results
from edge.control.records import ExperimentRecord, Goal, NewGoal, VariantRecord
from edge.control.report_links import REPORT_SECRET_META_KEY, ReportLinks
from edge.control.report_page import render_report
from edge.control.results_api import experiment_spec
from edge.control.store import Store
from tests.support import (
    Server,
    add_experiment,
    api_get,
    collect,
    running_server,
    seed_store,
    wait_flushed,
    web_events,
)

HOSTILE = '<script>window.pwned = 1</script> & "Bold"'


class Reports(msgspec.Struct):
    server: Server
    store_path: Path
    key: str
    fair_id: str
    fair_url: str
    srm_id: str
    srm_url: str


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reports]:
    data = tmp_path_factory.mktemp("report") / "data"
    store_path = data / "splitedge.sqlite3"
    seed = seed_store(store_path)
    store = Store(store_path)
    try:
        made = [
            add_experiment(
                store,
                seed,
                name,
                ("Control", HOSTILE),
                (NewGoal("Purchase", "click", ".buy"),),
                hypothesis="Shorter copy <em>sells</em> more",
            )
            for name in ("Checkout </title><b>copy", "Broken split")
        ]
    finally:
        store.close()
    (fair_id, fair_variants, (fair_goal,)), (srm_id, srm_variants, (srm_goal,)) = made
    with running_server(data) as server:
        sent = collect(
            server,
            seed.site.public_key,
            web_events(fair_id, fair_variants, fair_goal, [(250, 25), (250, 45)], "f")
            + web_events(srm_id, srm_variants, srm_goal, [(320, 32), (200, 20)], "s"),
        )
        wait_flushed(server, sent)
        urls = []
        for experiment_id in (fair_id, srm_id):
            answer = api_get(server, f"/v1/experiments/{experiment_id}/results", seed.key.key)
            assert answer.status_code == 200, answer.text
            urls.append(answer.json()["data"]["report_url"])
        yield Reports(server, store_path, seed.key.key, fair_id, urls[0], srm_id, urls[1])


def test_the_page_shows_the_results(reports: Reports, page: Page, tmp_path: Path) -> None:
    page.goto(reports.fair_url)
    assert page.title().startswith("Checkout </title><b>copy")
    assert page.locator("h1").inner_text() == "Checkout </title><b>copy"
    assert page.locator(".hypothesis").inner_text() == "Shorter copy <em>sells</em> more"
    rows = page.locator("#variants tbody tr")
    assert rows.count() == 2
    control, challenger = rows.nth(0), rows.nth(1)
    assert control.locator(".name").inner_text().startswith("Control")
    # a variant name is shown as text, never run as markup
    assert challenger.locator(".name").inner_text() == HOSTILE
    assert page.evaluate("window.pwned") is None
    assert [r.locator(".units").inner_text() for r in (control, challenger)] == ["250", "250"]
    assert [r.locator(".conversions").inner_text() for r in (control, challenger)] == ["25", "45"]
    assert [r.locator(".value").inner_text() for r in (control, challenger)] == [
        "10.00%",
        "18.00%",
    ]
    assert control.locator(".lift").inner_text() == "—"
    assert challenger.locator(".lift").inner_text().startswith("+80.0%")
    assert float(challenger.locator(".prob-to-win").inner_text().rstrip("%")) > 99
    assert control.locator(".p-value").inner_text() == "—"
    # The always-valid p-value the decision reads (no sample size): 0.2369; a
    # fixed-horizon z-test would show 0.0099.
    always_valid = float(sequential.proportions_p_value(25, 250, 45, 250))
    assert challenger.locator(".p-value").inner_text() == f"{always_valid:.4f}"
    assert page.locator("#decision").inner_text() == "Collecting data"

    # one curve per variant in each plot, each drawn
    densities = page.locator("#posterior path.density")
    lines = page.locator("#timeline polyline.timeline")
    assert densities.count() == 2 and lines.count() == 2
    for curve in (*densities.all(), *lines.all()):
        box = curve.bounding_box()
        assert box is not None and box["width"] > 50
    assert page.locator(".srm-warning").count() == 0

    shot = tmp_path / "report.png"
    page.set_viewport_size({"width": 1100, "height": 900})
    page.screenshot(path=str(shot), full_page=True)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width >= 1000 and height >= 900
    assert len(png) > 30_000  # text, a table and two plots, not a blank page


def test_the_page_fits_390_px_without_sideways_scrolling(
    reports: Reports, page: Page, tmp_path: Path
) -> None:
    """The tables stack into labelled rows on a phone: nothing is cut off."""
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(reports.fair_url)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    for table in ("#variants", "#metrics"):
        box = page.locator(table).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    challenger = page.locator("#variants tbody tr").nth(1)
    assert challenger.locator(".p-value").is_visible()
    label = page.evaluate(
        "getComputedStyle(document.querySelector('#variants td.units'), '::before').content"
    )
    assert label == '"Units: "'
    page.screenshot(path=str(tmp_path / "report-390.png"), full_page=True)


def test_a_broken_split_shows_the_srm_banner(reports: Reports, page: Page) -> None:
    page.goto(reports.srm_url)
    banner = page.locator(".srm-warning")
    assert banner.count() == 1 and banner.is_visible()
    assert "Sample ratio mismatch" in banner.inner_text()
    assert page.locator("#variants tbody tr .units").all_inner_texts() == ["320", "200"]


@pytest.mark.parametrize("tamper", ["sig", "expires", "experiment", "missing"])
def test_a_bad_link_is_a_404_page(reports: Reports, tamper: str) -> None:
    parts = urlsplit(reports.fair_url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    path = parts.path
    if tamper == "sig":
        query["sig"] = ("0" if query["sig"][0] != "0" else "1") + query["sig"][1:]
    elif tamper == "expires":
        query["expires"] = str(int(query["expires"]) + 1)
    elif tamper == "experiment":
        path = f"/reports/{reports.srm_id}"
    else:
        query = {}
    answer = httpx.get(reports.server.base_url + path, params=query)
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert "invalid or has expired" in answer.text
    assert "Traceback" not in answer.text


def test_an_expired_link_is_a_404_page(reports: Reports) -> None:
    links = ReportLinks(reports.store_path)
    expires = int(time.time()) - 1
    sig = links.signature(reports.fair_id, expires)
    answer = httpx.get(
        f"{reports.server.base_url}/reports/{reports.fair_id}",
        params={"expires": str(expires), "sig": sig},
    )
    assert answer.status_code == 404
    # the same secret signs a fresh link the server accepts
    fresh = httpx.get(reports.server.base_url + links.path(reports.fair_id))
    assert fresh.status_code == 200


def test_links_are_signed_with_one_stored_secret(tmp_path: Path) -> None:
    path = tmp_path / "splitedge.sqlite3"
    Store(path).close()
    first, second = ReportLinks(path), ReportLinks(path)
    now = 1_800_000_000.0
    link = first.path("exp-1", now)
    query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    assert int(query["expires"]) == int(now) + 7 * 24 * 3600
    assert second.valid("exp-1", query["expires"], query["sig"], now)
    assert second.valid("exp-1", query["expires"], query["sig"], now + 7 * 24 * 3600)
    assert not second.valid("exp-1", query["expires"], query["sig"], now + 7 * 24 * 3600 + 1)
    assert not second.valid("exp-2", query["expires"], query["sig"], now)
    assert not second.valid("exp-1", "soon", query["sig"], now)
    store = Store(path)
    try:
        assert len(bytes.fromhex(store.get_meta(REPORT_SECRET_META_KEY) or "")) == 32
    finally:
        store.close()


def _record(**fields: Any) -> ExperimentRecord:
    """A running experiment as the store gives it, with ``fields`` set."""
    base: dict[str, Any] = dict(
        workspace_id="w", site_id=None, status="running", hypothesis=None, target_url=None,
        url_pattern=None, coverage_bps=10_000, sample_size=None, primary_metric=None,
        confidence=None, winner_variant_id=None, created_at="2026-01-01T00:00:00+00:00",
        updated_at="2026-01-01T00:00:00+00:00", started_at=None, ended_at=None,
        max_cost_increase=None, guardrail_metrics=(), site_name=None, site_url=None,
    )  # fmt: skip
    return ExperimentRecord(**{**base, **fields})


def test_render_escapes_every_name() -> None:
    """Without a browser: nothing a user named reaches the page unescaped."""
    experiment = _record(
        id="e1", kind="web", name="<b>name</b>", hypothesis="<i>h</i>",
        variants=(
            VariantRecord("v1", "<img src=x>", True, 5000),
            VariantRecord("v2", "</svg>'\"", False, 5000),
        ),
        goals=(Goal("g1", "<goal>", "click", None, None),),
    )  # fmt: skip
    arms = [
        ArmAggregates("v1", 100, goals=(GoalAggregates("g1", 10, 0.0, 0.0, None),)),
        ArmAggregates("v2", 100, goals=(GoalAggregates("g1", 20, 0.0, 0.0, None),)),
    ]
    results = compute_results(experiment_spec(experiment), arms)
    timeline = [
        TimelinePoint(date(2026, 1, 1), "v1", 100, 10),
        TimelinePoint(date(2026, 1, 2), "v2", 100, 20),
    ]
    page = render_report(
        experiment, results, timeline, computed_at=datetime.now(UTC), expires=2_000_000_000
    )
    for name in ("<b>name</b>", "<i>h</i>", "<img src=x>", "</svg>'\"", "<goal>"):
        assert name not in page
    assert html.escape("<img src=x>") in page
    assert page.count('class="density"') == 2
    assert page.count('class="timeline"') == 2


def test_render_a_mean_metric_plots_normal_posteriors() -> None:
    experiment = _record(
        id="e2", kind="agent", name="Cheaper runs", primary_metric="avg_cost",
        variants=(
            VariantRecord("c", "control", True, 5000), VariantRecord("v", "terse", False, 5000),
        ),
    )  # fmt: skip
    arms = [
        ArmAggregates("c", 50, converted=30, tasks=50, successful_tasks=30,
                      sums={"cost": 1.0, "duration_ms": 0.0, "turns": 100.0},
                      sumsqs={"cost": 0.03, "duration_ms": 0.0, "turns": 260.0}),
        ArmAggregates("v", 50, converted=35, tasks=50, successful_tasks=35,
                      sums={"cost": 0.8, "duration_ms": 0.0, "turns": 90.0},
                      sumsqs={"cost": 0.02, "duration_ms": 0.0, "turns": 200.0}),
    ]  # fmt: skip
    results = compute_results(experiment_spec(experiment), arms)
    page = render_report(
        experiment, results, [], computed_at=datetime.now(UTC), expires=2_000_000_000
    )
    assert "<th>Mean avg_cost</th>" in page
    assert page.count('class="density"') == 2
    assert '<td class="value">0.02</td>' in page and '<td class="value">0.016</td>' in page
    assert '<td class="conversions">—</td>' in page
    assert "No conversions over time yet." in page
