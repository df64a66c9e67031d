import { compileRouteRegex } from '../../contract/route-regex.js';
import type { GrpcMethodMatch, HeaderModifier, PathMatch, PathModifier, RouteFilter, RouteMatch, ValueMatch } from '../../contract/routes.js';
import { arr, fail, literal, num, obj, optional, str, withDefault, type Parser } from '../../common/schema.js';
import { metadata } from './policy-objects.js';

/**
 * Validating parsers for the Gateway API route objects the mesh reads (v1.6.1 standard
 * channel, manifests/crds/httproutes.yaml, grpcroutes.yaml, referencegrants.yaml): HTTPRoute
 * and GRPCRoute (gateway.networking.k8s.io/v1) and ReferenceGrant (v1beta1; v1 read too).
 *
 * What the CRD's OpenAPI schema and its CEL rules (x-kubernetes-validations) reject is an
 * error here, naming the field path, so the directory source (which has no API server in
 * front of it) and the Kubernetes source agree: path values, header names, enum values,
 * ranges (weights 0..1000000, ports, redirect status codes), filter/field pairing, the
 * filter combinations (RequestRedirect with backendRefs, ReplacePrefixMatch without one
 * PathPrefix match, repeated filters) and timeouts (GEP-2257 durations, backendRequest not
 * above request). Regular expressions must compile. A rejected object keeps its last good
 * version (the sources do that, as for the policy kinds).
 *
 * Not errors, but kept for the compiler: filter types the mesh does not implement
 * (ExtensionRef, CORS) make the route not Accepted (reason UnsupportedValue, as the
 * spec says for unsupported filter types) and the route then routes nothing.
 * Backend and mirror references stay unresolved here (route-compile.ts resolves them).
 */
export const GATEWAY_GROUP = 'gateway.networking.k8s.io';

export interface KParentRef {
  readonly group: string;
  readonly kind: string;
  /** Resolved: the route's namespace when absent. */
  readonly namespace: string;
  readonly name: string;
  readonly sectionName?: string;
  readonly port?: number;
  /** As written in the object (status.parents[].parentRef echoes it). */
  readonly raw: Readonly<Record<string, unknown>>;
}

export interface KBackendRef {
  readonly group: string;
  readonly kind: string;
  readonly name: string;
  /** Resolved: the route's namespace when absent. */
  readonly namespace: string;
  /** 0 when absent (only legal for non-Service kinds, which are invalid anyway). */
  readonly port: number;
}

/**
 * A filter as the route object states it: the compiled model's filters (contract/routes.ts),
 * but a mirror names its backend by reference (resolved when the route is compiled).
 */
export type KFilter =
  | Exclude<RouteFilter, { readonly type: 'RequestMirror' }>
  | { readonly type: 'RequestMirror'; readonly requestMirror: { readonly backendRef: KBackendRef; readonly percent: number } }
  /** Not implemented by the mesh: the route is not Accepted (UnsupportedValue). */
  | { readonly type: 'Unsupported'; readonly unsupported: string; readonly path: string };

export interface KWeightedBackendRef extends KBackendRef {
  readonly weight: number;
  readonly filters: readonly KFilter[];
}

export interface KRouteRule {
  readonly name: string;
  /** As written; empty = the spec's default (PathPrefix "/" for HTTP, any method for gRPC). */
  readonly matches: readonly RouteMatch[];
  readonly filters: readonly KFilter[];
  readonly backendRefs: readonly KWeightedBackendRef[];
  /** ms; 0 = not set. A "0s" timeout (the spec's "disable") is MAX_TIMEOUT_MS. */
  readonly timeouts: { readonly requestMs: number; readonly backendRequestMs: number };
  readonly retry?: { readonly attempts: number; readonly codes: readonly number[]; readonly backoffMs: number };
}

export interface KRoute {
  readonly kind: 'HTTPRoute' | 'GRPCRoute';
  readonly name: string;
  readonly namespace: string;
  readonly createdAt: string;
  /** metadata.generation (status conditions' observedGeneration); 0 when absent (directory source). */
  readonly generation: number;
  readonly parentRefs: readonly KParentRef[];
  readonly rules: readonly KRouteRule[];
  /** status.parents as the object carries it (the status writer compares against it). */
  readonly statusParents: readonly unknown[];
  /** metadata.resourceVersion ('' when absent): the status writer's precondition, so it never overwrites a newer status. */
  readonly resourceVersion: string;
}

export interface KReferenceGrant {
  readonly name: string;
  readonly namespace: string;
  readonly from: readonly { readonly group: string; readonly kind: string; readonly namespace: string }[];
  readonly to: readonly { readonly group: string; readonly kind: string; readonly name: string }[];
}

/**
 * The spec: "Setting a timeout to the zero duration (e.g. "0s") SHOULD disable the timeout
 * completely. Implementations that cannot completely disable the timeout MUST instead
 * interpret the zero duration as the longest possible value": the longest a Node timer takes.
 */
export const MAX_TIMEOUT_MS = 2_147_483_647;

const at = (path: string, k: string | number): string => (typeof k === 'number' ? `${path}[${k}]` : path ? `${path}.${k}` : k);
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const GROUP = /^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const KIND = /^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$/;
const HOSTNAME = /^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** RFC 7230 token: the CRD's HTTPHeaderName pattern. */
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/;
const PATH_CHARS = /^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$/;
const GRPC_SERVICE = /^(?:\.?[a-zA-Z_][a-zA-Z_0-9]*(?:\.[a-zA-Z_][a-zA-Z_0-9]*)*)$/;
const GRPC_METHOD = /^[A-Za-z_][A-Za-z_0-9]*$/;
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'] as const;

const bounded = (max: number, pattern?: RegExp, min = 1): Parser<string> => (raw, path) => {
  const s = str(pattern ? { pattern } : {})(raw, path);
  if (s.length < min || s.length > max) fail(path, `expected ${min}..${max} characters, got ${s.length}`);
  return s;
};
const maxItems = <T>(p: Parser<readonly T[]>, max: number): Parser<readonly T[]> => (raw, path) => {
  const v = p(raw, path);
  if (v.length > max) fail(path, `at most ${max} items allowed, got ${v.length}`);
  return v;
};
const regex: Parser<string> = (raw, path) => {
  const s = bounded(1024)(raw, path);
  try {
    compileRouteRegex(s);
  } catch (e) {
    fail(path, `regular expression does not compile (RE2 syntax): ${(e as Error).message}`);
  }
  return s;
};

/** GEP-2257 duration: 1 to 4 `<digits 1-5><h|m|s|ms>` parts, summed, in ms. */
const gatewayDuration: Parser<number> = (raw, path) => {
  const s = str()(raw, path);
  if (!/^([0-9]{1,5}(h|m|s|ms)){1,4}$/.test(s)) fail(path, `expected a Gateway API duration like "10s", "500ms", "1h30m", got ${JSON.stringify(s)}`);
  let ms = 0;
  for (const m of s.matchAll(/([0-9]{1,5})(ms|h|m|s)/g)) ms += Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms'];
  return ms;
};

const headerValues = maxItems(arr(obj({ name: bounded(256, HEADER_NAME), value: bounded(4096, undefined, 0) }), { default: [] }), 16);
const headerModifier: Parser<HeaderModifier> = (raw, path) => {
  const o = obj({ set: headerValues, add: headerValues, remove: maxItems(arr(bounded(256, HEADER_NAME), { default: [] }), 16) })(raw, path);
  return Object.freeze({ set: o.set, add: o.add, remove: o.remove });
};

const pathModifier: Parser<PathModifier> = (raw, path) => {
  const o = obj({
    type: literal(['ReplaceFullPath', 'ReplacePrefixMatch'] as const),
    replaceFullPath: optional(bounded(1024, undefined, 0)),
    replacePrefixMatch: optional(bounded(1024, undefined, 0)),
  })(raw, path);
  const value = o.type === 'ReplaceFullPath' ? o.replaceFullPath : o.replacePrefixMatch;
  const other = o.type === 'ReplaceFullPath' ? 'replacePrefixMatch' : 'replaceFullPath';
  if (value === undefined) fail(at(path, o.type === 'ReplaceFullPath' ? 'replaceFullPath' : 'replacePrefixMatch'), `must be specified when type is ${o.type}`);
  if (o[other] !== undefined) fail(at(path, other), `type must be '${other === 'replaceFullPath' ? 'ReplaceFullPath' : 'ReplacePrefixMatch'}' when ${other} is set`);
  return Object.freeze({ type: o.type, value: value! });
};

/** A BackendObjectReference (backendRefs, requestMirror.backendRef): a Service needs a port (CEL "Must have port for Service reference"). */
const backendObjectRef = (routeNs: string) => (raw: unknown, path: string): KBackendRef => {
  const o = obj({
    group: str({ default: '', pattern: GROUP }), kind: str({ default: 'Service', pattern: KIND }), name: bounded(253),
    namespace: optional(str({ pattern: DNS_LABEL })), port: optional(num({ int: true, min: 1, max: 65535 })),
  })(raw, path);
  if ((o.group === '' || o.group === 'core') && o.kind === 'Service' && o.port === undefined) fail(at(path, 'port'), 'must be specified for a Service reference');
  return Object.freeze({ group: o.group, kind: o.kind, name: o.name, namespace: o.namespace ?? routeNs, port: o.port ?? 0 });
};

type RouteKind = 'HTTPRoute' | 'GRPCRoute';
const FILTER_FIELDS: Record<string, string> = {
  RequestHeaderModifier: 'requestHeaderModifier', ResponseHeaderModifier: 'responseHeaderModifier', RequestRedirect: 'requestRedirect',
  URLRewrite: 'urlRewrite', RequestMirror: 'requestMirror', ExtensionRef: 'extensionRef', CORS: 'cors',
};
const HTTP_FILTERS = ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror', 'RequestRedirect', 'URLRewrite', 'ExtensionRef', 'CORS'];
const GRPC_FILTERS = ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror', 'ExtensionRef'];

const filter = (kind: RouteKind, routeNs: string) => (raw: unknown, path: string): KFilter => {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) return fail(path, 'expected an object');
  const r = raw as Record<string, unknown>;
  const type = str({ oneOf: kind === 'HTTPRoute' ? HTTP_FILTERS : GRPC_FILTERS })(r.type, at(path, 'type'));
  const fields = kind === 'HTTPRoute' ? Object.values(FILTER_FIELDS) : ['requestHeaderModifier', 'responseHeaderModifier', 'requestMirror', 'extensionRef'];
  for (const k of Object.keys(r)) {
    if (k === 'type') continue;
    if (!fields.includes(k)) fail(at(path, k), `unknown field (expected type, ${fields.join(', ')})`);
    if (k !== FILTER_FIELDS[type]) fail(at(path, k), `must be nil if the filter type is not ${Object.keys(FILTER_FIELDS).find((t) => FILTER_FIELDS[t] === k)}`);
  }
  const field = FILTER_FIELDS[type];
  if (r[field] === undefined || r[field] === null) fail(at(path, field), `must be specified for ${type} filter.type`);
  const sub = at(path, field);
  switch (type) {
    case 'RequestHeaderModifier':
      return Object.freeze({ type, requestHeaderModifier: headerModifier(r[field], sub) });
    case 'ResponseHeaderModifier':
      return Object.freeze({ type, responseHeaderModifier: headerModifier(r[field], sub) });
    case 'RequestRedirect': {
      const o = obj({
        scheme: optional(literal(['http', 'https'] as const)), hostname: optional(bounded(253, DNS_SUBDOMAIN)), path: optional(pathModifier),
        port: optional(num({ int: true, min: 1, max: 65535 })), statusCode: withDefault(num({ int: true }), 302),
      })(r[field], sub);
      if (![301, 302, 303, 307, 308].includes(o.statusCode)) fail(at(sub, 'statusCode'), `expected one of 301, 302, 303, 307, 308, got ${o.statusCode}`);
      const rr: Record<string, unknown> = { statusCode: o.statusCode };
      for (const k of ['scheme', 'hostname', 'port', 'path'] as const) if (o[k] !== undefined) rr[k] = o[k];
      return Object.freeze({ type, requestRedirect: Object.freeze(rr) as Extract<KFilter, { type: 'RequestRedirect' }>['requestRedirect'] });
    }
    case 'URLRewrite': {
      const o = obj({ hostname: optional(bounded(253, DNS_SUBDOMAIN)), path: optional(pathModifier) })(r[field], sub);
      const u: Record<string, unknown> = {};
      if (o.hostname !== undefined) u.hostname = o.hostname;
      if (o.path !== undefined) u.path = o.path;
      return Object.freeze({ type, urlRewrite: Object.freeze(u) });
    }
    case 'RequestMirror': {
      const o = obj({
        backendRef: backendObjectRef(routeNs), percent: optional(num({ int: true, min: 0, max: 100 })),
        fraction: optional(obj({ numerator: num({ int: true, min: 0 }), denominator: num({ int: true, min: 1, default: 100 }) })),
      })(r[field], sub);
      if (o.percent !== undefined && o.fraction) fail(sub, 'only one of percent or fraction may be specified');
      if (o.fraction && o.fraction.numerator > o.fraction.denominator) fail(at(sub, 'fraction'), 'numerator must be less than or equal to denominator');
      const percent = o.percent ?? (o.fraction ? (100 * o.fraction.numerator) / o.fraction.denominator : 100);
      return Object.freeze({ type, requestMirror: Object.freeze({ backendRef: o.backendRef, percent }) });
    }
    case 'CORS': {
      const cors = r[field] as Record<string, unknown>;
      for (const k of ['allowHeaders', 'allowMethods', 'allowOrigins']) {
        const list = cors && typeof cors === 'object' ? cors[k] : undefined;
        if (Array.isArray(list) && list.includes('*') && list.length > 1) fail(at(sub, k), `${k} cannot contain '*' alongside other values`);
      }
      return Object.freeze({ type: 'Unsupported', unsupported: type, path: at(path, 'type') });
    }
    default:
      // ExtensionRef, CORS: valid objects, but not implemented by the mesh.
      return Object.freeze({ type: 'Unsupported', unsupported: type, path: at(path, 'type') });
  }
};

/** The CEL rules on a filter list: no RequestRedirect with URLRewrite, no repeated single-use filters. */
function checkFilterList(raws: readonly unknown[], path: string): void {
  const types = raws.map((f) => (f as { type?: string }).type);
  if (types.includes('RequestRedirect') && types.includes('URLRewrite')) fail(path, 'may specify either RequestRedirect or URLRewrite, but not both');
  for (const t of ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestRedirect', 'URLRewrite', 'CORS'])
    if (types.filter((x) => x === t).length > 1) fail(path, `${t} filter cannot be repeated`);
}

const filterList = (kind: RouteKind, routeNs: string): Parser<readonly KFilter[]> => (raw, path) => {
  const list = maxItems(arr(filter(kind, routeNs), { default: [] }), 16)(raw, path);
  checkFilterList(Array.isArray(raw) ? raw : [], path);
  return list;
};

const pathMatch: Parser<PathMatch> = (raw, path) => {
  const o = obj({ type: literal(['Exact', 'PathPrefix', 'RegularExpression'] as const, 'PathPrefix'), value: withDefault(str(), '/') })(raw, path);
  const vp = at(path, 'value');
  if (o.value.length > 1024) fail(vp, 'at most 1024 characters');
  if (o.type === 'RegularExpression') return Object.freeze({ type: o.type, value: regex(o.value, vp) });
  // The CRD's CEL rules for Exact and PathPrefix.
  if (!o.value.startsWith('/')) fail(vp, "value must be an absolute path and start with '/'");
  for (const bad of ['//', '/./', '/../', '%2f', '%2F', '#']) if (o.value.includes(bad)) fail(vp, `must not contain '${bad}'`);
  for (const bad of ['/..', '/.']) if (o.value.endsWith(bad)) fail(vp, `must not end with '${bad}'`);
  if (!PATH_CHARS.test(o.value)) fail(vp, 'must only contain valid characters (RFC 3986 path characters or %-escapes)');
  return Object.freeze({ type: o.type, value: o.value });
};

/** A header (names case-insensitive: stored lower-case) or query parameter match; the first of a repeated name counts (spec). */
const valueMatches = (what: 'header' | 'query'): Parser<readonly ValueMatch[]> => (raw, path) => {
  const list = maxItems(
    arr(obj({ type: literal(['Exact', 'RegularExpression'] as const, 'Exact'), name: bounded(256, HEADER_NAME), value: bounded(4096, undefined, 1) }), { default: [] }),
    16,
  )(raw, path);
  const seen = new Set<string>();
  const out: ValueMatch[] = [];
  list.forEach((m, i) => {
    if (m.type === 'RegularExpression') regex(m.value, at(at(path, i), 'value'));
    const name = what === 'header' ? m.name.toLowerCase() : m.name;
    // "If multiple entries specify equivalent header names, only the first entry with an equivalent name MUST be considered."
    if (seen.has(name)) return;
    seen.add(name);
    out.push(Object.freeze({ type: m.type, name, value: m.value }));
  });
  return Object.freeze(out);
};

const httpMatch: Parser<RouteMatch> = (raw, path) => {
  const o = obj({ path: optional(pathMatch), headers: valueMatches('header'), queryParams: valueMatches('query'), method: optional(literal(METHODS)) })(raw, path);
  const m: Record<string, unknown> = { path: o.path ?? Object.freeze({ type: 'PathPrefix', value: '/' }), headers: o.headers, queryParams: o.queryParams };
  if (o.method !== undefined) m.method = o.method;
  return Object.freeze(m) as unknown as RouteMatch;
};

const grpcMethod: Parser<GrpcMethodMatch> = (raw, path) => {
  const o = obj({ type: literal(['Exact', 'RegularExpression'] as const, 'Exact'), service: optional(bounded(1024)), method: optional(bounded(1024)) })(raw, path);
  if (o.service === undefined && o.method === undefined) fail(path, 'one or both of service or method must be specified');
  if (o.type === 'Exact') {
    if (o.service !== undefined && !GRPC_SERVICE.test(o.service)) fail(at(path, 'service'), `expected a fully-qualified gRPC service name, got ${JSON.stringify(o.service)}`);
    if (o.method !== undefined && !GRPC_METHOD.test(o.method)) fail(at(path, 'method'), `expected a gRPC method name, got ${JSON.stringify(o.method)}`);
  } else {
    if (o.service !== undefined) regex(o.service, at(path, 'service'));
    if (o.method !== undefined) regex(o.method, at(path, 'method'));
  }
  return Object.freeze({ type: o.type, service: o.service ?? '', method: o.method ?? '' });
};

const grpcMatch: Parser<RouteMatch> = (raw, path) => {
  const o = obj({ method: optional(grpcMethod), headers: valueMatches('header') })(raw, path);
  const m: Record<string, unknown> = { headers: o.headers, queryParams: Object.freeze([]) };
  if (o.method) m.grpc = o.method;
  return Object.freeze(m) as unknown as RouteMatch;
};

const timeouts: Parser<{ requestMs: number; backendRequestMs: number }> = (raw, path) => {
  const o = obj({ request: optional(gatewayDuration), backendRequest: optional(gatewayDuration) })(raw, path);
  if (o.request !== undefined && o.backendRequest !== undefined && o.request !== 0 && o.backendRequest > o.request)
    fail(at(path, 'backendRequest'), 'backendRequest timeout cannot be longer than request timeout');
  const ms = (v: number | undefined) => (v === undefined ? 0 : v === 0 ? MAX_TIMEOUT_MS : v);
  const requestMs = ms(o.request);
  // A disabled backendRequest ("0s") under a set request timeout: a try cannot outlive its
  // request, so it is the request's; the compiled form keeps backendRequest <= request,
  // which the proxies' route parser requires.
  const backendRequestMs = requestMs > 0 ? Math.min(ms(o.backendRequest), requestMs) : ms(o.backendRequest);
  return Object.freeze({ requestMs, backendRequestMs });
};

/** HTTPRouteRetry (GEP-1731; experimental channel in v1.6.1: the standard CRD prunes it, a directory source or the experimental CRD keeps it). */
const retry = obj({
  attempts: num({ int: true, min: 0, default: 1 }),
  codes: arr(num({ int: true, min: 400, max: 599 }), { default: [] }),
  backoff: optional(gatewayDuration),
});

const NO_TIMEOUTS = Object.freeze({ requestMs: 0, backendRequestMs: 0 });

const rule = (kind: RouteKind, routeNs: string) => (raw: unknown, path: string): KRouteRule => {
  const weighted = (r: unknown, p: string): KWeightedBackendRef => {
    if (!r || typeof r !== 'object' || Array.isArray(r)) return fail(p, 'expected an object');
    const { weight, filters, ...ref } = r as Record<string, unknown>;
    return Object.freeze({
      ...backendObjectRef(routeNs)(ref, p),
      weight: num({ int: true, min: 0, max: 1_000_000, default: 1 })(weight, at(p, 'weight')),
      filters: filterList(kind, routeNs)(filters, at(p, 'filters')),
    });
  };
  const shape: Record<string, Parser<unknown>> = kind === 'HTTPRoute'
    ? {
        name: optional(bounded(253, DNS_SUBDOMAIN)), matches: maxItems(arr(httpMatch, { default: [] }), 64), filters: filterList(kind, routeNs),
        backendRefs: maxItems(arr(weighted, { default: [] }), 16), timeouts: optional(timeouts), retry: optional(retry),
      }
    : { name: optional(bounded(253, DNS_SUBDOMAIN)), matches: maxItems(arr(grpcMatch, { default: [] }), 64), filters: filterList(kind, routeNs), backendRefs: maxItems(arr(weighted, { default: [] }), 16) };
  const o = obj(shape)(raw, path) as {
    name?: string; matches: readonly RouteMatch[]; filters: readonly KFilter[]; backendRefs: readonly KWeightedBackendRef[];
    timeouts?: { requestMs: number; backendRequestMs: number }; retry?: { attempts: number; codes: readonly number[]; backoff?: number };
  };
  // Rule-level CEL rules of HTTPRouteRule.
  const redirect = o.filters.some((f) => f.type === 'RequestRedirect');
  if (redirect && o.backendRefs.length > 0) fail(at(path, 'filters'), 'RequestRedirect filter must not be used together with backendRefs');
  const prefixOnly = o.matches.length === 1 && o.matches[0].path?.type === 'PathPrefix';
  const needsPrefix = (filters: readonly KFilter[], p: string) => {
    for (const f of filters) {
      const pm = f.type === 'RequestRedirect' ? f.requestRedirect.path : f.type === 'URLRewrite' ? f.urlRewrite.path : undefined;
      if (pm?.type === 'ReplacePrefixMatch' && !prefixOnly)
        fail(p, `when using ${f.type} filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified`);
    }
  };
  needsPrefix(o.filters, at(path, 'filters'));
  o.backendRefs.forEach((b, i) => needsPrefix(b.filters, at(at(at(path, 'backendRefs'), i), 'filters')));
  const r: Record<string, unknown> = {
    name: o.name ?? '', matches: o.matches, filters: o.filters, backendRefs: o.backendRefs, timeouts: o.timeouts ?? NO_TIMEOUTS,
  };
  if (o.retry) r.retry = Object.freeze({ attempts: o.retry.attempts, codes: o.retry.codes, backoffMs: o.retry.backoff ?? 0 });
  return Object.freeze(r) as unknown as KRouteRule;
};

const parentRef = (routeNs: string) => (raw: unknown, path: string): KParentRef => {
  const o = obj({
    group: str({ default: GATEWAY_GROUP, pattern: GROUP }), kind: str({ default: 'Gateway', pattern: KIND }), namespace: optional(str({ pattern: DNS_LABEL })),
    name: bounded(253), sectionName: optional(bounded(253, DNS_SUBDOMAIN)), port: optional(num({ int: true, min: 1, max: 65535 })),
  })(raw, path);
  const p: Record<string, unknown> = { group: o.group, kind: o.kind, namespace: o.namespace ?? routeNs, name: o.name, raw: Object.freeze({ ...(raw as object) }) };
  if (o.sectionName !== undefined) p.sectionName = o.sectionName;
  if (o.port !== undefined) p.port = o.port;
  return Object.freeze(p) as unknown as KParentRef;
};

/**
 * The CRD's CEL rules on parentRefs: references to the same parent (group, kind, name and
 * namespace as written) must all set a sectionName or all leave it out, and no two may be equal.
 */
function checkParentRefs(refs: readonly KParentRef[], path: string): void {
  const ns = (p: KParentRef) => (typeof p.raw.namespace === 'string' ? p.raw.namespace : '');
  const same = (a: KParentRef, b: KParentRef) => a.group === b.group && a.kind === b.kind && a.name === b.name && ns(a) === ns(b);
  const section = (p: KParentRef) => p.sectionName ?? '';
  refs.forEach((a, i) => {
    refs.forEach((b, j) => {
      if (i >= j || !same(a, b)) return;
      if ((section(a) === '') !== (section(b) === '')) fail(path, 'sectionName must be specified when parentRefs includes 2 or more references to the same parent');
      if (section(a) === section(b)) fail(at(path, j), 'sectionName must be unique when parentRefs includes 2 or more references to the same parent');
    });
  });
}

const generation: Parser<number> = (raw) => (typeof raw === 'number' && Number.isInteger(raw) && raw >= 0 ? raw : 0);
const routeMetadata = (raw: unknown, path: string) => {
  const m = metadata(raw, path);
  const r = raw as { generation?: unknown; resourceVersion?: unknown } | undefined;
  return { ...m, generation: generation(r?.generation, at(path, 'generation')), resourceVersion: typeof r?.resourceVersion === 'string' ? r.resourceVersion : '' };
};
const namespaceOf = (raw: unknown): string => {
  const ns = (raw as { metadata?: { namespace?: unknown } } | null)?.metadata?.namespace;
  return typeof ns === 'string' ? ns : 'default';
};

const parseRoute = (kind: RouteKind): Parser<KRoute> => (raw, path) => {
  const ns = namespaceOf(raw);
  const o = obj(
    {
      apiVersion: optional(literal([`${GATEWAY_GROUP}/v1`, `${GATEWAY_GROUP}/v1beta1`] as const)),
      kind: optional(literal([kind] as const)),
      metadata: routeMetadata,
      spec: obj({
        parentRefs: maxItems(arr(parentRef(ns), { default: [] }), 32),
        // GEP-1426: a mesh implementation infers nothing from hostnames on a route with a Service parent;
        // still validated (the CRD's pattern) since a Gateway parent may use them.
        hostnames: maxItems(arr(bounded(253, HOSTNAME), { default: [] }), 16),
        // HTTPRoute: absent = the CRD's default, one rule matching PathPrefix "/"; at least one. GRPCRoute: no default, may be empty.
        rules: kind === 'HTTPRoute'
          ? withDefault(maxItems(arr(rule(kind, ns), { min: 1 }), 16), [rule(kind, ns)({}, 'spec.rules[0]')])
          : maxItems(arr(rule(kind, ns), { default: [] }), 16),
      }),
      status: withDefault(obj({ parents: arr((v) => v, { default: [] }) }, { allowUnknown: true }), { parents: [] as readonly unknown[] }),
    },
    { allowUnknown: true },
  )(raw, path);
  checkParentRefs(o.spec.parentRefs, at(at(path, 'spec'), 'parentRefs'));
  // "the total number of matches across all rules in a route must be less than 128" (the rule itself allows 128).
  const matches = o.spec.rules.reduce((n, r) => n + r.matches.length, 0);
  if (matches > 128) fail(at(at(path, 'spec'), 'rules'), `at most 128 matches across all rules, got ${matches}`);
  return Object.freeze({
    kind, name: o.metadata.name, namespace: o.metadata.namespace, createdAt: o.metadata.creationTimestamp, generation: o.metadata.generation,
    parentRefs: o.spec.parentRefs, rules: o.spec.rules, statusParents: o.status.parents, resourceVersion: o.metadata.resourceVersion,
  });
};

export const parseHttpRoute: Parser<KRoute> = parseRoute('HTTPRoute');
export const parseGrpcRoute: Parser<KRoute> = parseRoute('GRPCRoute');

export const parseReferenceGrant: Parser<KReferenceGrant> = (raw, path) => {
  const o = obj(
    {
      apiVersion: optional(literal([`${GATEWAY_GROUP}/v1beta1`, `${GATEWAY_GROUP}/v1`] as const)),
      kind: optional(literal(['ReferenceGrant'] as const)),
      metadata,
      spec: obj({
        from: maxItems(arr(obj({ group: str({ pattern: GROUP }), kind: bounded(63, KIND), namespace: str({ pattern: DNS_LABEL }) }), { min: 1 }), 16),
        to: maxItems(arr(obj({ group: str({ pattern: GROUP }), kind: bounded(63, KIND), name: optional(bounded(253)) }), { min: 1 }), 16),
      }),
    },
    { allowUnknown: true },
  )(raw, path);
  return Object.freeze({
    name: o.metadata.name, namespace: o.metadata.namespace, from: o.spec.from,
    to: Object.freeze(o.spec.to.map((t) => Object.freeze({ group: t.group, kind: t.kind, name: t.name ?? '' }))),
  });
};
