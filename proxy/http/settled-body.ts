import { LeanBody } from './lean-body.js';
import type { SettledBody } from './exchange.js';

class Settled extends LeanBody implements SettledBody {
  readonly settled = true;
  override _read(): void {
    // Everything was pushed at construction.
  }
}

/**
 * A body whose bytes are all here, pushed with its end at once and marked settled
 * (exchange.ts, isSettled): writers send it with its head in one write (HTTP/1.1) or as
 * one DATA frame with END_STREAM (HTTP/2), and read() gives it whole, synchronously.
 */
export function settledBody(data: Buffer): LeanBody {
  const b = new Settled();
  b.push(data);
  b.push(null);
  return b;
}
