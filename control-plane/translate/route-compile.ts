import type { RouteBackend, RouteFilter, RouteMatch, RouteRule, ServiceRoute } from '../../contract/routes.js';
import { parseServiceRoute } from '../../contract/parse-routes.js';
import { GATEWAY_GROUP, type KBackendRef, type KFilter, type KParentRef, type KReferenceGrant, type KRoute, type KRouteRule } from './route-objects.js';

/**
 * HTTPRoute / GRPCRoute objects -> the compiled routes of contract/routes.ts, as a pure
 * function (no I/O, no clock): both sources call it after any route, ReferenceGrant or
 * Service change, and the Kubernetes source writes the returned statuses back.
 *
 * - Only parentRefs with group "" (or "core") and kind Service are the mesh's (GAMMA,
 *   GEP-1426); a route whose parents are all Gateways is not ours and gets no status.
 * - A route in the Service's namespace is a producer route; one in another namespace is a
 *   consumer route, in force only for callers in the route's own namespace, and there it
 *   replaces the producer routes for that Service (GEP-1294). Routes.ts documents the
 *   per-subscriber pick (routesFor below).
 * - Ties: oldest creationTimestamp first, then namespace/name (the HTTPRoute spec's rule
 *   precedence); the proxy flattens rules in this order.
 * - parentRef.port (or sectionName, a Service port's name) limits the route to that port;
 *   none means every port. A port or sectionName the Service does not have, or a Service
 *   that does not exist: Accepted=False NoMatchingParent, and the route is not in force there.
 * - `hostnames` is ignored for Service parents: GEP-1426 says mesh implementations infer no
 *   functionality from it (the Service the request is addressed to selects the routes;
 *   the conformance case MeshFrontendHostname checks exactly that).
 * - backendRefs: only kind Service (group ""/core) is supported (else 'InvalidKind'); a
 *   missing Service or port: 'BackendNotFound'; another namespace without a ReferenceGrant
 *   there that allows it: 'RefNotPermitted'. Such a backend stays in the rule with `invalid`
 *   set (its share of requests gets the spec's 500) and ResolvedRefs=False says why.
 *   A RequestMirror whose backend does not resolve is dropped (nothing to copy to) and
 *   reported the same way.
 * - ExtensionRef and CORS filters are not implemented: "Unknown values here must result in
 *   the implementation setting the Accepted Condition for the Route to `status: False`, with
 *   a Reason of `UnsupportedValue`" (HTTPRouteFilter.type); the route is then not in force.
 * - ONE validator: what a route compiles to is run through the proxy's own route parser
 *   (contract/parse-routes.ts) before it goes in the view. A route the proxies would refuse
 *   (a regex outside RE2, Host in a header filter, a header value outside Latin-1: valid
 *   for the CRD, not servable) is Accepted=False UnsupportedValue with the field path and
 *   its last accepted version (`lastGood`) stays in force; with none it is not in force.
 *   Pushing it would make every proxy NACK its whole configuration (Istio validates RE2
 *   and header names in istiod before pushing for the same reason).
 */
export const CONTROLLER_NAME = 'wren.io/mesh';

export interface ServicePortsLookup {
  (namespace: string, name: string): { readonly ports: readonly { readonly name: string; readonly port: number }[] } | undefined;
}

export interface ServiceRoutes {
  /** Routes in the Service's namespace. */
  readonly producer: readonly ServiceRoute[];
  /** Caller namespace -> the consumer routes declared there for this Service. */
  readonly consumers: ReadonlyMap<string, readonly ServiceRoute[]>;
}

export interface RouteView {
  /** Service key (`name.namespace`) -> its routes. */
  readonly byService: ReadonlyMap<string, ServiceRoutes>;
  /** Namespaces with at least one consumer route (subscribers elsewhere all see the same lists). */
  readonly consumerNamespaces: ReadonlySet<string>;
}

export const EMPTY_ROUTE_VIEW: RouteView = Object.freeze({ byService: new Map(), consumerNamespaces: new Set<string>() });

export interface Condition {
  readonly type: 'Accepted' | 'ResolvedRefs';
  readonly status: 'True' | 'False';
  readonly reason: string;
  readonly message: string;
  readonly observedGeneration: number;
}

export interface RouteParentStatus {
  readonly parentRef: Readonly<Record<string, unknown>>;
  readonly controllerName: string;
  readonly conditions: readonly Condition[];
}

export interface RouteStatus {
  readonly route: KRoute;
  readonly parents: readonly RouteParentStatus[];
}

export interface CompiledRoutes {
  readonly view: RouteView;
  /** By `kind/namespace/name`, for every route with at least one Service parent. */
  readonly statuses: ReadonlyMap<string, RouteStatus>;
  /** By key: the version of each route the proxies accept (the next compile's `lastGood`). */
  readonly accepted: ReadonlyMap<string, KRoute>;
  /** By key: routes whose current version the proxies would refuse, and why (field path: problem). */
  readonly refused: ReadonlyMap<string, string>;
}

export const routeKey = (r: { kind: string; namespace: string; name: string }): string => `${r.kind}/${r.namespace}/${r.name}`;
const svcKey = (ns: string, name: string): string => `${name}.${ns}`;
const isCore = (group: string): boolean => group === '' || group === 'core';
export const isServiceParent = (p: KParentRef): boolean => isCore(p.group) && p.kind === 'Service';

/** The routes one subscriber gets for a Service: its namespace's consumer routes if any, else the producer routes. */
export function routesFor(view: RouteView, service: string, subscriberNamespace: string): readonly ServiceRoute[] {
  const r = view.byService.get(service);
  if (!r) return [];
  return r.consumers.get(subscriberNamespace) ?? r.producer;
}

const oldestFirst = (a: KRoute, b: KRoute): number => {
  if (a.createdAt !== b.createdAt) return a.createdAt < b.createdAt ? -1 : 1;
  const x = `${a.namespace}/${a.name}`;
  const y = `${b.namespace}/${b.name}`;
  return x < y ? -1 : x > y ? 1 : 0;
};

const DEFAULT_HTTP_MATCH: RouteMatch = Object.freeze({ path: Object.freeze({ type: 'PathPrefix', value: '/' }), headers: Object.freeze([]), queryParams: Object.freeze([]) });
const DEFAULT_GRPC_MATCH: RouteMatch = Object.freeze({ headers: Object.freeze([]), queryParams: Object.freeze([]) });

class RefResolver {
  /** The first ResolvedRefs problem of the route being compiled. */
  problem: { reason: string; message: string } | null = null;

  constructor(
    private readonly route: KRoute,
    private readonly grants: readonly KReferenceGrant[],
    private readonly services: ServicePortsLookup,
  ) {}

  /** '' when the ref resolves, else its ResolvedRefs reason. */
  check(ref: KBackendRef, where: string): string {
    const name = `${ref.namespace}/${ref.name}`;
    const bad = (reason: string, message: string): string => {
      this.problem ??= { reason, message: `${where}: ${message}` };
      return reason;
    };
    if (!isCore(ref.group) || ref.kind !== 'Service') return bad('InvalidKind', `${ref.group || 'core'}/${ref.kind} ${name} is not a supported backend kind (only Service)`);
    if (ref.namespace !== this.route.namespace && !this.permitted(ref))
      return bad('RefNotPermitted', `Service ${name} is in another namespace and no ReferenceGrant there allows ${this.route.kind}s from ${this.route.namespace}`);
    const svc = this.services(ref.namespace, ref.name);
    if (!svc) return bad('BackendNotFound', `Service ${name} not found`);
    if (!svc.ports.some((p) => p.port === ref.port)) return bad('BackendNotFound', `Service ${name} has no port ${ref.port}`);
    return '';
  }

  /** ReferenceGrant (v1beta1): one in the backend's namespace from this route kind and namespace to this Service (or every Service). */
  private permitted(ref: KBackendRef): boolean {
    return this.grants.some(
      (g) =>
        g.namespace === ref.namespace &&
        g.from.some((f) => f.group === GATEWAY_GROUP && f.kind === this.route.kind && f.namespace === this.route.namespace) &&
        g.to.some((t) => isCore(t.group) && t.kind === 'Service' && (t.name === '' || t.name === ref.name)),
    );
  }
}

function compileFilters(filters: readonly KFilter[], refs: RefResolver, where: string): RouteFilter[] {
  const out: RouteFilter[] = [];
  filters.forEach((f, i) => {
    if (f.type === 'Unsupported') return;
    if (f.type !== 'RequestMirror') return void out.push(f);
    const b = f.requestMirror.backendRef;
    if (refs.check(b, `${where}[${i}].requestMirror.backendRef`) !== '') return;
    out.push(Object.freeze({ type: 'RequestMirror', requestMirror: Object.freeze({ backend: Object.freeze({ name: b.name, namespace: b.namespace, port: b.port }), percent: f.requestMirror.percent }) }));
  });
  return out;
}

function compileRule(route: KRoute, r: KRouteRule, i: number, refs: RefResolver): RouteRule {
  const where = `spec.rules[${i}]`;
  const matches = r.matches.length > 0 ? r.matches : [route.kind === 'GRPCRoute' ? DEFAULT_GRPC_MATCH : DEFAULT_HTTP_MATCH];
  const backends: RouteBackend[] = r.backendRefs.map((b, j) =>
    Object.freeze({
      name: b.name, namespace: b.namespace, port: b.port, weight: b.weight,
      filters: Object.freeze(compileFilters(b.filters, refs, `${where}.backendRefs[${j}].filters`)),
      invalid: refs.check(b, `${where}.backendRefs[${j}]`),
    }),
  );
  const rule: Record<string, unknown> = {
    name: r.name, matches: Object.freeze([...matches]), filters: Object.freeze(compileFilters(r.filters, refs, `${where}.filters`)),
    backends: Object.freeze(backends), timeouts: r.timeouts,
  };
  if (r.retry) rule.retry = r.retry;
  return Object.freeze(rule) as unknown as RouteRule;
}

function unsupportedFilter(route: KRoute): string {
  for (const [i, r] of route.rules.entries()) {
    const all = [...r.filters, ...r.backendRefs.flatMap((b) => b.filters)];
    const u = all.find((f) => f.type === 'Unsupported');
    if (u && u.type === 'Unsupported') return `spec.rules[${i}]: filter type ${u.unsupported} is not supported by the mesh`;
  }
  return '';
}

/** Which ports of `svc` a parentRef names: null = every port; [] = none matches (NoMatchingParent). */
function parentPorts(p: KParentRef, svc: { ports: readonly { name: string; port: number }[] }): number[] | null {
  if (p.port === undefined && p.sectionName === undefined) return null;
  return svc.ports.filter((sp) => (p.port === undefined || sp.port === p.port) && (p.sectionName === undefined || sp.name === p.sectionName)).map((sp) => sp.port);
}

/** '' when the proxies' route parser takes what `route` compiles to, else its refusal (field path: problem). */
function proxyRefusal(route: KRoute, rules: readonly RouteRule[]): string {
  try {
    parseServiceRoute({ kind: route.kind, name: route.name, namespace: route.namespace, ports: [], rules }, 'compiled');
    return '';
  } catch (e) {
    return (e as Error).message;
  }
}

/** Which ports of which Services the route's accepted parents give it (null: every port), in `perService`. */
function placeParents(route: KRoute, services: ServicePortsLookup, perService: Map<string, { ns: string; ports: Set<number> | null }>): void {
  for (const p of route.parentRefs.filter(isServiceParent)) {
    const svc = services(p.namespace, p.name);
    const ports = svc ? parentPorts(p, svc) : [];
    if (ports !== null && ports.length === 0) continue;
    const key = svcKey(p.namespace, p.name);
    const e = perService.get(key) ?? { ns: p.namespace, ports: new Set<number>() };
    if (ports === null) e.ports = null;
    else if (e.ports) for (const n of ports) e.ports.add(n);
    perService.set(key, e);
  }
}

export function compileRoutes(
  routes: readonly KRoute[],
  grants: readonly KReferenceGrant[],
  services: ServicePortsLookup,
  lastGood: ReadonlyMap<string, KRoute> = new Map(),
): CompiledRoutes {
  const producer = new Map<string, ServiceRoute[]>();
  const consumers = new Map<string, Map<string, ServiceRoute[]>>();
  const statuses = new Map<string, RouteStatus>();
  const accepted = new Map<string, KRoute>();
  const refused = new Map<string, string>();
  for (const route of [...routes].sort(oldestFirst)) {
    const meshParents = route.parentRefs.filter(isServiceParent);
    if (meshParents.length === 0) continue;
    const refs = new RefResolver(route, grants, services);
    let rules = Object.freeze(route.rules.map((r, i) => compileRule(route, r, i, refs)));
    const unsupported = unsupportedFilter(route);
    const refusal = unsupported ? '' : proxyRefusal(route, rules);
    /** The version in force in the view: this one, its last accepted version, or none. */
    let served: KRoute | null = unsupported ? null : route;
    if (refusal) {
      refused.set(routeKey(route), refusal);
      const prev = lastGood.get(routeKey(route));
      const prevRules = prev && prev !== route ? Object.freeze(prev.rules.map((r, i) => compileRule(prev, r, i, new RefResolver(prev, grants, services)))) : null;
      served = prev && prevRules && proxyRefusal(prev, prevRules) === '' ? prev : null;
      if (served && prevRules) rules = prevRules;
    }
    if (served) accepted.set(routeKey(route), served);
    const notServable = refusal ? `the mesh's proxies cannot serve it: ${refusal}${served ? '; its last accepted version stays in force' : ''}` : '';
    const cond = (type: Condition['type'], ok: boolean, reason: string, message: string): Condition =>
      Object.freeze({ type, status: ok ? 'True' : 'False', reason, message, observedGeneration: route.generation });
    const resolved = refs.problem
      ? cond('ResolvedRefs', false, refs.problem.reason, refs.problem.message)
      : cond('ResolvedRefs', true, 'ResolvedRefs', 'all references resolved');
    const parents: RouteParentStatus[] = [];
    for (const p of meshParents) {
      const svc = services(p.namespace, p.name);
      const ports = svc ? parentPorts(p, svc) : [];
      let acceptedCond: Condition;
      if (!svc) acceptedCond = cond('Accepted', false, 'NoMatchingParent', `Service ${p.namespace}/${p.name} not found`);
      else if (ports !== null && ports.length === 0)
        acceptedCond = cond('Accepted', false, 'NoMatchingParent', `Service ${p.namespace}/${p.name} has no port ${p.port ?? ''}${p.sectionName !== undefined ? ` named ${p.sectionName}` : ''}`.trim());
      else if (unsupported) acceptedCond = cond('Accepted', false, 'UnsupportedValue', unsupported);
      else if (notServable) acceptedCond = cond('Accepted', false, 'UnsupportedValue', notServable);
      else acceptedCond = cond('Accepted', true, 'Accepted', p.namespace === route.namespace ? 'producer route' : `consumer route for callers in ${route.namespace}`);
      parents.push(Object.freeze({ parentRef: p.raw, controllerName: CONTROLLER_NAME, conditions: Object.freeze([acceptedCond, resolved]) }));
    }
    statuses.set(routeKey(route), Object.freeze({ route, parents: Object.freeze(parents) }));
    if (!served) continue;
    // One ServiceRoute per parent Service: several parentRefs to one Service add up their ports.
    const perService = new Map<string, { ns: string; ports: Set<number> | null }>();
    placeParents(served, services, perService);
    for (const [key, e] of perService) {
      const compiled: ServiceRoute = Object.freeze({
        kind: served.kind, name: served.name, namespace: served.namespace,
        ports: Object.freeze(e.ports ? [...e.ports].sort((a, b) => a - b) : []), rules,
      });
      if (e.ns === served.namespace) {
        const list = producer.get(key) ?? [];
        list.push(compiled);
        producer.set(key, list);
      } else {
        let byNs = consumers.get(key);
        if (!byNs) consumers.set(key, (byNs = new Map()));
        const list = byNs.get(served.namespace) ?? [];
        list.push(compiled);
        byNs.set(served.namespace, list);
      }
    }
  }
  const byService = new Map<string, ServiceRoutes>();
  const consumerNamespaces = new Set<string>();
  for (const key of new Set([...producer.keys(), ...consumers.keys()])) {
    const c = consumers.get(key) ?? new Map<string, ServiceRoute[]>();
    for (const ns of c.keys()) consumerNamespaces.add(ns);
    byService.set(key, Object.freeze({ producer: Object.freeze(producer.get(key) ?? []), consumers: c }));
  }
  return { view: Object.freeze({ byService, consumerNamespaces }), statuses, accepted, refused };
}
