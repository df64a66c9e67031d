import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import type { Clock } from '../../common/clock.js';
import { setDirectReads, setSharedReads } from './direct-reads.js';

export interface PeekDecision<T> {
  /** The bytes so far decide it, or null to read more. */
  readonly decide: (buf: Buffer) => T | null;
  /** The client closed (or half-closed) before a decision. */
  readonly atEnd: (buf: Buffer) => T;
  /** Nothing decisive arrived within the timeout. */
  readonly atTimeout: (buf: Buffer) => T;
}

/** A decision and the bytes read to make it, which the caller hands on (H1Server.serve) or puts back (putBack). */
export interface Peeked<T> {
  readonly result: T;
  readonly head: Buffer;
}

const EMPTY = Buffer.alloc(0);

/**
 * The bytes a peek read from a stream whose end (the client's FIN, a CONNECT stream's
 * END_STREAM) came before a decision: they cannot be put back (Readable refuses an
 * unshift after 'end' with ERR_STREAM_UNSHIFT_AFTER_END_EVENT and destroys the stream,
 * so `printf ping | nc -N` lost its bytes and the reply), so they wait here for the
 * splice that takes the stream (tcp-tunnel.ts splice: written to the other side before
 * the end is relayed). A decision at the end is always opaque: only a splice follows.
 */
const endedHeads = new WeakMap<object, Buffer>();

/** Puts `buf` back in front of the stream, or keeps it for the splice when the stream has ended (endedHeads). */
function giveBack(socket: Socket, buf: Buffer): void {
  if (!buf.length) return;
  if (!socket.readableEnded) return void socket.unshift(buf);
  const kept = endedHeads.get(socket);
  endedHeads.set(socket, kept ? Buffer.concat([kept, buf]) : buf);
}

/** The bytes read before the stream's end and not put back (endedHeads), once: the splice writes them first. */
export function takeEndedHead(stream: object): Buffer | undefined {
  const head = endedHeads.get(stream);
  if (head) endedHeads.delete(stream);
  return head;
}

/**
 * Reads the first bytes of a connection until `decide` knows what they are, then puts
 * them back (unshift) and pauses the socket, so whichever handler takes it (an HTTP
 * parser, the TLS server, a TCP splice) reads the stream from its start.
 */
export function peek<T>(socket: Socket, timeoutMs: number, clock: Clock, d: PeekDecision<T>): Promise<T> {
  // Ended already (a second peek, after a first one saw the end): no 'end' comes again, decide on what was read.
  if (socket.readableEnded) {
    const head = endedHeads.get(socket) ?? EMPTY;
    return Promise.resolve(d.decide(head) ?? d.atEnd(head));
  }
  return new Promise((resolve) => {
    let buf: Buffer = EMPTY;
    let done = false;
    const finish = (r: T) => {
      if (done) return;
      done = true;
      clock.clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('end', onEnd);
      socket.removeListener('close', onEnd);
      socket.pause();
      giveBack(socket, buf);
      resolve(r);
    };
    const onData = (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      const r = d.decide(buf);
      if (r !== null) finish(r);
    };
    const onEnd = () => finish(d.atEnd(buf));
    const timer = clock.setTimeout(() => finish(d.atTimeout(buf)), timeoutMs);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
  });
}

/**
 * peek() for a connection just accepted, whose first bytes the caller takes instead of
 * having them put back: a listener's detection, whose common outcome (HTTP/1.1) hands them
 * straight to the codec's connection (H1Server.serve). It reads through the thread's
 * shared read buffer (setSharedReads) with the socket flowing and no 'data' listener, so
 * detection costs no Readable machinery: no resume tick, no unshift and no second flow of
 * the same bytes through the stream (node's stream ticks were the largest part of a new
 * connection's cost in a connection-per-request load, docs/benchmarks.md). The decision's
 * bytes are a copy the caller owns. A caller that does not hand them to a reader that takes
 * a shared-read socket must call putBack() before any other reader attaches.
 *
 * A socket that has read already (bytes buffered, or put back by an earlier peek), that is
 * paused, or that cannot read into the shared buffer (a TLS socket, a socket-like stream)
 * takes peek()'s path: its bytes are already put back and `head` is empty.
 */
export function peekTaking<T>(socket: Socket, timeoutMs: number, clock: Clock, d: PeekDecision<T>): Promise<Peeked<T>> {
  let p!: SharedPeek<T>;
  const taken = new Promise<Peeked<T>>((resolve) => (p = new SharedPeek(socket, clock, d, resolve)));
  if (socket.readableLength > 0 || socket.readableFlowing === false || socket.destroyed || socket.readableEnded || !setSharedReads(socket, p.onRead)) {
    return peek(socket, timeoutMs, clock, d).then(asPeeked);
  }
  p.timer = clock.setTimeout(p.onTimeout, timeoutMs);
  socket.once('end', p.onEnd);
  socket.once('close', p.onEnd);
  // Flowing before anything is read, so the reads go to the sink (direct-reads.ts) and
  // no 'data' listener is needed; a handle that was not reading yet starts (net's resume
  // with a read buffer), without the resume tick of a stream that was not flowing.
  (socket as { readableFlowing: boolean | null }).readableFlowing = true; // Readable's setter (node's types call it read-only)
  socket.resume();
  return taken;
}

/**
 * Puts the bytes a peekTaking() read back in front of the stream, and leaves it paused with
 * its reads going to the Readable (copies of the shared buffer, direct-reads.ts), as peek()
 * leaves a socket: for the TLS server, HTTP/2, a TCP splice or another peek. Readable's own
 * pause, not net's: net's also stops the handle reading (readStop) when the socket reads
 * into a buffer, which peek()'s pause never did, and the consumers above take the socket
 * as peek() left it.
 */
export function putBack(socket: Socket, head: Buffer): void {
  setDirectReads(socket, null);
  Readable.prototype.pause.call(socket);
  giveBack(socket, head);
}

function asPeeked<T>(result: T): Peeked<T> {
  return { result, head: EMPTY };
}

/** One peekTaking(): its sink and listeners as methods of one object, not closures. */
class SharedPeek<T> implements Peeked<T> {
  buf: Buffer = EMPTY;
  private done = false;
  result!: T;
  timer: ReturnType<Clock['setTimeout']> | undefined;

  constructor(
    private readonly socket: Socket,
    private readonly clock: Clock,
    private readonly d: PeekDecision<T>,
    private readonly resolve: (p: Peeked<T>) => void,
  ) {}

  /** A read: a view of the shared buffer, copied as it is kept. Reads after the decision (none before the caller's microtask can run) are kept too. */
  readonly onRead = (view: Buffer): void => {
    this.buf = this.buf.length === 0 ? Buffer.from(view) : Buffer.concat([this.buf, view]);
    if (this.done) return;
    const r = this.d.decide(this.buf);
    if (r !== null) this.finish(r);
  };

  readonly onEnd = (): void => {
    if (!this.done) this.finish(this.d.atEnd(this.buf));
  };

  readonly onTimeout = (): void => {
    if (!this.done) this.finish(this.d.atTimeout(this.buf));
  };

  private finish(r: T): void {
    this.done = true;
    this.result = r;
    const s = this.socket;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    s.removeListener('end', this.onEnd);
    s.removeListener('close', this.onEnd);
    // The bytes are the caller's from here: whatever else arrives before it takes the
    // socket (within this turn's microtasks) is added to them, by onRead.
    this.resolve(this);
  }

  /** Everything read, up to when the caller takes the socket. */
  get head(): Buffer {
    return this.buf;
  }
}
