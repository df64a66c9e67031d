import { Readable } from 'node:stream';
import type { BodyStream } from './exchange.js';

const RELAY = Symbol('wren.relayedBody');
type Source = BodyStream & { [RELAY]?: RelayedBody };

/**
 * A body that passes on another's bytes, with backpressure (the source pauses while this
 * one's buffer is full), calling `onChunk` for each: what the timeouts layer puts between
 * a request or response and its reader, so activity resets its idle timer and a deadline can
 * end the relay without touching what the reader holds.
 *
 * Not a PassThrough: every node Writable (a PassThrough is one) makes its `onwrite` callback
 * as `state.onwrite = (er) => onwrite(stream, er)`, and V8 allocates a function assigned to
 * a property straight in the old generation (its parser's pretenuring guess for methods).
 * That old closure holds the stream, so for the scavenger every Writable made per request
 * keeps its stream and whatever its listeners reach (the request, the response, their
 * timers) until a mark-compact: about 5 KB a request here (docs/benchmarks.md, "What a
 * Writable keeps for the scavenger"). A Readable has no such closure.
 *
 * This ends when the source ends and is destroyed with the source's error while it relays;
 * the caller may act on both as well. `detach()` stops relaying (a deadline that ends the
 * body in-band): a source error after it is the caller's (its listener here stays, so the
 * error is never unhandled). Destroying this detaches and leaves the source paused for its
 * owner.
 */
export class RelayedBody extends Readable {
  private src: Source | null;

  constructor(
    src: BodyStream,
    private readonly onChunk: () => void,
  ) {
    super({ highWaterMark: src.readableHighWaterMark });
    this.src = src;
    (src as Source)[RELAY] = this;
    src.on('data', relayData);
    src.on('end', relayEnd);
    src.on('error', relayError);
  }

  /** Stops taking the source's bytes; what was relayed stays readable. */
  detach(): void {
    const s = this.src;
    if (s === null) return;
    this.src = null;
    s[RELAY] = undefined;
    s.removeListener('data', relayData);
    s.removeListener('end', relayEnd);
  }

  override _read(): void {
    const s = this.src;
    if (s !== null && s.isPaused()) s.resume();
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    const s = this.src;
    this.detach();
    if (s !== null && !s.readableEnded) s.pause();
    cb(err);
  }

  /** @internal the source's chunk (relayData). */
  relay(src: BodyStream, chunk: unknown): void {
    this.onChunk();
    if (!this.push(chunk)) src.pause();
  }
}

function relayData(this: Source, chunk: unknown): void {
  this[RELAY]?.relay(this, chunk);
}

function relayError(this: Source, err: Error): void {
  this[RELAY]?.destroy(err);
}

function relayEnd(this: Source): void {
  const r = this[RELAY];
  if (r === undefined) return;
  r.detach();
  r.push(null);
}
