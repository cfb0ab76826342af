// Deterministic assignment of a unit to a variant: the spec in docs/assignment.md,
// identical to src/edge/assign.py and checked against tests/vectors/assign.json.

import { xxh32 } from './xxh32.js';

export const BUCKETS = 10000;

const VARIANT_SEED = 0;
const COVERAGE_SEED = 1;

// UTF-8 of key + ":" + unit; TextEncoder turns lone surrogates into U+FFFD, as the spec says.
const unitBytes = (key, unit) => new TextEncoder().encode(key + ':' + unit);

/** xxh32(bytes, 0) % 10000: which variant range the unit falls in. */
export function variantBucket(key, unit) {
  return xxh32(unitBytes(key, unit), VARIANT_SEED) % BUCKETS;
}

/** xxh32(bytes, 1) % 10000: whether the unit is in the experiment at all. */
export function coverageBucket(key, unit) {
  return xxh32(unitBytes(key, unit), COVERAGE_SEED) % BUCKETS;
}

/**
 * Index of the variant of `unit` in experiment `key`, or null when the unit is outside
 * the coverage. `weightsBps` are basis points in variant order summing to 10000;
 * `coverageBps` is 0..10000 (undefined counts as 10000: everybody).
 */
export function assign(key, unit, weightsBps, coverageBps) {
  const bytes = new TextEncoder().encode(key + ':' + unit);
  const bucket = xxh32(bytes, VARIANT_SEED) % BUCKETS;
  let upper = 0;
  // The first variant whose range [previous upper, upper) holds the bucket; the weights
  // sum to 10000, so there always is one.
  return coverageBps < BUCKETS && xxh32(bytes, COVERAGE_SEED) % BUCKETS >= coverageBps
    ? null
    : weightsBps.findIndex((weight) => bucket < (upper += weight));
}
