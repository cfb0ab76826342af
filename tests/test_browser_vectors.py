"""The runtime's assignment and URL matching, run once more inside Chromium: the same
source modules and the same shared vectors as the node tests and the Python tests
(tests/test_assign.py and tests/test_urlglob.py hold Python to the same answers)."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page

from tests.browser import ROOT, SiteServer

pytestmark = pytest.mark.browser

ASSIGN_IN_BROWSER = """async () => {
  const { assign, coverageBucket, variantBucket } = await import('/snippet/src/assign.js');
  const { cases } = await (await fetch('/tests/vectors/assign.json')).json();
  return cases.map((c) => [
    variantBucket(c.experiment_key, c.unit_id),
    coverageBucket(c.experiment_key, c.unit_id),
    assign(c.experiment_key, c.unit_id, c.weights_bps, c.coverage_bps),
  ]);
}"""

URLGLOB_IN_BROWSER = """async () => {
  const { compilePattern } = await import('/snippet/src/urlglob.js');
  const { cases } = await (await fetch('/tests/vectors/urlglob.json')).json();
  return cases.map((c) => compilePattern(c.pattern).test(c.path));
}"""


def vectors(name: str) -> list[dict[str, object]]:
    cases: list[dict[str, object]] = json.loads((ROOT / "tests" / "vectors" / name).read_text())[
        "cases"
    ]
    return cases


def test_assignment_vectors_in_chromium(page: Page, site: SiteServer) -> None:
    page.goto(site.add("/vectors", "<!doctype html><title>vectors</title>"))
    got = page.evaluate(ASSIGN_IN_BROWSER)
    cases = vectors("assign.json")
    assert len(got) == len(cases) >= 100
    want = [[c["variant_bucket"], c["coverage_bucket"], c["variant"]] for c in cases]
    assert [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w] == []


def test_url_pattern_vectors_in_chromium(page: Page, site: SiteServer) -> None:
    page.goto(site.add("/vectors", "<!doctype html><title>vectors</title>"))
    got = page.evaluate(URLGLOB_IN_BROWSER)
    cases = vectors("urlglob.json")
    assert len(got) == len(cases) >= 50
    wrong = [c for c, g in zip(cases, got, strict=True) if g != c["matches"]]
    assert wrong == []
