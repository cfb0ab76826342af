"""Tests for edge.assign: the published assignment spec (docs/assignment.md)."""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import pickle
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from edge.assign import (
    BUCKETS,
    AssignmentTable,
    coverage_bucket,
    unit_bytes,
    variant_bucket,
    weights_to_bps,
)
from edge.errors import InvalidRequest

VECTORS_DIR = Path(__file__).parent / "vectors"
VECTORS = json.loads((VECTORS_DIR / "assign.json").read_text(encoding="ascii"))
CASES: list[dict[str, Any]] = VECTORS["cases"]

ALPHA = 0.001  # significance level of every statistical test below


# --- helpers -------------------------------------------------------------------------------


def _load_generator() -> ModuleType:
    path = VECTORS_DIR / "generate_assign.py"
    spec = importlib.util.spec_from_file_location("generate_assign", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_utf8(text: str) -> bytes:
    """UTF-8 as WHATWG TextEncoder produces it, written out code unit by code unit."""
    out = bytearray()
    i = 0
    while i < len(text):
        unit = ord(text[i])
        following = ord(text[i + 1]) if i + 1 < len(text) else 0
        if 0xD800 <= unit <= 0xDBFF and 0xDC00 <= following <= 0xDFFF:
            code_point = 0x10000 + ((unit - 0xD800) << 10) + (following - 0xDC00)
            i += 2
        elif 0xD800 <= unit <= 0xDFFF:
            code_point = 0xFFFD
            i += 1
        else:
            code_point = unit
            i += 1
        out += chr(code_point).encode("utf-8")
    return bytes(out)


def reference_assign(
    experiment_key: str, unit_id: str, weights_bps: Sequence[int], coverage_bps: int
) -> int | None:
    """The spec read literally: coverage check, then the first i with bucket < cum(i)."""
    if coverage_bps < BUCKETS and coverage_bucket(experiment_key, unit_id) >= coverage_bps:
        return None
    bucket = variant_bucket(experiment_key, unit_id)
    cumulative = 0
    for index, weight in enumerate(weights_bps):
        cumulative += weight
        if bucket < cumulative:
            return index
    raise AssertionError("weights do not cover every bucket")


def gamma_q(a: float, x: float) -> float:
    """Regularised upper incomplete gamma Q(a, x) (series / Lentz continued fraction)."""
    if x <= 0.0:
        return 1.0
    log_prefix = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        denominator = a
        for _ in range(100_000):
            denominator += 1.0
            term *= x / denominator
            total += term
            if abs(term) < abs(total) * 1e-15:
                return max(0.0, 1.0 - total * math.exp(log_prefix))
        raise AssertionError("gamma series did not converge")
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 100_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            return math.exp(log_prefix) * h
    raise AssertionError("gamma continued fraction did not converge")


def chi_square_p(statistic: float, df: int) -> float:
    """Upper-tail p-value of a chi-square statistic with *df* degrees of freedom."""
    return gamma_q(df / 2.0, statistic / 2.0)


def goodness_of_fit_p(observed: Sequence[int], expected: Sequence[float]) -> float:
    statistic = sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True))
    return chi_square_p(statistic, len(observed) - 1)


def independence_p(pairs: Sequence[tuple[int | None, int | None]]) -> float:
    """p-value of the chi-square test of independence of a contingency table."""
    table = Counter(pairs)
    rows = Counter(a for a, _ in pairs)
    cols = Counter(b for _, b in pairs)
    n = len(pairs)
    statistic = 0.0
    for row, row_total in rows.items():
        for col, col_total in cols.items():
            expected = row_total * col_total / n
            statistic += (table[(row, col)] - expected) ** 2 / expected
    return chi_square_p(statistic, (len(rows) - 1) * (len(cols) - 1))


def ids(n: int, prefix: str = "user-") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


# --- the hash itself -----------------------------------------------------------------------

PRIME32 = 2654435761
PRIME64 = 11400714785074694797


def xxhash_sanity_buffer(length: int) -> bytes:
    """The pseudo-random buffer of xxHash's own sanity check (cli/xsum_sanity_check.c)."""
    out = bytearray()
    generator = PRIME32
    for _ in range(length):
        out.append(generator >> 56)
        generator = (generator * PRIME64) % 2**64
    return bytes(out)


# Published by xxHash: cli/xsum_sanity_check.c, XSUM_XXH32_testdata (length, seed, hash).
@pytest.mark.parametrize(
    ("length", "seed", "expected"),
    [
        (0, 0, 0x02CC5D05),
        (0, PRIME32, 0x36B78AE7),
        (1, 0, 0xCF65B03E),
        (1, PRIME32, 0xB4545AA4),
        (14, 0, 0x1208E7E2),
        (14, PRIME32, 0x6AF1D1FE),
        (222, 0, 0x5BD11DBD),
        (222, PRIME32, 0x58803C5F),
    ],
)
def test_xxh32_matches_the_reference_values(length: int, seed: int, expected: int) -> None:
    assert xxhash.xxh32_intdigest(xxhash_sanity_buffer(length), seed) == expected


def test_xxh32_of_empty_input() -> None:
    assert xxhash.xxh32_intdigest(b"", 0) == 0x02CC5D05
    assert xxhash.xxh32_intdigest(b"", seed=0) == 0x02CC5D05


# --- shared vectors ------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[str(i) for i in range(len(CASES))])
def test_vector(case: dict[str, Any]) -> None:
    key, unit_id = case["experiment_key"], case["unit_id"]
    data = unit_bytes(key, unit_id)
    assert data == reference_utf8(key + ":" + unit_id)
    assert xxhash.xxh32_intdigest(data, 0) % BUCKETS == case["variant_bucket"]
    assert variant_bucket(key, unit_id) == case["variant_bucket"]
    assert coverage_bucket(key, unit_id) == case["coverage_bucket"]
    table = AssignmentTable.build(key, case["weights_bps"], case["coverage_bps"])
    assert table.assign(unit_id) == case["variant"]
    expected = reference_assign(key, unit_id, case["weights_bps"], case["coverage_bps"])
    assert case["variant"] == expected


def test_vectors_cover_what_the_spec_promises() -> None:
    assert VECTORS["spec"] == "docs/assignment.md"
    assert len(CASES) >= 200
    unit_ids = [case["unit_id"] for case in CASES]
    assert {len(case["weights_bps"]) for case in CASES} >= {2, 3, 5}
    assert {case["coverage_bps"] for case in CASES} >= {0, 1, 5000, 9999, 10000}
    assert any(0 in case["weights_bps"] for case in CASES)
    assert any(case["variant"] is None for case in CASES)
    assert "" in unit_ids
    assert max(map(len, unit_ids)) >= 10_000
    assert "\ud800" in unit_ids  # a lone surrogate survived the JSON round trip
    assert "🇩🇪" in unit_ids
    assert "👨\u200d👩\u200d👧\u200d👦" in unit_ids
    assert any(not u.isascii() and not any(0xD800 <= ord(c) <= 0xDFFF for c in u) for u in unit_ids)
    assert any(":" in u for u in unit_ids)
    assert any("\x00" in u for u in unit_ids)
    assert (VECTORS_DIR / "assign.json").stat().st_size < 300_000


def test_committed_vectors_are_what_the_generator_produces() -> None:
    generator = _load_generator()
    committed = (VECTORS_DIR / "assign.json").read_text(encoding="ascii")
    assert committed == generator.render(), (
        "tests/vectors/assign.json is stale: run .venv/bin/python tests/vectors/generate_assign.py"
    )


# --- input encoding ------------------------------------------------------------------------


def test_unit_bytes_joins_key_and_id_with_a_colon() -> None:
    assert unit_bytes("exp", "user-1") == b"exp:user-1"
    assert unit_bytes("", "") == b":"
    assert unit_bytes("exp", "é") == b"exp:\xc3\xa9"
    assert unit_bytes("exp", "😀") == b"exp:\xf0\x9f\x98\x80"


def test_lone_surrogates_become_replacement_characters() -> None:
    replacement = bytes([0xEF, 0xBF, 0xBD])
    assert unit_bytes("exp", "\ud800") == b"exp:" + replacement
    assert unit_bytes("exp", "\udfff") == b"exp:" + replacement
    assert unit_bytes("exp", "a\udc00b") == b"exp:a" + replacement + b"b"
    # a low surrogate before a high one is two lone surrogates, not a pair
    assert unit_bytes("exp", "\ude00\ud83d") == b"exp:" + replacement * 2
    assert unit_bytes("exp\ud800", "x") == b"exp" + replacement + b":x"


def test_surrogates_from_json() -> None:
    lone = json.loads('"\\ud800"')
    assert unit_bytes("exp", lone) == b"exp:\xef\xbf\xbd"
    pair = json.loads('"\\ud83d\\ude00"')
    assert pair == "😀"
    assert unit_bytes("exp", pair) == b"exp:\xf0\x9f\x98\x80"
    # the same two code units as separate Python code points also form the pair, as in JS
    assert unit_bytes("exp", "\ud83d" + "\ude00") == b"exp:\xf0\x9f\x98\x80"


def test_no_unicode_normalisation() -> None:
    assert unit_bytes("exp", "\u00e9") != unit_bytes("exp", "e\u0301")


_any_code_unit = st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr))


@given(st.lists(_any_code_unit, max_size=20).map("".join), st.text(max_size=5))
def test_unit_bytes_matches_text_encoder(unit_id: str, experiment_key: str) -> None:
    assert unit_bytes(experiment_key, unit_id) == reference_utf8(experiment_key + ":" + unit_id)


# --- assignment ----------------------------------------------------------------------------

_weights_bps = (
    st.lists(st.integers(0, 20), min_size=2, max_size=6)
    .filter(lambda raw: sum(raw) > 0)
    .map(weights_to_bps)
)


@given(
    st.text(max_size=8),
    st.lists(_any_code_unit, max_size=12).map("".join),
    _weights_bps,
    st.integers(0, BUCKETS),
)
def test_assign_follows_the_spec(
    experiment_key: str, unit_id: str, weights: tuple[int, ...], coverage: int
) -> None:
    table = AssignmentTable.build(experiment_key, weights, coverage)
    assert table.assign(unit_id) == reference_assign(experiment_key, unit_id, weights, coverage)


def test_zero_weight_variants_are_never_chosen() -> None:
    middle_off = AssignmentTable.build("zero-weights", [5000, 0, 5000])
    only_variant = AssignmentTable.build("zero-weights", [0, 10000])
    only_control = AssignmentTable.build("zero-weights", [10000, 0])
    units = ids(50_000)
    assert set(map(middle_off.assign, units)) == {0, 2}
    assert set(map(only_variant.assign, units)) == {1}
    assert set(map(only_control.assign, units)) == {0}


def test_coverage_extremes() -> None:
    units = ids(20_000)
    assert set(map(AssignmentTable.build("cov", [5000, 5000], 0).assign, units)) == {None}
    assert None not in set(map(AssignmentTable.build("cov", [5000, 5000], 10_000).assign, units))
    one_bp = AssignmentTable.build("cov", [5000, 5000], 1)
    included = [u for u in units if one_bp.assign(u) is not None]
    assert included == [u for u in units if coverage_bucket("cov", u) == 0]


def test_determinism() -> None:
    first = AssignmentTable.build("determinism", [2000, 3000, 5000], 7000)
    second = AssignmentTable.build("determinism", (2000, 3000, 5000), 7000)
    units = ids(10_000) + [case["unit_id"] for case in CASES]
    once = [first.assign(u) for u in units]
    assert [first.assign(u) for u in units] == once
    assert [second.assign(u) for u in units] == once
    assert [variant_bucket("determinism", u) for u in units] == [
        variant_bucket("determinism", u) for u in units
    ]


def test_table_is_immutable_value() -> None:
    table = AssignmentTable.build("exp", [5000, 5000], 2500)
    assert table.experiment_key == "exp"
    assert table.weights_bps == (5000, 5000)
    assert table.coverage_bps == 2500
    with pytest.raises(AttributeError):
        table.coverage_bps = 10_000
    with pytest.raises(AttributeError):
        del table.weights_bps
    assert table == AssignmentTable("exp", (5000, 5000), 2500)
    assert hash(table) == hash(AssignmentTable("exp", [5000, 5000], 2500))
    assert table != AssignmentTable("exp", [5000, 5000])
    assert pickle.loads(pickle.dumps(table)) == table
    assert copy.deepcopy(table) == table
    assert "coverage_bps=2500" in repr(table)


# --- statistics: uniformity, independence, stickiness --------------------------------------


@pytest.mark.parametrize(
    ("p_value", "statistic", "df"),
    [
        (0.001, 10.828, 1),  # standard chi-square table critical values
        (0.05, 3.841, 1),
        (0.001, 18.467, 4),
        (0.01, 23.209, 10),
        (0.001, 149.449, 100),
    ],
)
def test_chi_square_p_matches_tables(p_value: float, statistic: float, df: int) -> None:
    assert chi_square_p(statistic, df) == pytest.approx(p_value, rel=2e-3)


@pytest.mark.parametrize("statistic", [0.01, 0.5, 1.0, 3.0, 10.0, 25.0, 60.0])
def test_chi_square_p_matches_closed_forms(statistic: float) -> None:
    # df=1: Q(1/2, x/2) = erfc(sqrt(x/2)); df=2: Q(1, x/2) = exp(-x/2)
    assert chi_square_p(statistic, 1) == pytest.approx(math.erfc(math.sqrt(statistic / 2)))
    assert chi_square_p(statistic, 2) == pytest.approx(math.exp(-statistic / 2))


@pytest.mark.parametrize("statistic", [9_500.0, 9_999.0, 10_200.0, 10_330.0, 10_600.0])
def test_chi_square_p_for_large_df(statistic: float) -> None:
    # Wilson-Hilferty: (X/k)^(1/3) is close to normal with mean 1 - 2/(9k), var 2/(9k)
    df = 9_999
    z = ((statistic / df) ** (1 / 3) - (1 - 2 / (9 * df))) / math.sqrt(2 / (9 * df))
    approximation = 0.5 * math.erfc(z / math.sqrt(2))
    assert chi_square_p(statistic, df) == pytest.approx(approximation, rel=1e-2, abs=1e-6)


@pytest.mark.parametrize(
    ("experiment_key", "weights"),
    [
        ("uniform-two", (5000, 5000)),
        ("uniform-three", (3334, 3333, 3333)),
        ("uniform-five", (2000, 2000, 2000, 2000, 2000)),
        ("uneven-three", (1000, 2500, 6500)),
    ],
)
def test_variants_get_their_weight(experiment_key: str, weights: tuple[int, ...]) -> None:
    n = 1_000_000
    table = AssignmentTable.build(experiment_key, weights)
    counts = Counter(map(table.assign, ids(n)))
    observed = [counts[i] for i in range(len(weights))]
    assert sum(observed) == n
    expected = [n * w / BUCKETS for w in weights]
    assert goodness_of_fit_p(observed, expected) > ALPHA


def test_variant_buckets_are_uniform() -> None:
    n = 1_000_000
    one_per_bucket = AssignmentTable.build("uniform-buckets", [1] * BUCKETS)
    counts = Counter(map(one_per_bucket.assign, ids(n)))
    assert goodness_of_fit_p([counts[b] for b in range(BUCKETS)], [n / BUCKETS] * BUCKETS) > ALPHA


def test_coverage_buckets_are_uniform() -> None:
    n = 500_000
    counts = Counter(coverage_bucket("uniform-coverage", u) for u in ids(n))
    assert goodness_of_fit_p([counts[b] for b in range(BUCKETS)], [n / BUCKETS] * BUCKETS) > ALPHA


@pytest.mark.parametrize(
    ("weights_a", "weights_b"),
    [
        ((5000, 5000), (5000, 5000)),
        ((3334, 3333, 3333), (3334, 3333, 3333)),
    ],
)
def test_experiments_are_independent(
    weights_a: tuple[int, ...], weights_b: tuple[int, ...]
) -> None:
    units = ids(200_000, prefix="visitor-")
    a = AssignmentTable.build("checkout-button", weights_a)
    b = AssignmentTable.build("pricing-page", weights_b)
    pairs = [(a.assign(u), b.assign(u)) for u in units]
    assert independence_p(pairs) > ALPHA


def test_coverage_is_independent_of_variant() -> None:
    units = ids(200_000, prefix="visitor-")
    half = AssignmentTable.build("coverage-vs-variant", [3334, 3333, 3333], 5000)
    everyone = AssignmentTable.build("coverage-vs-variant", [3334, 3333, 3333])
    pairs = [(half.assign(u) is None, everyone.assign(u)) for u in units]
    assert independence_p([(int(x), y) for x, y in pairs]) > ALPHA


def test_raising_coverage_keeps_every_unit_in_its_variant() -> None:
    n = 100_000
    units = ids(n, prefix="sticky-")
    weights = (2000, 3000, 5000)
    previous: list[int | None] = [None] * n
    for coverage in (1000, 2500, 5000, 10_000):
        table = AssignmentTable.build("sticky-experiment", weights, coverage)
        current = [table.assign(u) for u in units]
        for before, after in zip(previous, current, strict=True):
            if before is not None:
                assert after == before
        share = coverage / BUCKETS
        included = sum(v is not None for v in current) / n
        assert abs(included - share) <= 5 * math.sqrt(share * (1 - share) / n)
        previous = current
    assert None not in previous


@given(
    st.lists(_any_code_unit, max_size=12).map("".join),
    st.integers(0, BUCKETS),
    st.integers(0, BUCKETS),
    _weights_bps,
)
def test_inclusion_is_monotone_in_coverage(unit_id: str, c1: int, c2: int, weights: Any) -> None:
    low, high = sorted((c1, c2))
    at_low = AssignmentTable.build("monotone", weights, low).assign(unit_id)
    at_high = AssignmentTable.build("monotone", weights, high).assign(unit_id)
    if at_low is not None:
        assert at_high == at_low
    assert (at_high is not None) == (coverage_bucket("monotone", unit_id) < high or high == BUCKETS)


# --- weights_to_bps ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ([50, 50], (5000, 5000)),
        ([1, 1, 1], (3334, 3333, 3333)),
        ([70, 30], (7000, 3000)),
        ([30, 70], (3000, 7000)),
        ([1, 2], (3333, 6667)),
        ([1] * 6, (1667, 1667, 1667, 1667, 1666, 1666)),
        ([0, 1], (0, 10000)),
        ([0.5, 0.25, 0.25], (5000, 2500, 2500)),
        ([0.1, 0.2, 0.7], (1000, 2000, 7000)),
        ([1e308, 1e308], (5000, 5000)),
        ([5e-324, 1.0], (0, 10000)),
        ([Fraction(1, 3), Fraction(2, 3)], (3333, 6667)),
    ],
)
def test_weights_to_bps_examples(weights: list[float], expected: tuple[int, ...]) -> None:
    assert weights_to_bps(weights) == expected


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([], "at least 2"),
        ([100], "at least 2"),
        ("50", "at least 2"),
        ([50, -1], r"weights\[1\] is -1"),
        ([math.nan, 1], "finite"),
        ([1, math.inf], "finite"),
        ([-math.inf, 1], "finite"),
        ([0, 0], "all 0"),
        ([0.0, 0.0, 0.0], "all 0"),
        (["50", "50"], "must be a number"),
        ([True, False], "must be a number"),
        ([None, 1], "must be a number"),
    ],
)
def test_weights_to_bps_rejects(weights: Any, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        weights_to_bps(weights)


@given(
    st.lists(
        st.one_of(
            st.integers(0, 10**12),
            st.floats(0, 1e12, allow_nan=False, allow_infinity=False),
        ),
        min_size=2,
        max_size=12,
    ).filter(lambda w: sum(map(Fraction, w)) > 0)
)
def test_weights_to_bps_is_exact(weights: list[float]) -> None:
    bps = weights_to_bps(weights)
    assert sum(bps) == BUCKETS
    assert len(bps) == len(weights)
    total = sum(map(Fraction, weights))
    for weight, points in zip(weights, bps, strict=True):
        assert abs(points - Fraction(weight) * BUCKETS / total) < 1
    AssignmentTable.build("any", bps)  # always a valid table


@given(st.lists(st.integers(0, 1000), min_size=2, max_size=8), st.integers(1, 1000))
def test_weights_to_bps_ignores_scale(weights: list[int], factor: int) -> None:
    if sum(weights) == 0:
        return
    assert weights_to_bps(weights) == weights_to_bps([w * factor for w in weights])


# --- AssignmentTable validation ------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "coverage", "message"),
    [
        ([], 10_000, "at least 2 integers"),
        ([10_000], 10_000, "at least 2 integers"),
        ([5000, 5001], 10_000, "sum to 10001; they must sum to exactly 10000"),
        ([50, 50], 10_000, "sum to 100; .*weights_to_bps"),
        ([-1, 10_001], 10_000, "cannot be negative"),
        ([5000.0, 5000.0], 10_000, r"weights_bps\[0\] is 5000.0; .*integer"),
        ([True, 9999], 10_000, "integer"),
        ([5000, 5000], -1, "coverage_bps is -1; it must be from 0"),
        ([5000, 5000], 10_001, "coverage_bps is 10001"),
        ([5000, 5000], 50.5, "coverage_bps is 50.5; it must be an integer"),
        ([5000, 5000], "100", "coverage_bps is '100'"),
    ],
)
def test_build_rejects(weights: Any, coverage: Any, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        AssignmentTable.build("exp", weights, coverage)


def test_build_rejects_a_non_string_key() -> None:
    with pytest.raises(InvalidRequest, match="experiment_key"):
        AssignmentTable.build(None, [5000, 5000])  # type: ignore[arg-type]


def test_build_accepts_any_valid_config() -> None:
    table = AssignmentTable.build("", [0, 0, 10_000, 0], 0)
    assert table.assign("anyone") is None
    assert AssignmentTable.build("", [0, 0, 10_000, 0]).assign("anyone") == 2
