import type { HttpLayer, HttpService, ProxyRequest, ProxyResponse } from '../http/exchange.js';
import { ProxyError } from '../errors/proxy-error.js';
import type { RouteTable } from '../outbound/route-table.js';
import type { Random } from '../../common/clock.js';
import { isGrpc } from '../http/headers.js';
import { pickBackend, type CompiledFilters, type CompiledRule, type PortRouting } from '../routing/port-routing.js';
import type { HeaderModifier } from '../../contract/routes.js';
import type { Candidate } from '../routing/route-matcher.js';
import { modifyHeaders, modifyPath, redirectLocation } from '../routing/filters.js';
import { mirrorRequest, type MirrorDeps } from '../routing/mirror.js';
import { normalizeRequestTarget } from '../http/normalize-path.js';

export interface RouteRulesDeps {
  readonly routes: () => RouteTable;
  /** The weighted backend draw (injected: seeded in tests). */
  readonly random: Random;
  readonly mirror: MirrorDeps;
}

/**
 * HTTPRoute / GRPCRoute rules (docs/traffic-management.md, In the proxy), right after
 * route-by-authority: when the addressed service port has routes, the request must match
 * a rule (else ROUTE_NOT_MATCHED, the spec's 404), a backend is drawn by weight (an
 * invalid, weight-0 or missing one: ROUTE_BACKEND_INVALID, the spec's 500 / UNAVAILABLE),
 * the rule's and then the backend's filters apply, and the request is re-targeted at the
 * backend's service port: the layers below (admission, timeouts, retry, pick-endpoint) use
 * its cluster, limits, balancer and policy, with the rule's timeouts and retry in force.
 *
 * A port without routes, and a request pinned to one endpoint (a pod IP: routes attach to
 * the Service, not to its pods), pass straight through: one map lookup.
 *
 * The request is rewritten in place (headers, path, authority, route), not copied: the
 * layers above (access log, metrics, trace) hold this object and must see where it went;
 * its original path is kept for the access log (Envoy's X-ENVOY-ORIGINAL-PATH).
 */
export const routeRules =
  (d: RouteRulesDeps): HttpLayer =>
  (inner) =>
  (req) => {
    const r = req.route;
    if (r === undefined || r.endpoint !== undefined) return inner(req);
    const pr = d.routes().routingOf(r.port);
    if (pr === undefined) return inner(req);
    return routed(d, pr, req, inner);
  };

/**
 * Not async: a routed request without response filters costs no promise or closure of its
 * own (the inner service's promise is returned as is).
 */
function routed(d: RouteRulesDeps, pr: PortRouting, req: ProxyRequest, inner: HttpService): Promise<ProxyResponse> {
  const servicePort = req.route!.port.port;
  // Rules match the path the peer's inbound hands the app (it normalizes: normalize-path.ts),
  // as Envoy routes after normalize_path (Istio's BASE): `/./admin`, `/%61dmin` and
  // `/x/../admin` take the `/admin` rule, not a catch-all that would deliver `/admin` to
  // another backend. Sent on normalized; the access log keeps what the app sent.
  if (req.method !== 'CONNECT' || req.path.charCodeAt(0) === 0x2f) {
    const p = normalizeRequestTarget(req.method, req.path);
    if (p === null) throw new ProxyError('BAD_REQUEST', 'the request-target is none of RFC 9112 section 3.2 forms');
    if (p !== req.path) {
      if (req.originalPath === undefined) req.originalPath = req.path;
      (req as { path: string }).path = p;
    }
  }
  const c = pr.matcher.match(req, isGrpc(req.headers));
  // The detail names the service port, not the path: the message is the client's response body, and a path may carry a query's secrets.
  if (c === null) throw new ProxyError('ROUTE_NOT_MATCHED', `${req.route!.service.name}.${req.route!.service.namespace}:${servicePort}`);
  const rule = c.rule;
  req.routeName = rule.name;
  const f = rule.filters;
  if (f.redirect !== null) {
    const res: ProxyResponse = {
      status: f.redirect.statusCode,
      headers: { location: redirectLocation(f.redirect, req, servicePort, c.prefix), 'content-length': '0' },
      body: null,
      trailers: () => undefined,
    };
    if (f.responseHeaders !== null) modifyHeaders(res.headers, f.responseHeaders);
    return Promise.resolve(res);
  }
  const b = pickBackend(rule, d.random());
  if (b === null || b.target === null)
    throw new ProxyError('ROUTE_BACKEND_INVALID', `${rule.name}: ${b !== null ? b.invalid : rule.backends.length > 0 ? 'every backend has weight 0' : 'no backends'}`);
  if (f.any) applyRequestFilters(req, f, c);
  if (b.filters.any) applyRequestFilters(req, b.filters, c);
  req.route = b.target;
  if (f.mirrors.length > 0) for (const m of f.mirrors) mirrorRequest(d.mirror, req, m, inner);
  if (b.filters.mirrors.length > 0) for (const m of b.filters.mirrors) mirrorRequest(d.mirror, req, m, inner);
  // The backend's response (errors below surface as ProxyErrors, answered above by errors-to-response from the one table).
  if (f.responseHeaders === null && b.filters.responseHeaders === null) return inner(req);
  return inner(req).then(new ResponseFilters(f.responseHeaders, b.filters.responseHeaders).apply);
}

/** The rule's, then the backend's ResponseHeaderModifier, on the backend's response. */
class ResponseFilters {
  constructor(
    private readonly rule: HeaderModifier | null,
    private readonly backend: HeaderModifier | null,
  ) {}

  readonly apply = (res: ProxyResponse): ProxyResponse => {
    if (this.rule !== null) modifyHeaders(res.headers, this.rule);
    if (this.backend !== null) modifyHeaders(res.headers, this.backend);
    return res;
  };
}

function applyRequestFilters(req: ProxyRequest, f: CompiledFilters, c: Candidate<CompiledRule>): void {
  if (f.requestHeaders !== null) modifyHeaders(req.headers, f.requestHeaders);
  const rw = f.rewrite;
  if (rw === null) return;
  if (rw.hostname !== undefined) req.authority = rw.hostname;
  if (rw.path !== undefined) {
    if (req.originalPath === undefined) req.originalPath = req.path;
    (req as { path: string }).path = modifyPath(req.path, rw.path, c.prefix);
  }
}
