import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { assign, coverageBucket, variantBucket } from '../src/assign.js';

// The golden vectors shared with the Python tests.
const { cases } = JSON.parse(readFileSync(new URL('../../tests/vectors/assign.json', import.meta.url), 'utf8'));

test('the assignment vectors are there', () => {
  assert.ok(cases.length >= 100, `only ${cases.length} cases`);
});

test('every case of tests/vectors/assign.json', () => {
  let failures = [];
  for (const c of cases) {
    const got = {
      variant_bucket: variantBucket(c.experiment_key, c.unit_id),
      coverage_bucket: coverageBucket(c.experiment_key, c.unit_id),
      variant: assign(c.experiment_key, c.unit_id, c.weights_bps, c.coverage_bps),
    };
    const want = { variant_bucket: c.variant_bucket, coverage_bucket: c.coverage_bucket, variant: c.variant };
    if (JSON.stringify(got) !== JSON.stringify(want)) failures.push({ case: c, got });
  }
  assert.deepEqual(failures, [], `${failures.length} of ${cases.length} cases differ`);
});

test('the worked examples of docs/assignment.md', () => {
  const key = 'checkout-button-color';
  assert.equal(variantBucket(key, 'user-1'), 2371);
  assert.equal(coverageBucket(key, 'user-1'), 5149);
  assert.equal(assign(key, 'user-1', [5000, 5000], 10000), 0);
  assert.equal(assign(key, 'user-1', [5000, 5000], 5000), null);
  // A lone surrogate is hashed as U+FFFD (EF BF BD), an empty id as nothing after ":".
  assert.equal(variantBucket(key, '\ud800'), 9929);
  assert.equal(coverageBucket(key, '\ud800'), 8481);
  assert.equal(variantBucket(key, '\ud800'), variantBucket(key, '\ufffd'));
  assert.equal(variantBucket(key, ''), 2377);
  assert.equal(coverageBucket(key, ''), 3761);
});

test('coverage 0 includes nobody, 10000 everybody; weight 0 is never chosen', () => {
  for (let i = 0; i < 200; i++) {
    const unit = `unit-${i}`;
    assert.equal(assign('exp', unit, [5000, 5000], 0), null);
    assert.notEqual(assign('exp', unit, [5000, 5000], 10000), null);
    assert.equal(assign('exp', unit, [0, 10000, 0], 10000), 1);
  }
});
