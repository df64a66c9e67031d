import type { InboundPolicy, TrafficPolicy } from './model.js';

/**
 * Defaults, with where each comes from (see shared/reference/mesh-anchors.md):
 * - balancer: Linkerd's peak-EWMA P2C, default RTT 30 ms, decay 10 s; ring min 1024, max 8M
 *   entries (Envoy RingHash).
 * - outlier detection: Envoy's outlier_detection defaults (interval 10 s, base ejection
 *   30 s, max 300 s, 10 % max ejection, 5 consecutive 5xx, success rate 5 hosts / 100 req
 *   / 1.9 sigma, failure percentage 85 % enforcing 0); panic threshold 50 % (Envoy).
 * - breakers: Envoy thresholds 1024/1024/1024/3; accrual backoff 1 s -> 60 s (Linkerd).
 * - retries: only always-safe retries unless policy enables more; budget 20 % + 10/s,
 *   ttl 10 s (Linkerd); full-jitter backoff 25 ms base, 250 ms cap (Envoy); 64 KiB body.
 * - timeouts: connect 1 s (Linkerd outbound), request off so streams live.
 */
export const DEFAULT_POLICY: TrafficPolicy = Object.freeze({
  loadBalancer: Object.freeze({ kind: 'peak-ewma', ewmaDefaultRttMs: 30, ewmaDecayMs: 10_000, hashHeader: '', minRingSize: 1024, maxRingSize: 8_388_608 }),
  outlierDetection: Object.freeze({
    enabled: true,
    intervalMs: 10_000,
    baseEjectionTimeMs: 30_000,
    maxEjectionTimeMs: 300_000,
    maxEjectionTimeJitterMs: 0,
    maxEjectionPercent: 10,
    consecutive5xx: 5,
    consecutiveGatewayFailure: 5,
    enforcingConsecutiveGatewayFailure: 0,
    splitExternalLocalOriginErrors: true,
    consecutiveLocalOriginFailure: 5,
    successRateMinimumHosts: 5,
    successRateRequestVolume: 100,
    successRateStdevFactor: 1.9,
    enforcingSuccessRate: 100,
    failurePercentageThreshold: 85,
    enforcingFailurePercentage: 0,
    failurePercentageMinimumHosts: 5,
    failurePercentageRequestVolume: 50,
    panicThresholdPercent: 50,
  }),
  circuitBreaker: Object.freeze({
    maxConnections: 1024,
    maxPendingRequests: 1024,
    maxRequests: 1024,
    maxRetries: 3,
    accrual: 'off',
    consecutiveFailures: 7,
    samplingThreshold: 0.2,
    samplingDurationMs: 10_000,
    samplingMinimumRps: 5,
    backoffInitialMs: 1_000,
    backoffMaxMs: 60_000,
  }),
  retry: Object.freeze({
    retryOn: Object.freeze([]),
    retriableStatusCodes: Object.freeze([]),
    attempts: 2,
    perTryTimeoutMs: 0,
    backoffBaseMs: 25,
    backoffMaxMs: 250,
    budgetRatio: 0.2,
    budgetMinPerSecond: 10,
    budgetTtlMs: 10_000,
    retryNonIdempotent: false,
    maxBufferedBodyBytes: 64 * 1024,
  }),
  timeouts: Object.freeze({ connectMs: 1_000, requestMs: 0, idleMs: 0 }),
  healthCheck: null,
});

/**
 * With no PeerAuthentication and no AuthorizationPolicy a workload accepts mutual TLS
 * only and authorizes every authenticated caller. Istio defaults to PERMISSIVE; Wren is
 * STRICT unless a policy says otherwise (plaintext never reaches an app by accident).
 */
export const DEFAULT_INBOUND_POLICY: InboundPolicy = Object.freeze({
  mtls: Object.freeze({ mode: 'STRICT' }),
  portLevelMtls: Object.freeze({}),
  authorizationPolicies: Object.freeze([]),
  jwtRules: Object.freeze([]),
  rateLimits: Object.freeze([]),
});

/** Policies in this namespace without a selector are mesh-wide (Istio's root namespace, here the control plane's). */
export const ROOT_NAMESPACE = 'wren-system';

/**
 * The shortest discovery.statsReport.intervalMs a proxy takes (besides 0, never): the control
 * plane takes at most 5 reports of a kind a second per stream, past a burst
 * (control-plane/discovery/discovery-server.ts REPORT_BUDGET), so a shorter interval would
 * only have its reports dropped there. Here, not in discovery.ts: the proxy's config parser
 * reads it, and discovery.ts loads grpc-js, which a sidecar on a file config never loads
 * (test/sidecar-module-loads.test.ts).
 */
export const MIN_STATS_REPORT_INTERVAL_MS = 200;
