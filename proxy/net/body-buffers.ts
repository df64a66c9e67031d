/**
 * Reusable buffers for body bytes that must outlive the read that brought them.
 *
 * A connection that reads into a shared buffer (direct-reads.ts) copies the body bytes it
 * hands on, since the next read overwrites them. Each copy used to be a new ArrayBuffer:
 * on a 1 MiB download a MiB of them per MiB per sidecar, freed only by the garbage
 * collector. V8 counts their bytes as external memory and starts a mark-compact each time
 * they pass its limit (5-8 a second on the large-body load: 30 % of the inbound sidecar's
 * samples were GC), and glibc keeps the freed chunks' pages: 150 MB of RSS per sidecar
 * after that load (docs/benchmarks.md, "Large bodies"). Here such a copy is made in a
 * block that goes back to a free list once the bytes have left the process, so a bulk
 * transfer runs in a few blocks whatever its length.
 *
 * The contract, which keeps a block from being reused while its bytes are still wanted:
 * - `lentCopy` is used only where the copy is handed to exactly one reader, which passes it
 *   on whole and keeps no reference: a response body from an upstream connection
 *   (h1-pool-conn.ts), a request body from a client connection (h1-connection.ts). A holder that
 *   keeps a buffer while passing it on takes a `keepable` copy: the retry layer's replay
 *   (replayable-body.ts), a refused mesh stream's replay (h1-pool-exchange.ts), a mirror's body
 *   (routing/mirror.ts).
 * - Writing a lent buffer hands it over: `releaseBody` is called by the last holder once
 *   node no longer needs the bytes: the mux session after the socket's write callback for
 *   the frames that reference it (mux-session.ts), or as soon as its bytes were copied (into
 *   the frame batch, frame-batch.ts; joined behind a head, mux-stream.ts; coalesced with a
 *   head or chunk framing, serialize.ts); the HTTP/1.1 server connection (a response) and
 *   the pool's connection (a request) once their TCP or TLS socket has nothing left to
 *   write (SocketReleases). Other writers (node:http2, the HTTP/2 sessions) never hand
 *   back: their buffers are left to the garbage collector.
 * - Only the very Buffer that lentCopy returned is taken back: a slice of it (a payload
 *   split across frames, a read of part of a body) is not, and its block is then simply
 *   left to the garbage collector, as before. A second release of the same Buffer does
 *   nothing.
 */

/** Below this a copy is one of node's pooled small buffers (Buffer.allocUnsafe slices an 8 KiB slab under 4 KiB): cheap, nothing to reuse. */
const LEND_MIN = 4 * 1024;
/** A TLS record's plaintext, the most a TLS socket or a mesh stream's sink hands on at once. */
const SMALL_BLOCK = 16 * 1024;
/** What node reads from TCP at a time (h1-pool-conn.ts TCP_READ_BUFFER). */
const LARGE_BLOCK = 64 * 1024;
/** Free blocks kept per size: 1 MiB of small and 2 MiB of large ones at most stay after a burst. */
const KEEP_SMALL = 64;
const KEEP_LARGE = 32;

const freeSmall: ArrayBuffer[] = [];
const freeLarge: ArrayBuffer[] = [];
/** The Buffer each lent block was handed out as: only that Buffer takes the block back. */
const lent = new WeakMap<ArrayBuffer, Buffer>();
/** This thread's copies lent in a new block and in a reused one (bodyBufferStats). */
let made = 0;
let reused = 0;

/** How often this thread's lent copies needed a new block and how often one came back to serve again (for tests and profiles). */
export function bodyBufferStats(): { made: number; reused: number } {
  return { made, reused };
}

/** A copy of `view` that the last holder hands back with releaseBody (a plain copy when too short or too long to pool). */
export function lentCopy(view: Buffer): Buffer {
  const n = view.length;
  if (n < LEND_MIN || n > LARGE_BLOCK) return Buffer.from(view);
  const small = n <= SMALL_BLOCK;
  let block = small ? freeSmall.pop() : freeLarge.pop();
  if (block !== undefined) reused++;
  else {
    block = new ArrayBuffer(small ? SMALL_BLOCK : LARGE_BLOCK);
    made++;
  }
  const out = Buffer.from(block, 0, n);
  view.copy(out);
  lent.set(block, out);
  return out;
}

/** The bytes of `b` are no longer needed: its block is reused if lentCopy made it (no-op otherwise). */
export function releaseBody(b: Buffer): void {
  const block = b.buffer as ArrayBuffer;
  if (lent.get(block) !== b) return;
  lent.delete(block);
  if (block.byteLength === SMALL_BLOCK) {
    if (freeSmall.length < KEEP_SMALL) freeSmall.push(block);
  } else if (freeLarge.length < KEEP_LARGE) freeLarge.push(block);
}

/**
 * `b`, or a copy of it if it is lent: for a holder that keeps a buffer while handing it on
 * (a replay's copy of a request body, a mirror's), since a writer down the line hands a
 * lent buffer back.
 */
export function keepable(b: Buffer): Buffer {
  return isLent(b) ? Buffer.from(b) : b;
}

/** `b` came from lentCopy and has not been released. */
export function isLent(b: Buffer): boolean {
  return lent.get(b.buffer as ArrayBuffer) === b;
}

/**
 * The lent buffers written to one node socket (TCP or TLS), handed back once the socket
 * holds none of the bytes written (writableLength 0): at once after a TCP write that
 * completed, else when a later write or 'drain' finds it empty (a TLS socket completes every
 * write on a later turn, TLSWrap::OnStreamAfterWrite, and 'drain' comes only past the
 * high-water mark). So a connection holds at most the blocks of its writes still in node's
 * hands. For a socket node writes (writableLength counts a write until its callback, after
 * which libuv and TLS hold none of its bytes), not a mesh stream (its session hands back).
 */
export class SocketReleases {
  private held: Buffer[] | null = null;

  constructor(private readonly socket: { readonly writableLength: number }) {}

  /** Before a body write (and at 'drain'): what earlier writes held goes back if the socket has written it all. */
  settle(): void {
    if (this.held !== null && this.socket.writableLength === 0) this.releaseHeld();
  }

  /** After writing `b`: it goes back now if the socket has written everything, else when it has. */
  wrote(b: Buffer): void {
    if (this.socket.writableLength === 0) {
      if (this.held !== null) this.releaseHeld();
      releaseBody(b);
    } else if (isLent(b)) (this.held ??= []).push(b);
  }

  private releaseHeld(): void {
    const h = this.held!;
    this.held = null;
    for (let i = 0; i < h.length; i++) releaseBody(h[i]);
  }
}
