import type { RetryPolicy, Service, ServicePort, TrafficPolicy } from '../../contract/model.js';
import { portPolicy } from '../../contract/model.js';
import type { BackendTarget, HeaderModifier, PathModifier, RouteBackend, RouteFilter, RouteRule, ServiceRoute } from '../../contract/routes.js';
import { RouteMatcher } from './route-matcher.js';

/** Where a request is re-targeted: a service port the mesh knows (its cluster, policy and balancer). */
export interface Target {
  readonly service: Service;
  readonly port: ServicePort;
}

export interface Redirect {
  readonly scheme: 'http' | 'https' | undefined;
  readonly hostname: string | undefined;
  readonly port: number | undefined;
  readonly path: PathModifier | undefined;
  readonly statusCode: number;
}

export interface Mirror {
  /** null: the mirror's service or port is unknown (counted as failed, never sent). */
  readonly target: Target | null;
  readonly name: string;
  readonly percent: number;
}

/** The filters of a rule or of one backend, split by kind once so the data path tests fields, not lists. */
export interface CompiledFilters {
  readonly requestHeaders: HeaderModifier | null;
  readonly responseHeaders: HeaderModifier | null;
  readonly redirect: Redirect | null;
  readonly rewrite: { readonly hostname: string | undefined; readonly path: PathModifier | undefined } | null;
  readonly mirrors: readonly Mirror[];
  readonly any: boolean;
}

export interface CompiledBackend {
  readonly backend: RouteBackend;
  /** null: invalid (unresolved ref, unknown service or port): requests picked for it get the spec's 500. */
  readonly target: Target | null;
  readonly invalid: string;
  readonly filters: CompiledFilters;
}

export interface CompiledRule {
  readonly route: ServiceRoute;
  readonly rule: RouteRule;
  readonly ruleIndex: number;
  /** The access log's route_name and the metrics' rule: `namespace.route.rule` (the rule's name, else its index). */
  readonly name: string;
  readonly filters: CompiledFilters;
  readonly backends: readonly CompiledBackend[];
  /** Cumulative weights, for one random draw per request. */
  readonly cumulative: readonly number[];
  readonly totalWeight: number;
}

/** Everything the routing layer needs for one (service, port) with routes. */
export interface PortRouting {
  readonly routes: readonly ServiceRoute[];
  readonly matcher: RouteMatcher<CompiledRule>;
}

export type ServiceLookup = (name: string, namespace: string) => Service | undefined;

const NO_FILTERS: CompiledFilters = Object.freeze({ requestHeaders: null, responseHeaders: null, redirect: null, rewrite: null, mirrors: Object.freeze([]), any: false });

function resolve(t: BackendTarget, lookup: ServiceLookup): Target | null {
  const service = lookup(t.name, t.namespace);
  const port = service?.ports.find((p) => p.port === t.port);
  return service && port ? Object.freeze({ service, port }) : null;
}

function compileFilters(fs: readonly RouteFilter[], lookup: ServiceLookup): CompiledFilters {
  if (fs.length === 0) return NO_FILTERS;
  let requestHeaders: HeaderModifier | null = null;
  let responseHeaders: HeaderModifier | null = null;
  let redirect: Redirect | null = null;
  let rewrite: CompiledFilters['rewrite'] = null;
  const mirrors: Mirror[] = [];
  for (const f of fs) {
    if (f.type === 'RequestHeaderModifier') requestHeaders = f.requestHeaderModifier;
    else if (f.type === 'ResponseHeaderModifier') responseHeaders = f.responseHeaderModifier;
    else if (f.type === 'RequestRedirect') {
      const r = f.requestRedirect;
      redirect = { scheme: r.scheme, hostname: r.hostname, port: r.port, path: r.path, statusCode: r.statusCode };
    } else if (f.type === 'URLRewrite') rewrite = { hostname: f.urlRewrite.hostname, path: f.urlRewrite.path };
    else {
      const b = f.requestMirror.backend;
      mirrors.push({ target: resolve(b, lookup), name: `${b.name}.${b.namespace}:${b.port}`, percent: f.requestMirror.percent });
    }
  }
  return Object.freeze({ requestHeaders, responseHeaders, redirect, rewrite, mirrors: Object.freeze(mirrors), any: true });
}

/**
 * What an HTTPRoute rule's `retry` retries besides its `codes` (HTTPRouteRetry, GEP-1731):
 * "Implementations SHOULD retry when a retry stanza is configured and the connection could
 * not be established (...), or the backend explicitly rejected the request before
 * processing it (e.g., HTTP/2 REFUSED_STREAM, gRPC UNAVAILABLE)", and a try that reached
 * the BackendRequest timeout "SHOULD be canceled ... and the Gateway SHOULD schedule the
 * next retry attempt" ("the retry-on-timeout behaviour as a default"). Istio compiles a
 * rule retry to Envoy's `connect-failure,refused-stream,unavailable,cancelled,
 * retriable-status-codes`; `per-try-timeout` is the timeout (classify.ts). Not `reset`: a
 * connection reset after the request was sent may follow its processing, which the GEP says
 * not to retry by default. Idempotency is the policy's as ever (retryNonIdempotent false).
 */
const RULE_RETRY_ON = Object.freeze(['connect-failure', 'refused-stream', 'unavailable', 'cancelled', 'per-try-timeout'] as const);

/**
 * The rule's `timeouts` and `retry` in force instead of the backend port's TrafficPolicy
 * ones (HTTPRouteTimeouts: `request` bounds the whole request, retries included; the
 * `backendRequest` one try; HTTPRouteRetry: attempts = retries, codes, backoff as a floor,
 * and the failures of RULE_RETRY_ON). Carried as a derived port object whose `policy` the
 * resilience layers read through portPolicy(), so they need no change; the cluster is
 * found by name, so it is the backend's own.
 */
function withRuleOverrides(t: Target, rule: RouteRule): Target {
  const { requestMs, backendRequestMs } = rule.timeouts;
  if (requestMs === 0 && backendRequestMs === 0 && rule.retry === undefined) return t;
  const base: TrafficPolicy = portPolicy(t.service, t.port);
  let retry: RetryPolicy = backendRequestMs > 0 ? { ...base.retry, perTryTimeoutMs: backendRequestMs } : base.retry;
  if (rule.retry) {
    const r = rule.retry;
    retry = {
      ...retry,
      retryOn: r.codes.length > 0 ? [...RULE_RETRY_ON, 'retriable-status-codes'] : RULE_RETRY_ON,
      retriableStatusCodes: r.codes,
      attempts: r.attempts,
      // The cluster's jittered backoff still applies (its own policy); the rule's is a floor under it.
      ...(r.backoffMs > 0 ? { minBackoffMs: r.backoffMs } : {}),
    };
  }
  const timeouts =
    requestMs > 0 || backendRequestMs > 0
      ? Object.freeze({ ...base.timeouts, ...(requestMs > 0 ? { requestMs } : {}), ...(backendRequestMs > 0 ? { backendRequestMs } : {}) })
      : base.timeouts;
  const policy: TrafficPolicy = Object.freeze({ ...base, retry: Object.freeze(retry), timeouts });
  return Object.freeze({ service: t.service, port: Object.freeze({ ...t.port, policy }) });
}

function compileRule(route: ServiceRoute, rule: RouteRule, ruleIndex: number, lookup: ServiceLookup): CompiledRule {
  const backends = rule.backends.map((b): CompiledBackend => {
    const resolved = b.invalid === '' ? resolve(b, lookup) : null;
    const invalid = b.invalid !== '' ? b.invalid : resolved === null ? `no service port ${b.name}.${b.namespace}:${b.port}` : '';
    return Object.freeze({ backend: b, target: resolved && withRuleOverrides(resolved, rule), invalid, filters: compileFilters(b.filters, lookup) });
  });
  let total = 0;
  const cumulative = backends.map((b) => (total += b.backend.weight));
  return Object.freeze({
    route, rule, ruleIndex,
    name: `${route.namespace}.${route.name}.${rule.name || ruleIndex}`,
    filters: compileFilters(rule.filters, lookup),
    backends: Object.freeze(backends),
    cumulative: Object.freeze(cumulative),
    totalWeight: total,
  });
}

/**
 * The routes of a service that apply on one of its ports (a route whose `ports` is empty
 * applies on every port; GEP-1426: a parentRef with a port attaches to that port only),
 * compiled; undefined when none apply (the port routes by authority alone, at no cost).
 */
export function compilePortRouting(service: Service, port: ServicePort, lookup: ServiceLookup): PortRouting | undefined {
  const routes = (service.routes ?? []).filter((r) => r.ports.length === 0 || r.ports.includes(port.port));
  if (routes.length === 0) return undefined;
  const rules = routes.map((r) => r.rules.map((rule, i) => compileRule(r, rule, i, lookup)));
  return Object.freeze({ routes: Object.freeze(routes), matcher: new RouteMatcher(routes, rules) });
}

/** The backend a random draw in [0, 1) picks by weight; null when every weight is 0. */
export function pickBackend(rule: CompiledRule, draw: number): CompiledBackend | null {
  if (rule.totalWeight <= 0) return null;
  const x = draw * rule.totalWeight;
  const c = rule.cumulative;
  for (let i = 0; i < c.length; i++) if (x < c[i]) return rule.backends[i];
  return rule.backends[c.length - 1];
}
