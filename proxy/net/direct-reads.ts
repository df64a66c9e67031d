import { Socket } from 'node:net';
import { Readable } from 'node:stream';

/** A socket-like stream that can hand its reads to one function directly (the mesh multiplexer's streams, proxy/mux/mux-stream.ts). */
interface DirectReads {
  /** True: the payloads it hands on are views of its session's read buffer, which the next read overwrites. */
  setSink(fn: ((d: Buffer) => void) | null): boolean;
}

const SINK = Symbol('wren.directReads');
type Pushing = Socket & { [SINK]?: (d: Buffer) => void };
const readablePush = Readable.prototype.push;

/**
 * A socket's `push`, which node's socket reads call with each buffer read (lib/internal/
 * stream_base_commons.js, onStreamRead). A read node's Readable would emit at once (the
 * socket flowing, nothing buffered) goes straight to the reader: no readableAddChunk, no
 * 'data' emit and no maybeReadMore tick per read, which were 2-3 % of a sidecar at
 * HTTP/1.1 saturation and a tick of their own per request at 1000 requests/s. Anything else
 * (a paused socket, bytes buffered or put back with unshift, the end of the stream) takes
 * the Readable's own path, so backpressure, order and 'end' are node's.
 */
function directPush(this: Pushing, chunk: unknown, encoding?: BufferEncoding): boolean {
  const fn = this[SINK];
  if (fn !== undefined && chunk instanceof Uint8Array && this.readableFlowing === true && this.readableLength === 0) {
    fn(chunk as Buffer);
    return true;
  }
  return readablePush.call(this, chunk, encoding);
}

/**
 * Has `socket` hand each read to `fn` directly, bypassing its Readable (null: its 'data'
 * events again): a mesh multiplexer stream by its sink, a node socket (TCP or TLS) by
 * directPush. The reader listens to 'data' too, which gets what arrived while it was paused.
 * True when what `fn` gets are views of a buffer the next read overwrites (a mux stream of
 * a session that reads with setSharedReads): the reader copies what it keeps past a call.
 */
export function setDirectReads(socket: Socket, fn: ((d: Buffer) => void) | null): boolean {
  const s = socket as Pushing & Partial<DirectReads>;
  if (s.setSink !== undefined) return s.setSink(fn);
  if (!(socket instanceof Socket)) return false;
  if (fn === null) {
    if (s[SINK] === undefined) return false;
    s[SINK] = undefined;
    if (Object.hasOwn(s, 'push')) delete (s as Partial<Pushing>).push;
    return false;
  }
  s[SINK] = fn;
  s.push = directPush;
  return false;
}

/**
 * net.Socket's own keys for `onread` (lib/net.js kBuffer, kBufferCb, kBufferGen): a socket
 * made with `onread` reads into the given buffer and calls the callback with the byte
 * count, instead of allocating a Buffer per read. node offers `onread` to sockets it
 * connects, not to the ones a server accepts; these keys, read off a socket made with it,
 * set it up on an accepted one. Undefined when this node's sockets do not have them (the
 * reads then stay node's own: setSharedReads returns false).
 */
const ONREAD = ((): { buffer: symbol; callback: symbol; gen: symbol } | undefined => {
  const probe = new Socket({ onread: { buffer: Buffer.alloc(1), callback: () => true } });
  const keys = Object.getOwnPropertySymbols(probe);
  const key = (d: string): symbol | undefined => keys.find((k) => k.description === d);
  const buffer = key('kBuffer');
  const callback = key('kBufferCb');
  const gen = key('kBufferGen');
  probe.destroy();
  return buffer && callback && gen ? { buffer, callback, gen } : undefined;
})();

/**
 * The read buffer of the thread's sockets that read with setSharedReads. A read is handed on
 * and consumed before the next one can land (libuv runs one read callback at a time, and a
 * TLS socket hands over its records one by one), so one buffer serves every socket. 64 KiB
 * is what node reads from TCP at a time; a TLS record's plaintext is at most 16 KiB.
 */
const SHARED = Buffer.allocUnsafeSlow(64 * 1024);

type Handle = { useUserBuffer?(b: Uint8Array): void };
type OnRead = Pushing & { _handle: Handle | null } & Record<symbol, unknown>;

/** The onread callback of a shared-buffer socket (called as a method of the socket). */
function sharedRead(this: OnRead, n: number, buf: Buffer): boolean {
  const view = buf.subarray(0, n);
  const fn = this[SINK];
  if (fn !== undefined && this.readableFlowing === true && this.readableLength === 0) {
    fn(view);
    return true;
  }
  // A copy, as the buffer is the next read's, to the socket's push: the Readable's (which
  // keeps it), or a reader's own that replaced it (h2-server-session.ts).
  return this.push(Buffer.from(view));
}

/**
 * setDirectReads for a node socket (TCP, or TLS: its decrypted bytes) whose reader copies
 * whatever it keeps past each call (a partial message or frame, body bytes): the socket
 * reads into one buffer shared by the thread's sockets and hands `fn` a view of it, so a
 * read allocates no Buffer (node's per-read allocation: a malloc of up to 64 KiB, shrunk,
 * wrapped in an ArrayBuffer and freed by the garbage collector: 0.1-0.3 µs a read in
 * `npm run bench -- socket-reads`, and 3-4 % of an outbound sidecar's samples at HTTP/1.1
 * saturation, docs/benchmarks.md). What the Readable buffers (paused, or behind bytes put back) is
 * copied, so 'data' listeners and pipes get buffers of their own, as before. Returns false,
 * with nothing changed, for anything else (a mux stream, a socket-like stream, a socket
 * that reads into a buffer already, one without a handle yet): call setDirectReads.
 * setDirectReads(socket, null) later hands the reads back to the 'data' events (copies).
 * On a socket that reads into the shared buffer already, it changes the reader.
 */
export function setSharedReads(socket: Socket, fn: (d: Buffer) => void): boolean {
  const s = socket as unknown as OnRead;
  if (ONREAD === undefined || !(socket instanceof Socket)) return false;
  // Already reading into the shared buffer (a listener's detection read the first bytes
  // this way, peek.ts peekTaking): the reads go to the new reader from now on.
  if (s[ONREAD.buffer] === SHARED && s[ONREAD.callback] === sharedRead) {
    s[SINK] = fn;
    return true;
  }
  const h = s._handle;
  if (h === null || typeof h.useUserBuffer !== 'function' || s[ONREAD.buffer]) return false;
  s[ONREAD.buffer] = SHARED;
  s[ONREAD.callback] = sharedRead;
  s[ONREAD.gen] = null;
  h.useUserBuffer(SHARED);
  s[SINK] = fn;
  return true;
}
