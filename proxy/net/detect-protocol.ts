import type { Socket } from 'node:net';
import type { Clock } from '../../common/clock.js';
import { CR, LF, SP, TARGET, TOKEN } from '../h1/chars.js';
import { DEFAULT_H1_LIMITS } from '../h1/limits.js';
import { peek, peekTaking, type Peeked, type PeekDecision } from './peek.js';

export type Detected = 'http1' | 'http2' | 'opaque' | 'timeout';

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;
const UPPER_A = 0x41;
const UPPER_Z = 0x5a;
const LOWER_A = 0x61;
const LOWER_Z = 0x7a;
const SLASH = 0x2f;
const DOT = 0x2e;
/** llhttp knows HTTP, RTSP and ICE; a longer name is not a version. */
const MAX_PROTOCOL_NAME = 16;

/**
 * A request line longer than this is still classified HTTP/1.x: the HTTP stack then refuses
 * it (431) rather than the bytes being spliced unparsed to the app. The same bound as the
 * whole head the h1 codec accepts.
 */
const MAX_REQUEST_LINE = DEFAULT_H1_LIMITS.maxHeadBytes;

/**
 * Classifies the first bytes a client sent: the HTTP/2 connection preface (RFC 9113
 * section 3.4), an HTTP/1.x request line, or anything else (opaque). Returns
 * 'need-more' while the bytes are still a prefix of something recognisable.
 *
 * HTTP/1.x is recognised by its grammar, not a method list (as Envoy's http_inspector
 * parses it): `token SP request-target SP HTTP/1.DIGIT CRLF` (RFC 9112 section 3),
 * widened to everything node's parser (llhttp) accepts as a request line, since that is
 * what a Node app behind the sidecar parses: any run of CR and LF before it, several
 * spaces, any `NAME/DIGIT.DIGIT` version, no version at all (HTTP/0.9). Whatever is
 * classified HTTP goes to the h1 codec, which parses it or refuses it (400); whatever is
 * classified opaque is spliced unparsed, so forged identity headers (XFCC, wren-*, JWT
 * claim headers) would reach the app: a method list let WebDAV (PROPFIND), QUERY or a
 * leading CRLF through that way, then a lone CR or a version-less line. The detector
 * errs toward HTTP; test/sniff-llhttp-grammar.test.ts checks it against llhttp. The
 * answer is 'opaque' at the first byte that breaks the grammar, so a real opaque
 * protocol is not delayed.
 */
export function classifyPrefix(buf: Buffer): Exclude<Detected, 'timeout'> | 'need-more' {
  const n = Math.min(buf.length, H2_PREFACE.length);
  if (buf.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) return n === H2_PREFACE.length ? 'http2' : 'need-more';
  return classifyRequestLine(buf);
}

function classifyRequestLine(b: Buffer): 'http1' | 'opaque' | 'need-more' {
  const e = b.length;
  let i = 0;
  // Before the request line: RFC 9112 section 2.2 lets a server skip empty lines (CRLF),
  // and llhttp skips any run of CR and LF, lone CRs included (`\rGET`, `\n\rGET`,
  // `\r\rGET`). A lone CR is not a line ending (same section): the h1 codec refuses it
  // with 400, but only if it sees the bytes, so they are classified HTTP, not opaque.
  while (i < e && (b[i] === LF || b[i] === CR)) i++;
  const start = i;
  if (i >= e) return lineBudget(i);
  // method = token
  while (i < e && TOKEN[b[i]] === 1) i++;
  if (i === start) return 'opaque';
  if (i >= e) return lineBudget(i);
  if (b[i] !== SP) return 'opaque';
  const methodEnd = i;
  // SP, or several: node's parser (llhttp) takes `GET  /x HTTP/1.1`, so the sidecar must
  // parse (and refuse) it too, never splice it to the app with forged identity headers.
  while (i < e && b[i] === SP) i++;
  // request-target: at least one visible byte
  const target = i;
  while (i < e && TARGET[b[i]] === 1) i++;
  if (i >= e) return lineBudget(i);
  if (i === target) return 'opaque';
  if (b[i] === CR || b[i] === LF) return versionless(b, start, methodEnd, i);
  if (b[i] !== SP) return 'opaque';
  while (i < e && b[i] === SP) i++;
  // The version: `HTTP/1.DIGIT` by RFC 9112, but llhttp also takes `HTTP/2.0`, `RTSP/1.0`,
  // `ICE/1.0`: any `NAME/DIGIT.DIGIT` is classified HTTP, and the h1 codec refuses the
  // versions it does not speak (fail closed, as the comment above says).
  const name = i;
  while (i < e && b[i] >= UPPER_A && b[i] <= UPPER_Z && i - name < MAX_PROTOCOL_NAME) i++;
  if (i >= e) return 'need-more';
  if (i === name || b[i] !== SLASH) return 'opaque';
  if (++i >= e) return 'need-more';
  if (b[i] < DIGIT_0 || b[i] > DIGIT_9) return 'opaque';
  if (++i >= e) return 'need-more';
  if (b[i] !== DOT) return 'opaque';
  if (++i >= e) return 'need-more';
  if (b[i] < DIGIT_0 || b[i] > DIGIT_9) return 'opaque';
  // CRLF; a bare LF too (RFC 9112 section 2.2 lets a recipient take it): calling it HTTP
  // fails closed, the HTTP stack refuses what it will not parse.
  if (++i >= e) return 'need-more';
  return endOfLine(b, i);
}

/**
 * `method SP request-target` then CR or LF at `i`: an HTTP/0.9 request line (RFC 1945
 * section 4.1), which llhttp still accepts, header fields after it included. Wren does
 * not speak HTTP/0.9 (RFC 9112 section 2.3 has a version in every request line): the h1
 * codec refuses it with 400, so it is classified HTTP rather than spliced to an app that
 * would parse it. Not when the method has a lower-case letter: llhttp knows only
 * upper-case methods (and HTTP/0.9 had only GET), while text protocols such as
 * memcached's (`get key\r\n`) look just like this.
 */
function versionless(b: Buffer, start: number, methodEnd: number, i: number): 'http1' | 'opaque' | 'need-more' {
  for (let m = start; m < methodEnd; m++) if (b[m] >= LOWER_A && b[m] <= LOWER_Z) return 'opaque';
  return endOfLine(b, i);
}

/** The end of a request line at `i`: CRLF, or a bare LF (llhttp takes it; the h1 codec refuses it, RFC 9112 section 2.2). */
function endOfLine(b: Buffer, i: number): 'http1' | 'opaque' | 'need-more' {
  if (b[i] === LF) return 'http1';
  if (b[i] !== CR) return 'opaque';
  if (++i >= b.length) return 'need-more';
  return b[i] === LF ? 'http1' : 'opaque';
}

/** Still a valid prefix: wait, unless it is already too long for any request line the HTTP stack would take. */
function lineBudget(len: number): 'http1' | 'need-more' {
  return len > MAX_REQUEST_LINE ? 'http1' : 'need-more';
}

/**
 * Reads the first bytes of a connection to decide its protocol, then puts them back
 * (unshift) so the chosen handler sees the stream from its start. A client that says
 * nothing within the timeout is treated as opaque TCP (Linkerd's fallback, not an error).
 * With STALL_APART, a timeout after bytes that were still a prefix of a request line or
 * of the h2 preface is 'stalled', for a caller that must not splice them (the inbound).
 */
export function detectProtocol(socket: Socket, timeoutMs: number, clock: Clock): Promise<Detected>;
export function detectProtocol(socket: Socket, timeoutMs: number, clock: Clock, d: typeof STALL_APART): Promise<Detected | 'stalled'>;
export function detectProtocol(socket: Socket, timeoutMs: number, clock: Clock, d: PeekDecision<Detected | 'stalled'> = DETECT): Promise<Detected | 'stalled'> {
  return peek<Detected | 'stalled'>(socket, timeoutMs, clock, d);
}

/**
 * detectProtocol() for a connection just accepted, the bytes read handed to the caller
 * (peek.ts peekTaking): to H1Server.serve when it is HTTP/1.1, else put back (putBack).
 */
export function detectProtocolTaking(socket: Socket, timeoutMs: number, clock: Clock): Promise<Peeked<Detected>> {
  return peekTaking<Detected>(socket, timeoutMs, clock, DETECT);
}

const DETECT: PeekDecision<Detected> = {
  decide: (buf) => {
    const c = classifyPrefix(buf);
    return c === 'need-more' ? null : c;
  },
  atEnd: () => 'opaque',
  atTimeout: () => 'timeout',
};

/** DETECT, but a timeout after bytes (a prefix of HTTP: anything else was decided at once) is 'stalled'. */
export const STALL_APART: PeekDecision<Detected | 'stalled'> = {
  ...DETECT,
  atTimeout: (buf) => (buf.length > 0 ? 'stalled' : 'timeout'),
};
