/**
 * The mesh model: what the proxy needs to know about services, endpoints and their
 * policy. It is the seam between config sources and the proxy: the static YAML file
 * and the control plane's discovery stream both produce exactly these readonly objects,
 * and the proxy's hot paths only ever see these (never raw JSON).
 *
 * Naming follows Kubernetes (Service, port, EndpointSlice) and Envoy (a "cluster" is
 * one service port with its endpoints).
 */

import type { ServiceRoute } from './routes.js';
import type { EgressSettings } from './egress.js';

/** How the proxy treats a port. `detect` peeks at the first bytes. */
export type Protocol = 'detect' | 'http1' | 'http2' | 'grpc' | 'opaque';

/**
 * The workload a pod belongs to, as Istio names it (its metric labels `*_workload`,
 * `*_workload_namespace`, `*_app`, `*_version`): the pod's controller (a Deployment for
 * a ReplicaSet's pod, a CronJob for a Job's, else the owner; a bare pod's own name), the
 * `app.kubernetes.io/name` or `app` label and the `app.kubernetes.io/version` or `version`
 * label ('' when absent). The control plane derives it (control-plane/translate/pod-workload.ts).
 */
export interface Workload {
  readonly name: string;
  readonly namespace: string;
  readonly app: string;
  readonly version: string;
}

export interface Endpoint {
  /** Pod IP. */
  readonly address: string;
  /** The app's port on that pod (EndpointSlice port). */
  readonly port: number;
  /**
   * Port of the destination pod's inbound sidecar (15006 in a cluster), or null when the
   * endpoint is not meshed: then traffic goes to address:port directly, in plaintext.
   */
  readonly proxyPort: number | null;
  /** SPIFFE ID the peer must present (`spiffe://td/ns/NS/sa/SA`); '' when unmeshed. */
  readonly identity: string;
  readonly weight: number;
  readonly zone: string;
  /** EndpointSlice conditions.ready; unready endpoints get no new requests. */
  readonly ready: boolean;
  /** The pod's workload (metrics' destination_workload...); absent: not a pod, or not known. */
  readonly workload?: Workload;
  /**
   * The same pod's addresses of the other IP family (a dual-stack pod: one endpoint, dialled at
   * `address`; control-plane/translate/translate.ts), as Envoy's LbEndpoint additional_addresses.
   * Never balanced to; a connection the app makes to one of them (a pod IP it dialled) is pinned
   * to this endpoint at that address (proxy/outbound/route-table.ts). Absent: none.
   */
  readonly additionalAddresses?: readonly string[];
  /**
   * The pod declares this port (`port`) opaque, server-speaks-first, with its own annotation
   * `wren.io/opaque-ports` (its sidecar's inbound splices it unsniffed): a caller treats a
   * connection to it as opaque TCP without waiting for the client's first bytes, as
   * Linkerd's destination service hints a pod's opaque ports with its endpoints. Absent: not
   * declared (the caller's own protocol.opaquePorts and the Service's protocol decide).
   */
  readonly opaque?: boolean;
}

export type LoadBalancerKind = 'peak-ewma' | 'least-request' | 'round-robin' | 'random' | 'ring-hash';

export interface LoadBalancerPolicy {
  readonly kind: LoadBalancerKind;
  /** Linkerd's peak-EWMA defaults: default RTT 30 ms, decay 10 s. */
  readonly ewmaDefaultRttMs: number;
  readonly ewmaDecayMs: number;
  /** ring-hash: hash on this request header; '' hashes on the source address. */
  readonly hashHeader: string;
  /** ring-hash: Envoy RingHash minimum_ring_size / maximum_ring_size (entries); min <= max. */
  readonly minRingSize: number;
  readonly maxRingSize: number;
}

/** Envoy outlier_detection semantics and defaults (envoy/config/cluster/v3/outlier_detection.proto). */
export interface OutlierPolicy {
  readonly enabled: boolean;
  readonly intervalMs: number;
  readonly baseEjectionTimeMs: number;
  readonly maxEjectionTimeMs: number;
  readonly maxEjectionTimeJitterMs: number;
  readonly maxEjectionPercent: number;
  readonly consecutive5xx: number;
  readonly consecutiveGatewayFailure: number;
  readonly enforcingConsecutiveGatewayFailure: number;
  readonly splitExternalLocalOriginErrors: boolean;
  readonly consecutiveLocalOriginFailure: number;
  readonly successRateMinimumHosts: number;
  readonly successRateRequestVolume: number;
  readonly successRateStdevFactor: number;
  readonly enforcingSuccessRate: number;
  readonly failurePercentageThreshold: number;
  readonly enforcingFailurePercentage: number;
  readonly failurePercentageMinimumHosts: number;
  readonly failurePercentageRequestVolume: number;
  /** Below this share of healthy hosts the balancer ignores health (Envoy panic threshold). */
  readonly panicThresholdPercent: number;
}

export interface CircuitBreakerPolicy {
  readonly maxConnections: number;
  readonly maxPendingRequests: number;
  readonly maxRequests: number;
  readonly maxRetries: number;
  /** Per-endpoint failure accrual. */
  readonly accrual: 'off' | 'consecutive' | 'sampling';
  readonly consecutiveFailures: number;
  readonly samplingThreshold: number;
  readonly samplingDurationMs: number;
  readonly samplingMinimumRps: number;
  readonly backoffInitialMs: number;
  readonly backoffMaxMs: number;
}

export interface RetryPolicy {
  /** Empty: only the always-safe retries (connect failure, refused stream, reset before any byte). */
  readonly retryOn: readonly string[];
  readonly retriableStatusCodes: readonly number[];
  readonly attempts: number;
  readonly perTryTimeoutMs: number;
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
  readonly budgetRatio: number;
  readonly budgetMinPerSecond: number;
  readonly budgetTtlMs: number;
  readonly retryNonIdempotent: boolean;
  readonly maxBufferedBodyBytes: number;
  /**
   * A floor under the backoff between retries: an HTTPRoute rule's `retry.backoff` ("the
   * minimum duration a Gateway should wait between retry attempts"), set on the policy the
   * route layer derives for the rule (proxy/routing/port-routing.ts); absent = none.
   */
  readonly minBackoffMs?: number;
}

export interface TimeoutPolicy {
  readonly connectMs: number;
  /** 0 = off (default), so long-lived streams live. */
  readonly requestMs: number;
  readonly idleMs: number;
  /**
   * Not a TrafficPolicy field: an HTTPRoute rule's `timeouts.backendRequest`, set on the
   * derived policy of the rule's backends (proxy/routing/port-routing.ts). It bounds one
   * try up to its FULL response (GEP-1742), where the TrafficPolicy per-try timeout stops
   * at the response headers (Envoy's per_try_timeout). Absent or 0: not set.
   */
  readonly backendRequestMs?: number;
}

export interface HealthCheckPolicy {
  readonly kind: 'http' | 'tcp' | 'grpc';
  readonly path: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly healthyThreshold: number;
  readonly unhealthyThreshold: number;
}

/**
 * Which requests a fault applies to (a small subset of Istio's HTTPMatchRequest): a path
 * prefix and exact header values, all ANDed.
 */
export interface FaultMatch {
  /** '/' = every path. Matched against the request target up to its query (`/a` matches `/a`, `/a/b`, `/ab`). */
  readonly pathPrefix: string;
  /** Lower-case header names to exact values; empty: any headers. */
  readonly headers: Readonly<Record<string, string>>;
}

/**
 * Fault injection (Istio VirtualService `fault`, Envoy's HTTP fault filter), applied by
 * the CALLER's sidecar to requests it routes to the service: a fixed delay, an abort, or
 * both (delay first, then abort), each to `percentage` percent of the matching requests,
 * drawn independently.
 */
export interface FaultInjection {
  /** Milliseconds to hold the request before it goes on (YAML: a duration like "2s"). */
  readonly delay?: { readonly fixedDelay: number; readonly percentage: number };
  /**
   * Exactly one of `httpStatus` (200-599; a gRPC caller gets the grpc-status gRPC maps
   * it to) and `grpcStatus` (a status name such as UNAVAILABLE; an HTTP caller gets the
   * HTTP status Envoy maps it to).
   */
  readonly abort?: { readonly httpStatus?: number; readonly grpcStatus?: string; readonly percentage: number };
  /** Absent: every request to the service (port). */
  readonly match?: FaultMatch;
}

export interface TrafficPolicy {
  /** Absent: no fault injection (docs/resilience.md, Fault injection). */
  readonly fault?: FaultInjection;
  readonly loadBalancer: LoadBalancerPolicy;
  readonly outlierDetection: OutlierPolicy;
  readonly circuitBreaker: CircuitBreakerPolicy;
  readonly retry: RetryPolicy;
  readonly timeouts: TimeoutPolicy;
  readonly healthCheck: HealthCheckPolicy | null;
}

export interface ServicePort {
  readonly name: string;
  /** The Service port clients dial. */
  readonly port: number;
  readonly protocol: Protocol;
  readonly endpoints: readonly Endpoint[];
  /**
   * This port's own policy (a TrafficPolicy whose `spec.ports` names it), in force instead
   * of the Service's; absent: the Service's policy applies. Read it through portPolicy().
   */
  readonly policy?: TrafficPolicy;
}

export interface Service {
  readonly name: string;
  readonly namespace: string;
  readonly clusterIPs: readonly string[];
  readonly ports: readonly ServicePort[];
  /** The policy of every port that has none of its own. */
  readonly policy: TrafficPolicy;
  /**
   * The HTTPRoutes and GRPCRoutes in force for traffic to this Service (contract/routes.ts),
   * already chosen for the subscriber (consumer routes over producer routes) and in
   * tie-break order; absent or empty: route by authority only, as before.
   */
  readonly routes?: readonly ServiceRoute[];
}

/** The policy in force on one port of a service: the port's own, else the service's. */
export const portPolicy = (s: Service, p: ServicePort): TrafficPolicy => p.policy ?? s.policy;

/**
 * Inbound mTLS mode of a workload port (Istio PeerAuthentication): STRICT accepts only
 * mutual TLS from a peer whose certificate chains to the mesh trust bundle; PERMISSIVE
 * also accepts plaintext (then the caller has no identity).
 */
export type MtlsMode = 'STRICT' | 'PERMISSIVE';

/** Istio AuthorizationPolicy actions Wren implements (CUSTOM is not supported). */
export type AuthzAction = 'ALLOW' | 'DENY' | 'AUDIT';

/**
 * Who called. Fields are ANDed, the items of a list ORed. Every string is a pattern:
 * exact `abc`, prefix `abc*`, suffix `*abc`, or `*` (any non-empty value). Principals
 * are SPIFFE IDs, written in full (`spiffe://td/ns/NS/sa/SA`) or in Istio's short form
 * (`td/ns/NS/sa/SA`); both match the same peers.
 */
export interface AuthzSource {
  readonly principals: readonly string[];
  readonly notPrincipals: readonly string[];
  readonly namespaces: readonly string[];
  readonly notNamespaces: readonly string[];
  /** Wren extension. true: only callers without a client certificate; false: only authenticated ones; absent: either. */
  readonly unauthenticated?: boolean;
  /**
   * The request principal `<iss>/<sub>` of a verified JWT (RequestAuthentication); `*` =
   * any request with a valid token. HTTP-only (a TCP stream has no JWT).
   */
  readonly requestPrincipals: readonly string[];
  readonly notRequestPrincipals: readonly string[];
}

/** What is called. `methods`, `paths` and their `not` forms are HTTP-only. Ports are the workload's (target) ports, as strings like Istio's. */
export interface AuthzOperation {
  readonly ports: readonly string[];
  readonly notPorts: readonly string[];
  readonly methods: readonly string[];
  readonly notMethods: readonly string[];
  readonly paths: readonly string[];
  readonly notPaths: readonly string[];
}

/**
 * Extra condition. Keys: `request.headers[NAME]` (HTTP-only), `source.principal`, `source.namespace`, `destination.port`,
 * and from a verified JWT (HTTP-only): `request.auth.principal`, `request.auth.audiences`, `request.auth.presenter`,
 * `request.auth.claims[NAME]` (nested: `request.auth.claims[a][b]`).
 */
export interface AuthzCondition {
  readonly key: string;
  readonly values: readonly string[];
  readonly notValues: readonly string[];
}

/** One rule: one of `from`, one of `to` and every `when` must match; an empty list matches anything. */
export interface AuthzRule {
  readonly from: readonly { readonly source: AuthzSource }[];
  readonly to: readonly { readonly operation: AuthzOperation }[];
  readonly when: readonly AuthzCondition[];
}

export interface AuthzPolicy {
  /** `namespace/name` of the AuthorizationPolicy it came from; shown in logs, metrics and the reason header. */
  readonly name: string;
  readonly action: AuthzAction;
  /** No rules: the policy matches nothing (an ALLOW policy with no rules still makes the workload default-deny). */
  readonly rules: readonly AuthzRule[];
}

/** Where a JWT is read from: a header, with a prefix stripped (`Authorization: Bearer <token>`). */
export interface JwtHeaderLocation {
  /** Lower-case header name. */
  readonly name: string;
  /** The prefix before the token ('' = none), matched case-sensitively; a value without it holds no token and is skipped (Envoy's extractor). */
  readonly prefix: string;
}

/** A claim copied into a request header after a successful verification (Istio outputClaimToHeaders). */
export interface JwtClaimToHeader {
  /** Lower-case header name. */
  readonly header: string;
  /** Claim name; `a.b` reads a nested claim. */
  readonly claim: string;
}

/**
 * One issuer a workload accepts end-user tokens from (Istio RequestAuthentication
 * `jwtRules[]`, security/v1beta1/jwt.proto). Exactly one of `jwks`, `jwksUri`, `jwksFile`
 * is set ('' = not set).
 */
export interface JwtRule {
  /** Tokens whose `iss` differs are not verified with this rule. */
  readonly issuer: string;
  /** Accepted `aud` values (any one); empty: the audience is not checked. */
  readonly audiences: readonly string[];
  /** JWKS URL, fetched by the proxy with caching and refresh. */
  readonly jwksUri: string;
  /** Inline JWKS (JSON text). */
  readonly jwks: string;
  /** Wren extension: a JWKS file on the proxy's file system (a mounted Secret or ConfigMap), re-read on refresh. */
  readonly jwksFile: string;
  /** Header locations; with no fromHeaders and no fromParams: `Authorization: Bearer` and `?access_token=` (Envoy's defaults). */
  readonly fromHeaders: readonly JwtHeaderLocation[];
  readonly fromParams: readonly string[];
  /** false (default): the token is removed from the request before it reaches the app. */
  readonly forwardOriginalToken: boolean;
  readonly outputClaimToHeaders: readonly JwtClaimToHeader[];
  /** Header to receive the verified payload, base64url-encoded ('' = none). */
  readonly outputPayloadToHeader: string;
}

/** A token bucket's shape: refilled at `requestsPerSecond`, holding at most `burst` tokens (full at start). */
export interface TokenRate {
  readonly requestsPerSecond: number;
  readonly burst: number;
}

/**
 * One RateLimitPolicy that selects the workload (Linkerd's HTTPLocalRateLimitPolicy with
 * Consul's instance-level route limits), enforced by the workload's inbound sidecar on
 * HTTP and gRPC requests (docs/resilience.md, Local rate limiting):
 * - `total`: one bucket for every request to the workload;
 * - `routes`: the first route whose match fits the request takes the place of `total`
 *   for it (Consul: the first matching path's limit applies);
 * - `identity`: one bucket per caller SPIFFE identity, all unauthenticated callers share one;
 * - `overrides`: callers named there take their override's bucket (one per override,
 *   shared by its clients) instead of a per-identity one.
 * A request needs a token from each bucket that applies to it; a refused request takes none.
 */
export interface RateLimitPolicy {
  /** `namespace/name` of the RateLimitPolicy. */
  readonly name: string;
  /** The workload ports it applies to; empty: every port. */
  readonly ports: readonly number[];
  readonly total?: TokenRate;
  readonly identity?: TokenRate;
  readonly overrides: readonly (TokenRate & { readonly clients: readonly string[] })[];
  /** `method` '' = any method; `pathPrefix` '/' = any path. */
  readonly routes: readonly (TokenRate & { readonly match: { readonly pathPrefix: string; readonly method: string } })[];
}

/**
 * Everything the inbound side of one workload enforces, already resolved for it by
 * the control plane (or written in the proxy's static config): the mTLS mode with
 * per-port overrides, and the authorization policies that select the workload.
 */
export interface InboundPolicy {
  readonly mtls: { readonly mode: MtlsMode };
  /** Keyed by the workload's port number ("9090"). */
  readonly portLevelMtls: Readonly<Record<string, { readonly mode: MtlsMode }>>;
  readonly authorizationPolicies: readonly AuthzPolicy[];
  /** Every jwtRule of the RequestAuthentications that select the workload (none: no JWT work at all). */
  readonly jwtRules: readonly JwtRule[];
  /** The RateLimitPolicies that select the workload, by name; absent or empty: no rate limiting. */
  readonly rateLimits?: readonly RateLimitPolicy[];
  /**
   * Workload ports a Service selecting it declares opaque (server-first protocols: MySQL,
   * SMTP...), which the inbound splices unsniffed besides its static protocol.opaquePorts.
   * Carried beside the policy JSON (InboundPolicyResource.opaque_ports), never in it: not
   * a field of the static `policy:` config. Absent or empty: the static list only.
   */
  readonly opaquePorts?: readonly number[];
}

/** A versioned snapshot of everything one proxy needs. */
export interface MeshSnapshot {
  readonly version: string;
  /** Where it came from: `file:PATH`, `control-plane:ADDR`. Shown in /config_dump. */
  readonly source: string;
  readonly services: readonly Service[];
  /** The local workload's inbound policy; absent = keep the one in force. */
  readonly inboundPolicy?: InboundPolicy;
  /** The telemetry settings the control plane resolved for the local workload; absent = keep the ones in force. */
  readonly telemetry?: PushedTelemetry;
  /** The egress mode and ExternalServices the control plane pushed (contract/egress.ts); absent = keep the ones in force. */
  readonly egress?: EgressSettings;
}

/**
 * Telemetry settings one layer sets (docs/observability.md, Telemetry settings): the
 * control plane's resolution of the Telemetry resources that select a workload. Each
 * field undefined = not set at this layer (the proxy falls back to its defaults); all
 * undefined = no pushed overrides. Shape of the proxy's TelemetryOverrides.
 */
export interface PushedTelemetry {
  readonly tracing: { readonly samplingPercent: number | undefined };
  readonly accessLog: { readonly enabled: boolean | undefined; readonly samplingPercent: number | undefined };
}

export const serviceKey = (s: { name: string; namespace: string }): string => `${s.name}.${s.namespace}`;
export const endpointKey = (e: { address: string; port: number }): string =>
  e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;

const KEYS = new WeakMap<Endpoint, string>();

/**
 * endpointKey() of an endpoint object of a snapshot, made once per object: the data path
 * asks for it several times per request (the attempts tried, the cluster's report), and
 * building and hashing the string each time was 1-2 % of an outbound sidecar at saturation.
 * Endpoints are immutable, so the key cannot go stale.
 */
export function keyOfEndpoint(e: Endpoint): string {
  let k = KEYS.get(e);
  if (k === undefined) KEYS.set(e, (k = endpointKey(e)));
  return k;
}

const NONE: readonly Endpoint[] = Object.freeze([]);

/**
 * A dual-stack endpoint at each of its other addresses (Endpoint.additionalAddresses, Envoy's
 * LbEndpoint additional_addresses): the same pod, port, identity and proxy port, dialled
 * there, with no addresses of its own. What pinned traffic to such an address routes to
 * (route-table.ts), is charged to (resilience/cluster.ts) and keeps pooled connections to
 * (endpoint-drain.ts). None, and no allocation, for an endpoint with one address.
 */
export function atOtherAddresses(e: Endpoint): readonly Endpoint[] {
  const alts = e.additionalAddresses;
  if (alts === undefined || alts.length === 0) return NONE;
  return alts.map((address) => Object.freeze({ ...e, address, additionalAddresses: undefined }));
}
