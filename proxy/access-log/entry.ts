import type { ProxyRequest, ProxyResponse } from '../http/exchange.js';
import type { Endpoint } from '../../contract/model.js';
import { endpointKey } from '../../contract/model.js';
import { header } from '../http/headers.js';
import { CLIENT_CANCELLED_LABEL, responseFlag, toProxyError, type ProxyError } from '../errors/proxy-error.js';
import { AUTHZ_REASON_HEADER } from '../layers/authorize.js';
import { undeclaredEgressCluster } from '../metrics/workload-labels.js';
import { stateOf } from '../layers/request-state.js';
import type { Upstream } from '../net/connector.js';
import { traceIdOf } from './trace-id.js';
import { redactAuthority, redactQuery } from './redact-query.js';

/**
 * One access log line, keyed as Istio's default JSON access log format
 * (meshConfig.accessLogEncoding: JSON) names Envoy's command operators, plus the peer
 * identities and the attempt count. Unknown values are null, no flag is '-', as Envoy
 * writes them. docs/observability.md lists every key.
 *
 * Deliberately absent: every request header but the few named here. Authorization,
 * cookies, API keys and the like never reach a line, whatever the request carries.
 */
export interface AccessLogEntry {
  start_time: string;
  method: string | null;
  path: string | null;
  protocol: string | null;
  response_code: number;
  response_flags: string;
  response_code_details: string | null;
  connection_termination_details: string | null;
  bytes_received: number;
  bytes_sent: number;
  duration: number;
  upstream_service_time: number | null;
  x_forwarded_for: string | null;
  user_agent: string | null;
  request_id: string | null;
  authority: string | null;
  upstream_host: string | null;
  upstream_cluster: string | null;
  upstream_local_address: string | null;
  downstream_local_address: string | null;
  downstream_remote_address: string;
  requested_server_name: string | null;
  route_name: string | null;
  upstream_transport_failure_reason: string | null;
  trace_id: string | null;
  downstream_peer_identity: string | null;
  upstream_peer_identity: string | null;
  upstream_request_attempt_count: number;
}

export type Direction = 'inbound' | 'outbound';

/**
 * Caps: a client controls these values, a line must stay bounded. The method too (an
 * HTTP/1.1 request line or an HTTP/2 `:method` may carry any token up to the header limit)
 * and a ClientHello's SNI (the parser takes a name up to the 16 KiB record; a DNS name is at
 * most 253 characters).
 */
const MAX_PATH = 1024;
const MAX_HEADER_VALUE = 256;

const cap = (v: string | undefined, n: number): string | null => (v === undefined || v === '' ? null : v.length > n ? v.slice(0, n) : v);

/** What the layer knows when a request ends. */
export interface Outcome {
  readonly res: ProxyResponse;
  /** When the response headers arrived (clock ms). */
  readonly headersAt: number;
  readonly endedAt: number;
  /** The response body did not reach its end (destroyed, reset). */
  readonly cut: boolean;
  /** Body bytes read from the client and sent to it (the layer counts them as they pass). */
  readonly bytesReceived: number;
  readonly bytesSent: number;
}

/**
 * The flags Envoy would set for this outcome. The error table's flag (NR, UH, UF, UO, UT,
 * RBAC...) comes first; the two the table cannot know are added from the request: URX
 * (retries were made, to more than one endpoint, and the last attempt failed: Envoy's
 * UpstreamRetryLimitExceeded), DC (the downstream went away before the response ended) and
 * DI (the fault layer delayed the request).
 */
export function flagsOf(req: ProxyRequest, status: number, proxyError: string | undefined, cut: boolean, attempts: number, cutBy?: string): string {
  let flags = responseFlag(proxyError);
  const add = (f: string) => (flags = flags === '-' ? f : flags.includes(f) ? flags : `${flags},${f}`);
  // DI (a fault delay was injected) comes before FI, RL, DC, URX in Envoy's flag order.
  if (req.faultDelayed) flags = flags === '-' ? 'DI' : flags === 'FI' ? 'DI,FI' : `${flags},DI`;
  if (attempts > 1 && (status >= 500 || (proxyError !== undefined && status !== 101))) add('URX');
  // A body the upstream side cut (reset, protocol error, idle or request timeout) has that
  // error's flag (UR, UPE, SI, UT), never DC: the client's side is torn down because of it.
  if (cutBy !== undefined) add(responseFlag(cutBy));
  else if (cut && req.signal.aborted && flags !== 'DC') add('DC');
  return flags;
}

/**
 * The error label of what cut a response body, when it was not the client leaving: the
 * error the body was destroyed with (an upstream reset, `upstream-reset`; an idle timeout,
 * `idle-timeout`...). Undefined for a body that ended, one destroyed without an error or
 * for the client (CLIENT_CANCELLED): those are DC when the request's signal fired. Read
 * only when the body was cut. Envoy says UR for a response its upstream reset mid-body
 * (UpstreamRemoteReset), where the client's stream closing afterwards made it DC here.
 */
export function cutByOf(res: ProxyResponse, cut: boolean): string | undefined {
  if (!cut) return undefined;
  const err = (res.body as { readonly errored?: unknown } | null)?.errored;
  if (err === null || err === undefined) return undefined;
  const label = toProxyError(err, 'UPSTREAM_RESET').label;
  return label === CLIENT_CANCELLED_LABEL ? undefined : label;
}

/** Envoy's response_code_details: via_upstream, the RBAC filter's deny detail, or the proxy error's code. */
function detailsOf(res: ProxyResponse): string | null {
  if (res.proxyError === undefined) return 'via_upstream';
  if (res.proxyError === 'forbidden') return `rbac_access_denied_matched_policy[${header(res.headers, AUTHZ_REASON_HEADER) ?? 'none'}]`;
  return res.proxyError;
}

export function localAddressOf(up: Upstream | undefined): string | null {
  const s = up?.kind === 'tcp' ? up.socket : up?.kind === 'h2' ? up.session.socket : undefined;
  return s?.localAddress ? `${s.localAddress}:${s.localPort}` : null;
}

/**
 * `outbound|PORT||svc.ns.svc.cluster.local` / `inbound|PORT||`, Istio's cluster names; out
 * of the mesh (egress-http.ts) `outbound|PORT||HOST` for an ExternalService host (a
 * ServiceEntry's cluster), else `PassthroughCluster`, or `BlackHoleCluster` when refused
 * (`proxyError`), as the metrics label the same request.
 */
export function upstreamCluster(direction: Direction, req: ProxyRequest, proxyError?: string): string | null {
  if (direction === 'inbound') return req.targetPort === undefined ? null : `inbound|${req.targetPort}||`;
  const r = req.route;
  if (r) return `outbound|${r.port.port}||${r.service.name}.${r.service.namespace}.svc.cluster.local`;
  if (req.origDst?.egress !== true) return null;
  return req.external !== undefined ? req.external.cluster : undeclaredEgressCluster(proxyError);
}

/** The endpoint the last attempt went to (pick-endpoint). */
export function endpointOf(req: ProxyRequest): Endpoint | undefined {
  return stateOf(req)?.endpoint ?? req.endpoint;
}

let cachedSecond = NaN;
let cachedPrefix = '';

/** ISO 8601 UTC with milliseconds; the part up to the second is formatted once a second, not once a line. */
function wallTime(ms: number): string {
  const t = Math.floor(ms);
  const second = Math.floor(t / 1000);
  if (second !== cachedSecond) {
    cachedSecond = second;
    cachedPrefix = new Date(second * 1000).toISOString().slice(0, 20); // YYYY-MM-DDTHH:MM:SS.
  }
  const milli = t - second * 1000;
  return `${cachedPrefix}${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}Z`;
}

/** The line for one HTTP request. `appAddress` (inbound): the upstream is the local app. */
export function httpEntry(direction: Direction, req: ProxyRequest, o: Outcome, appAddress: string | undefined): AccessLogEntry {
  const res = o.res;
  const st = stateOf(req);
  const attempts = st?.tried.size ?? (direction === 'inbound' ? 1 : 0);
  const ep = direction === 'outbound' ? endpointOf(req) : undefined;
  const cutBy = cutByOf(res, o.cut);
  const flags = flagsOf(req, res.status, res.proxyError, o.cut, attempts, cutBy);
  // The client left before any response (the synthetic CANCELLED/499 never reached it):
  // Envoy logs response code 0 and no byte sent, whether or not that response had a body.
  const gone = res.proxyError === CLIENT_CANCELLED_LABEL;
  const dc = gone || (cutBy === undefined && flags.includes('DC') && o.cut);
  const h = req.headers;
  const dst = req.origDst;
  return {
    start_time: wallTime(req.startedAt),
    method: cap(req.method, MAX_HEADER_VALUE),
    // Credentials in the query string (?access_token=...) are redacted before the cap.
    path: cap(redactQuery(req.originalPath ?? req.path, req.tokenParams), MAX_PATH),
    protocol: req.origProto === 'TCP' ? null : req.origProto,
    // Envoy logs 0 when nothing reached the client: it left before the response.
    response_code: gone ? 0 : res.status,
    response_flags: flags,
    response_code_details: dc ? 'downstream_remote_disconnect' : cutBy ?? detailsOf(res),
    connection_termination_details: null,
    bytes_received: o.bytesReceived,
    bytes_sent: gone ? 0 : o.bytesSent,
    duration: Math.max(0, Math.round(o.endedAt - req.startedAt)),
    upstream_service_time: res.proxyError === undefined ? Math.max(0, Math.round(o.headersAt - req.startedAt)) : null,
    x_forwarded_for: cap(header(h, 'x-forwarded-for'), MAX_HEADER_VALUE),
    user_agent: cap(header(h, 'user-agent'), MAX_HEADER_VALUE),
    request_id: cap(header(h, 'x-request-id'), MAX_HEADER_VALUE),
    authority: cap(redactAuthority(req.authority), MAX_HEADER_VALUE),
    upstream_host: ep ? endpointKey(ep) : appAddress !== undefined && req.targetPort !== undefined ? endpointKey({ address: appAddress, port: req.targetPort }) : null,
    upstream_cluster: upstreamCluster(direction, req, res.proxyError),
    upstream_local_address: localAddressOf(st?.upstream),
    downstream_local_address: dst ? endpointKey(dst) : null,
    downstream_remote_address: endpointKey(req.source),
    requested_server_name: null,
    // The HTTPRoute / GRPCRoute rule when one routed the request, else Istio's name for an unnamed route.
    route_name: req.routeName ?? (req.route || direction === 'inbound' ? 'default' : null),
    upstream_transport_failure_reason: null,
    trace_id: traceIdOf(h),
    downstream_peer_identity: req.source.identity || null,
    upstream_peer_identity: ep && ep.proxyPort !== null ? ep.identity || null : null,
    upstream_request_attempt_count: attempts,
  };
}

/** The line for one opaque TCP connection, written when it closes (or when it could not open). */
export interface TcpFacts {
  readonly direction: Direction;
  readonly startedAt: number;
  readonly endedAt: number;
  readonly downstream: { readonly address: string; readonly port: number; readonly identity: string };
  readonly downstreamLocal: { readonly address: string; readonly port: number } | undefined;
  readonly upstreamHost: string | null;
  readonly upstreamCluster: string | null;
  readonly upstreamIdentity: string | null;
  readonly upstreamLocal: string | null;
  /** The error table's label when the connection failed (no-route, connect-refused...). */
  readonly proxyError: string | undefined;
  readonly attempts: number;
  readonly bytesReceived: number;
  readonly bytesSent: number;
  /** Why the proxy closed the connection (an authorization deny: the RBAC network filter's detail). */
  readonly terminationDetails?: string;
  /** The SNI of the client's ClientHello, when the proxy read it (egress control). */
  readonly requestedServerName?: string;
}

/** An opaque TCP connection's flags: its failure's (NR, UH, UF, UO...), with URX when the connect was retried on several endpoints. */
export function tcpFlagsOf(proxyError: string | undefined, attempts: number): string {
  const flags = responseFlag(proxyError);
  if (attempts > 1 && proxyError !== undefined && flags !== 'URX') return flags === '-' ? 'URX' : `${flags},URX`;
  return flags;
}

export function tcpEntry(f: TcpFacts): AccessLogEntry {
  const flags = tcpFlagsOf(f.proxyError, f.attempts);
  return {
    start_time: wallTime(f.startedAt),
    method: null,
    path: null,
    protocol: null,
    // Envoy's TCP proxy has no response code: 0.
    response_code: 0,
    response_flags: flags,
    response_code_details: f.proxyError ?? null,
    connection_termination_details: f.terminationDetails ?? null,
    bytes_received: f.bytesReceived,
    bytes_sent: f.bytesSent,
    duration: Math.max(0, Math.round(f.endedAt - f.startedAt)),
    upstream_service_time: null,
    x_forwarded_for: null,
    user_agent: null,
    request_id: null,
    authority: null,
    upstream_host: f.upstreamHost,
    upstream_cluster: f.upstreamCluster,
    upstream_local_address: f.upstreamLocal,
    downstream_local_address: f.downstreamLocal ? endpointKey(f.downstreamLocal) : null,
    downstream_remote_address: endpointKey(f.downstream),
    requested_server_name: cap(f.requestedServerName, MAX_HEADER_VALUE),
    route_name: null,
    upstream_transport_failure_reason: null,
    trace_id: null,
    downstream_peer_identity: f.downstream.identity || null,
    upstream_peer_identity: f.upstreamIdentity,
    upstream_request_attempt_count: f.attempts,
  };
}

/** The protocol a refused request came in (the access log's `protocol`). */
export type RefusedProtocol = 'HTTP/1.1' | 'HTTP/2';

/**
 * The line of a request refused before it became a request for the layers, which no layer
 * sees: the HTTP/1.1 codec's (a malformed head, an invalid request-target: 400, 431, 501
 * from the error table; the 408 request-headers timeout) and the HTTP/2 servers' (a
 * malformed stream, reset; 400/431 answered before the layers). Envoy logs such a request
 * with its codec error's status, flag `DPE` (DownstreamProtocolError) and
 * `response_code_details` naming the error. Nothing of the head is logged (it did not
 * parse, or was refused for what it held); `response_code_details` is the error's label.
 */
export function refusedRequestEntry(err: ProxyError, at: number, source: ProxyRequest['source'], origDst: ProxyRequest['origDst'], protocol: RefusedProtocol, status: number): AccessLogEntry {
  return {
    ...tcpEntry({
      direction: 'inbound', startedAt: at, endedAt: at, downstream: source, downstreamLocal: origDst,
      upstreamHost: null, upstreamCluster: null, upstreamIdentity: null, upstreamLocal: null, proxyError: err.label, attempts: 0, bytesReceived: 0, bytesSent: 0,
    }),
    protocol,
    response_code: status,
  };
}
