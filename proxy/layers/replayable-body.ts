import { LeanBody } from '../http/lean-body.js';
import { keepable } from '../net/body-buffers.js';
import type { BodyStream } from '../http/exchange.js';

/**
 * A request body that can be sent more than once, for retries. The first attempt streams
 * straight from the client (no store-and-forward delay) while every chunk is also kept in
 * memory, up to `limit` bytes. A later attempt replays the kept chunks and then continues
 * with whatever the client has not sent yet. A body larger than the limit drops its copy
 * and just streams through: it can no longer be replayed (Linkerd's 64 KiB rule).
 * With limit 0 nothing is kept, so only an attempt that never read a byte can be redone
 * (a connect failure), which is all the always-safe retries need; the first attempt then
 * gets the client's body itself (`direct`), not a stream fed from it: the default policy
 * (no `retryOn`) costs no second Readable per request, with its state, its ticks and the
 * request copy that carries it (issue 12, grpc12).
 */
export class ReplayableBody {
  private chunks: Buffer[] | null = [];
  private size = 0;
  private ended = false;
  private failed: Error | null = null;
  private attached = false;
  private current: BodyStream | null = null;
  /** Whether a byte was taken from the client's body through this object. */
  private took = false;
  /** Limit 0: the first attempt was given the client's body itself (while no later one was made). */
  private direct = false;

  constructor(
    private readonly source: BodyStream,
    private readonly limit: number,
  ) {}

  /** Whether any byte was taken from the client's body. */
  get started(): boolean {
    return this.took || (this.direct && this.source.readableDidRead);
  }

  /** Every byte taken so far is kept (or none was taken), so a new attempt can send the whole body. */
  get replayable(): boolean {
    if (this.direct) return !this.source.readableDidRead && !this.source.readableEnded && !this.source.destroyed;
    return this.chunks !== null;
  }

  /** The body for a new attempt; the previous attempt's stream is detached and destroyed. */
  attempt(): BodyStream {
    if (this.limit === 0 && !this.attached && this.current === null && this.failed === null) {
      if (!this.direct) {
        this.direct = true;
        return this.source;
      }
      // A retry after a direct attempt that took nothing (replayable): from here on the
      // attempts are fed from the client's body, so a dropped one never ends it.
      this.direct = false;
    }
    const prev = this.current;
    this.current = null;
    prev?.destroy();
    const r = new Attempt(this);
    this.current = r;
    if (this.chunks) for (const c of this.chunks) r.push(c);
    if (this.failed) r.destroy(this.failed);
    else if (this.ended) r.push(null);
    return r;
  }

  /** No more attempts will be made: stop keeping a copy. */
  release(): void {
    this.chunks = null;
    this.size = 0;
  }

  /** An attempt's body wants data: only the current attempt pulls from the client. */
  pull(r: BodyStream): void {
    if (this.current === r) this.pump();
  }

  /** An attempt's body was destroyed: the client's body waits (paused) for the next one. */
  dropped(r: BodyStream): void {
    if (this.current === r) {
      this.current = null;
      if (!this.ended) this.source.pause();
    }
  }

  private pump(): void {
    if (!this.attached) {
      this.attached = true;
      // Shared module functions with this record on the source (no closures or once()
      // wrappers per request): 'end' and 'close' fire at most once, and what they do is
      // idempotent (fail() keeps the first error).
      const src = this.source as Source;
      src[OWNER] = this;
      src.on('data', onSourceData);
      src.on('end', onSourceEnd);
      src.on('error', onSourceError);
      src.on('close', onSourceClose);
    }
    this.source.resume();
  }

  /** The client's body ended: the current attempt's body ends too. */
  sourceEnded(): void {
    this.ended = true;
    this.current?.push(null);
  }

  sourceClosed(): void {
    if (!this.ended) this.fail(new Error('request body closed before its end'));
  }

  fail(e: Error): void {
    if (this.failed) return;
    this.failed = e;
    this.current?.destroy(e);
  }

  onData(c: Buffer): void {
    this.took = true;
    if (this.chunks) {
      if (this.size + c.length <= this.limit) {
        this.chunks.push(keepable(c));
        this.size += c.length;
      } else {
        this.chunks = null;
        this.size = 0;
      }
    }
    const r = this.current;
    // Between attempts: the chunk is in the copy (or the body is not replayable anyway).
    if (!r) return void this.source.pause();
    if (!r.push(c)) this.source.pause();
  }
}

/**
 * One attempt's body: a LeanBody whose hooks call its owner, instead of a Readable built
 * with two closures per attempt (`read`, `destroy`).
 */
class Attempt extends LeanBody {
  constructor(private readonly owner: ReplayableBody) {
    super();
  }

  override _read(): void {
    this.owner.pull(this);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.owner.dropped(this);
    cb(err);
  }
}

const OWNER = Symbol('wren.replayableBody');
type Source = BodyStream & { [OWNER]?: ReplayableBody };

function onSourceData(this: Source, c: Buffer): void {
  this[OWNER]!.onData(c);
}

function onSourceEnd(this: Source): void {
  this[OWNER]!.sourceEnded();
}

function onSourceError(this: Source, e: Error): void {
  this[OWNER]!.fail(e);
}

function onSourceClose(this: Source): void {
  this[OWNER]!.sourceClosed();
}
