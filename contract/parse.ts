import { DEFAULT_POLICY } from './defaults.js';
import type { Endpoint, MeshSnapshot, Protocol, Service, ServicePort, TrafficPolicy } from './model.js';
import {
  arr, bool, duration, fail, literal, map, num, obj, parseWith, str, withDefault,
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

export const parseTrafficPolicy: Parser<TrafficPolicy> = obj({
  loadBalancer: obj({
    kind: literal(['peak-ewma', 'least-request', 'round-robin', 'random', 'ring-hash'] as const, D.loadBalancer.kind),
    ewmaDefaultRttMs: duration(D.loadBalancer.ewmaDefaultRttMs),
    ewmaDecayMs: duration(D.loadBalancer.ewmaDecayMs),
    hashHeader: str({ default: D.loadBalancer.hashHeader }),
    minRingSize: num({ int: true, min: 1, max: 8_388_608, default: D.loadBalancer.minRingSize }),
  }),
  outlierDetection: obj({
    enabled: bool(D.outlierDetection.enabled),
    intervalMs: duration(D.outlierDetection.intervalMs),
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
        '5xx', 'gateway-error', 'reset', 'connect-failure', 'refused-stream', 'retriable-status-codes',
        'cancelled', 'deadline-exceeded', 'internal', 'resource-exhausted', 'unavailable',
      ] as const),
      { default: D.retry.retryOn as readonly never[] },
    ),
    retriableStatusCodes: arr(num({ int: true, min: 100, max: 599 }), { default: D.retry.retriableStatusCodes }),
    attempts: num({ int: true, min: 1, max: 10, default: D.retry.attempts }),
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
    obj({
      kind: literal(['http', 'tcp', 'grpc'] as const),
      path: str({ default: '/' }),
      intervalMs: duration(10_000),
      timeoutMs: duration(1_000),
      healthyThreshold: num({ int: true, min: 1, default: 1 }),
      unhealthyThreshold: num({ int: true, min: 1, default: 3 }),
    }),
    null,
  ),
}) as Parser<TrafficPolicy>;

const SPIFFE = /^spiffe:\/\/[a-z0-9.-]+\/ns\/[a-z0-9-]+\/sa\/[a-z0-9.-]+$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export const parseEndpoint: Parser<Endpoint> = obj({
  address: str({ pattern: /^[0-9a-fA-F.:]+$/ }),
  port: num({ int: true, min: 1, max: 65535 }),
  proxyPort: withDefault(num({ int: true, min: 1, max: 65535 }), null as number | null),
  identity: withDefault(str({ pattern: SPIFFE }), ''),
  weight: num({ int: true, min: 1, max: 1_000_000, default: 1 }),
  zone: str({ default: '' }),
  ready: bool(true),
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
    clusterIPs: arr(str({ pattern: /^[0-9a-fA-F.:]+$/ }), { default: [] }),
    ports: arr(parseServicePort, { min: 1 }),
    policy: withDefault(parseTrafficPolicy, DEFAULT_POLICY),
  }),
  (s, path) => {
    const seen = new Set<number>();
    s.ports.forEach((p, i) => {
      if (seen.has(p.port)) fail(`${path ? path + '.' : ''}ports[${i}].port`, `duplicate port ${p.port}`);
      seen.add(p.port);
    });
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

export function parseSnapshot(raw: unknown, source: string): MeshSnapshot {
  const p = obj({ version: str({ default: '0' }), services: parseServices });
  const v = parseWith(p, raw, source);
  return Object.freeze({ version: v.version, source, services: v.services });
}

