"""Deterministic assignment of units to experiment variants.

This module is the Python implementation of the published assignment spec in
``docs/assignment.md``; the browser runtime implements the same text in JS, and both are
checked against the shared vectors in ``tests/vectors/assign.json``.

In short: the input is the UTF-8 encoding of ``experiment_key + ":" + unit_id`` (lone
UTF-16 surrogates become U+FFFD, as WHATWG ``TextEncoder`` does). Its xxHash32 with seed 0,
modulo `BUCKETS`, is the *variant bucket*; with seed 1 it is the *coverage bucket*. A unit
is in the experiment when its coverage bucket is below the coverage (in basis points), and
it gets the variant whose weight range holds its variant bucket.

`AssignmentTable` is the precompiled, immutable form used on the hot path: one encode, one
or two hashes and one bisect per call.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from fractions import Fraction
from numbers import Real
from typing import Final

from xxhash import xxh32_intdigest

from edge.errors import InvalidRequest

__all__ = [
    "BUCKETS",
    "AssignmentTable",
    "coverage_bucket",
    "unit_bytes",
    "variant_bucket",
    "weights_to_bps",
]

BUCKETS: Final = 10_000
"""Number of buckets; weights and coverage are expressed in these basis points."""

_VARIANT_SEED: Final = 0
_COVERAGE_SEED: Final = 1


def _utf8(text: str) -> bytes:
    """UTF-8 of *text*, with every lone surrogate replaced by U+FFFD (as ``TextEncoder``).

    A high surrogate directly followed by a low surrogate is one code point (exactly as the
    same two UTF-16 code units are in a JS string); any other surrogate becomes EF BF BD.
    """
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")


def unit_bytes(experiment_key: str, unit_id: str) -> bytes:
    """Return the bytes that are hashed for *unit_id* in *experiment_key*.

    That is the UTF-8 encoding of ``experiment_key + ":" + unit_id``, lone surrogates
    replaced by U+FFFD.
    """
    return _utf8(experiment_key + ":" + unit_id)


def variant_bucket(experiment_key: str, unit_id: str) -> int:
    """Return the variant bucket of a unit: ``xxh32(unit_bytes, seed=0) % BUCKETS``."""
    return xxh32_intdigest(unit_bytes(experiment_key, unit_id), _VARIANT_SEED) % BUCKETS


def coverage_bucket(experiment_key: str, unit_id: str) -> int:
    """Return the coverage bucket of a unit: ``xxh32(unit_bytes, seed=1) % BUCKETS``."""
    return xxh32_intdigest(unit_bytes(experiment_key, unit_id), _COVERAGE_SEED) % BUCKETS


def weights_to_bps(weights: Sequence[float]) -> tuple[int, ...]:
    """Normalise relative weights to basis points that sum to exactly `BUCKETS`.

    *weights* are non-negative numbers in variant order, on any scale (``[50, 50]``,
    ``[1, 1, 1]``, ``[0.7, 0.3]``). Each variant gets the floor of its exact share of
    10000; the points left over go one each to the largest remainders, ties to the lower
    index (the largest-remainder method). The arithmetic is exact, so each result is within
    1 of its exact share and the same weights always give the same result.

    Raises `InvalidRequest` for fewer than 2 weights, a weight that is not a finite
    non-negative number, or weights that are all zero.
    """
    if isinstance(weights, (str, bytes)) or len(weights) < 2:
        raise InvalidRequest(
            "weights must list at least 2 numbers, one per variant (control first), e.g. [50, 50]"
        )
    exact: list[Fraction] = []
    for index, weight in enumerate(weights):
        if isinstance(weight, bool) or not isinstance(weight, Real):
            raise InvalidRequest(
                f"weights[{index}] is {weight!r}; each weight must be a number >= 0"
            )
        if not math.isfinite(weight) or weight < 0:
            raise InvalidRequest(
                f"weights[{index}] is {weight!r}; each weight must be a finite number >= 0"
            )
        exact.append(Fraction(weight))
    total = sum(exact, Fraction(0))
    if total == 0:
        raise InvalidRequest("weights are all 0; give at least one variant a weight above 0")

    shares = [weight * BUCKETS / total for weight in exact]
    bps = [math.floor(share) for share in shares]
    left_over = BUCKETS - sum(bps)
    # Largest remainder first; on equal remainders the lower index first.
    order = sorted(range(len(shares)), key=lambda i: (bps[i] - shares[i], i))
    for index in order[:left_over]:
        bps[index] += 1
    return tuple(bps)


def _check_weights_bps(weights_bps: Sequence[int]) -> tuple[int, ...]:
    if isinstance(weights_bps, (str, bytes)) or len(weights_bps) < 2:
        raise InvalidRequest(
            "weights_bps must list at least 2 integers, one per variant (control first), "
            f"that sum to {BUCKETS}, e.g. [5000, 5000]"
        )
    for index, weight in enumerate(weights_bps):
        if isinstance(weight, bool) or not isinstance(weight, int):
            raise InvalidRequest(
                f"weights_bps[{index}] is {weight!r}; each weight must be an integer number "
                f"of basis points from 0 to {BUCKETS}"
            )
        if weight < 0:
            raise InvalidRequest(
                f"weights_bps[{index}] is {weight}; weights cannot be negative (use 0 to "
                "give a variant no traffic)"
            )
    total = sum(weights_bps)
    if total != BUCKETS:
        raise InvalidRequest(
            f"weights_bps sum to {total}; they must sum to exactly {BUCKETS} basis points "
            "(normalise relative weights with weights_to_bps)"
        )
    return tuple(weights_bps)


def _check_coverage_bps(coverage_bps: int) -> int:
    if isinstance(coverage_bps, bool) or not isinstance(coverage_bps, int):
        raise InvalidRequest(
            f"coverage_bps is {coverage_bps!r}; it must be an integer number of basis points "
            f"from 0 to {BUCKETS}"
        )
    if not 0 <= coverage_bps <= BUCKETS:
        raise InvalidRequest(
            f"coverage_bps is {coverage_bps}; it must be from 0 (no units) to {BUCKETS} "
            "(every unit)"
        )
    return coverage_bps


class AssignmentTable:
    """The precompiled, immutable assignment of one experiment.

    Built once per config version with `AssignmentTable.build` (or by calling the class
    with the same arguments), then used on the hot path through `assign`.

    Attributes:
        experiment_key: The key whose UTF-8 bytes (then ``":"``) prefix every hashed unit.
        weights_bps: Basis points per variant, in variant order, summing to 10000.
        coverage_bps: Basis points of units that are in the experiment at all.
    """

    __slots__ = ("_bounds", "_key_prefix", "coverage_bps", "experiment_key", "weights_bps")

    experiment_key: str
    weights_bps: tuple[int, ...]
    coverage_bps: int
    _key_prefix: str
    _bounds: tuple[int, ...]

    def __init__(
        self, experiment_key: str, weights_bps: Sequence[int], coverage_bps: int = BUCKETS
    ) -> None:
        if not isinstance(experiment_key, str):
            raise InvalidRequest(f"experiment_key is {experiment_key!r}; it must be a string")
        weights = _check_weights_bps(weights_bps)
        coverage = _check_coverage_bps(coverage_bps)
        # Upper bounds of every variant's range but the last (which always ends at
        # BUCKETS): bisect_right gives the first variant whose bound exceeds the bucket,
        # stepping over zero-width ranges.
        bounds: list[int] = []
        upper = 0
        for weight in weights[:-1]:
            upper += weight
            bounds.append(upper)
        setattr_ = object.__setattr__
        setattr_(self, "experiment_key", experiment_key)
        setattr_(self, "weights_bps", weights)
        setattr_(self, "coverage_bps", coverage)
        setattr_(self, "_key_prefix", experiment_key + ":")
        setattr_(self, "_bounds", tuple(bounds))

    @classmethod
    def build(
        cls, experiment_key: str, weights_bps: Sequence[int], coverage_bps: int = BUCKETS
    ) -> AssignmentTable:
        """Validate the configuration and precompile it.

        *weights_bps* needs at least 2 integers >= 0 summing to exactly 10000, in variant
        order; *coverage_bps* is an integer from 0 to 10000. Anything else raises
        `InvalidRequest` saying what to fix.
        """
        return cls(experiment_key, weights_bps, coverage_bps)

    def assign(self, unit_id: str) -> int | None:
        """Return the index of the variant of *unit_id*, or None when it is not covered."""
        text = self._key_prefix + unit_id
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            data = _utf8(text)
        coverage = self.coverage_bps
        if coverage < BUCKETS and xxh32_intdigest(data, _COVERAGE_SEED) % BUCKETS >= coverage:
            return None
        return bisect_right(self._bounds, xxh32_intdigest(data, _VARIANT_SEED) % BUCKETS)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"AssignmentTable is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"AssignmentTable is immutable; cannot delete {name!r}")

    def __reduce__(self) -> tuple[type[AssignmentTable], tuple[str, tuple[int, ...], int]]:
        return (AssignmentTable, (self.experiment_key, self.weights_bps, self.coverage_bps))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AssignmentTable):
            return NotImplemented
        return (self.experiment_key, self.weights_bps, self.coverage_bps) == (
            other.experiment_key,
            other.weights_bps,
            other.coverage_bps,
        )

    def __hash__(self) -> int:
        return hash((self.experiment_key, self.weights_bps, self.coverage_bps))

    def __repr__(self) -> str:
        return (
            f"AssignmentTable(experiment_key={self.experiment_key!r}, "
            f"weights_bps={self.weights_bps!r}, coverage_bps={self.coverage_bps!r})"
        )
