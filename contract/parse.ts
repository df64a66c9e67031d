import { SocketAddress, isIP } from 'node:net';
import { DEFAULT_POLICY } from './defaults.js';
import { parseAuthzPolicy, PORT_STRING } from './parse-authz.js';
import { parseServiceRoutes } from './parse-routes.js';
import type {
  Endpoint, InboundPolicy, JwtRule, MtlsMode, Protocol, PushedTelemetry, Service, ServicePort, TrafficPolicy, Workload,
} from './model.js';
import { parseFaultInjection } from './parse-fault.js';
import { parseRateLimitPolicy } from './parse-ratelimit.js';
import {
  arr, bool, duration, fail, jsonSyntaxProblem, literal, map, num, obj, optional, record, str, withDefault,
  type Parser,
} from '../common/schema.js';

/**
 * Parsers from the user-facing spelling (YAML: camelCase fields, durations as "1s")
 * to the readonly model. Shared by the proxy's static config and the control plane
 * (file source, TrafficPolicy CRD translation), so both reject the same mistakes
 * with the same field paths.
 */
const D = DEFAULT_POLICY;
const pct = (def: number) => num({ min: 0, max: 100, default: def });
const count = (def: number) => num({ int: true, min: 0, default: def });
/**
 * A period or timeout that must be > 0, as Envoy's `(validate.rules).duration = {gt {}}` on
 * HealthCheck.interval/timeout and OutlierDetection.interval: 0 would probe back to back,
 * abort every probe at once, or never run the outlier sweep that un-ejects endpoints.
 */
const positiveDuration = (def: number) => map(duration(def), (ms, path) => (ms > 0 ? ms : fail(path, `expected a duration greater than 0, got ${ms}`)));
/**
 * A health check's `path`: visible ASCII only, so no space, CR or LF can reach a request
 * line or header (Envoy: HttpHealthCheck.path is a `HTTP_HEADER_VALUE`). For kind http it
 * is the request target, origin-form, so it starts with "/" (RFC 9112 section 3.2.1); for
 * grpc it names the service, with or without a leading "/" (health-checker.ts).
 */
/** Envoy refuses a RingHash with minimum_ring_size > maximum_ring_size (ring_hash_lb.cc); so do we. */
const ringSizesInOrder = <T extends { readonly minRingSize: number; readonly maxRingSize: number }>(lb: T, path: string): T =>
  lb.minRingSize > lb.maxRingSize ? fail(`${path}.minRingSize`, `must not exceed maxRingSize (${lb.maxRingSize}), got ${lb.minRingSize}`) : lb;
const healthCheckPath = map(str({ default: '/' }), (p, path) =>
  /^[!-~]*$/.test(p) ? p : fail(path, `expected visible ASCII only (no spaces, CR or LF), got ${JSON.stringify(p)}`),
);
const httpPathStartsWithSlash = <T extends { readonly kind: string; readonly path: string }>(hc: T, path: string): T =>
  hc.kind === 'http' && !hc.path.startsWith('/') ? fail(`${path}.path`, `an http health check path starts with "/", got ${JSON.stringify(hc.path)}`) : hc;

export const parseTrafficPolicy: Parser<TrafficPolicy> = obj({
  fault: optional(parseFaultInjection),
  loadBalancer: map(obj({
    kind: literal(['peak-ewma', 'least-request', 'round-robin', 'random', 'ring-hash'] as const, D.loadBalancer.kind),
    ewmaDefaultRttMs: duration(D.loadBalancer.ewmaDefaultRttMs),
    ewmaDecayMs: duration(D.loadBalancer.ewmaDecayMs),
    // '' (none) or a header name (headerName: RFC 9110 token, lower-cased as the codecs store names: `X-User` never matched).
    hashHeader: map(str({ default: D.loadBalancer.hashHeader }), (v, path) => (v === '' ? v : headerName(v, path))),
    minRingSize: num({ int: true, min: 1, max: 8_388_608, default: D.loadBalancer.minRingSize }),
    maxRingSize: num({ int: true, min: 1, max: 8_388_608, default: D.loadBalancer.maxRingSize }),
  }), ringSizesInOrder),
  outlierDetection: obj({
    enabled: bool(D.outlierDetection.enabled),
    intervalMs: positiveDuration(D.outlierDetection.intervalMs),
    baseEjectionTimeMs: duration(D.outlierDetection.baseEjectionTimeMs),
    maxEjectionTimeMs: duration(D.outlierDetection.maxEjectionTimeMs),
    maxEjectionTimeJitterMs: duration(D.outlierDetection.maxEjectionTimeJitterMs),
    maxEjectionPercent: pct(D.outlierDetection.maxEjectionPercent),
    consecutive5xx: count(D.outlierDetection.consecutive5xx),
    consecutiveGatewayFailure: count(D.outlierDetection.consecutiveGatewayFailure),
    enforcingConsecutiveGatewayFailure: pct(D.outlierDetection.enforcingConsecutiveGatewayFailure),
    splitExternalLocalOriginErrors: bool(D.outlierDetection.splitExternalLocalOriginErrors),
    consecutiveLocalOriginFailure: count(D.outlierDetection.consecutiveLocalOriginFailure),
    successRateMinimumHosts: count(D.outlierDetection.successRateMinimumHosts),
    successRateRequestVolume: count(D.outlierDetection.successRateRequestVolume),
    successRateStdevFactor: num({ min: 0, default: D.outlierDetection.successRateStdevFactor }),
    enforcingSuccessRate: pct(D.outlierDetection.enforcingSuccessRate),
    failurePercentageThreshold: pct(D.outlierDetection.failurePercentageThreshold),
    enforcingFailurePercentage: pct(D.outlierDetection.enforcingFailurePercentage),
    failurePercentageMinimumHosts: count(D.outlierDetection.failurePercentageMinimumHosts),
    failurePercentageRequestVolume: count(D.outlierDetection.failurePercentageRequestVolume),
    panicThresholdPercent: pct(D.outlierDetection.panicThresholdPercent),
  }),
  circuitBreaker: obj({
    maxConnections: count(D.circuitBreaker.maxConnections),
    maxPendingRequests: count(D.circuitBreaker.maxPendingRequests),
    maxRequests: count(D.circuitBreaker.maxRequests),
    maxRetries: count(D.circuitBreaker.maxRetries),
    accrual: literal(['off', 'consecutive', 'sampling'] as const, D.circuitBreaker.accrual),
    consecutiveFailures: num({ int: true, min: 1, default: D.circuitBreaker.consecutiveFailures }),
    samplingThreshold: num({ min: 0, max: 1, default: D.circuitBreaker.samplingThreshold }),
    samplingDurationMs: duration(D.circuitBreaker.samplingDurationMs),
    samplingMinimumRps: num({ min: 0, default: D.circuitBreaker.samplingMinimumRps }),
    backoffInitialMs: duration(D.circuitBreaker.backoffInitialMs),
    backoffMaxMs: duration(D.circuitBreaker.backoffMaxMs),
  }),
  retry: obj({
    retryOn: arr(
      literal([
        '5xx', 'gateway-error', 'reset', 'connect-failure', 'refused-stream', 'per-try-timeout', 'retriable-status-codes',
        'cancelled', 'deadline-exceeded', 'internal', 'resource-exhausted', 'unavailable',
      ] as const),
      { default: D.retry.retryOn as readonly never[] },
    ),
    retriableStatusCodes: arr(num({ int: true, min: 100, max: 599 }), { default: D.retry.retriableStatusCodes }),
    attempts: num({ int: true, min: 0, max: 10, default: D.retry.attempts }),
    perTryTimeoutMs: duration(D.retry.perTryTimeoutMs),
    backoffBaseMs: duration(D.retry.backoffBaseMs),
    backoffMaxMs: duration(D.retry.backoffMaxMs),
    budgetRatio: num({ min: 0, max: 1, default: D.retry.budgetRatio }),
    budgetMinPerSecond: num({ min: 0, default: D.retry.budgetMinPerSecond }),
    // Finagle's RetryBudget requires a TTL of 1 to 60 seconds: 0 kept no deposits, so every
    // retry was refused (always-safe ones included), and a long window lets a burst of
    // retries spend credit deposited minutes earlier.
    budgetTtlMs: map(duration(D.retry.budgetTtlMs), (ms, path) =>
      ms >= 1000 && ms <= 60_000 ? ms : fail(path, `expected a duration from 1s to 60s (Finagle RetryBudget ttl), got ${ms}`),
    ),
    retryNonIdempotent: bool(D.retry.retryNonIdempotent),
    maxBufferedBodyBytes: count(D.retry.maxBufferedBodyBytes),
  }),
  timeouts: obj({
    connectMs: duration(D.timeouts.connectMs),
    requestMs: duration(D.timeouts.requestMs),
    idleMs: duration(D.timeouts.idleMs),
  }),
  healthCheck: withDefault(
    map(
      obj({
        kind: literal(['http', 'tcp', 'grpc'] as const),
        path: healthCheckPath,
        intervalMs: positiveDuration(10_000),
        timeoutMs: positiveDuration(1_000),
        healthyThreshold: num({ int: true, min: 1, default: 1 }),
        unhealthyThreshold: num({ int: true, min: 1, default: 3 }),
      }),
      httpPathStartsWithSlash,
    ),
    null,
  ),
}) as Parser<TrafficPolicy>;

const SPIFFE = /^spiffe:\/\/[a-z0-9.-]+\/ns\/[a-z0-9-]+\/sa\/[a-z0-9.-]+$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/**
 * An IP address, in canonical text form: IPv6 in lower case with the longest run of zero
 * groups as `::` (RFC 5952), as the kernel prints it (inet_ntop, SO_ORIGINAL_DST), so a
 * route looked up by the original destination matches `FD00:0:0::3` written in a manifest.
 */
const ipAddress: Parser<string> = map(str(), (s, path) => {
  const family = isIP(s);
  if (!family) return fail(path, `expected an IPv4 or IPv6 address, got ${JSON.stringify(s)}`);
  return new SocketAddress({ address: s, family: family === 6 ? 'ipv6' : 'ipv4' }).address;
});

/**
 * A workload's name and labels become metric label values at every peer: Kubernetes
 * object names (DNS subdomains, at most 253) and label values (at most 63, RFC 1123-ish).
 */
const LABEL_VALUE = /^$|^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
export const parseWorkload: Parser<Workload> = obj({
  name: str({ pattern: /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/ }),
  namespace: str({ pattern: DNS_LABEL }),
  app: str({ default: '', pattern: LABEL_VALUE }),
  version: str({ default: '', pattern: LABEL_VALUE }),
});

export const parseEndpoint: Parser<Endpoint> = obj({
  address: ipAddress,
  port: num({ int: true, min: 1, max: 65535 }),
  proxyPort: withDefault(num({ int: true, min: 1, max: 65535 }), null as number | null),
  identity: withDefault(str({ pattern: SPIFFE }), ''),
  weight: num({ int: true, min: 1, max: 1_000_000, default: 1 }),
  zone: str({ default: '' }),
  ready: bool(true),
  workload: optional(parseWorkload),
  additionalAddresses: optional(arr(ipAddress)),
  opaque: optional(bool()),
});

const protocols: readonly Protocol[] = ['detect', 'http1', 'http2', 'grpc', 'opaque'];

export const parseServicePort: Parser<ServicePort> = obj({
  name: str({ default: '' }),
  port: num({ int: true, min: 1, max: 65535 }),
  protocol: literal(protocols, 'detect'),
  endpoints: arr(parseEndpoint, { default: [] }),
});

export const parseService: Parser<Service> = map(
  obj({
    name: str({ pattern: DNS_LABEL }),
    namespace: str({ pattern: DNS_LABEL, default: 'default' }),
    clusterIPs: arr(ipAddress, { default: [] }),
    ports: arr(parseServicePort, { min: 1 }),
    policy: withDefault(parseTrafficPolicy, DEFAULT_POLICY),
    // HTTPRoutes / GRPCRoutes in force for this service (contract/routes.ts, docs/traffic-management.md).
    routes: optional(parseServiceRoutes),
  }),
  (s, path) => {
    const seen = new Set<number>();
    s.ports.forEach((p, i) => {
      if (seen.has(p.port)) fail(`${path ? path + '.' : ''}ports[${i}].port`, `duplicate port ${p.port}`);
      seen.add(p.port);
    });
    // A route naming a port the service does not have is a mistake (a typo in static config,
    // a stale compile): refused with its path rather than silently never applying.
    s.routes?.forEach((r, i) =>
      r.ports.forEach((port, j) => {
        if (!seen.has(port)) fail(`${path ? path + '.' : ''}routes[${i}].ports[${j}]`, `the service has no port ${port}`);
      }),
    );
    if (s.routes === undefined) {
      const { routes: _none, ...rest } = s;
      return Object.freeze(rest) as typeof s;
    }
    return s;
  },
);

export const parseServices: Parser<readonly Service[]> = map(arr(parseService, { default: [] }), (list, path) => {
  const seen = new Set<string>();
  list.forEach((s, i) => {
    const key = `${s.name}.${s.namespace}`;
    if (seen.has(key)) fail(`${path}[${i}].name`, `duplicate service ${key}`);
    seen.add(key);
  });
  return list;
});



export const MTLS_MODES: readonly MtlsMode[] = ['STRICT', 'PERMISSIVE'];

/** Keys of portLevelMtls: port numbers 1-65535 written as strings. */
export function checkPortKeys<T>(rec: Readonly<Record<string, T>>, path: string): Readonly<Record<string, T>> {
  for (const k of Object.keys(rec)) if (!PORT_STRING.test(k)) fail(`${path}.${k}`, 'expected a port number 1-65535 as the key');
  return rec;
}

// ---- RequestAuthentication jwtRules (Istio security/v1beta1/jwt.proto) ----

/** An HTTP field name (RFC 9110 section 5.1 token), stored lower-case. */
export const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const headerName: Parser<string> = map(str({ pattern: HEADER_NAME }), (v) => v.toLowerCase());
const nonEmpty = str({ pattern: /^\S(.*\S)?$/ });
/** http(s), a host, no credentials in the authority (`user:password@`: fetch refuses them, and the URI is shown in logs and a metric label). */
export const JWKS_URI = /^https?:\/\/[^\s/?#@]+(?:[/?#]\S*)?$/;

/**
 * A jwksUri. The refusal never quotes what would be a credential: a `user:password@` is
 * what the pattern refuses, and a refusal is logged by the control plane, listed in its
 * /debug/rejected and `wren check`, and printed by `wren proxy` for its own config, so the
 * value is shown with its userinfo as `REDACTED@` (the access log's spelling) and without
 * its query (an API key; how the proxy's logs show a jwksUri, contract/jwks-uri-shown.ts uriShown).
 */
const jwksUri: Parser<string> = (raw, path) => {
  if (typeof raw !== 'string' || JWKS_URI.test(raw)) return str()(raw, path);
  const credentials = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*@/i.test(raw);
  const shown = raw.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/?#]*@/i, '$1REDACTED@').replace(/[?#][^]*$/, '?…');
  const got = JSON.stringify(shown.length > 100 ? `${shown.slice(0, 100)}…` : shown);
  const why = credentials ? ' (no credentials, user:password@: the proxy fetches it anonymously and shows it in logs and metrics)' : '';
  return fail(path, `expected to match ${JWKS_URI}${why}, got ${got}`);
};

/**
 * An inline JWKS (RFC 7517 section 5): a JSON object with a `keys` list of public keys.
 * Symmetric (`kty: oct`) and private keys are refused: a JWKS names public keys, and an
 * HMAC key in it would let anyone who can read the policy mint tokens.
 */
const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth'];

export const parseJwksText: Parser<string> = (raw, path) => {
  const text = str()(raw, path);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    return fail(path, `expected a JSON Web Key Set (JSON), got ${jsonSyntaxProblem(e)}`);
  }
  const keys = (doc as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys)) return fail(path, 'expected a JSON Web Key Set: an object with a "keys" list');
  keys.forEach((k: unknown, i) => {
    const key = k as Record<string, unknown> | null;
    if (!key || typeof key !== 'object' || typeof key.kty !== 'string') fail(`${path}.keys[${i}]`, 'expected a JWK with a "kty"');
    else if (key.kty === 'oct') fail(`${path}.keys[${i}].kty`, 'symmetric keys (kty "oct") are not accepted: a JWKS holds public keys');
    // Any private member (RFC 7518 sections 6.2.2, 6.3.2, 6.4: EC and OKP `d`; RSA `d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`).
    else if (PRIVATE_JWK_MEMBERS.some((m) => m in key)) fail(`${path}.keys[${i}]`, 'is a private key; publish only the public part');
  });
  return text;
};

/** '' is "not set" (the model's spelling, which the wire carries); the CRD form rejects it (policy-objects.ts). */
const unsetOr =
  <T>(p: Parser<T>, unset: T): Parser<T> =>
  (raw, path) =>
    raw === undefined || raw === null || raw === '' ? unset : p(raw, path);

/**
 * Headers a verified token's claims (outputClaimToHeaders) or payload (outputPayloadToHeader)
 * may not be written to. The proxy sets them and removes the caller's copies from every
 * request, so the name must not be one that frames or routes the request or belongs to the
 * connection (RFC 9110 section 7.6.1, RFC 9112 section 6: a claim in `content-length` or
 * `transfer-encoding` would reframe the request to the app, one in `host` re-address it),
 * nor one of the mesh's own: `x-forwarded-client-cert` carries the caller's verified
 * identity to the app (a claim there would let a token holder pose as any workload) and
 * `wren-*` are the sidecars' (docs/request-authentication.md). Istio checks only that the
 * name is a header name; Envoy keeps these headers for itself as well.
 */
export const RESERVED_OUTPUT_HEADERS: ReadonlySet<string> = new Set([
  'host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'proxy-connection', 'upgrade', 'te', 'trailer',
  'http2-settings', 'proxy-authenticate', 'proxy-authorization', 'x-forwarded-client-cert',
]);
const outputHeader: Parser<string> = map(headerName, (h, path) =>
  RESERVED_OUTPUT_HEADERS.has(h) || h.startsWith('wren-')
    ? fail(path, `${JSON.stringify(h)} is a header the proxy keeps for itself (message framing, the connection, or the mesh's own x-forwarded-client-cert and wren-*): choose another name`)
    : h,
);

export const parseJwtRule: Parser<JwtRule> = map(
  obj({
    issuer: nonEmpty,
    audiences: arr(nonEmpty, { default: [] }),
    jwksUri: unsetOr(jwksUri, ''),
    jwks: unsetOr(parseJwksText, ''),
    jwksFile: unsetOr(str({ pattern: /^\/\S+$/ }), ''),
    fromHeaders: arr(obj({ name: headerName, prefix: str({ default: '' }) }), { default: [] }),
    fromParams: arr(str({ pattern: /^[A-Za-z0-9._~-]+$/ }), { default: [] }),
    forwardOriginalToken: bool(false),
    outputClaimToHeaders: arr(obj({ header: outputHeader, claim: nonEmpty }), { default: [] }),
    outputPayloadToHeader: unsetOr(outputHeader, ''),
  }),
  (r, path) => {
    const set = [r.jwks && 'jwks', r.jwksUri && 'jwksUri', r.jwksFile && 'jwksFile'].filter(Boolean);
    if (set.length !== 1)
      fail(path, set.length === 0 ? 'one of jwksUri, jwks or jwksFile is required (OpenID discovery is not supported)' : `only one of jwksUri, jwks and jwksFile may be set, got ${set.join(', ')}`);
    return r;
  },
);

/** A workload's resolved inbound policy: the proxy's static `policy:` and the discovery stream's `inbound_policy`. */
export const parseInboundPolicy: Parser<InboundPolicy> = obj({
  mtls: obj({ mode: literal(MTLS_MODES, 'STRICT') }),
  portLevelMtls: map(record(obj({ mode: literal(MTLS_MODES) })), checkPortKeys),
  authorizationPolicies: arr(parseAuthzPolicy, { default: [] }),
  jwtRules: arr(parseJwtRule, { default: [] }),
  rateLimits: arr(parseRateLimitPolicy, { default: [] }),
});

/**
 * The telemetry settings the control plane pushes (discovery `telemetry.overrides_json`),
 * the proxy config's `telemetry` spelling: every field optional, unknown fields refused.
 */
export const parsePushedTelemetry: Parser<PushedTelemetry> = obj({
  tracing: obj({ samplingPercent: optional(num({ min: 0, max: 100 })) }),
  accessLog: obj({ enabled: optional(bool()), samplingPercent: optional(num({ min: 0, max: 100 })) }),
});
