/**
 * 64-bit hashing for the ring-hash balancer, without BigInt (which allocates per value):
 * xxHash64 (XXH64, seed 0; github.com/Cyan4973/xxHash, doc/xxhash_spec.md), the hash
 * Envoy's RING_HASH uses by default (`hash_function: XX_HASH`, HashUtil::xxHash64) for
 * the request's hash key and the hosts' addresses; and SplitMix64, which derives a host's
 * ring entries from one hash of its address.
 *
 * A 64-bit value lives in two consecutive slots of the register file `R` (high half, then
 * low half), and the helpers take slot numbers, not values: a 32-bit value of 2^30 or more
 * passed to a function V8 does not inline, or kept in a module-level `let`, is a
 * heap-allocated number, and hashing a request key with the values passed around took
 * 0.4 µs and dozens of allocations. Writing a Uint32Array reduces modulo 2^32, which is the
 * wrap-around 64-bit arithmetic needs. JavaScript is single-threaded and nothing here
 * reenters, so one register file serves every call.
 */
const R = new Uint32Array(30);

/**
 * Math.imul, looked up once: where the global object is a vm context's (jest runs every
 * test file in one), each `Math` lookup goes through the context's interceptor and hashing
 * a key took 20 µs instead of about 1.
 */
const imul = Math.imul;

// The five XXH64 primes, in fixed slots.
const P1 = 0;
const P2 = 2;
const P3 = 4;
const P4 = 6;
const P5 = 8;
R.set([0x9e3779b1, 0x85ebca87, 0xc2b2ae3d, 0x27d4eb4f, 0x165667b1, 0x9e3779f9, 0x85ebca77, 0xc2b2ae63, 0x27d4eb2f, 0x165667c5]);
// Working slots: the accumulator, a temporary, an input lane, XXH64's four stripe lanes.
const ACC = 16;
const TMP = 18;
const IN = 20;
const V1 = 22;
const V2 = 24;
const V3 = 26;
const V4 = 28;

/** R[d] = R[a] × R[b] mod 2^64. The low halves' full product is built from 16-bit pieces (exact in doubles). */
function mul(d: number, a: number, b: number): void {
  const ah = R[a];
  const al = R[a + 1];
  const bh = R[b];
  const bl = R[b + 1];
  const a0 = al & 0xffff;
  const a1 = al >>> 16;
  const b0 = bl & 0xffff;
  const b1 = bl >>> 16;
  const p00 = a0 * b0;
  const mid = a1 * b0 + a0 * b1 + (p00 >>> 16);
  R[d + 1] = (mid & 0xffff) * 0x10000 + (p00 & 0xffff);
  R[d] = a1 * b1 + ((mid / 0x10000) >>> 0) + imul(ah, bl) + imul(al, bh);
}

/** R[d] = R[a] + R[b] mod 2^64. */
function add(d: number, a: number, b: number): void {
  const lo = R[a + 1] + R[b + 1];
  R[d] = R[a] + R[b] + (lo > 0xffffffff ? 1 : 0);
  R[d + 1] = lo;
}

/** R[d] = rotl64(R[a], r), 0 < r < 32. */
function rotl(d: number, a: number, r: number): void {
  const h = R[a];
  const l = R[a + 1];
  R[d] = (h << r) | (l >>> (32 - r));
  R[d + 1] = (l << r) | (h >>> (32 - r));
}

/** R[d] = R[a] ^ R[b]. */
function xor(d: number, a: number, b: number): void {
  R[d] = R[a] ^ R[b];
  R[d + 1] = R[a + 1] ^ R[b + 1];
}

/** R[d] = R[a] ^ (R[a] >>> s), 0 < s < 64. */
function xorShr(d: number, a: number, s: number): void {
  const h = R[a];
  const l = R[a + 1];
  if (s < 32) {
    R[d] = h ^ (h >>> s);
    R[d + 1] = l ^ ((l >>> s) | (h << (32 - s)));
  } else {
    R[d] = h;
    R[d + 1] = l ^ (h >>> (s - 32));
  }
}

/** R[d] = the little-endian 64-bit word at b[p]. */
function lane(d: number, b: Uint8Array, p: number): void {
  R[d + 1] = b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24);
  R[d] = b[p + 4] | (b[p + 5] << 8) | (b[p + 6] << 16) | (b[p + 7] << 24);
}

/** XXH64 round: R[acc] = rotl(R[acc] + R[input] × P2, 31) × P1 (R[input] is overwritten). */
function round(acc: number, input: number): void {
  mul(input, input, P2);
  add(acc, acc, input);
  rotl(acc, acc, 31);
  mul(acc, acc, P1);
}

/** XXH64 mergeRound: R[ACC] = (R[ACC] ^ round(0, R[v])) × P1 + P4. */
function mergeRound(v: number): void {
  R[TMP] = 0;
  R[TMP + 1] = 0;
  round(TMP, v);
  xor(ACC, ACC, TMP);
  mul(ACC, ACC, P1);
  add(ACC, ACC, P4);
}

/** R[ACC] = XXH64(b[0, len), seed 0). */
function xxh64Bytes(b: Uint8Array, len: number): void {
  let p = 0;
  if (len >= 32) {
    // Lanes start at P1 + P2, P2, 0, -P1 (seed 0).
    add(V1, P1, P2);
    R[V2] = R[P2];
    R[V2 + 1] = R[P2 + 1];
    R[V3] = 0;
    R[V3 + 1] = 0;
    R[V4] = ~R[P1];
    R[V4 + 1] = ~R[P1 + 1];
    R[TMP] = 0;
    R[TMP + 1] = 1;
    add(V4, V4, TMP);
    do {
      lane(IN, b, p);
      round(V1, IN);
      lane(IN, b, p + 8);
      round(V2, IN);
      lane(IN, b, p + 16);
      round(V3, IN);
      lane(IN, b, p + 24);
      round(V4, IN);
      p += 32;
    } while (p + 32 <= len);
    rotl(ACC, V1, 1);
    rotl(TMP, V2, 7);
    add(ACC, ACC, TMP);
    rotl(TMP, V3, 12);
    add(ACC, ACC, TMP);
    rotl(TMP, V4, 18);
    add(ACC, ACC, TMP);
    // mergeRound overwrites the lane it reads; the lanes are not needed after.
    mergeRound(V1);
    mergeRound(V2);
    mergeRound(V3);
    mergeRound(V4);
  } else {
    R[ACC] = R[P5];
    R[ACC + 1] = R[P5 + 1];
  }
  R[TMP] = 0;
  R[TMP + 1] = len;
  add(ACC, ACC, TMP);
  for (; p + 8 <= len; p += 8) {
    lane(IN, b, p);
    R[TMP] = 0;
    R[TMP + 1] = 0;
    round(TMP, IN);
    xor(ACC, ACC, TMP);
    rotl(ACC, ACC, 27);
    mul(ACC, ACC, P1);
    add(ACC, ACC, P4);
  }
  if (p + 4 <= len) {
    R[IN] = 0;
    R[IN + 1] = b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24);
    mul(IN, IN, P1);
    xor(ACC, ACC, IN);
    rotl(ACC, ACC, 23);
    mul(ACC, ACC, P2);
    add(ACC, ACC, P3);
    p += 4;
  }
  for (; p < len; p++) {
    R[IN] = 0;
    R[IN + 1] = b[p];
    mul(IN, IN, P5);
    xor(ACC, ACC, IN);
    rotl(ACC, ACC, 11);
    mul(ACC, ACC, P1);
  }
  // Avalanche.
  xorShr(ACC, ACC, 33);
  mul(ACC, ACC, P2);
  xorShr(ACC, ACC, 29);
  mul(ACC, ACC, P3);
  xorShr(ACC, ACC, 32);
}

/** Scratch buffer for a string's UTF-8 bytes; grows to the longest string hashed. */
let scratch = new Uint8Array(256);

/** Writes `s` as UTF-8 (lone surrogates as U+FFFD, as TextEncoder does) into `scratch`; returns the length. */
function utf8(s: string): number {
  if (scratch.length < s.length * 3) scratch = new Uint8Array(s.length * 3);
  const b = scratch;
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      b[n++] = c;
      continue;
    }
    if (c < 0x800) {
      b[n++] = 0xc0 | (c >>> 6);
      b[n++] = 0x80 | (c & 0x3f);
      continue;
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      const d = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
      if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
        b[n++] = 0xf0 | (c >>> 18);
        b[n++] = 0x80 | ((c >>> 12) & 0x3f);
        b[n++] = 0x80 | ((c >>> 6) & 0x3f);
        b[n++] = 0x80 | (c & 0x3f);
        continue;
      }
      c = 0xfffd;
    }
    b[n++] = 0xe0 | (c >>> 12);
    b[n++] = 0x80 | ((c >>> 6) & 0x3f);
    b[n++] = 0x80 | (c & 0x3f);
  }
  return n;
}

/**
 * XXH64 (seed 0) of the UTF-8 bytes of `s`: `out[0]` the high 32 bits, `out[1]` the low.
 * Allocates nothing (the request path hashes every key with it).
 */
export function xxHash64(s: string, out: Uint32Array): void {
  const len = utf8(s); // first: it may replace `scratch` with a larger buffer
  xxh64Bytes(scratch, len);
  out[0] = R[ACC];
  out[1] = R[ACC + 1];
}

const GH = 0x9e3779b9;
const GL = 0x7f4a7c15;

/**
 * SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators",
 * OOPSLA 2014; the finalizer is Stafford's Mix13): output i of the sequence seeded with s is
 * mix(s + (i + 1) × γ). Every output bit depends on every bit of s and i, so consecutive
 * outputs land at independent, uniformly spread positions: the ring takes a host's entries
 * from it, hashing the host's address once instead of one string per entry.
 *
 * For each seed o (`seeds[2o]` high, `seeds[2o + 1]` low) writes outputs 0 .. counts[o] - 1
 * to the next counts[o] places of `hi`/`lo`, and o + `firstOwner` to the same places of `owners`
 * (a ring built in steps fills a range of hosts at a time). One loop
 * of local arithmetic over every entry, no calls: a ring of 1,024 hosts has 163,840
 * entries, and V8 optimizes a long loop (on-stack replacement) long before it optimizes a
 * function called once per host: the first ring a process built took twice as long.
 */
export function splitMix64Fill(seeds: Uint32Array, counts: readonly number[], hi: Uint32Array, lo: Uint32Array, owners: Int32Array, firstOwner = 0): void {
  let o = 0;
  let left = counts.length > 0 ? counts[0] : 0;
  let zh = seeds[0];
  let zl = seeds[1];
  for (let k = 0; k < hi.length; k++) {
    while (left === 0) {
      o++;
      left = counts[o];
      zh = seeds[2 * o];
      zl = seeds[2 * o + 1];
    }
    left--;
    owners[k] = o + firstOwner;
    // z += γ (the Weyl sequence: the i-th value is seed + (i + 1) × γ)
    zl += GL;
    zh = (zh + GH + (zl > 0xffffffff ? 1 : 0)) >>> 0;
    zl >>>= 0;
    // x = z ^ (z >>> 30); x *= 0xbf58476d1ce4e5b9
    let xh = zh ^ (zh >>> 30);
    let xl = zl ^ ((zl >>> 30) | (zh << 2));
    let a0 = xl & 0xffff;
    let a1 = xl >>> 16;
    let p00 = a0 * 0xe5b9;
    let mid = a1 * 0xe5b9 + a0 * 0x1ce4 + (p00 >>> 16);
    let nl = (mid & 0xffff) * 0x10000 + (p00 & 0xffff);
    let nh = a1 * 0x1ce4 + ((mid / 0x10000) >>> 0) + imul(xh, 0x1ce4e5b9) + imul(xl, 0xbf58476d);
    // x ^= x >>> 27; x *= 0x94d049bb133111eb
    xh = nh >>> 0;
    xl = nl >>> 0;
    xl = (xl ^ ((xl >>> 27) | (xh << 5))) >>> 0;
    xh = (xh ^ (xh >>> 27)) >>> 0;
    a0 = xl & 0xffff;
    a1 = xl >>> 16;
    p00 = a0 * 0x11eb;
    mid = a1 * 0x11eb + a0 * 0x1331 + (p00 >>> 16);
    nl = (mid & 0xffff) * 0x10000 + (p00 & 0xffff);
    nh = a1 * 0x1331 + ((mid / 0x10000) >>> 0) + imul(xh, 0x133111eb) + imul(xl, 0x94d049bb);
    // x ^= x >>> 31
    xh = nh >>> 0;
    xl = nl >>> 0;
    lo[k] = xl ^ ((xl >>> 31) | (xh << 1));
    hi[k] = xh ^ (xh >>> 31);
  }
}
