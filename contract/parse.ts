import { SocketAddress, isIP } from 'node:net';
import { DEFAULT_POLICY } from './defaults.js';
import { parseServiceRoutes } from './parse-routes.js';
import type {
  AuthzCondition, AuthzOperation, AuthzPolicy, AuthzRule, AuthzSource, Endpoint, InboundPolicy, JwtRule, MtlsMode, Protocol, PushedTelemetry, Service, ServicePort, TrafficPolicy, Workload,
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
const healthCheckPath = map(str({ default: '/' }), (p, path) =>
  /^[!-~]*$/.test(p) ? p : fail(path, `expected visible ASCII only (no spaces, CR or LF), got ${JSON.stringify(p)}`),
);
const httpPathStartsWithSlash = <T extends { readonly kind: string; readonly path: string }>(hc: T, path: string): T =>
  hc.kind === 'http' && !hc.path.startsWith('/') ? fail(`${path}.path`, `an http health check path starts with "/", got ${JSON.stringify(hc.path)}`) : hc;

export const parseTrafficPolicy: Parser<TrafficPolicy> = obj({
  fault: optional(parseFaultInjection),
  loadBalancer: obj({
    kind: literal(['peak-ewma', 'least-request', 'round-robin', 'random', 'ring-hash'] as const, D.loadBalancer.kind),
    ewmaDefaultRttMs: duration(D.loadBalancer.ewmaDefaultRttMs),
    ewmaDecayMs: duration(D.loadBalancer.ewmaDecayMs),
    // '' (none) or a header name (headerName: RFC 9110 token, lower-cased as the codecs store names: `X-User` never matched).
    hashHeader: map(str({ default: D.loadBalancer.hashHeader }), (v, path) => (v === '' ? v : headerName(v, path))),
    minRingSize: num({ int: true, min: 1, max: 8_388_608, default: D.loadBalancer.minRingSize }),
  }),
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
    budgetTtlMs: duration(D.retry.budgetTtlMs),
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


// ---- inbound policy (PeerAuthentication / AuthorizationPolicy, resolved per workload) ----

const required =
  <T>(p: Parser<T>): Parser<T> =>
  (raw, path) =>
    raw === undefined || raw === null ? fail(path, 'is required') : p(raw, path);

/**
 * Istio's string match forms (authorization_policy.proto, "Rule"): exact `abc`, prefix
 * `abc*`, suffix `*abc`, presence `*`. A `*` anywhere else is rejected, as Istio does.
 */
export const MATCH_FORM = /^(\*|\*?[^*]+|[^*]+\*)$/;
const matchPattern: Parser<string> = map(str(), (v, path) =>
  MATCH_FORM.test(v) ? v : fail(path, `only exact "x", prefix "x*", suffix "*x" and presence "*" matches are supported, got ${JSON.stringify(v)}`),
);
const patterns = arr(matchPattern, { default: [] });
/** A port number 1-65535 written as a string without leading zeros (Istio's `ports: ["8080"]`, portLevelMtls keys). */
export const PORT_STRING = /^([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$/;
const portString: Parser<string> = map(str(), (v, path) => (PORT_STRING.test(v) ? v : fail(path, `expected a port number 1-65535, got ${JSON.stringify(v)}`)));

/**
 * Condition keys Wren implements (Istio's conditions page): headers, the peer, the port,
 * and what a verified JWT says (`request.auth.*`; `request.auth.claims[a][b]` is the
 * nested claim b of claim a). A claim name is anything without brackets.
 */
export const CONDITION_KEY =
  /^(request\.headers\[[!#$%&'*+.^_`|~0-9A-Za-z-]+\]|source\.principal|source\.namespace|destination\.port|request\.auth\.(principal|audiences|presenter)|request\.auth\.claims(\[[^[\]]+\])+)$/;

/**
 * `destination.port` is compared with the workload port as a string: a value that is no
 * port number (`"http"`, `"80*"`, `"080"`) never matches. Istio refuses them
 * (security.ValidateAttribute: "bad port"), and so does the CRD; the parser reads them as
 * what they are, a value that matches nothing, and authzNeverMatching reports them.
 */
const parseCondition: Parser<AuthzCondition> = map(
  obj({ key: str({ pattern: CONDITION_KEY }), values: patterns, notValues: patterns }),
  (c, path) => (c.values.length === 0 && c.notValues.length === 0 ? fail(`${path}.values`, 'values or notValues must be set') : c),
);

/**
 * HTTP methods as a request carries them: a token (RFC 9110 section 9.1) in upper case.
 * Methods are case-sensitive and the codecs refuse a request whose method has a lower-case
 * letter (docs/http1-codec.md, `lowercase-method`), so `get` (or `get*`) can never match.
 * Istio accepts any string. The CRD refuses other forms at `kubectl apply`; the parser
 * accepts them as values that match nothing, as the release before did (an object stored
 * before the CRD changed keeps its meaning), and authzNeverMatching reports them.
 */
const METHOD_CHARS = "[!#$%&'+.^_`|~0-9A-Z-]+";
const METHOD_FORM = new RegExp(`^(\\*|\\*?${METHOD_CHARS}|${METHOD_CHARS}\\*)$`);

/**
 * Request paths as the authorizer sees them start with `/` (a request-target in no other
 * form gets 400; absolute-form is reduced to its path) and carry no query or fragment
 * (normalizePath removes them). So an exact or prefix path without the leading `/`, or
 * any path with `?` or `#`, can never match (`admin`, `/admin?x=1`). Suffix (`*.php`) and
 * presence (`*`) forms need no `/`. As for methods: the CRD refuses the other forms, the
 * parser reads them as values that match nothing and authzNeverMatching reports them.
 */
const PATH_FORM = /^(\*|\*[^*?#]+|\/[^*?#]*\*?)$/;

/**
 * A list that is absent (matches anything) or holds at least one item. Istio refuses an
 * explicit empty `from` / `to` ("`from` must not be empty"): written out, it is a mistake
 * (a template that rendered nothing), and Wren would read it as "anything".
 */
const absentOrNonEmpty = <T>(item: Parser<T>, what: string): Parser<readonly T[]> => {
  const list = arr(item);
  return (raw, path) => {
    if (raw === undefined) return Object.freeze([]) as readonly T[];
    const out = list(raw, path);
    return out.length > 0 ? out : fail(path, `must not be empty (leave it out to match any ${what})`);
  };
};

const SOURCE_LISTS = ['principals', 'notPrincipals', 'namespaces', 'notNamespaces', 'requestPrincipals', 'notRequestPrincipals'] as const;
const OPERATION_LISTS = ['ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths'] as const;

/**
 * An Istio field Wren does not implement (`source.ipBlocks`, `operation.hosts`, `targetRefs`...).
 * Absent or empty is Istio's "not set" and accepted; anything else is refused with its path.
 * The CRD says the same (`maxItems: 0` / `maxProperties: 0`), so what `kubectl apply` takes
 * is what the control plane enforces: a Helm value that renders `hosts: []` must not leave
 * the whole policy unenforced. Declared rather than left out of the CRD: an undeclared
 * field is pruned, and an ALLOW whose restriction was pruned allows more.
 */
export function unsupportedField(kind: 'list' | 'object', hint: string): Parser<undefined> {
  return (raw, path) => {
    if (raw === undefined) return undefined;
    const isList = Array.isArray(raw);
    const isObject = raw !== null && typeof raw === 'object' && !isList;
    if (kind === 'list' ? !isList : !isObject) return fail(path, `expected ${kind === 'list' ? 'a list' : 'an object'}, got ${raw === null ? 'null' : typeof raw}`);
    const empty = isList ? (raw as unknown[]).length === 0 : Object.keys(raw as object).length === 0;
    return empty ? undefined : fail(path, `is not supported by Wren (${hint}); only an empty ${kind}, Istio's "not set", is accepted`);
  };
}

/** The parsed object without the unsupported fields (always undefined): the model has no room for them. */
function without<T extends object, K extends string>(keys: readonly K[]): (o: T) => Omit<T, K> {
  return (o) => Object.freeze(Object.fromEntries(Object.entries(o).filter(([k]) => !(keys as readonly string[]).includes(k)))) as Omit<T, K>;
}

const UNSUPPORTED_SOURCE = ['ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks', 'serviceAccounts', 'notServiceAccounts'] as const;
const UNSUPPORTED_OPERATION = ['hosts', 'notHosts'] as const;
const unsupportedSource = Object.fromEntries(UNSUPPORTED_SOURCE.map((k) => [k, unsupportedField('list', 'match callers by principals or namespaces')])) as Record<
  (typeof UNSUPPORTED_SOURCE)[number],
  Parser<undefined>
>;
const unsupportedOperation = Object.fromEntries(UNSUPPORTED_OPERATION.map((k) => [k, unsupportedField('list', 'the inbound sidecar serves one workload: match ports or paths')])) as Record<
  (typeof UNSUPPORTED_OPERATION)[number],
  Parser<undefined>
>;

const sourceShape: Parser<AuthzSource> = map(
  obj({
    principals: patterns, notPrincipals: patterns, namespaces: patterns, notNamespaces: patterns, unauthenticated: optional(bool()),
    requestPrincipals: patterns, notRequestPrincipals: patterns, ...unsupportedSource,
  }),
  without(UNSUPPORTED_SOURCE),
);
const operationShape: Parser<AuthzOperation> = map(
  obj({
    ports: arr(portString, { default: [] }), notPorts: arr(portString, { default: [] }), methods: patterns, notMethods: patterns,
    paths: patterns, notPaths: patterns, ...unsupportedOperation,
  }),
  without(UNSUPPORTED_OPERATION),
);

/**
 * A `source` or `operation` that restricts nothing would match every caller or request.
 * Istio refuses it ("`from.source` must not be empty", "`to.operation` must not be
 * empty"), and so does the resource form: it is what the API server leaves of a source
 * whose only field was misspelt (`principal:` for `principals:`; unknown fields are pruned
 * for clients without strict field validation), and read as "everyone" it would turn an
 * ALLOW for one caller into an ALLOW for all (test/crd-pruning-authz.test.ts).
 */
const nonEmptySource: Parser<AuthzSource> = map(sourceShape, (s, path) =>
  SOURCE_LISTS.some((k) => s[k].length > 0) || s.unauthenticated !== undefined
    ? s
    : fail(path, `must not be empty: set one of ${SOURCE_LISTS.join(', ')} or unauthenticated (an empty source would match every caller)`),
);
const nonEmptyOperation: Parser<AuthzOperation> = map(operationShape, (o, path) =>
  OPERATION_LISTS.some((k) => o[k].length > 0) ? o : fail(path, `must not be empty: set one of ${OPERATION_LISTS.join(', ')} (an empty operation would match every request)`),
);

/**
 * A rule in the model's spelling: the proxy's static `policy:` and the discovery stream's
 * `inbound_policy`, the resolved form the authorizer compiles. A value that can never match
 * (authzNeverMatching) is accepted and matches nothing; an empty source, operation or list
 * means "any", as the authorizer reads it.
 */
export const parseAuthzRule: Parser<AuthzRule> = obj({
  from: arr(obj({ source: required(sourceShape) }), { default: [] }),
  to: arr(obj({ operation: required(operationShape) }), { default: [] }),
  when: arr(parseCondition, { default: [] }),
});

/**
 * A rule as an AuthorizationPolicy resource writes it (the CRD form the control plane
 * reads): parseAuthzRule's checks and Istio's ValidateAuthorizationPolicy's on top, each
 * with its field path: `from` and `to`, when written, are not empty lists, and no `source`
 * or `operation` is empty. manifests/crds/authorizationpolicy.yaml says the same, so the
 * API server refuses them at `kubectl apply`.
 */
export const parseAuthzRuleResource: Parser<AuthzRule> = obj({
  from: absentOrNonEmpty(obj({ source: required(nonEmptySource) }), 'source'),
  to: absentOrNonEmpty(obj({ operation: required(nonEmptyOperation) }), 'operation'),
  when: arr(parseCondition, { default: [] }),
});

export const AUTHZ_ACTIONS = ['ALLOW', 'DENY', 'AUDIT'] as const;

/** An authorization action; CUSTOM (external authorizers) gets a clear error. */
export const parseAuthzAction: Parser<AuthzPolicy['action']> = (raw, path) =>
  raw === 'CUSTOM' ? fail(path, 'CUSTOM (external authorization) is not supported; use ALLOW, DENY or AUDIT') : literal(AUTHZ_ACTIONS, 'ALLOW')(raw, path);

/**
 * What in a policy can never match, as `path: problem` lines (warnings, not errors). Each
 * has a meaning the authorizer enforces, the one the release before gave it: a DENY
 * without rules denies nothing, and a method with a lower-case letter, a path without its
 * leading `/` (or with `?` / `#`) or a destination.port value that is no port number
 * matches no request. The CRD refuses them at `kubectl apply` (Istio refuses a DENY without
 * rules and a bad port too); an object stored before, or written to the directory source,
 * is read as it was and the control plane reports it (log line, `wren check`), since
 * refusing it would enforce it fail-closed: a DENY of every request for what denied
 * nothing.
 */
export function authzNeverMatching(p: { readonly action: AuthzPolicy['action']; readonly rules: readonly AuthzRule[] }, path: string): string[] {
  const at = (k: string) => (path ? `${path}.${k}` : k);
  const out: string[] = [];
  if (p.action === 'DENY' && p.rules.length === 0) out.push(`${at('rules')}: a DENY policy without rules denies nothing (rules: [{}] denies every request)`);
  p.rules.forEach((r, i) => {
    r.to.forEach((t, j) => {
      for (const f of ['methods', 'notMethods'] as const)
        t.operation[f].forEach((v, k) => METHOD_FORM.test(v) || out.push(`${at(`rules[${i}].to[${j}].operation.${f}[${k}]`)}: ${JSON.stringify(v)} never matches: an HTTP method is matched exactly and is upper case (GET, not get)`));
      for (const f of ['paths', 'notPaths'] as const)
        t.operation[f].forEach((v, k) => PATH_FORM.test(v) || out.push(`${at(`rules[${i}].to[${j}].operation.${f}[${k}]`)}: ${JSON.stringify(v)} never matches: the request path starts with "/" and has no query or fragment`));
    });
    r.when.forEach((c, j) => {
      if (c.key !== 'destination.port') return;
      for (const f of ['values', 'notValues'] as const)
        c[f].forEach((v, k) => PORT_STRING.test(v) || out.push(`${at(`rules[${i}].when[${j}].${f}[${k}]`)}: ${JSON.stringify(v)} never matches: a destination.port value is a port number 1-65535 (no match forms)`));
    });
  });
  return out;
}

/** A policy in the model's spelling (parseAuthzRule): a DENY without rules denies nothing, as in the resource form (authzNeverMatching reports it). */
export const parseAuthzPolicy: Parser<AuthzPolicy> = obj({
  name: str({ pattern: /^\S+$/ }),
  action: parseAuthzAction,
  rules: arr(parseAuthzRule, { default: [] }),
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
    jwksUri: unsetOr(str({ pattern: JWKS_URI }), ''),
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
