import type { Writable } from 'node:stream';
import type { BodyStream } from '../http/exchange.js';
import { LeanBody } from '../http/lean-body.js';

const BYTES = Symbol('wren.bodyBytes');
const PUSH = Symbol('wren.bodyPush');

interface Counted {
  [BYTES]: number;
  [PUSH]: (chunk: unknown, encoding?: BufferEncoding) => boolean;
}

/**
 * Counts a body's bytes for istio_request_bytes / istio_response_bytes without touching
 * how it flows: every chunk a Readable gets passes through its `push` (node's socket and
 * HTTP/2 stream reads call `stream.push`, and so do Wren's codec bodies), so the stream's
 * own push is wrapped, once, by one shared function (no closure per request). A 'data'
 * listener would switch the stream to flowing mode before its consumer is attached and
 * lose chunks. What was buffered before (a settled body) is its readableLength.
 */
function countingPush(this: BodyStream & Counted, chunk: unknown, encoding?: BufferEncoding): boolean {
  if (chunk !== null && chunk !== undefined) {
    this[BYTES] += typeof chunk === 'string' ? Buffer.byteLength(chunk, encoding) : (chunk as Uint8Array).byteLength ?? 0;
  }
  return this[PUSH](chunk, encoding);
}

export function countBodyBytes(body: BodyStream): void {
  // A LeanBody counts its own (pushedBytes).
  if (body instanceof LeanBody) return;
  const b = body as BodyStream & Partial<Counted>;
  if (b[PUSH] !== undefined) return;
  b[BYTES] = body.readableObjectMode ? 0 : body.readableLength;
  b[PUSH] = body.push as Counted[typeof PUSH];
  body.push = countingPush;
}

/** The bytes counted so far (0 for no body or one not counted). */
export function bodyBytes(body: BodyStream | null): number {
  if (body instanceof LeanBody) return body.pushedBytes;
  return body ? ((body as BodyStream & Partial<Counted>)[BYTES] ?? 0) : 0;
}

const WRITTEN = Symbol('wren.tunnelWritten');
const WRITE = Symbol('wren.tunnelWrite');

interface CountedTunnel {
  [WRITTEN]: number;
  [WRITE]: Writable['write'];
}

/**
 * The upload side of a tunnel (an upgrade's 101, a CONNECT's 200: the response body is a
 * Duplex whose writable side goes to the upstream, docs/observability.md): the bytes the
 * client sends through it, counted as the listener writes them in (its splice pipes into
 * `write`), by one shared function as countingPush. Without it a WebSocket's upload
 * showed as 0 request bytes while its download was counted as response bytes.
 */
function countingWrite(this: Writable & CountedTunnel, chunk: unknown, encoding?: unknown, cb?: unknown): boolean {
  if (chunk !== null && chunk !== undefined) {
    this[WRITTEN] += typeof chunk === 'string' ? Buffer.byteLength(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : undefined) : ((chunk as Uint8Array).byteLength ?? 0);
  }
  return (this[WRITE] as (c: unknown, e?: unknown, cb?: unknown) => boolean).call(this, chunk, encoding, cb);
}

/** Starts counting what is written into a tunnel (once per tunnel, whoever asks first). */
export function countTunnelWrites(tunnel: BodyStream): void {
  const t = tunnel as unknown as Writable & Partial<CountedTunnel>;
  if (typeof t.write !== 'function' || t[WRITE] !== undefined) return;
  t[WRITTEN] = 0;
  t[WRITE] = t.write;
  t.write = countingWrite as Writable['write'];
}

/** The bytes written into a tunnel so far (0 for a body that is not a counted tunnel). */
export function tunnelBytesWritten(body: BodyStream | null): number {
  return body ? ((body as unknown as Partial<CountedTunnel>)[WRITTEN] ?? 0) : 0;
}

/** A response that is a tunnel: an upgrade's 101, or a CONNECT's 200 (its body the Duplex to the upstream). */
export function isTunnel(req: { readonly method: string }, res: { readonly status: number }): boolean {
  return res.status === 101 || (req.method === 'CONNECT' && res.status === 200);
}