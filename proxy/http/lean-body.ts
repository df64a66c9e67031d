import { EventEmitter } from 'node:events';
import type { Writable } from 'node:stream';
import { deferred } from '../../common/deferred.js';

type Listener = Parameters<EventEmitter['on']>[1];

/** Told once that a body is done (LeanBody.whenDone). */
export interface BodyDone {
  /** `ended`: the body emitted 'end'; false: it closed without ending (its 'error', if any, came first). */
  bodyDone(ended: boolean): void;
}

/**
 * A message body for the data path: the part of node's Readable (byte mode) that the
 * proxy's readers use, with the same events in the same order, but none of Readable's
 * per-body ticks. A node Readable schedules one `process.nextTick` each to look ahead
 * after a push, to announce its end, to emit 'end', to emit 'close' and to start flowing:
 * 9 to 10 per request per sidecar, where `nextTick` builds an object with three computed
 * symbol keys each time; node's stream code and the tick queue were 11 % and 18.7 % of the
 * two sidecars' CPU at gRPC saturation (docs/benchmarks.md, "Node's Readable: 9.5 ticks per
 * request per sidecar"). Here the same deferred steps go on one shared queue
 * (common/deferred.ts) that one tick drains for every body of the turn.
 *
 * What is kept from Readable (and tested against it, lean-body.test.ts):
 * - `push(chunk)` buffers or, flowing with nothing buffered, emits 'data' at once; it
 *   returns false from the high-water mark on; `push(null)` ends the input.
 * - `_read()` is the producer's cue to go on: after a push while under the high-water mark,
 *   and on a `read()` that takes the buffer under it. Never once the input ended.
 * - a 'data' listener starts flowing unless paused; `resume()`/`pause()`, `isPaused()`;
 *   flowing, chunks are emitted one by one; `read()` paused gives everything buffered at once.
 * - 'end' once the input ended and every byte was read, deferred; then 'close' (autoDestroy).
 *   An empty body too ends only once a reader flows or reads, never unheard before one comes.
 * - `destroy(err)`: `_destroy(err, cb)`, then 'error' (when cb gives one) and 'close',
 *   deferred; nothing is emitted after it but those.
 * - async iteration (destroying the body when the loop leaves early; over at once on a body
 *   already ended or closed) and `pipe()` (resuming a paused body); `_readableState` for
 *   node's `finished()`/`pipeline()`.
 * - `fail(err)`, which Readable has not: a producer's failure held for the reader's first
 *   read, or its `destroy()`.
 * Kept apart: a 'readable' listener is refused (nothing here reads that way); the deferred
 * steps of a turn run together (common/deferred.ts); flowing, the chunks buffered before a
 * `push(null)` are emitted at the next drain, not inside it.
 */
export class LeanBody extends EventEmitter {
  readonly readableHighWaterMark: number;
  readonly readableObjectMode = false;
  readableFlowing: boolean | null = null;
  /** 'end' was emitted. */
  readableEnded = false;
  readableDidRead = false;
  destroyed = false;
  closed = false;
  errored: Error | null = null;
  /**
   * Every byte pushed so far (istio_request_bytes / istio_response_bytes, the access log's
   * byte counts: metrics/body-bytes.ts). A field of the body's own, where wrapping `push`
   * per body gave each counted body an own property and two symbol keys: a second shape
   * for every LeanBody the metrics saw, and a call through the wrapper per chunk.
   */
  pushedBytes = 0;

  private chunks: Buffer[] = [];
  private length = 0;
  private ended = false;
  private reading = false;
  /** Inside a `_read()` call: a push there is buffered, not emitted (as Readable's `sync`). */
  private sync = true;
  private paused = false;
  private endScheduled = false;
  /** A deferred step is queued for this body (flow and look-ahead share one). */
  private stepQueued = false;
  private errorEmitted = false;
  private closeEmitted = false;
  /** A failure held for the reader's first read() (fail()). */
  private failure: Error | null = null;
  /** The error `_destroy` handed on: emitted before 'close' (a `_destroy` may keep one to itself). */
  private toEmit: Error | null = null;
  /** Who waits for the body to be done (whenDone), in the order they asked. */
  private done: BodyDone[] | null = null;

  constructor(highWaterMark = 16 * 1024) {
    super();
    this.readableHighWaterMark = highWaterMark;
  }

  get readableLength(): number {
    return this.length;
  }

  get readable(): boolean {
    return !this.destroyed && !this.readableEnded;
  }

  /** The producer may go on (Readable's `_read`); subclasses override it. */
  _read(_size: number): void {
    // Nothing to do by default: the producer pushes when it has bytes.
  }

  /** Tear-down (Readable's `_destroy`): call `cb` with the error to emit, if any. */
  _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    cb(err);
  }

  push(chunk: Buffer | null): boolean {
    if (chunk === null) {
      if (this.ended || this.destroyed) return false;
      this.ended = true;
      this.reading = false;
      // The end is emitted once a reader takes it, as Readable's: flowing (a 'data' listener,
      // resume()) or read(). An empty body's end often comes in the same read as its head,
      // before the writer that will read it has attached its listeners: emitted now, it would
      // be lost, and the exchange never finish.
      if (this.readableFlowing === true) {
        if (this.length === 0) this.scheduleEnd();
        else this.queueStep();
      }
      return false;
    }
    if (this.destroyed) return false;
    if (this.ended) {
      this.destroy(Object.assign(new Error('stream.push() after EOF'), { code: 'ERR_STREAM_PUSH_AFTER_EOF' }));
      return false;
    }
    this.reading = false;
    this.pushedBytes += chunk.length;
    // An empty chunk says nothing new: no look-ahead for it, or a producer that pushes one
    // from `_read` would be called again and again within one drain (Readable's look-ahead
    // stops when the length does not change).
    if (chunk.length === 0) return this.length < this.readableHighWaterMark;
    if (this.readableFlowing === true && this.length === 0 && !this.sync && this.listenerCount('data') > 0) {
      this.readableDidRead = true;
      this.emit('data', chunk);
    } else {
      this.chunks.push(chunk);
      this.length += chunk.length;
      if (this.readableFlowing === true) this.queueStep();
    }
    if (this.length < this.readableHighWaterMark) this.queueStep();
    return this.length < this.readableHighWaterMark || this.length === 0;
  }

  /**
   * The producer failed before the end. Destroyed at once when its reader has started; else
   * at the reader's first read(): destroyed before the reader attached its listeners (a reset
   * in the same read as the head, the response's promise not yet settled), it would never
   * hear of it, and the caller's response would hang, neither ended nor failed.
   */
  fail(err: Error): void {
    if (this.readableFlowing === null && !this.destroyed) this.failure = err;
    else this.destroy(err);
  }

  read(size?: number): Buffer | null {
    // read(0) is the body's own look-ahead (after a push, on resume), not its reader's.
    if (this.failure !== null && size !== 0 && !this.destroyed) {
      this.destroy(this.failure);
      return null;
    }
    if (size === 0) {
      if (this.ended && this.length === 0) this.scheduleEnd();
      else this.callRead();
      return null;
    }
    if (this.length === 0) {
      if (this.ended) {
        this.scheduleEnd();
        return null;
      }
      // A producer may push from `_read` at once: that is what this read gives (as Readable's).
      this.callRead();
      if (this.length === 0) return null;
    }
    // Under the high-water mark after this read: the producer may go on first (Readable's
    // doRead); what it pushed at once counts, so the amount is taken again after it.
    if (this.length - this.wanted(size) < this.readableHighWaterMark) this.callRead();
    if (this.length === 0) return null;
    let out: Buffer | null;
    if (size !== undefined && size > this.length) {
      out = this.ended ? this.take(this.length) : null;
    } else {
      out = this.take(this.wanted(size));
    }
    if (this.length === 0 && this.ended) this.scheduleEnd();
    if (out !== null && !this.errorEmitted && !this.closeEmitted) {
      this.readableDidRead = true;
      this.emit('data', out);
    }
    return out;
  }

  resume(): this {
    if (this.readableFlowing !== true) {
      this.readableFlowing = true;
      this.queueStep();
    }
    this.paused = false;
    return this;
  }

  pause(): this {
    if (this.readableFlowing !== false) {
      this.readableFlowing = false;
      this.emit('pause');
    }
    this.paused = true;
    return this;
  }

  isPaused(): boolean {
    return this.paused || this.readableFlowing === false;
  }

  override on(event: string | symbol, listener: Listener): this {
    if (event === 'readable') throw new Error("LeanBody: 'readable' listeners are not supported; use 'data' or read()");
    super.on(event, listener);
    if (event === 'data' && this.readableFlowing !== false) this.resume();
    return this;
  }

  override addListener(event: string | symbol, listener: Listener): this {
    return this.on(event, listener);
  }

  /**
   * `d.bodyDone(true)` as the body emits 'end', or `d.bodyDone(false)` as it emits 'close'
   * without having ended; once, before that event's listeners. The layers that follow
   * every response body to its end (pick-endpoint, admission, record-metrics) take this
   * instead of an 'end' and a 'close' listener each: six listeners per response, each an
   * insertion into the emitter's lists, which every emit copies. A body already done tells
   * at once.
   */
  whenDone(d: BodyDone): void {
    if (this.readableEnded) return d.bodyDone(true);
    if (this.closeEmitted) return d.bodyDone(false);
    if (this.done === null) this.done = [d];
    else this.done.push(d);
  }

  private tellDone(ended: boolean): void {
    const ds = this.done;
    if (ds === null) return;
    this.done = null;
    for (let i = 0; i < ds.length; i++) ds[i].bodyDone(ended);
  }

  destroy(err?: Error | null): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    // A failure held for a reader that dropped the body unread is still the body's error:
    // its 'error' listeners (pick-endpoint's outcome, a mirror) must hear of it.
    const e0 = err ?? this.failure;
    this.failure = null;
    if (e0) this.errored = e0;
    let called = false;
    this._destroy(e0 ?? null, (e) => {
      if (called) return;
      called = true;
      if (e) this.errored = this.toEmit = e;
      this.closed = true;
      deferred(closeStep, this);
    });
    return this;
  }

  /** As Readable's: flowing into `dest` with its backpressure, ending it at the end; a paused body is resumed; stops when `dest` closes. */
  pipe<T extends Writable>(dest: T, opts?: { end?: boolean }): T {
    const onData = (c: Buffer): void => {
      if (!dest.write(c)) {
        this.pause();
        dest.once('drain', onDrain);
      }
    };
    const onDrain = (): void => void this.resume();
    const onEnd = (): void => void dest.end();
    const unpipe = (): void => {
      this.removeListener('data', onData);
      this.removeListener('end', onEnd);
      dest.removeListener('drain', onDrain);
    };
    this.on('data', onData);
    if (opts?.end !== false) this.once('end', onEnd);
    dest.once('close', unpipe);
    dest.emit('pipe', this);
    if (this.readableFlowing !== true) this.resume();
    return dest;
  }

  /**
   * What node's stream helpers (`finished`, `pipeline`, `stream/consumers`) read of a
   * Readable's state, built when asked (never on the data path): without it they take any
   * 'close' for a premature one.
   */
  get _readableState(): Record<string, unknown> {
    return {
      objectMode: false,
      highWaterMark: this.readableHighWaterMark,
      length: this.length,
      ended: this.ended,
      endEmitted: this.readableEnded,
      flowing: this.readableFlowing,
      reading: this.reading,
      constructed: true,
      destroyed: this.destroyed,
      errored: this.errored,
      errorEmitted: this.errorEmitted,
      closed: this.closed,
      closeEmitted: this.closeEmitted,
      autoDestroy: true,
      emitClose: true,
      readable: this.readable,
    };
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer, void, undefined> {
    const got: Buffer[] = [];
    let done = false;
    let failure: Error | null = null;
    let wake: (() => void) | null = null;
    const poke = (): void => {
      const w = wake;
      wake = null;
      w?.();
    };
    this.on('data', (c: Buffer) => {
      got.push(c);
      this.pause();
      poke();
    });
    this.once('end', () => {
      done = true;
      poke();
    });
    this.once('error', (e: Error) => {
      failure = e;
      poke();
    });
    this.once('close', () => {
      if (!done && failure === null) failure = Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
      poke();
    });
    // Over already: no event will come.
    if (this.readableEnded) done = true;
    else if (this.closeEmitted) failure = this.errored ?? Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
    try {
      for (;;) {
        if (got.length > 0) {
          yield got.shift()!;
          continue;
        }
        if (failure !== null) throw failure as Error;
        if (done) return;
        this.resume();
        await new Promise<void>((r) => (wake = r));
      }
    } finally {
      if (!done) this.destroy();
    }
  }

  // --- the deferred steps (deferred.ts calls them through the module functions below) ---

  /** Flowing: emit what is buffered; then look ahead (the producer's `_read`) while under the mark. */
  step(): void {
    this.stepQueued = false;
    if (this.destroyed) return;
    // As Readable's flow(): read() until it gives nothing, at least once (a subclass's read()
    // may have something to say though nothing is buffered: H2ResponseBody's held failure).
    while (this.readableFlowing === true && this.read() !== null);
    if (!this.ended && !this.reading && !this.destroyed && this.length < this.readableHighWaterMark) this.callRead();
  }

  endStep(): void {
    // As Readable's endReadableNT: not after an error or 'close', nor with bytes unread; a
    // body destroyed after its last byte was read still ends ('end', then 'close').
    if (this.errored !== null || this.closeEmitted || this.readableEnded || this.length !== 0) return;
    this.readableEnded = true;
    this.tellDone(true);
    this.emit('end');
    if (!this.destroyed) this.destroy();
  }

  closeStep(): void {
    const e = this.toEmit;
    if (e !== null && !this.errorEmitted) {
      this.errorEmitted = true;
      this.emit('error', e);
    }
    this.closeEmitted = true;
    this.tellDone(false);
    this.emit('close');
  }

  /** What read(size) takes (Readable's howMuchToRead): flowing, one chunk; paused, all that is buffered. */
  private wanted(size: number | undefined): number {
    if (size !== undefined) return size;
    return this.readableFlowing === true ? this.chunks[0].length : this.length;
  }

  private callRead(): void {
    if (this.ended || this.reading || this.destroyed) return;
    this.reading = true;
    this.sync = true;
    this._read(this.readableHighWaterMark);
    this.sync = false;
  }

  private queueStep(): void {
    if (this.stepQueued) return;
    this.stepQueued = true;
    deferred(stepOf, this);
  }

  private scheduleEnd(): void {
    if (this.endScheduled || this.readableEnded) return;
    this.endScheduled = true;
    deferred(endOf, this);
  }

  private take(n: number): Buffer {
    const cs = this.chunks;
    const first = cs[0];
    if (n === first.length) {
      // pop() for the usual one chunk: shift() is a C++ builtin call (Builtin_ArrayShift in perf).
      if (cs.length === 1) cs.pop();
      else cs.shift();
      this.length -= n;
      return first;
    }
    if (n < first.length) {
      cs[0] = first.subarray(n);
      this.length -= n;
      return first.subarray(0, n);
    }
    if (n === this.length) {
      const all = cs.length === 1 ? cs[0] : Buffer.concat(cs, n);
      this.chunks = [];
      this.length = 0;
      return all;
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = cs[0];
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (k === c.length) cs.shift();
      else cs[0] = c.subarray(k);
    }
    this.length -= n;
    return out;
  }
}

function stepOf(b: LeanBody): void {
  b.step();
}

function endOf(b: LeanBody): void {
  b.endStep();
}

function closeStep(b: LeanBody): void {
  b.closeStep();
}
