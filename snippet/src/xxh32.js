// XXH32, the 32-bit xxHash, as specified in
// https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md
// All arithmetic is modulo 2^32. Sums of two 32-bit values stay exact in a double, and
// every sum goes through Math.imul or a shift (ToInt32/ToUint32) before it can grow
// further, so no `| 0` is needed; the result is read as unsigned with `>>> 0`.

const PRIME32_1 = 0x9e3779b1;
const PRIME32_2 = 0x85ebca77;
const PRIME32_3 = 0xc2b2ae3d;
const PRIME32_4 = 0x27d4eb2f;
const PRIME32_5 = 0x165667b1;
const mul = Math.imul;

const rotl = (x, r) => (x << r) | (x >>> (32 - r));

/**
 * XXH32 of `bytes` (a Uint8Array) with `seed` (a uint32), as an unsigned 32-bit integer.
 */
export function xxh32(bytes, seed = 0) {
  const length = bytes.length;
  let i = 0;
  let acc;
  // The little-endian 32-bit lane at i; moves i past it.
  const lane = () => bytes[i++] | (bytes[i++] << 8) | (bytes[i++] << 16) | (bytes[i++] << 24);
  if (length > 15) {
    // Four lanes of 4 bytes per 16-byte stripe, one accumulator each.
    // seed + PRIME32_1 + PRIME32_2 and seed - PRIME32_1, modulo 2^32.
    const lanes = [seed + 606290984, seed + PRIME32_2, seed, seed + 1640531535];
    while (i + 16 <= length) {
      for (let k = 0; k < 4; k++) lanes[k] = mul(rotl(lanes[k] + mul(lane(), PRIME32_2), 13), PRIME32_1);
    }
    acc = rotl(lanes[0], 1) + rotl(lanes[1], 7) + rotl(lanes[2], 12) + rotl(lanes[3], 18);
  } else {
    acc = seed + PRIME32_5;
  }
  acc += length;
  while (i + 4 <= length) acc = mul(rotl(acc + mul(lane(), PRIME32_3), 17), PRIME32_4);
  while (i < length) acc = mul(rotl(acc + mul(bytes[i++], PRIME32_5), 11), PRIME32_1);
  acc = mul(acc ^ (acc >>> 15), PRIME32_2);
  acc = mul(acc ^ (acc >>> 13), PRIME32_3);
  return (acc ^ (acc >>> 16)) >>> 0;
}
