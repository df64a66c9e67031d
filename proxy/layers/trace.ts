import type { Attributes, Span } from '@opentelemetry/api';
// Names written out, not imported: the packages' index modules cost every sidecar memory (semconv.ts).
import {
  ATTR_ERROR_TYPE, ATTR_HTTP_REQUEST_METHOD, ATTR_HTTP_RESPONSE_STATUS_CODE, ATTR_NETWORK_PROTOCOL_VERSION, ATTR_RPC_METHOD,
  ATTR_SERVER_ADDRESS, ATTR_SERVER_PORT, ATTR_URL_FULL, ATTR_URL_PATH, ATTR_URL_SCHEME, ATTR_CLIENT_ADDRESS, SPAN_STATUS_ERROR,
} from '../tracing/semconv.js';
import type { HttpLayer, HttpService, ProxyRequest, ProxyResponse } from '../http/exchange.js';
import { header, isGrpc, MESH } from '../http/headers.js';
import { responseFlag, toProxyError } from '../errors/proxy-error.js';
import type { Clock } from '../../common/clock.js';
import type { MeshTracer } from '../tracing/mesh-tracer.js';
import {
  b3MultiAgrees, b3SingleAgrees, extract, hasContext, inject, injectB3Multi, notSampledW3c, forwardTraceState, W3C, type IncomingContext,
} from '../tracing/propagation.js';
import { stateOf } from './request-state.js';
import { redactAuthority, redactQuery } from '../access-log/redact-query.js';
import { endpointOf, flagsOf } from '../access-log/entry.js';

/**
 * A span per request (docs/observability.md, Tracing): CLIENT on the outbound side, SERVER
 * on the inbound side, each continuing the context the request carries and injecting its
 * own span as the parent of the next hop (the inbound's into the request the app gets,
 * which the app forwards on its own calls, as with Istio and Linkerd).
 *
 * Sampling precedence: the caller's decision (W3C sampled flag, B3 sampled/debug) is
 * honoured both ways; a request without one is drawn against the percent in force. A
 * request that is not sampled costs no span and no SDK call: with no context at all, one
 * not-sampled `traceparent` string is injected (as Envoy does), so the next hop continues
 * the decision instead of drawing again; with a not-sampled context, nothing is touched.
 *
 * The span ends when the response body ends, errors or is aborted, with the response's
 * status: per the OpenTelemetry HTTP conventions a 5xx is an error on both kinds and a
 * 4xx only on client spans; gRPC per the RPC conventions (any non-OK status on client
 * spans; UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS on
 * server spans).
 */
export const traceRequests =
  (t: MeshTracer, kind: 'client' | 'server', clock: Clock): HttpLayer =>
  (inner) =>
  (req) => {
    const h = req.headers;
    // An active health check between sidecars (only the inbound sees one: the outbound strips mesh headers below) is not traffic.
    if (kind === 'server' && h[MESH.healthCheck] !== undefined) return inner(req);
    if (!hasContext(h)) {
      dropTraceState(h);
      if (t.sample()) return traced(t, kind, clock, req, inner, undefined);
      notSampled(t, h);
      return inner(req);
    }
    // Inside a trace that is not sampled (every request after a first hop that drew no):
    // untouched, but for a tracestate that is not a valid list or is too long, treated as on every other path.
    if (notSampledW3c(h)) {
      forwardTraceState(h);
      return inner(req);
    }
    const ctx = extract(h);
    if (ctx === undefined || (ctx.sampled === undefined && ctx.traceId === '')) {
      // Only malformed headers: as if none (the W3C header is replaced either way).
      dropTraceState(h);
      if (t.sample()) return traced(t, kind, clock, req, inner, undefined);
      notSampled(t, h);
      return inner(req);
    }
    // A tracestate travels only with the traceparent it belongs to, and only as a valid list within its limits.
    if (ctx.traceState === undefined) dropTraceState(h);
    else forwardTraceState(h);
    // The caller said no: the headers already carry the decision on, unchanged, unless
    // they disagree with it (below).
    if (ctx.sampled === false) {
      if (otherFormats(h, ctx)) contextAgreed(h, ctx, false);
      return inner(req);
    }
    if (ctx.sampled === undefined && !t.sample()) {
      // B3 ids with the decision deferred to us: decided no, and say so downstream.
      inject(h, ctx.traceId, ctx.spanId, false, ctx.formats | W3C);
      return inner(req);
    }
    return traced(t, kind, clock, req, inner, ctx);
  };

/**
 * A tracestate is the vendor data of the traceparent it came with (W3C Trace Context
 * section 3.3: a vendor that cannot parse traceparent must not parse or propagate
 * tracestate): a new trace, a B3-only context, or one that is not a valid list (trace-state.ts), does not carry it on.
 */
function dropTraceState(h: ProxyRequest['headers']): void {
  if (h['tracestate'] !== undefined) delete h['tracestate'];
}

/**
 * A context whose headers do not all say it: a malformed `traceparent` beside a valid B3
 * context (W3C Trace Context section 3.2: an invalid traceparent is ignored, so it must not
 * reach the app as if it were one), or B3 headers beside the context that won that say the
 * other decision, name another trace or span, or are malformed (a B3-only tracer in the app
 * would follow them). Only the headers that disagree are rewritten from the context; those
 * that agree pass on as they came (`x-b3-parentspanid` and a `b3` parent id included), as
 * Envoy and OpenTelemetry's propagators leave them. A B3-only context gets no `traceparent`
 * it did not have. For a context passed on as it is: not sampled, or sampled with no
 * collector to record a span (a recorded span rewrites every format with its own id). Off
 * the common path (the agreeing not-sampled W3C case never gets here: notSampledW3c), so the
 * one canonical traceparent string built here is affordable.
 */
function contextAgreed(h: ProxyRequest['headers'], ctx: IncomingContext, sampled: boolean): void {
  if (ctx.traceId === '') {
    // A decision without ids (`b3: 0`, `x-b3-sampled: 0`): no traceparent can carry it, the malformed one goes.
    if (h['traceparent'] !== undefined) delete h['traceparent'];
    if (h['b3'] !== undefined && h['b3'] !== '0') h['b3'] = '0';
    // The x-b3-* decision says no too (their ids, if any, are not this context's to judge).
    if (hasB3Multi(h) && (h['x-b3-flags'] !== undefined || (h['x-b3-sampled'] !== '0' && h['x-b3-sampled'] !== 'false'))) injectB3Decision(h);
    return;
  }
  const flag = sampled ? '1' : '0';
  const tp = `00-${ctx.traceId}-${ctx.spanId}-0${flag}`;
  if ((ctx.formats & W3C) === 0 && h['traceparent'] !== undefined) h['traceparent'] = tp;
  const b3 = h['b3'];
  if (b3 !== undefined && (typeof b3 !== 'string' || !b3SingleAgrees(b3, tp, sampled))) h['b3'] = `${ctx.traceId}-${ctx.spanId}-${flag}`;
  if (hasB3Multi(h) && !b3MultiAgrees(h, tp, sampled)) injectB3Multi(h, ctx.traceId, ctx.spanId, sampled);
}

/** Any header of the formats beside a lone W3C context: the agreement check is needed. */
const otherFormats = (h: ProxyRequest['headers'], ctx: IncomingContext): boolean => ctx.formats !== W3C || h['b3'] !== undefined || hasB3Multi(h);

function hasB3Multi(h: ProxyRequest['headers']): boolean {
  return h['x-b3-traceid'] !== undefined || h['x-b3-spanid'] !== undefined || h['x-b3-sampled'] !== undefined || h['x-b3-flags'] !== undefined;
}

/** `x-b3-sampled: 0`: the decision, superseding `x-b3-flags`. */
function injectB3Decision(h: ProxyRequest['headers']): void {
  h['x-b3-sampled'] = '0';
  if (h['x-b3-flags'] !== undefined) delete h['x-b3-flags'];
}

/** A new trace that is not sampled: a not-sampled W3C context, so every later hop agrees (one string). */
function notSampled(t: MeshTracer, h: ProxyRequest['headers']): void {
  h['traceparent'] = t.ids.notSampledTraceparent();
}

async function traced(t: MeshTracer, kind: 'client' | 'server', clock: Clock, req: ProxyRequest, inner: HttpService, ctx: IncomingContext | undefined): Promise<ProxyResponse> {
  const formats = ctx ? ctx.formats | W3C : W3C;
  const parentTraceId = ctx?.traceId ?? '';
  if (!t.recording) {
    // No collector: record nothing; a sampled context passes on as it came (a deferred B3
    // decision is made explicit), a new trace gets ids of its own.
    if (!parentTraceId) inject(req.headers, t.ids.traceId(), t.ids.spanId(), true, formats);
    else if (ctx!.sampled === undefined) inject(req.headers, parentTraceId, ctx!.spanId, true, formats);
    // Passed on as it came, but for headers that disagree with it (as a not-sampled one).
    else if (otherFormats(req.headers, ctx!)) contextAgreed(req.headers, ctx!, true);
    return inner(req);
  }
  const grpc = isGrpc(req.headers);
  const span = t.startSpan(kind, spanName(req, grpc), clock.now(), startAttributes(req, kind, grpc), parentTraceId, ctx?.spanId ?? '', ctx?.traceState);
  const sc = span.spanContext();
  // The new span is the child of the caller's (B3 multi-header names it in x-b3-parentspanid).
  inject(req.headers, sc.traceId, sc.spanId, true, formats, parentTraceId === '' ? '' : ctx!.spanId);
  let res: ProxyResponse;
  try {
    res = await inner(req);
  } catch (err) {
    const pe = toProxyError(err, 'INTERNAL');
    span.setAttributes({ [ATTR_ERROR_TYPE]: pe.label, 'wren.response_flags': responseFlag(pe.label) });
    span.setStatus({ code: SPAN_STATUS_ERROR, message: pe.message });
    endAttributes(t, span, req, kind);
    span.end(clock.now());
    throw err;
  }
  span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, res.status);
  // Envoy's flags, as the access log and the istio_* metrics carry them (URX after failed attempts on several endpoints).
  span.setAttribute('wren.response_flags', flagsOf(req, res.status, res.proxyError, false, stateOf(req)?.tried.size ?? 0));
  endAttributes(t, span, req, kind);
  let ended = false;
  const end = (err?: Error) => {
    if (ended) return;
    ended = true;
    finish(span, kind, res, grpc, err);
    span.end(clock.now());
  };
  const body = res.body;
  if (body) {
    body.once('end', () => end());
    body.once('error', (e: Error) => end(e));
    // Aborted (downstream gone, upstream reset) before the end: ends the span too.
    body.once('close', () => end(body.readableEnded ? undefined : new Error('response body aborted')));
  } else end();
  return res;
}

/**
 * The HTTP methods the OpenTelemetry HTTP conventions know (RFC 9110's and PATCH, RFC 5789).
 * Any other method is `_OTHER` in http.request.method, the original in
 * http.request.method_original, and the span is named `HTTP`: the method token is the
 * client's choice (the HTTP/1.1 parser takes any upper-case token, HTTP/2 any :method), and
 * a span name per invented method would give trace backends (Jaeger's operations, span-name
 * indexes) as many operations as a client cares to send.
 */
const KNOWN_METHODS: ReadonlySet<string> = new Set(['CONNECT', 'DELETE', 'GET', 'HEAD', 'OPTIONS', 'PATCH', 'POST', 'PUT', 'TRACE']);

/** `{rpc.service}/{rpc.method}` for gRPC (RPC conventions), the method alone for HTTP (no route template is known), `HTTP` for an unknown method. */
function spanName(req: ProxyRequest, grpc: boolean): string {
  return grpc ? rpcPath(req.path).slice(1) : KNOWN_METHODS.has(req.method) ? req.method : 'HTTP';
}

/** `/{service}/{method}`: a gRPC(-Web) path up to any query string, which may carry a credential (`?access_token=`). */
function rpcPath(path: string): string {
  const q = path.indexOf('?');
  return q < 0 ? path : path.slice(0, q);
}

function startAttributes(req: ProxyRequest, kind: 'client' | 'server', grpc: boolean): Attributes {
  // The host and port only: a userinfo a client put in the authority is a credential.
  const at = req.authority.lastIndexOf('@');
  const hostPort = at < 0 ? req.authority : req.authority.slice(at + 1);
  const colon = hostPort.lastIndexOf(':');
  const hasPort = colon > 0 && !hostPort.endsWith(']');
  const known = KNOWN_METHODS.has(req.method);
  const a: Attributes = {
    [ATTR_HTTP_REQUEST_METHOD]: known ? req.method : '_OTHER',
    [ATTR_SERVER_ADDRESS]: hasPort ? hostPort.slice(0, colon) : hostPort,
    [ATTR_NETWORK_PROTOCOL_VERSION]: req.origProto === 'HTTP/2' ? '2' : '1.1',
  };
  if (!known) a['http.request.method_original'] = req.method;
  if (hasPort) a[ATTR_SERVER_PORT] = Number(hostPort.slice(colon + 1));
  if (kind === 'client') a[ATTR_URL_FULL] = `${req.scheme}://${redactAuthority(req.authority)}${redactQuery(req.path)}`; // no credential of the query string in a span
  else {
    const q = req.path.indexOf('?');
    a[ATTR_URL_PATH] = q < 0 ? req.path : req.path.slice(0, q);
    a[ATTR_URL_SCHEME] = req.scheme;
    a[ATTR_CLIENT_ADDRESS] = req.source.address;
  }
  if (grpc) {
    const path = rpcPath(req.path);
    const slash = path.lastIndexOf('/');
    // rpc.system / rpc.service / rpc.grpc.status_code: the RPC conventions' gRPC attributes
    // (semantic-conventions 1.2x; later versions rename them rpc.system.name and rpc.response.status_code).
    a['rpc.system'] = 'grpc';
    a['rpc.service'] = path.slice(1, slash);
    a[ATTR_RPC_METHOD] = path.slice(slash + 1);
  }
  return a;
}

/** Peer identities, the upstream endpoint and the attempts: known once the layers below have run. */
function endAttributes(t: MeshTracer, span: Span, req: ProxyRequest, kind: 'client' | 'server'): void {
  if (kind === 'server') {
    span.setAttribute('wren.source.principal', req.source.identity);
    span.setAttribute('wren.destination.principal', t.selfIdentity());
    if (req.targetPort !== undefined) span.setAttribute('wren.upstream.address', `${t.appAddress}:${req.targetPort}`);
    return;
  }
  span.setAttribute('wren.source.principal', t.selfIdentity());
  // The last attempt's endpoint (a retry's is on the state, not on the first attempt's request), as wren.upstream.address.
  const ep = endpointOf(req);
  if (ep?.identity) span.setAttribute('wren.destination.principal', ep.identity);
  if (req.route) span.setAttribute('wren.destination.service', `${req.route.service.name}.${req.route.service.namespace}`);
  const tried = stateOf(req)?.tried;
  if (tried && tried.size > 0) {
    span.setAttribute('wren.upstream.address', tried.last()!);
    span.setAttribute('wren.attempts', tried.size);
  }
}

/** gRPC status codes that make a server span an error (RPC conventions, gRPC: "status codes ... considered errors on the server side"). */
const GRPC_SERVER_ERRORS = new Set([2, 4, 12, 13, 14, 15]);

function finish(span: Span, kind: 'client' | 'server', res: ProxyResponse, grpc: boolean, err: Error | undefined): void {
  if (err) {
    span.setStatus({ code: SPAN_STATUS_ERROR, message: err.message });
    span.setAttribute(ATTR_ERROR_TYPE, res.proxyError ?? 'aborted');
    return;
  }
  if (grpc) {
    const g = header(res.headers, 'grpc-status') ?? header(res.trailers() ?? {}, 'grpc-status');
    if (g !== undefined) {
      const code = Number(g);
      span.setAttribute('rpc.grpc.status_code', code);
      if (code !== 0 && (kind === 'client' || GRPC_SERVER_ERRORS.has(code))) {
        span.setStatus({ code: SPAN_STATUS_ERROR });
        span.setAttribute(ATTR_ERROR_TYPE, res.proxyError ?? String(code));
      }
      return;
    }
  }
  if (res.status >= 500 || (kind === 'client' && res.status >= 400)) {
    span.setStatus({ code: SPAN_STATUS_ERROR });
    span.setAttribute(ATTR_ERROR_TYPE, res.proxyError ?? String(res.status));
  }
}
