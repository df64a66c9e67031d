import { FIELD_VALUE, TOKEN } from '../h1/chars.js';

/**
 * A field name as HTTP/2 carries it: lowercase tchars (RFC 9113 section 8.2.1: uppercase
 * makes the message malformed; RFC 9110 section 5.1: a token). nghttp2 refuses the rest.
 */
export function validFieldName(n: string): boolean {
  for (let i = 0; i < n.length; i++) {
    const c = n.charCodeAt(i);
    if (c > 0x7f || TOKEN[c] !== 1 || (c >= 0x41 && c <= 0x5a)) return false;
  }
  return n.length > 0;
}

/**
 * A field value: no leading or trailing whitespace, no NUL, CR or LF (RFC 9113 section
 * 8.2.1, what a node:http2 server refuses in a request). `strict` refuses every other
 * control character and DEL too (RFC 9110 section 5.5 field-value, the HTTP/1.1 parser's
 * `bad-field-value`): what every writer of the proxy refuses (node:http2's respond and
 * sendTrailers throw ERR_INVALID_CHAR, the HTTP/1.1 serialiser throws), so a response
 * field that would fail on its way out fails where it arrives instead.
 */
export function validFieldValue(v: string, strict = false): boolean {
  const n = v.length;
  if (n === 0) return true;
  let c = v.charCodeAt(0);
  if (c === 0x20 || c === 0x09) return false;
  c = v.charCodeAt(n - 1);
  if (c === 0x20 || c === 0x09) return false;
  if (strict) {
    for (let i = 0; i < n; i++) {
      c = v.charCodeAt(i);
      if (c <= 0xff && FIELD_VALUE[c] !== 1) return false;
    }
    return true;
  }
  for (let i = 0; i < n; i++) {
    c = v.charCodeAt(i);
    if (c === 0 || c === 0x0a || c === 0x0d) return false;
  }
  return true;
}

/** The first field from index `from` on whose name or value (`strict`: validFieldValue's) is not valid, described, or null. */
export function badField(fields: readonly string[], from: number, strict: boolean): string | null {
  for (let i = from; i < fields.length; i += 2) {
    const name = fields[i];
    if (!validFieldName(name)) return `${name.charCodeAt(0) === 58 ? 'pseudo-header' : 'invalid field name'} ${JSON.stringify(name.slice(0, 64))}`;
    if (!validFieldValue(fields[i + 1], strict)) return `invalid value of ${name}`;
  }
  return null;
}

/** Fields HTTP/2 forbids (RFC 9113 section 8.2.2): a message carrying one is malformed. */
export const CONNECTION_SPECIFIC: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

/**
 * The first connection-specific field from index `from` on (RFC 9113 section 8.2.2: those of
 * CONNECTION_SPECIFIC, and te with any value but "trailers", compared as a token), or null.
 * nghttp2 makes a response carrying one malformed, so an app's answer through Envoy or
 * node:http2 is a 502; the writers' dropping hop-by-hop fields would have hidden it.
 */
export function connectionField(fields: readonly string[], from: number): string | null {
  for (let i = from; i < fields.length; i += 2) {
    const name = fields[i];
    if (CONNECTION_SPECIFIC.has(name)) return name;
    if (name === 'te' && !teTrailers(fields[i + 1])) return 'te';
  }
  return null;
}

/** A te value HTTP/2 allows: `trailers`, a token compared case-insensitively (RFC 9110 section 10.1.4), as nghttp2 does. */
export function teTrailers(value: string): boolean {
  return value === 'trailers' || value.toLowerCase() === 'trailers';
}

/**
 * :method is a token (RFC 9110 section 9.1) without lower-case letters: methods are
 * case-sensitive and every registered one is upper case, and an app that upper-cases what
 * it gets would serve `delete` as the DELETE a policy or route did not see (the HTTP/1.1
 * parser's `lowercase-method`). nghttp2 checks only the token: the node:http2 servers check
 * this themselves (http/h2-server.ts).
 */
export function validMethod(m: string): boolean {
  for (let i = 0; i < m.length; i++) {
    const c = m.charCodeAt(i);
    if (c > 0x7f || TOKEN[c] !== 1 || (c >= 0x61 && c <= 0x7a)) return false;
  }
  return m.length > 0;
}
