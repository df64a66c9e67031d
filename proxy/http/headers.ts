import type { IncomingHttpHeaders } from 'node:http';
import { PROXY_ERROR_HEADER } from '../errors/proxy-error.js';

/** Plain header map: lower-case names, no pseudo-headers, no hop-by-hop fields. */
export type Headers = Record<string, string | string[]>;

/**
 * Hop-by-hop fields (RFC 9110 section 7.6.1) never cross a proxy; HTTP/2 forbids them
 * outright (RFC 9113 section 8.2.2), so they are dropped both ways. `te: trailers` is
 * the one allowed exception in HTTP/2 and gRPC relies on it.
 */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te',
  'proxy-authenticate', 'proxy-authorization', 'http2-settings', 'host',
]);

export function cleanHeaders(raw: IncomingHttpHeaders | Record<string, unknown>): Headers {
  const out: Headers = {};
  copyFields(raw, out, false);
  const te = raw['te'];
  // gRPC sends exactly `te: trailers` on every call: no regex for it.
  if (typeof te === 'string' && (te === 'trailers' || /(^|,)\s*trailers\s*(,|$)/i.test(te))) out['te'] = 'trailers';
  return out;
}

/**
 * Copies the end-to-end fields of `raw` into `out` and counts them: pseudo-headers,
 * hop-by-hop fields and the fields `connection` lists are left out, and with `trailers`
 * the mesh fields too. for-in, not Object.entries: no array of pairs per message (node's
 * header objects have a null prototype or plain Object.prototype, so for-in sees own keys
 * only).
 */
function copyFields(raw: IncomingHttpHeaders | Record<string, unknown>, out: Headers, trailers: boolean): number {
  const listed = connectionListed(raw['connection']);
  let n = 0;
  for (const k in raw) {
    const v = raw[k];
    if (v === undefined || k.charCodeAt(0) === 58 /* ':' */) continue;
    const name = k.toLowerCase();
    if (HOP_BY_HOP.has(name) || (listed && listed.has(name)) || (trailers && MESH_FIELDS.has(name))) continue;
    // setField: a `__proto__` field (node:http2 passes one on) stays a field, never the map's prototype.
    setField(out, name, typeof v === 'string' ? v : Array.isArray(v) ? v.map(String) : String(v));
    n++;
  }
  return n;
}

function connectionListed(v: unknown): Set<string> | null {
  if (typeof v !== 'string' || v === '') return null;
  return new Set(v.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean));
}

/**
 * Appends a header map to a field list in node:http2's flat array form (`[name, value, ...]`,
 * which request() and respond() encode without first copying it into an object of their
 * own): one entry per value of a list, pseudo-headers skipped, and names that `except`
 * has skipped too (its fields win, as in `{ ...h, ...except }`).
 */
export function appendFields(out: string[], h: Headers, except: Headers | undefined): void {
  for (const k in h) {
    if (k.charCodeAt(0) === 58 /* ':' */ || (except !== undefined && except[k] !== undefined)) continue;
    const v: unknown = h[k];
    if (typeof v === 'string') out.push(k, v);
    else if (Array.isArray(v)) for (let i = 0; i < v.length; i++) out.push(k, String(v[i]));
    else if (v !== undefined && v !== null) out.push(k, String(v));
  }
}

/**
 * Field `name` of a header map: its own field only. Header maps are plain objects, so a
 * plain `h[name]` with a name from config or a policy (`constructor`, `__proto__`: both
 * valid field names) would find Object.prototype's member, a function or an object, on a
 * request that has no such field. Every lookup of a configured name goes through here
 * (the authorizer, the JWT extractor, route and fault matches, the hash header, header
 * filters). The ownership check runs only for what is not a string: a field that is absent,
 * or a single value, costs what `h[name]` does.
 */
export function field<V>(h: Readonly<Record<string, V>>, name: string): V | undefined {
  const v = h[name];
  // A string is a field (Object.prototype has no string members): the common case pays a
  // typeof, not the ownership look-up, on the request path.
  if (typeof v === 'string') return v;
  return v !== undefined && Object.hasOwn(h, name) ? v : undefined;
}

/**
 * Sets field `name` as an own field: `__proto__` is a field like any other, never the
 * prototype setter (which would drop a string and adopt an array as the map's prototype),
 * as fieldsToHeaders (h1/head.ts) stores it.
 */
export function setField(h: Headers, name: string, v: string | string[]): void {
  if (name === '__proto__') Object.defineProperty(h, name, { value: v, writable: true, enumerable: true, configurable: true });
  else h[name] = v;
}

/**
 * The field of a request that a configured name reads (a route's header match, a
 * ring-hash header): `host` is the request's authority, which the listeners keep apart
 * from its header map (HTTP/2's `:authority` stands for Host, RFC 9113 section 8.3.1, and
 * Envoy matches a `host` matcher against `:authority`); any other name, its own field.
 * Undefined when the request has none (no authority: HTTP/1.0 without Host).
 */
export function requestField(req: { readonly authority: string; readonly headers: Headers }, name: string): string | string[] | undefined {
  return name === 'host' ? req.authority || undefined : field(req.headers, name);
}

export function header(h: Headers, name: string): string | undefined {
  const v = field(h, name);
  return Array.isArray(v) ? v[0] : v;
}

/**
 * Headers safe to send as HTTP/2 trailers or HTTP/1.1 chunked trailers: cleanHeaders'
 * rules without `te`, and without the mesh fields (dropMeshFields), built in one pass
 * (no `delete`, which would turn the object into a slow dictionary, no key array).
 */
export function cleanTrailers(raw: IncomingHttpHeaders | Record<string, unknown> | undefined): Headers | undefined {
  if (!raw) return undefined;
  const out: Headers = {};
  return copyFields(raw, out, true) > 0 ? out : undefined;
}

/**
 * Mesh fields never travel as trailers: only the sidecars write them, as header fields.
 * One a client sends in its trailer section (a forged `x-forwarded-client-cert`, `wren-peer`)
 * would otherwise reach the app, which merges trailers into its view of the request
 * (RFC 9110 section 6.5.1 lets a recipient discard trailer fields it does not want).
 */
export function dropMeshFields(h: Headers): void {
  for (const k in h) if (MESH_FIELDS.has(k)) delete h[k];
}

/** Internal mesh headers: set by sidecars, stripped from what apps send and see. */
export const MESH = {
  origProto: 'wren-orig-proto',
  targetPort: 'wren-target-port',
  clientCert: 'x-forwarded-client-cert',
  /**
   * Marks an active health check sent by the calling sidecar (resilience/mesh-probes.ts),
   * so the inbound side counts it apart from user requests. Apps cannot forge it: the
   * outbound side strips every mesh header from what they send.
   */
  healthCheck: 'wren-health-check',
  /** An upgrade between sidecars (an HTTP/2 extended CONNECT stream): the client's method. */
  origMethod: 'wren-orig-method',
  /** On the inbound's 200 to an extended CONNECT: the app answered 101, switching to this protocol. */
  upgraded: 'wren-upgraded',
  /**
   * Peer metadata (metrics/peer-metadata.ts): the calling workload and the service it
   * meant, for the inbound side's metric labels. Believed from an mTLS peer only.
   */
  peer: 'wren-peer',
  /**
   * An HTTP/2 message's content-length when it crosses between the sidecars as a chunked
   * HTTP/1.1 one (protocol.meshHttp2 mux), so that its trailers cross too: the far side
   * makes it the content-length again (fieldsToHeaders's `from-mesh` in h1/head.ts, for
   * h1-pool.ts meshH2 and h1-server.ts).
   */
  contentLength: 'wren-content-length',
} as const;

const MESH_FIELDS: ReadonlySet<string> = new Set(Object.values(MESH));

/**
 * The fields only a sidecar writes on a response, which an app's response (head or
 * trailers) must not carry to the calling sidecar: the mesh fields and PROXY_ERROR_HEADER
 * (inbound/deliver-to-app.ts says why). Unlike the mesh fields, PROXY_ERROR_HEADER is a
 * sidecar's trailer field too (grpcErrorTrailers: a rescued gRPC call), so only the
 * app-facing clients drop it from trailers.
 */
export const NOT_FROM_APP: ReadonlySet<string> = new Set([...MESH_FIELDS, PROXY_ERROR_HEADER]);

/**
 * An app's trailers without NOT_FROM_APP, on every client that reaches the app (the
 * HTTP/1.1 pool's and an upgrade's chunked trailers, both HTTP/2 clients): a
 * wren-proxy-error trailer from the app would make the calling sidecar take the response
 * for its peer's gRPC rescue and reset the rest of the request (http/write-response.ts,
 * h2/h2-server-stream.ts endedByProxyError). Called only when trailers arrived.
 */
export function dropNotFromApp(h: Headers): void {
  for (const k in h) if (NOT_FROM_APP.has(k)) delete h[k];
}

export function isGrpc(h: Headers): boolean {
  const ct = header(h, 'content-type');
  return ct !== undefined && ct.startsWith('application/grpc');
}
