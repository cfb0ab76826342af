"""Tests of edge.urlglob against the shared vectors and the spec in docs/url-patterns.md."""

from __future__ import annotations

import json
import pickle
import re
import time
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.errors import InvalidUrlPattern
from edge.urlglob import (
    MAX_PATTERN_LENGTH,
    MAX_SEGMENTS,
    UrlMatcher,
    compile_pattern,
    normalize_path,
    pathname_of,
    validate_pattern,
)

VECTORS_PATH = Path(__file__).parent / "vectors" / "urlglob.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
CASES: list[dict[str, Any]] = VECTORS["cases"]
INVALID: list[dict[str, Any]] = VECTORS["invalid"]


def _case_id(index: int, case: dict[str, Any]) -> str:
    verdict = "match" if case["matches"] else "nomatch"
    return f"{case['source']}-{index}-{verdict}-{case['pattern']!r}-{case['path']!r}"[:120]


# --- shared vectors ---------------------------------------------------------------------


def test_vector_file_shape() -> None:
    assert VECTORS["spec"] == "docs/url-patterns.md"
    assert (Path(__file__).parents[1] / VECTORS["spec"]).is_file()
    for case in CASES:
        assert set(case) == {"pattern", "path", "matches", "source"}
        assert case["pattern"] is None or isinstance(case["pattern"], str)
        assert isinstance(case["path"], str)
        assert isinstance(case["matches"], bool)
        assert case["source"] in {"rest-table", "mcp-table", "edge"}
    for entry in INVALID:
        assert set(entry) == {"pattern", "why"}
        assert isinstance(entry["pattern"], str) and entry["why"]
    keys = [(c["pattern"], c["path"], c["source"]) for c in CASES]
    assert len(keys) == len(set(keys)), "duplicate vector cases"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(i, case) for i, case in enumerate(CASES)])
def test_vector_case(case: dict[str, Any]) -> None:
    matcher = compile_pattern(case["pattern"])
    assert matcher.matches(case["path"]) is case["matches"]


@pytest.mark.parametrize("entry", INVALID, ids=[repr(e["pattern"])[:60] for e in INVALID])
def test_vector_invalid(entry: dict[str, Any]) -> None:
    with pytest.raises(InvalidUrlPattern) as info:
        validate_pattern(entry["pattern"])
    assert info.value.code == "invalid_url_pattern"
    assert info.value.status == 400
    assert "'" in info.value.message  # every message quotes what to write or what is wrong
    with pytest.raises(InvalidUrlPattern):
        compile_pattern(entry["pattern"])


# Every row of the two reference tables, as (pattern, path, matches). Written out here a
# second time so that deleting a row from the vector file fails this test.
REST_TABLE = {
    (None, "/", True),
    ("/checkout", "/checkout", True),
    ("/checkout", "/checkout/", True),
    ("/checkout", "/checkout/step-2", True),
    ("/checkout", "/checkouts", False),
    ("/checkout", "/cart/checkout", False),
    ("/report/*", "/report/42", True),
    ("/report/*", "/report/annual-2026", True),
    ("/report/*", "/report", False),
    ("/report/*", "/report/42/details", False),
    ("/report/*", "/reports/summary", False),
    ("/product/*/reviews", "/product/abc/reviews", True),
    ("/product/*/reviews", "/product/abc/reviews/5", False),
    ("/product/*/reviews", "/product/reviews", False),
    ("/blog/**", "/blog", True),
    ("/blog/**", "/blog/post", True),
    ("/blog/**", "/blog/2026/04/post", True),
    ("/blog/**", "/blogs", False),
    ("/blog/**", "/news", False),
}
MCP_TABLE = {
    (None, "/", True),
    ("/checkout", "/checkout", True),
    ("/checkout", "/checkout/step-2", True),
    ("/checkout", "/checkouts", False),
    ("/report/*", "/report/42", True),
    ("/report/*", "/report/abc", True),
    ("/report/*", "/report", False),
    ("/report/*", "/report/42/details", False),
    ("/product/*/reviews", "/product/x/reviews", True),
    ("/product/*/reviews", "/product/reviews", False),
    ("/blog/**", "/blog/post", True),
    ("/blog/**", "/blog/2026/04/post", True),
    ("/blog/**", "/blogs", False),
}


@pytest.mark.parametrize(("source", "rows"), [("rest-table", REST_TABLE), ("mcp-table", MCP_TABLE)])
def test_every_reference_table_row_is_a_vector(
    source: str, rows: set[tuple[str | None, str, bool]]
) -> None:
    present = {(c["pattern"], c["path"], c["matches"]) for c in CASES if c["source"] == source}
    assert rows <= present, f"{source} rows missing from the vectors: {rows - present}"
    # Every table pattern (and "no pattern") is there, with matches and non-matches.
    patterns = {pattern for pattern, _, _ in rows}
    assert patterns == {None, "/checkout", "/report/*", "/product/*/reviews", "/blog/**"}
    assert patterns == {pattern for pattern, _, _ in present}
    # The "every page" / "anything under /blog/" prose rows have 2-3 concrete paths.
    assert sum(1 for p, _, _ in present if p is None) >= 2
    assert sum(1 for p, _, m in present if p == "/blog/**" and m) >= 2


def test_case_counts_per_source() -> None:
    counts = Counter(case["source"] for case in CASES)
    assert counts["rest-table"] >= len(REST_TABLE) + 2
    assert counts["mcp-table"] >= len(MCP_TABLE) + 3
    assert counts["edge"] >= 200
    assert len(INVALID) >= 40


def test_invalid_vectors_cover_every_rule() -> None:
    patterns = [entry["pattern"] for entry in INVALID]
    assert any(not p.startswith("/") and "://" not in p for p in patterns)
    assert any("://" in p for p in patterns)
    assert any("?" in p for p in patterns) and any("#" in p for p in patterns)
    assert any(" " in p for p in patterns) and any("\n" in p for p in patterns)
    assert any("\x00" in p for p in patterns) and any("\x7f" in p for p in patterns)
    assert "/report-*" in patterns and "/***" in patterns
    assert any(len(p) > MAX_PATTERN_LENGTH for p in patterns)
    assert any(
        len(p) <= MAX_PATTERN_LENGTH and len([s for s in p.split("/") if s]) > MAX_SEGMENTS
        for p in patterns
    )


# --- error messages ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("pricing", ["must start with '/'", "'/pricing'"]),
        (
            "https://mysite.com/report/*",
            ["matched against the path only", "drop the scheme and host", "'/report/*'"],
        ),
        ("mysite.com/pricing", ["drop the scheme and host", "'/pricing'"]),
        ("http://mysite.com", ["drop the scheme and host", "'/'"]),
        ("/pricing?plan=pro", ["cannot contain '?'", "query string", "use '/pricing'"]),
        ("/pricing#faq", ["cannot contain '#'", "fragment", "use '/pricing'"]),
        ("/my page", ["whitespace", "U+0020", "'%20'"]),
        ("/a\u00a0b", ["whitespace", "U+00A0", "'%C2%A0'"]),
        ("/a\x00", ["control character", "U+0000", "position 2"]),
        ("/report-*", ["'*' must be a whole path segment", "use '/report/*'", "'/report/**'"]),
        ("/a/*.html", ["'*' must be a whole path segment", "'/a/*'"]),
        ("/***", ["'*' must be a whole path segment", "'/*'", "'/**'"]),
        ("/" + "x" * 3000, ["3001 characters", "at most 2048"]),
        ("/s" * 70, ["70 path segments", "at most 64", "'**'"]),
    ],
)
def test_error_messages_are_actionable(pattern: str, expected: list[str]) -> None:
    with pytest.raises(InvalidUrlPattern) as info:
        validate_pattern(pattern)
    for text in expected:
        assert text in info.value.message
    assert str(info.value) == info.value.message
    assert len(info.value.message) < 400  # long patterns are shortened, not echoed whole


def test_non_string_pattern_is_rejected() -> None:
    with pytest.raises(InvalidUrlPattern, match="must be a string"):
        validate_pattern(42)  # type: ignore[arg-type]


# --- canonical form, matcher object -----------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "canonical"),
    [
        (None, None),
        ("", None),
        (" \t\n", None),
        ("\u3000", None),
        ("/", "/"),
        ("///", "/"),
        ("/checkout/", "/checkout"),
        ("//checkout//step-2//", "/checkout/step-2"),
        ("/a/**/**/b", "/a/**/b"),
        ("/**/**", "/**"),
        ("/**/*/**", "/**/*/**"),
        ("/caf%C3%A9/", "/caf%C3%A9"),
        ("/a%zz", "/a%zz"),
        ("/%2A", "/%2A"),
        ("/" + "x" * (MAX_PATTERN_LENGTH - 1), "/" + "x" * (MAX_PATTERN_LENGTH - 1)),
    ],
)
def test_validate_pattern_canonical_form(pattern: str | None, canonical: str | None) -> None:
    assert validate_pattern(pattern) == canonical
    assert validate_pattern(canonical) == canonical
    assert compile_pattern(pattern).pattern == canonical


def test_matcher_is_immutable_hashable_and_picklable() -> None:
    matcher = compile_pattern("/blog/**/")
    assert matcher.pattern == "/blog/**"
    with pytest.raises(AttributeError):
        matcher.pattern = "/x"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del matcher.pattern
    with pytest.raises(AttributeError):
        matcher._regex = None
    assert matcher == UrlMatcher("/blog/**") == compile_pattern("//blog//**")
    assert matcher != compile_pattern("/blog")
    assert hash(matcher) == hash(UrlMatcher("/blog/**"))
    assert repr(matcher) == "UrlMatcher('/blog/**')"
    assert pickle.loads(pickle.dumps(matcher)) == matcher
    assert pickle.loads(pickle.dumps(matcher)).matches("/blog/x")
    assert compile_pattern(None) == UrlMatcher() == compile_pattern("  ")


@pytest.mark.parametrize("pattern", [None, "", "/", "/**", "//**//**/"])
def test_match_all_patterns_match_anything(pattern: str | None) -> None:
    matcher = compile_pattern(pattern)
    for path in ["", "/", "/x/y", "%", "no-slash", "/a?b#c", "\ud800", "/" * 10_000]:
        assert matcher.matches(path)


def test_many_double_stars_do_not_backtrack_catastrophically() -> None:
    matcher = compile_pattern("/**/a/**/a/**/a/**/b")
    path = "/a" * 20_000
    start = time.perf_counter()
    assert not matcher.matches(path)
    assert matcher.matches(path + "/b")
    assert time.perf_counter() - start < 1.0


# --- normalize_path and pathname_of -------------------------------------------------------


@pytest.mark.parametrize(
    ("pathname", "normalised"),
    [
        ("/", ""),
        ("", ""),
        ("///", ""),
        ("/checkout/", "/checkout"),
        ("//a//b//", "/a/b"),
        ("a/b", "/a/b"),
        ("/caf%C3%A9", "/café"),
        ("/caf%c3%a9", "/café"),
        ("/a%zz/%41", "/a%zz/A"),
        ("/%E0%A4%A", "/%E0%A4%A"),
        ("/%C3", "/%C3"),
        ("/a%2Fb", "/a%2Fb"),
        ("/a%252F", "/a%2F"),
        ("/%2A", "/*"),
        ("/./..", "/./.."),
        ("/a b", "/a b"),
    ],
)
def test_normalize_path(pathname: str, normalised: str) -> None:
    assert normalize_path(pathname) == normalised


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("https://mysite.com/pricing", "/pricing"),
        ("https://mysite.com/pricing?plan=pro&x=1", "/pricing"),
        ("https://mysite.com/pricing#faq", "/pricing"),
        ("https://mysite.com/pricing?a=1#faq?b", "/pricing"),
        ("http://mysite.com:8080/blog/post/", "/blog/post/"),
        ("https://mysite.com:8443", "/"),
        ("https://mysite.com", "/"),
        ("https://mysite.com/", "/"),
        ("https://mysite.com?x=1", "/"),
        ("https://mysite.com#top", "/"),
        ("https://user:pw@mysite.com:9/a/b", "/a/b"),
        ("HTTPS://MySite.com/Caf%C3%A9", "/Caf%C3%A9"),
        ("http://[::1]:8080/x", "/x"),
        ("http://[::1/x", "/"),  # malformed host: no path, no exception
        ("/checkout", "/checkout"),
        ("/checkout?step=2", "/checkout"),
        ("/checkout#top", "/checkout"),
        ("/a#b?c", "/a"),
        ("//checkout//x", "//checkout//x"),
        ("", "/"),
        ("?x=1", "/"),
        ("#top", "/"),
    ],
)
def test_pathname_of(url: str, path: str) -> None:
    assert pathname_of(url) == path


def test_pathname_of_then_match() -> None:
    matcher = compile_pattern("/report/*")
    assert matcher.matches(pathname_of("https://mysite.com/report/42?utm=x#chart"))
    assert not matcher.matches(pathname_of("https://mysite.com/report/42/details?x"))
    assert compile_pattern("/").matches(pathname_of("https://mysite.com"))


# --- properties ---------------------------------------------------------------------------

# Characters a valid pattern may contain (nothing whitespace, control, "/", "*", "?", "#").
_PATTERN_CHARS = st.characters(
    blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp"),
    blacklist_characters="/*?#\ufeff",
)
_LITERAL = st.one_of(
    st.text(_PATTERN_CHARS, min_size=1, max_size=8),
    st.sampled_from(["%41", "%C3%A9", "%c3%a9", "%zz", "%2F", "%", "%E0%A4%A", ".", "..", "a.b"]),
    st.text(st.sampled_from("ab%2FC3A9."), min_size=1, max_size=6),
)
_PATTERN_SEGMENT = st.one_of(_LITERAL, st.just("*"), st.just("**"))
_PATH_SEGMENT = st.text(st.characters(blacklist_characters="/"), min_size=1, max_size=8)


def _join(segments: list[str], slashes: list[int] | None = None) -> str:
    if slashes is None:
        return "".join("/" + s for s in segments)
    return "".join("/" * n + s for n, s in zip(slashes, segments, strict=False))


@given(st.lists(_LITERAL, max_size=6), st.lists(_PATH_SEGMENT, max_size=5))
def test_plain_pattern_matches_itself_and_below(prefix: list[str], extra: list[str]) -> None:
    pattern = _join(prefix) or "/"
    matcher = compile_pattern(pattern)
    assert matcher.matches(pattern)
    assert matcher.matches(pattern + "/")
    assert matcher.matches(pattern + _join(extra))
    assert matcher.matches("//" + pattern + "//" + "//".join(extra) + "/")


@given(st.lists(_LITERAL, max_size=5), st.lists(_PATH_SEGMENT, max_size=6))
def test_double_star_matches_any_depth(prefix: list[str], extra: list[str]) -> None:
    base = _join(prefix)
    matcher = compile_pattern(base + "/**")
    assert matcher.matches(base + _join(extra))
    assert compile_pattern("/**" + base).matches(_join(extra) + base)


@given(st.lists(_LITERAL, max_size=5), _PATH_SEGMENT, st.lists(_PATH_SEGMENT, max_size=3))
def test_single_star_is_exactly_one_segment(prefix: list[str], one: str, more: list[str]) -> None:
    base = _join(prefix)
    matcher = compile_pattern(base + "/*")
    assert not matcher.matches(base)
    assert not matcher.matches(base + "/")
    assert not matcher.matches(base + "//")
    assert matcher.matches(base + "/" + one)
    assert matcher.matches(base + "/" + one + "/") is True
    if more:
        assert not matcher.matches(base + "/" + one + _join(more))


@given(st.text(max_size=40))
def test_validate_pattern_is_idempotent_on_any_text(text: str) -> None:
    try:
        canonical = validate_pattern(text)
    except InvalidUrlPattern:
        return
    assert validate_pattern(canonical) == canonical


@given(
    st.lists(_PATTERN_SEGMENT, max_size=8),
    st.lists(st.integers(min_value=1, max_value=3), min_size=8, max_size=8),
    st.booleans(),
)
def test_validate_pattern_is_idempotent_on_valid_patterns(
    segments: list[str], slashes: list[int], trailing: bool
) -> None:
    pattern = (_join(segments, slashes) or "/") + ("/" if trailing else "")
    canonical = validate_pattern(pattern)
    assert canonical is not None
    assert validate_pattern(canonical) == canonical
    assert "//" not in canonical and "/**/**" not in canonical
    assert canonical == "/" or not canonical.endswith("/")


_MATCHERS = [
    compile_pattern(p)
    for p in [None, "/", "/checkout", "/report/*", "/blog/**", "/**/a/**/b", "/caf%C3%A9"]
]


@given(st.text())
def test_matching_never_raises_on_any_text(path: str) -> None:
    for matcher in _MATCHERS:
        assert isinstance(matcher.matches(path), bool)
    assert isinstance(normalize_path(path), str)
    assert pathname_of(path).startswith("/") or not path.startswith("/")


@given(st.text())
def test_pathname_of_never_raises(text: str) -> None:
    assert isinstance(pathname_of(text), str)
    assert pathname_of(text)


# The spec's construction, written independently of edge.urlglob: the matcher (which uses
# atomic groups when there are several "**") must agree with it on every path.


def _spec_decode(segment: str) -> str:
    if "%" not in segment or re.search(r"%(?![0-9A-Fa-f]{2})", segment):
        return segment
    try:
        decoded = urllib.parse.unquote(segment, errors="strict")
    except UnicodeDecodeError:
        return segment
    return segment if "/" in decoded else decoded


def _spec_normalise(path: str) -> str:
    return "".join("/" + _spec_decode(s) for s in path.split("/") if s)


def _spec_regex(pattern: str) -> re.Pattern[str]:
    segments = [s for s in pattern.split("/") if s]
    table = {"*": "/[^/]+", "**": "(?:/[^/]+)*"}
    source = "".join(table.get(s) or "/" + re.escape(_spec_decode(s)) for s in segments)
    if "*" not in segments and "**" not in segments:
        source += "(?:/[^/]+)*"
    return re.compile(source)


_SMALL_LITERAL = st.sampled_from(["a", "b", "%61", "c%zz", "%2F"])


@given(
    st.lists(st.one_of(_SMALL_LITERAL, st.just("*"), st.just("**")), max_size=7),
    st.lists(st.sampled_from(["a", "b", "%61", "c%zz", "%2F", "", "x"]), max_size=9),
)
def test_matcher_agrees_with_the_spec_regex(segments: list[str], path_segments: list[str]) -> None:
    pattern = _join(segments) or "/"
    path = "/".join(path_segments)
    expected = _spec_regex(pattern).fullmatch(_spec_normalise(path)) is not None
    assert compile_pattern(pattern).matches(path) is expected
    assert normalize_path(path) == _spec_normalise(path)
