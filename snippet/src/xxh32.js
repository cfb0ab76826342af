// XXH32, the 32-bit xxHash, as specified in
// https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md
// All arithmetic is modulo 2^32: `| 0` and Math.imul keep values in int32, and the
// result is read as unsigned with `>>> 0`.

const PRIME32_1 = 0x9e3779b1;
const PRIME32_2 = 0x85ebca77;
const PRIME32_3 = 0xc2b2ae3d;
const PRIME32_4 = 0x27d4eb2f;
const PRIME32_5 = 0x165667b1;

function rotl(x, r) {
  return (x << r) | (x >>> (32 - r));
}

// Little-endian 32-bit lane at byte offset i.
function lane(bytes, i) {
  return bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24);
}

function round(acc, input) {
  acc = (acc + Math.imul(input, PRIME32_2)) | 0;
  return Math.imul(rotl(acc, 13), PRIME32_1);
}

/**
 * XXH32 of `bytes` (a Uint8Array) with `seed` (a uint32), as an unsigned 32-bit integer.
 */
export function xxh32(bytes, seed = 0) {
  const length = bytes.length;
  let i = 0;
  let acc;
  if (length >= 16) {
    // Four lanes of 4 bytes per 16-byte stripe, one accumulator each.
    const lanes = [seed + PRIME32_1 + PRIME32_2, seed + PRIME32_2, seed, seed - PRIME32_1];
    for (; i + 16 <= length; i += 16) {
      for (let k = 0; k < 4; k++) lanes[k] = round(lanes[k], lane(bytes, i + 4 * k));
    }
    acc = (rotl(lanes[0], 1) + rotl(lanes[1], 7) + rotl(lanes[2], 12) + rotl(lanes[3], 18)) | 0;
  } else {
    acc = (seed + PRIME32_5) | 0;
  }
  acc = (acc + length) | 0;
  for (; i + 4 <= length; i += 4) {
    acc = (acc + Math.imul(lane(bytes, i), PRIME32_3)) | 0;
    acc = Math.imul(rotl(acc, 17), PRIME32_4);
  }
  for (; i < length; i++) {
    acc = (acc + Math.imul(bytes[i], PRIME32_5)) | 0;
    acc = Math.imul(rotl(acc, 11), PRIME32_1);
  }
  acc ^= acc >>> 15;
  acc = Math.imul(acc, PRIME32_2);
  acc ^= acc >>> 13;
  acc = Math.imul(acc, PRIME32_3);
  acc ^= acc >>> 16;
  return acc >>> 0;
}
