import assert from 'node:assert/strict';
import { test } from 'node:test';
import { xxh32 } from '../src/xxh32.js';

const PRIME32 = 2654435761;
const PRIME64 = 11400714785074694797n;

// The sanity buffer of xxHash's cli/xsum_sanity_check.c (XSUM_fillTestBuffer).
function sanityBuffer(length) {
  const buffer = new Uint8Array(length);
  let byteGen = BigInt(PRIME32);
  for (let i = 0; i < length; i++) {
    buffer[i] = Number(byteGen >> 56n);
    byteGen = (byteGen * PRIME64) & 0xffffffffffffffffn;
  }
  return buffer;
}

const ascii = (text) => new TextEncoder().encode(text);

test('xxh32 of empty input with seed 0 is 0x02CC5D05', () => {
  assert.equal(xxh32(new Uint8Array(0), 0), 0x02cc5d05);
  assert.equal(xxh32(new Uint8Array(0)), 0x02cc5d05);
});

// XSUM_XXH32_testdata in xxHash's cli/xsum_sanity_check.c: lengths 0, 1, 14 (< 16 bytes)
// and 222 (the 16-byte stripe loop and every tail), with seeds 0 and PRIME32.
const SANITY = [
  [0, 0, 0x02cc5d05],
  [0, PRIME32, 0x36b78ae7],
  [1, 0, 0xcf65b03e],
  [1, PRIME32, 0xb4545aa4],
  [14, 0, 0x1208e7e2],
  [14, PRIME32, 0x6af1d1fe],
  [222, 0, 0x5bd11dbd],
  [222, PRIME32, 0x58803c5f],
];

for (const [length, seed, expected] of SANITY) {
  test(`xxh32 of the ${length}-byte sanity buffer, seed ${seed}`, () => {
    assert.equal(xxh32(sanityBuffer(length), seed), expected);
  });
}

test('xxh32 of short ASCII strings', () => {
  assert.equal(xxh32(ascii('a'), 0), 0x550d7456);
  assert.equal(xxh32(ascii('abc'), 0), 0x32d153ff);
});

test('xxh32 of the worked example in docs/assignment.md', () => {
  const bytes = ascii('checkout-button-color:user-1');
  assert.equal(xxh32(bytes, 0), 0xfcd0cce3);
  assert.equal(xxh32(bytes, 1), 0xaa82704d);
});

test('xxh32 is an unsigned 32-bit integer', () => {
  for (let length = 0; length < 64; length++) {
    const hash = xxh32(sanityBuffer(length), length);
    assert.ok(Number.isInteger(hash) && hash >= 0 && hash <= 0xffffffff, `length ${length}`);
  }
});
