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
