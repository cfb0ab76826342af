"""Generate tests/vectors/assign.json, the shared assignment vectors.

Run ``.venv/bin/python tests/vectors/generate_assign.py`` after a deliberate change to the
spec in docs/assignment.md, and commit the result. Every id comes from a fixed list or a
fixed-seed generator, so regenerating an unchanged spec gives byte-identical output;
tests/test_assign.py checks that the committed file is exactly `render()`.

The file is ASCII JSON (``ensure_ascii=True``) so that lone surrogates survive as
``\\uXXXX`` escapes; a JS ``JSON.parse`` and Python's ``json.loads`` both read them back.
"""

from __future__ import annotations

import json
import random
import uuid
from itertools import count
from pathlib import Path
from typing import Any

from edge.assign import AssignmentTable, coverage_bucket, variant_bucket

__all__ = ["VECTORS_PATH", "build_cases", "build_document", "main", "render"]

VECTORS_PATH = Path(__file__).with_name("assign.json")

_SEED = 20240601

# (experiment_key, weights_bps, coverage_bps)
_Config = tuple[str, tuple[int, ...], int]

_TWO: _Config = ("checkout-button-color", (5000, 5000), 10000)
_THREE: _Config = ("hero-headline", (3334, 3333, 3333), 10000)
_FIVE: _Config = ("pricing-table-layout", (2000, 2000, 2000, 2000, 2000), 10000)

_CONFIGS: tuple[_Config, ...] = (
    _TWO,
    _THREE,
    _FIVE,
    ("onboarding-tour", (9000, 1000), 10000),
    ("search-ranking-v3", (1000, 2500, 6500), 10000),
    ("nav-redesign", (100, 4900, 0, 2500, 2500), 10000),
    ("agent-system-prompt", (5000, 0, 5000), 10000),
    ("all-to-variant", (0, 10000), 10000),
    ("all-to-control", (10000, 0), 10000),
    ("5f0c6a8e-3d2b-4c1a-9e7f-2b8d4a6c0e1f", (3000, 7000), 10000),
    ("expérience-été-版本", (5000, 5000), 10000),
    ("coverage-zero", (5000, 5000), 0),
    ("coverage-one-bp", (5000, 5000), 1),
    ("coverage-half", (3334, 3333, 3333), 5000),
    ("coverage-almost-all", (2500, 2500, 5000), 9999),
)

# Ids that exercise the encoding: each is checked under the 2-, 3- and 5-arm configs.
_SPECIAL_IDS: tuple[str, ...] = (
    # ASCII
    "user-1",
    "user-42",
    "42",
    "0",
    "a",
    "A",
    "alice@example.com",
    "visitor_8f3a2c",
    "123e4567-e89b-12d3-a456-426614174000",
    "sess:2024-06-01T12:00:00Z",
    "a:b:c",
    ":",
    "::",
    "user 1",
    " leading-space",
    "trailing-space ",
    "tab\tseparated",
    "line\nbreak",
    "\r\n",
    "nul\x00byte",
    "\x01\x1f\x7f",
    "bell\x07",
    # non-ASCII; precomposed and decomposed forms are different ids (no normalisation)
    "\u00e9",
    "e\u0301",
    "über-user",
    "straße",
    "用户-12345",
    "ユーザー",
    "사용자",
    "مستخدم-٤٢",
    "उपयोगकर्ता",
    "Ελληνικά",
    "пользователь",
    "\u00a0nbsp",
    "\u0080\u07ff\u0800\uffff",
    "\U00010000\U0010ffff",
    "\ufeffbom-first",
    # emoji, incl. ZWJ sequences, variation selectors, skin tones and flags
    "😀",
    "user-🚀",
    "👨\u200d👩\u200d👧\u200d👦",
    "🏳\ufe0f\u200d🌈",
    "🧑🏽\u200d💻",
    "👍🏽",
    "🇩🇪",
    "🇺🇸🇯🇵",
    # the empty id
    "",
    # lone surrogates: each becomes U+FFFD (EF BF BD) before hashing
    "\ud800",
    "\udfff",
    "a\udc00b",
    "\ude00\ud83d",
    "user-\ud83d",
)

_LONG_IDS: tuple[tuple[str, _Config], ...] = (
    ("x" * 10_000, _TWO),
    ("é用😀" * 1_000, _THREE),
)


def _generated_ids() -> list[str]:
    """Fixed-seed ASCII ids and UUIDs, the shape of most real unit ids."""
    rng = random.Random(_SEED)
    ids = [f"user-{rng.randrange(10**9)}" for _ in range(30)]
    ids += [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(30)]
    return ids


def _boundary_targets(config: _Config) -> tuple[set[int], set[int]]:
    """Variant and coverage buckets on each side of every edge of *config*'s ranges."""
    _, weights, coverage = config
    variant_targets = {0, 9999}
    upper = 0
    for weight in weights[:-1]:
        upper += weight
        variant_targets |= {upper - 1, upper} & set(range(10000))
    coverage_targets: set[int] = set()
    if coverage < 10000:
        coverage_targets = {0, 9999} | ({coverage - 1, coverage} & set(range(10000)))
    return variant_targets, coverage_targets


def _boundary_ids(config: _Config) -> list[str]:
    """Ids whose buckets sit exactly on the edges of *config*, found by a fixed scan."""
    key = config[0]
    variant_targets, coverage_targets = _boundary_targets(config)
    found: list[str] = []
    for n in count():
        unit_id = f"probe-{n}"
        vb = variant_bucket(key, unit_id)
        cb = coverage_bucket(key, unit_id)
        if vb in variant_targets or cb in coverage_targets:
            found.append(unit_id)
            variant_targets.discard(vb)
            coverage_targets.discard(cb)
            if not variant_targets and not coverage_targets:
                return found
    raise AssertionError("unreachable")


def _case(config: _Config, unit_id: str) -> dict[str, Any]:
    key, weights, coverage = config
    table = AssignmentTable.build(key, weights, coverage)
    return {
        "experiment_key": key,
        "unit_id": unit_id,
        "weights_bps": list(weights),
        "coverage_bps": coverage,
        "variant_bucket": variant_bucket(key, unit_id),
        "coverage_bucket": coverage_bucket(key, unit_id),
        "variant": table.assign(unit_id),
    }


def build_cases() -> list[dict[str, Any]]:
    """Return every vector case, in a fixed order."""
    cases: list[dict[str, Any]] = []
    for config in (_TWO, _THREE, _FIVE):
        cases += [_case(config, unit_id) for unit_id in _SPECIAL_IDS]
    for unit_id, config in _LONG_IDS:
        cases.append(_case(config, unit_id))
    for index, unit_id in enumerate(_generated_ids()):
        cases.append(_case(_CONFIGS[index % len(_CONFIGS)], unit_id))
    for config in _CONFIGS:
        cases += [_case(config, unit_id) for unit_id in _boundary_ids(config)]
        cases += [_case(config, unit_id) for unit_id in ("", "😀", "\ud800", "user-1")]
    return cases


def build_document() -> dict[str, Any]:
    """Return the JSON document: the spec it follows and its cases."""
    return {"spec": "docs/assignment.md", "cases": build_cases()}


def render() -> str:
    """Return the exact text of assign.json."""
    return json.dumps(build_document(), ensure_ascii=True, indent=1) + "\n"


def main() -> None:
    """Write assign.json next to this script."""
    VECTORS_PATH.write_text(render(), encoding="ascii", newline="\n")
    print(f"wrote {VECTORS_PATH}")


if __name__ == "__main__":
    main()
