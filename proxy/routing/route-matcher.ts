import type { RouteMatch, ServiceRoute, ValueMatch } from '../../contract/routes.js';
import { anchored } from '../../contract/parse-routes.js';
import { requestField, type Headers } from '../http/headers.js';

/**
 * The match side of HTTPRoute / GRPCRoute for one (service, port), compiled once per
 * RouteTable (immutable, regexes precompiled). Every match of every rule of every route
 * is one candidate; candidates are sorted, stably, by the spec's precedence and the first
 * that matches wins, which is exactly "across all rules of all routes, precedence to the
 * match having ..., then the oldest route, then `namespace/name`, then the first rule"
 * (HTTPRouteRule.matches, GRPCRouteRule.matches in the v1.6.1 CRDs): the control plane
 * hands the routes over in tie-break order, and a stable sort keeps it.
 *
 * HTTPRoute: Exact path > RegularExpression path (longer pattern first) > PathPrefix
 * (longer prefix first) > method > more header matches > more query matches. Where a
 * RegularExpression path ranks is implementation-specific in the spec; Wren puts it
 * between Exact and PathPrefix as Istio and Envoy Gateway do, so a catch-all PathPrefix
 * "/" never hides a regex rule.
 * GRPCRoute: more characters in the matched service > in the method > more header matches
 * (hostnames do not apply to mesh routes).
 *
 * Per request: a few string comparisons; no allocation unless a regex or query-param
 * match is reached (the path without its query, URLSearchParams once).
 */
export interface Candidate<R> {
  readonly rule: R;
  readonly route: ServiceRoute;
  readonly routeIndex: number;
  readonly ruleIndex: number;
  readonly matchIndex: number;
  readonly match: RouteMatch;
  /** HTTP: 3 Exact, 2 RegularExpression, 1 PathPrefix. */
  readonly pathRank: number;
  readonly pathLength: number;
  /** PathPrefix without its trailing '/' ('' = every path). */
  readonly prefix: string;
  readonly pathRe: RegExp | null;
  readonly method: string | undefined;
  readonly headers: readonly CompiledValue[];
  readonly query: readonly CompiledValue[];
  readonly grpcService: CompiledPart | null;
  readonly grpcMethod: CompiledPart | null;
}

interface CompiledValue {
  readonly name: string;
  readonly exact: string;
  readonly re: RegExp | null;
}

interface CompiledPart {
  readonly exact: string;
  readonly re: RegExp | null;
}

/** What a request offers to the matcher (the ProxyRequest fields it reads). */
export interface MatchInput {
  readonly method: string;
  readonly path: string;
  readonly headers: Headers;
  /**
   * The request's Host (HTTP/1.1, or the absolute-form target's authority) or `:authority`
   * (HTTP/2), which the listeners keep here and not in `headers`: a header match on `host`
   * reads it ('' = none).
   */
  readonly authority: string;
}

const compileValue = (v: ValueMatch): CompiledValue => ({ name: v.name, exact: v.value, re: v.type === 'RegularExpression' ? anchored(v.value) : null });
const compilePart = (type: 'Exact' | 'RegularExpression', v: string): CompiledPart | null => (v === '' ? null : { exact: v, re: type === 'RegularExpression' ? anchored(v) : null });

function candidate<R>(rule: R, route: ServiceRoute, routeIndex: number, ruleIndex: number, matchIndex: number, m: RouteMatch): Candidate<R> {
  const p = m.path;
  const type = p?.type ?? 'PathPrefix';
  const value = p?.value ?? '/';
  return Object.freeze({
    rule, route, routeIndex, ruleIndex, matchIndex, match: m,
    pathRank: route.kind === 'GRPCRoute' ? 0 : type === 'Exact' ? 3 : type === 'RegularExpression' ? 2 : 1,
    pathLength: route.kind === 'GRPCRoute' ? 0 : value.length,
    // The spec: "a trailing `/` is ignored": /abc/ matches /abc, /abc/ and /abc/def.
    prefix: type === 'PathPrefix' ? value.replace(/\/+$/, '') : '',
    pathRe: type === 'RegularExpression' ? anchored(value) : null,
    method: m.method,
    headers: m.headers.map(compileValue),
    query: m.queryParams.map(compileValue),
    grpcService: m.grpc ? compilePart(m.grpc.type, m.grpc.service) : null,
    grpcMethod: m.grpc ? compilePart(m.grpc.type, m.grpc.method) : null,
  });
}

/** Negative when `a` takes precedence over `b`; 0 on a tie (the stable sort keeps the given order). */
export function comparePrecedence(a: Candidate<unknown>, b: Candidate<unknown>): number {
  if (a.route.kind === 'GRPCRoute')
    return (b.grpcService?.exact.length ?? 0) - (a.grpcService?.exact.length ?? 0) || (b.grpcMethod?.exact.length ?? 0) - (a.grpcMethod?.exact.length ?? 0) || b.headers.length - a.headers.length;
  return (
    b.pathRank - a.pathRank ||
    b.pathLength - a.pathLength ||
    (b.method !== undefined ? 1 : 0) - (a.method !== undefined ? 1 : 0) ||
    b.headers.length - a.headers.length ||
    b.query.length - a.query.length
  );
}

/** Why a candidate does not match (for /debug/route); null = it matches. */
export type Mismatch = 'path' | 'method' | 'grpc-service' | 'grpc-method' | `header ${string}` | `query ${string}`;

export class RouteMatcher<R> {
  /** HTTPRoute candidates, then GRPCRoute ones: the two kinds are never merged (GRPCRoute spec). */
  readonly http: readonly Candidate<R>[];
  readonly grpc: readonly Candidate<R>[];

  /** `rules[i][j]` is what the caller compiled for route i's rule j. */
  constructor(routes: readonly ServiceRoute[], rules: readonly (readonly R[])[]) {
    const http: Candidate<R>[] = [];
    const grpc: Candidate<R>[] = [];
    routes.forEach((route, ri) =>
      route.rules.forEach((rule, ki) =>
        rule.matches.forEach((m, mi) => (route.kind === 'GRPCRoute' ? grpc : http).push(candidate(rules[ri][ki], route, ri, ki, mi, m))),
      ),
    );
    this.http = Object.freeze(http.sort(comparePrecedence));
    this.grpc = Object.freeze(grpc.sort(comparePrecedence));
  }

  /**
   * The winning candidate, or null (no rule matches: the spec's 404). A gRPC request is
   * matched against the GRPCRoutes when the port has any, else against the HTTPRoutes;
   * other requests against the HTTPRoutes.
   */
  match(req: MatchInput, grpc: boolean): Candidate<R> | null {
    const list = grpc && this.grpc.length > 0 ? this.grpc : this.http;
    let query: URLSearchParams | null = null;
    for (let i = 0; i < list.length; i++) {
      const c = list[i];
      if (c.query.length > 0 && query === null) query = queryOf(req.path);
      if (mismatch(c, req, query) === null) return c;
    }
    return null;
  }

  /** Every candidate in precedence order with why it lost (for /debug/route; not the hot path). */
  explain(req: MatchInput, grpc: boolean): { readonly kind: 'HTTPRoute' | 'GRPCRoute'; readonly results: readonly { readonly candidate: Candidate<R>; readonly mismatch: Mismatch | null }[] } {
    const useGrpc = grpc && this.grpc.length > 0;
    const query = queryOf(req.path);
    return { kind: useGrpc ? 'GRPCRoute' : 'HTTPRoute', results: (useGrpc ? this.grpc : this.http).map((c) => ({ candidate: c, mismatch: mismatch(c, req, query) })) };
  }
}

function queryOf(path: string): URLSearchParams {
  const q = path.indexOf('?');
  return new URLSearchParams(q < 0 ? '' : path.slice(q + 1));
}

/** The request's path without its query (a slice only when there is a query). */
const bare = (path: string): string => {
  const q = path.indexOf('?');
  return q < 0 ? path : path.slice(0, q);
};

function mismatch(c: Candidate<unknown>, req: MatchInput, query: URLSearchParams | null): Mismatch | null {
  const path = req.path;
  if (c.route.kind === 'GRPCRoute') {
    if (c.grpcService !== null || c.grpcMethod !== null) {
      // gRPC's :path is /package.Service/Method (gRPC over HTTP/2, "Path").
      const p = bare(path);
      const slash = p.lastIndexOf('/');
      if (slash <= 0) return c.grpcService ? 'grpc-service' : 'grpc-method';
      if (c.grpcService && !partMatches(c.grpcService, p.slice(1, slash))) return 'grpc-service';
      if (c.grpcMethod && !partMatches(c.grpcMethod, p.slice(slash + 1))) return 'grpc-method';
    }
  } else {
    if (!pathMatches(c, path)) return 'path';
    if (c.method !== undefined && c.method !== req.method) return 'method';
  }
  for (let i = 0; i < c.headers.length; i++) {
    const h = c.headers[i];
    // `host` is the authority (a rule matching on Host took no request before); own fields
    // only otherwise (a match on `constructor` must not find Object.prototype's). Names are lower-case.
    const raw = requestField(req, h.name);
    // Repeated fields compare as one comma-joined value (RFC 9110 section 5.3), as Envoy does.
    const v = raw === undefined ? undefined : typeof raw === 'string' ? raw : raw.join(',');
    if (v === undefined || !valueMatches(h, v)) return `header ${h.name}`;
  }
  for (let i = 0; i < c.query.length; i++) {
    const q = c.query[i];
    // The spec: only the first entry of a repeated parameter is considered.
    const v = query?.get(q.name) ?? null;
    if (v === null || !valueMatches(q, v)) return `query ${q.name}`;
  }
  return null;
}

function pathMatches(c: Candidate<unknown>, path: string): boolean {
  const q = path.indexOf('?');
  const end = q < 0 ? path.length : q;
  if (c.pathRank === 3) return end === c.pathLength && path.startsWith(c.match.path!.value);
  if (c.pathRe !== null) return c.pathRe.test(q < 0 ? path : path.slice(0, q));
  // PathPrefix matches whole segments: /foo matches /foo and /foo/bar, not /foobar.
  const p = c.prefix;
  if (p.length === 0) return true;
  if (end < p.length || !path.startsWith(p)) return false;
  return end === p.length || path.charCodeAt(p.length) === 47 /* '/' */;
}

const valueMatches = (m: CompiledValue, v: string): boolean => (m.re !== null ? m.re.test(v) : m.exact === v);
const partMatches = (m: CompiledPart, v: string): boolean => (m.re !== null ? m.re.test(v) : m.exact === v);
