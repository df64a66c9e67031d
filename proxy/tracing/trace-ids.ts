import { randomFillSync } from 'node:crypto';

const POOL_BYTES = 4096;

/**
 * Random trace and span ids (W3C Trace Context section 3.2.2.3: trace ids SHOULD be random)
 * read from a pool refilled with one crypto draw per 4 KiB, so an id costs a hex slice of
 * a buffer, not a draw per id (the SDK's RandomIdGenerator calls Math.random per byte).
 * An all-zero id is invalid (section 3.2.2.3/4) and is never returned.
 */
export class TraceIds {
  private readonly pool = Buffer.allocUnsafe(POOL_BYTES);
  private at = POOL_BYTES;

  /** 32 hex digits. */
  traceId(): string {
    return this.hex(16);
  }

  /** 16 hex digits. */
  spanId(): string {
    return this.hex(8);
  }

  /** A trace id and a span id in one 48-digit string (trace id first): one slice for both. */
  pair(): string {
    return this.hex(24);
  }

  private hex(n: number): string {
    for (;;) {
      if (this.at + n > POOL_BYTES) {
        randomFillSync(this.pool);
        this.at = 0;
      }
      const at = this.at;
      this.at += n;
      // The pair's two ids and a lone id must each have a non-zero byte (2^-64 odds per id).
      const split = n === 24 ? at + 16 : at + n;
      if (!this.zero(at, split) && !this.zero(split, at + n)) return this.pool.toString('hex', at, at + n);
    }
  }

  private zero(from: number, to: number): boolean {
    if (from === to) return false;
    for (let i = from; i < to; i++) if (this.pool[i] !== 0) return false;
    return true;
  }
}
