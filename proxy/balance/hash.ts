/**
 * A fast, stable 32-bit string hash for ring hashing, with no BigInt: FNV-1a over the
 * UTF-16 code units (two bytes each, so any string hashes, ASCII or not) followed by
 * MurmurHash3's fmix32 finalizer. FNV-1a alone avalanches poorly on inputs that differ
 * only in a trailing counter (`10.0.0.1:80_0`, `_1`, ...), which is exactly what ketama
 * rings hash; the finalizer spreads those across the ring.
 * FNV: http://www.isthe.com/chongo/tech/comp/fnv/ ; fmix32: MurmurHash3 (Austin Appleby).
 */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    h ^= c & 0xff;
    h = Math.imul(h, 0x01000193);
    if (c > 0xff) {
      h ^= c >>> 8;
      h = Math.imul(h, 0x01000193);
    }
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
