import type { RouteTable } from '../outbound/route-table.js';
import type { Headers } from '../http/headers.js';
import { isGrpc } from '../http/headers.js';
import type { CompiledFilters, CompiledRule } from './port-routing.js';
import { redirectLocation } from './filters.js';

/** What /debug/route is asked: a request as the outbound side would see it. */
export interface RouteQuery {
  readonly authority: string;
  readonly path: string;
  readonly method: string;
  readonly headers: Headers;
}

const ruleName = (r: CompiledRule): string => r.rule.name || `rules[${r.ruleIndex}]`;

function filterNames(f: CompiledFilters): string[] {
  const out: string[] = [];
  if (f.requestHeaders) out.push('RequestHeaderModifier');
  if (f.responseHeaders) out.push('ResponseHeaderModifier');
  if (f.redirect) out.push('RequestRedirect');
  if (f.rewrite) out.push('URLRewrite');
  for (const m of f.mirrors) out.push(`RequestMirror(${m.name}, ${m.percent}%${m.target ? '' : ', unknown target'})`);
  return out;
}

/**
 * The admin port's /debug/route (docs/traffic-management.md): which service port the
 * authority names, which route, rule and match a request would take, why every candidate
 * of higher precedence lost, the backends with their weights and share, and the filters
 * that would apply. It runs the data path's own matcher (the RouteTable in force), so
 * what it says is what the proxy does. Returns [HTTP status, JSON body].
 */
export function explainRoute(table: RouteTable, q: RouteQuery): [number, unknown] {
  if (q.authority === '') return [400, { error: 'authority is required: /debug/route?authority=svc.ns:port&path=/x&method=GET&header=name:value' }];
  if (!q.path.startsWith('/')) return [400, { error: `path must start with "/", got ${JSON.stringify(q.path)}` }];
  const req = { method: q.method, path: q.path, headers: q.headers, authority: q.authority };
  const target = table.byAuthority(q.authority);
  if (!target) return [404, { request: req, authority: q.authority, result: 'no-route', reason: 'no service matches the authority (404 NR)' }];
  const service = `${target.service.name}.${target.service.namespace}`;
  const base = { request: req, authority: q.authority, service, port: target.port.port };
  const pr = table.routingOf(target.port);
  if (!pr) return [200, { ...base, result: 'forward', reason: 'the service port has no HTTPRoute or GRPCRoute: routed by authority to the service itself' }];
  const grpc = isGrpc(q.headers);
  const ex = pr.matcher.explain(req, grpc);
  let winner = -1;
  const candidates = ex.results.map((r, i) => {
    const c = r.candidate;
    let outcome: string;
    if (winner >= 0) outcome = 'not evaluated: a match of higher precedence won';
    else if (r.mismatch === null) {
      winner = i;
      outcome = 'matched';
    } else outcome = `lost: ${r.mismatch} does not match`;
    return { route: `${c.route.namespace}/${c.route.name}`, kind: c.route.kind, rule: ruleName(c.rule), matchIndex: c.matchIndex, match: c.match, outcome };
  });
  if (winner < 0) return [200, { ...base, kind: ex.kind, result: 'not-matched', reason: 'no rule matches: 404 route-not-matched (grpc-status 12)', candidates }];
  const c = ex.results[winner].candidate;
  const rule = c.rule;
  const f = rule.filters;
  const matched = { route: `${c.route.namespace}/${c.route.name}`, rule: ruleName(rule), routeName: rule.name, matchIndex: c.matchIndex, match: c.match };
  if (f.redirect) {
    const location = redirectLocation(f.redirect, { scheme: 'http', authority: q.authority, path: q.path }, target.port.port, c.prefix);
    return [200, { ...base, kind: ex.kind, result: 'redirect', status: f.redirect.statusCode, location, matched, filters: filterNames(f), candidates }];
  }
  const backends = rule.backends.map((b) => ({
    backend: `${b.backend.name}.${b.backend.namespace}:${b.backend.port}`,
    weight: b.backend.weight,
    share: rule.totalWeight > 0 ? b.backend.weight / rule.totalWeight : 0,
    ...(b.invalid ? { invalid: `${b.invalid} (500 route-backend-invalid)` } : {}),
    filters: filterNames(b.filters),
  }));
  const ok = rule.backends.some((b) => b.target !== null && b.backend.weight > 0);
  return [200, {
    ...base, kind: ex.kind, result: ok ? 'forward' : 'backend-invalid', matched, backends, filters: filterNames(f),
    timeouts: rule.rule.timeouts, ...(rule.rule.retry ? { retry: rule.rule.retry } : {}), candidates,
  }];
}
