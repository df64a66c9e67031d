/**
 * Routes for traffic addressed to a Service: the Gateway API HTTPRoute and GRPCRoute
 * (v1.6.1 standard channel) whose `parentRefs` name a Service (group "", kind Service),
 * the GAMMA mesh profile (GEP-1426; consumer and producer routes, GEP-1294).
 *
 * This is the compiled form the proxy matches against, the seam between the control
 * plane (which watches the route objects, validates them, resolves their backendRefs
 * and picks the routes in force for one subscriber) and the proxy (which matches
 * requests and applies filters). It travels as JSON in `ServiceResource.routes_json`
 * (contract/discovery.proto) and in the proxy's static config under a service's
 * `routes`, validated on arrival by contract/parse-routes.ts.
 *
 * What the control plane has already decided, so the proxy never needs Kubernetes:
 * - which routes apply to this subscriber: if any route in the caller's own namespace
 *   names the Service (a consumer route), only those; else the routes in the Service's
 *   namespace (producer routes). Routes elsewhere are ignored (GEP-1294).
 * - their order for ties: oldest creationTimestamp first, then `namespace/name`
 *   alphabetically (Gateway API HTTPRoute spec, "Rules" precedence). The proxy flattens
 *   the rules of all routes in that order and sorts them, stably, by match precedence.
 * - backendRefs resolved to services; a ref that cannot be resolved stays, with `invalid`
 *   saying why, and requests sent to it get a 500 (spec: "Implementations MUST return a
 *   500 status code for requests that would have otherwise been routed to an invalid backend").
 */

/** Gateway API path match types; the spec's default is PathPrefix "/". */
export type PathMatchType = 'Exact' | 'PathPrefix' | 'RegularExpression';

export interface PathMatch {
  readonly type: PathMatchType;
  readonly value: string;
}

/** A header or query parameter match. Header names are compared case-insensitively (stored lower-case), query parameter names exactly. */
export interface ValueMatch {
  readonly type: 'Exact' | 'RegularExpression';
  readonly name: string;
  readonly value: string;
}

/** GRPCRoute `matches[].method`: '' = any service / any method; at least one is set. */
export interface GrpcMethodMatch {
  readonly type: 'Exact' | 'RegularExpression';
  readonly service: string;
  readonly method: string;
}

/** One match: every set part must match (AND); a rule matches when any of its matches does (OR). */
export interface RouteMatch {
  /** HTTPRoute only; absent = PathPrefix "/". */
  readonly path?: PathMatch;
  /** HTTPRoute only; absent = any method. */
  readonly method?: string;
  /** GRPCRoute only; absent = any service and method. */
  readonly grpc?: GrpcMethodMatch;
  readonly headers: readonly ValueMatch[];
  /** HTTPRoute only. */
  readonly queryParams: readonly ValueMatch[];
}

export interface HeaderValue {
  readonly name: string;
  readonly value: string;
}

/** HTTPHeaderFilter: set replaces, add appends, remove deletes (names case-insensitive). */
export interface HeaderModifier {
  readonly set: readonly HeaderValue[];
  readonly add: readonly HeaderValue[];
  readonly remove: readonly string[];
}

/** HTTPPathModifier. ReplacePrefixMatch needs a PathPrefix match on the rule (the spec's constraint). */
export interface PathModifier {
  readonly type: 'ReplaceFullPath' | 'ReplacePrefixMatch';
  readonly value: string;
}

/** A Service port the mesh knows (a backendRef or a mirror target). */
export interface BackendTarget {
  readonly name: string;
  readonly namespace: string;
  readonly port: number;
}

export type RouteFilter =
  | { readonly type: 'RequestHeaderModifier'; readonly requestHeaderModifier: HeaderModifier }
  | { readonly type: 'ResponseHeaderModifier'; readonly responseHeaderModifier: HeaderModifier }
  | {
      readonly type: 'RequestRedirect';
      readonly requestRedirect: {
        /** Absent: keep the request's. */
        readonly scheme?: 'http' | 'https';
        readonly hostname?: string;
        readonly port?: number;
        readonly path?: PathModifier;
        readonly statusCode: 301 | 302 | 303 | 307 | 308;
      };
    }
  | { readonly type: 'URLRewrite'; readonly urlRewrite: { readonly hostname?: string; readonly path?: PathModifier } }
  /** Fire-and-forget copy of the request; the mirror's response is discarded. percent 0-100 (default 100). */
  | { readonly type: 'RequestMirror'; readonly requestMirror: { readonly backend: BackendTarget; readonly percent: number } };

export interface RouteBackend extends BackendTarget {
  /** Relative weight; 0 = never picked. */
  readonly weight: number;
  /** Filters applied only when this backend is picked (HTTPBackendRef.filters). */
  readonly filters: readonly RouteFilter[];
  /** '' = resolved; else why the ref is invalid (no such Service or port, unsupported kind, not permitted): requests picked for it get 500. */
  readonly invalid: string;
}

export interface RouteRule {
  /** `rules[].name` ('' = unnamed); shown in /debug/route, metrics and access logs. */
  readonly name: string;
  /** Never empty: the compiler writes the spec's default match (PathPrefix "/") when the route has none. */
  readonly matches: readonly RouteMatch[];
  readonly filters: readonly RouteFilter[];
  /** Empty (and no RequestRedirect): the spec's 500. All weights 0: also 500. */
  readonly backends: readonly RouteBackend[];
  /** HTTPRouteTimeouts; 0 = not set (the service's TrafficPolicy applies). */
  readonly timeouts: { readonly requestMs: number; readonly backendRequestMs: number };
  /** HTTPRouteRetry (standard channel since v1.2); absent = the service's TrafficPolicy retry. */
  readonly retry?: { readonly attempts: number; readonly codes: readonly number[]; readonly backoffMs: number };
}

export interface ServiceRoute {
  readonly kind: 'HTTPRoute' | 'GRPCRoute';
  readonly name: string;
  readonly namespace: string;
  /** The Service ports its parentRefs name; empty = every port of the Service. */
  readonly ports: readonly number[];
  readonly rules: readonly RouteRule[];
}
