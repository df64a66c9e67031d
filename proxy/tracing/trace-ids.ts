import { randomFillSync } from 'node:crypto';

const POOL_BYTES = 4096;
/** The two ASCII hex digits of each byte value, as one big-endian 16-bit number. */
const HEX_PAIRS = Uint16Array.from({ length: 256 }, (_, b) => {
  const d = b.toString(16).padStart(2, '0');
  return (d.charCodeAt(0) << 8) | d.charCodeAt(1);
});

/**
 * Random trace and span ids (W3C Trace Context section 3.2.2.3: trace ids SHOULD be random)
 * read from a pool refilled with one crypto draw per 4 KiB, so an id costs a hex slice of
 * a buffer, not a draw per id (the SDK's RandomIdGenerator calls Math.random per byte).
 * An all-zero id is invalid (section 3.2.2.3/4) and is never returned.
 */
export class TraceIds {
  private readonly pool = Buffer.allocUnsafe(POOL_BYTES);
  private at = POOL_BYTES;

  /** 32 hex digits (sampled spans: the SDK's id generator). */
  traceId(): string {
    return this.hex(16);
  }

  /** 16 hex digits. */
  spanId(): string {
    return this.hex(8);
  }

  /**
   * A not-sampled W3C traceparent with fresh ids, `00-{trace id}-{span id}-00`, written as
   * ASCII into a template and read out as one string: the per-request cost of a new trace
   * that is not sampled.
   */
  notSampledTraceparent(): string {
    const t = this.template;
    for (;;) {
      if (this.at + 24 > POOL_BYTES) {
        randomFillSync(this.pool);
        this.at = 0;
      }
      const at = this.at;
      this.at += 24;
      if (this.zero(at, at + 16) || this.zero(at + 16, at + 24)) continue;
      // Plain byte stores (no per-write bounds checks of writeUInt16BE): trace id at 3, span id at 36.
      const pool = this.pool;
      for (let i = 0; i < 24; i++) {
        const v = HEX_PAIRS[pool[at + i]];
        const o = i < 16 ? 3 + 2 * i : 36 + 2 * (i - 16);
        t[o] = v >> 8;
        t[o + 1] = v & 255;
      }
      return t.toString('latin1', 0, 55);
    }
  }

  private readonly template = Buffer.from(`00-${'0'.repeat(32)}-${'0'.repeat(16)}-00`, 'latin1');

  private hex(n: number): string {
    for (;;) {
      if (this.at + n > POOL_BYTES) {
        randomFillSync(this.pool);
        this.at = 0;
      }
      const at = this.at;
      this.at += n;
      // An id must have a non-zero byte (2^-64 odds).
      if (!this.zero(at, at + n)) return this.pool.toString('hex', at, at + n);
    }
  }

  private zero(from: number, to: number): boolean {
    if (from === to) return false;
    for (let i = from; i < to; i++) if (this.pool[i] !== 0) return false;
    return true;
  }
}
