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

// The spec's algorithm written out plainly (`| 0` after every sum), to check the compact
// implementation on every length around the 4- and 16-byte boundaries and many seeds.
function referenceXxh32(bytes, seed) {
  const [P1, P2, P3, P4, P5] = [0x9e3779b1, 0x85ebca77, 0xc2b2ae3d, 0x27d4eb2f, 0x165667b1];
  const rotl = (x, r) => (x << r) | (x >>> (32 - r));
  const lane = (i) => bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24);
  const round = (acc, input) => Math.imul(rotl((acc + Math.imul(input, P2)) | 0, 13), P1);
  let i = 0;
  let acc;
  if (bytes.length >= 16) {
    const v = [(seed + P1 + P2) | 0, (seed + P2) | 0, seed | 0, (seed - P1) | 0];
    for (; i + 16 <= bytes.length; i += 16) for (let k = 0; k < 4; k++) v[k] = round(v[k], lane(i + 4 * k));
    acc = (rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)) | 0;
  } else {
    acc = (seed + P5) | 0;
  }
  acc = (acc + bytes.length) | 0;
  for (; i + 4 <= bytes.length; i += 4) acc = Math.imul(rotl((acc + Math.imul(lane(i), P3)) | 0, 17), P4);
  for (; i < bytes.length; i++) acc = Math.imul(rotl((acc + Math.imul(bytes[i], P5)) | 0, 11), P1);
  acc = Math.imul(acc ^ (acc >>> 15), P2);
  acc = Math.imul(acc ^ (acc >>> 13), P3);
  return (acc ^ (acc >>> 16)) >>> 0;
}

test('xxh32 agrees with the plain algorithm on every length up to 100 and many seeds', () => {
  const seeds = [0, 1, 2, 0x7fffffff, 0x80000000, 0x9e3779b1, 0xffffffff];
  for (let length = 0; length <= 100; length++) {
    const bytes = sanityBuffer(length);
    for (const seed of seeds) assert.equal(xxh32(bytes, seed), referenceXxh32(bytes, seed), `length ${length}, seed ${seed}`);
  }
});
