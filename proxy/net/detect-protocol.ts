import type { Socket } from 'node:net';
import type { Clock } from '../../common/clock.js';
import { peek } from './peek.js';

export type Detected = 'http1' | 'http2' | 'opaque' | 'timeout';

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH', 'CONNECT', 'TRACE'].map((m) => Buffer.from(m + ' ', 'latin1'));

/**
 * Classifies the first bytes a client sent: the HTTP/2 connection preface (RFC 9113
 * section 3.4), an HTTP/1.x request line, or anything else (opaque). Returns
 * 'need-more' while the bytes are still a prefix of something recognisable.
 */
export function classifyPrefix(buf: Buffer): Exclude<Detected, 'timeout'> | 'need-more' {
  const n = Math.min(buf.length, H2_PREFACE.length);
  if (buf.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) return n === H2_PREFACE.length ? 'http2' : 'need-more';
  for (const m of METHODS) {
    const k = Math.min(buf.length, m.length);
    if (buf.subarray(0, k).equals(m.subarray(0, k))) return k === m.length ? 'http1' : 'need-more';
  }
  return 'opaque';
}

/**
 * Reads the first bytes of a connection to decide its protocol, then puts them back
 * (unshift) so the chosen handler sees the stream from its start. A client that says
 * nothing within the timeout is treated as opaque TCP (Linkerd's fallback, not an error).
 */
export function detectProtocol(socket: Socket, timeoutMs: number, clock: Clock): Promise<Detected> {
  return peek<Detected>(socket, timeoutMs, clock, {
    decide: (buf) => {
      const c = classifyPrefix(buf);
      return c === 'need-more' ? null : c;
    },
    atEnd: () => 'opaque',
    atTimeout: () => 'timeout',
  });
}
