import { HOP_BY_HOP, MESH, type Headers } from '../http/headers.js';

/** How the body of a message is delimited (RFC 9112 section 6.3). */
export enum Body {
  None = 0,
  Length = 1,
  Chunked = 2,
  /** A response without Content-Length or chunked: the body ends when the connection does. */
  UntilClose = 3,
}

/**
 * A parsed request or response head: the start line, the field lines as one flat array
 * (lower-case name, value, name, value, ...; values with surrounding whitespace removed,
 * in wire order, repeats kept), and the framing facts the parser derived from them. One
 * object per message with a fixed shape, so the hot path stays monomorphic.
 */
export class H1Head {
  /** Request method ('' in a response). */
  method = '';
  /** Request-target as sent ('' in a response). */
  target = '';
  /** Response status (0 in a request). */
  status = 0;
  reason = '';
  /** HTTP/1.x minor version: 0 or 1. */
  minor = 1;
  readonly fields: string[] = [];
  /** Host field value of a request ('' when absent, which HTTP/1.0 allows). */
  host = '';
  body: Body = Body.None;
  /** Content-Length when body is Body.Length, else -1. */
  contentLength = -1;
  /** The connection may carry another message after this one (RFC 9112 section 9.3). */
  keepAlive = true;
  /**
   * The connection changes protocol after this message: a request with `Connection:
   * upgrade` and `Upgrade`, a CONNECT request, a 101 response or a 2xx to CONNECT.
   */
  upgrade = false;
  /** `Expect: 100-continue` on an HTTP/1.1 request (RFC 9110 section 10.1.1). */
  expectContinue = false;
  /** A response's `Keep-Alive: timeout=N` hint in ms, or -1. */
  keepAliveTimeoutMs = -1;

  /** The first value of a field (name in lower case), or undefined. */
  get(name: string): string | undefined {
    const f = this.fields;
    for (let i = 0; i < f.length; i += 2) if (f[i] === name) return f[i + 1];
    return undefined;
  }
}

/** As node's IncomingMessage: a repeated single-valued field keeps its first value (RFC 9110 section 5.3). */
const SINGLE = new Set(['age', 'authorization', 'content-length', 'content-type', 'etag', 'expires', 'from', 'host', 'if-modified-since', 'if-unmodified-since', 'last-modified', 'location', 'max-forwards', 'proxy-authorization', 'referer', 'retry-after', 'server', 'user-agent']);

/**
 * What a message that crossed between the sidecars does with its lengths (MESH.contentLength
 * in http/headers.ts): `as-is`; `from-mesh`, an HTTP/2 message sent chunked (its head's
 * content-length was the hop's framing; `wren-content-length`, if a plain number, is its
 * own); `drop-mesh`, any other message from a peer sidecar (a `wren-content-length` is no
 * field of its). Done while the map is built: deleting a field afterwards turns the map
 * into a slow dictionary for every later read (V8).
 */
export type MeshLengths = 'as-is' | 'from-mesh' | 'drop-mesh';

const DIGITS = /^\d{1,15}$/;

/**
 * The field names a Connection value lists, lower case, for the last value seen: an app's
 * every response says `Connection: keep-alive` (node's http server does), which was a split,
 * a trim and a lower-casing per response.
 */
let lastConnection = '';
let lastTokens: readonly string[] = [];
function connectionTokens(value: string): readonly string[] {
  if (value !== lastConnection) {
    lastTokens = Object.freeze(value.split(',').map((t) => t.trim().toLowerCase()));
    lastConnection = value;
  }
  return lastTokens;
}

/**
 * Flat fields to the proxy's header map, with node's rules for repeats (set-cookie a
 * list, single-valued fields keep the first, cookie joined with "; ", others with ", "),
 * without hop-by-hop fields or those the Connection field names. `trailers`: also drop
 * content-length, which has no meaning after the body. `lengths`: MeshLengths.
 */
export function fieldsToHeaders(fields: readonly string[], trailers = false, lengths: MeshLengths = 'as-is'): Headers {
  let listed: readonly string[] | null = null;
  for (let i = 0; i < fields.length; i += 2) {
    if (fields[i] === 'connection') listed = listed === null ? connectionTokens(fields[i + 1]) : [...listed, ...connectionTokens(fields[i + 1])];
  }
  const out: Headers = {};
  for (let i = 0; i < fields.length; i += 2) {
    let k = fields[i];
    if (lengths !== 'as-is') {
      if (k === 'content-length' && lengths === 'from-mesh') continue;
      if (k === MESH.contentLength) {
        if (lengths === 'drop-mesh' || !DIGITS.test(fields[i + 1])) continue;
        k = 'content-length';
      }
    }
    // A Content-Length list of one repeated value ("2, 2") is valid (RFC 9110 section 8.6) and
    // the parser has checked every member is equal; pass on the one value, which HTTP/2
    // (RFC 9113 section 8.2.1: a single decimal) and any strict next hop accept.
    const v = k === 'content-length' && fields[i + 1].includes(',') ? fields[i + 1].slice(0, fields[i + 1].indexOf(',')).trim() : fields[i + 1];
    if (HOP_BY_HOP.has(k) || (listed !== null && listed.includes(k)) || (trailers && k === 'content-length')) continue;
    let prev: string | string[] | undefined = out[k];
    // A name like `constructor` finds Object.prototype's member, not an earlier field.
    if (prev !== undefined && !Object.hasOwn(out, k)) {
      prev = undefined;
      // `__proto__` would hit the prototype setter (and be dropped): an own field like any other.
      if (k === '__proto__') {
        Object.defineProperty(out, k, { value: v, writable: true, enumerable: true, configurable: true });
        continue;
      }
    }
    if (prev === undefined) out[k] = k === 'set-cookie' ? [v] : v;
    else if (Array.isArray(prev)) prev.push(v);
    else if (!SINGLE.has(k)) out[k] = `${prev}${k === 'cookie' ? '; ' : ', '}${v}`;
  }
  return out;
}
