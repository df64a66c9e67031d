/**
 * The 64-bit key of a named slot in the memory the listener workers share
 * (shared-limits.ts): FNV-1a over the UTF-16 code units in two 32-bit lanes with
 * different offset bases, so two names share a slot only if both lanes collide
 * (about 1 in 2^64 per pair). Never 0n: 0n marks an empty slot. The lowest bit is the
 * caller's `flag` (the bucket table marks per-identity buckets with it).
 */
export function sharedKey(name: string, flag = 0): bigint {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ 0x9e3779b9;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x01000193) ^ (b >>> 15);
  }
  const lo = ((a & ~1) | flag) >>> 0;
  const k = (BigInt(b >>> 0) << 32n) | BigInt(lo);
  // A value of 0 (or of the tombstone pattern) is remapped: both lanes 0 cannot be told from empty.
  return k === 0n || k === 1n ? 2n | BigInt(flag) : BigInt.asIntN(64, k);
}
