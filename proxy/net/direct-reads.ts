import { Socket } from 'node:net';
import { Readable } from 'node:stream';

/** A socket-like stream that can hand its reads to one function directly (the mesh multiplexer's streams, proxy/mux/mux-stream.ts). */
interface DirectReads {
  setSink(fn: ((d: Buffer) => void) | null): void;
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
 */
export function setDirectReads(socket: Socket, fn: ((d: Buffer) => void) | null): void {
  const s = socket as Pushing & Partial<DirectReads>;
  if (s.setSink !== undefined) return s.setSink(fn);
  if (!(socket instanceof Socket)) return;
  if (fn === null) {
    if (s[SINK] === undefined) return;
    s[SINK] = undefined;
    if (Object.hasOwn(s, 'push')) delete (s as Partial<Pushing>).push;
    return;
  }
  s[SINK] = fn;
  s.push = directPush;
}
