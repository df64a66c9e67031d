import { registerLogDrops } from '../common/log-drops-metric.js';
import { registerKubeWriteRetries } from './kube-write-retry.js';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** The control plane's Prometheus metrics, on its own registry (several instances can live in one test process). */
export class ControlPlaneMetrics {
  readonly registry = new Registry();
  readonly logLinesDropped = registerLogDrops(this.registry);
  /** wren_cp_kube_write_retries_total: TokenReviews and route status PATCHes answered 429 + Retry-After, retried or given up (kube-write-retry.ts). */
  readonly kubeWriteRetries = registerKubeWriteRetries(this.registry);
  readonly subscribers = new Gauge({ name: 'wren_cp_subscribers', help: 'Proxies with an open discovery stream', registers: [this.registry] });
  readonly pushes = new Counter({
    name: 'wren_cp_pushes_total',
    help: 'Discovery responses sent, by kind (full snapshot or delta)',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly pushedBytes = new Counter({
    name: 'wren_cp_pushed_bytes_total',
    help: 'Serialized bytes of discovery responses sent',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly pushLatency = new Histogram({
    name: 'wren_cp_push_latency_seconds',
    help: 'From a change committed to the mesh view to the proxy ACKing the response carrying it',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly nacks = new Counter({ name: 'wren_cp_nacks_total', help: 'Discovery responses NACKed by proxies', registers: [this.registry] });
  readonly responseCacheEvictions = new Counter({
    name: 'wren_cp_discovery_response_cache_evictions_total',
    help: 'Computed discovery responses dropped from the shared cache before the view changed, because it held more than 64 MiB (MAX_RESPONSE_CACHE_BYTES)',
    registers: [this.registry],
  });
  readonly watchRestarts = new Counter({
    name: 'wren_cp_watch_restarts_total',
    help: 'Kubernetes watch restarts (relists after 410 Gone, reconnects after errors), by resource',
    labelNames: ['resource', 'reason'] as const,
    registers: [this.registry],
  });
  readonly invalidObjects = new Counter({
    name: 'wren_cp_invalid_objects_total',
    help: 'Source objects rejected by validation (the last good version stays in force)',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });
  readonly authzFailClosed = new Gauge({
    name: 'wren_cp_authorization_policies_fail_closed',
    help: 'AuthorizationPolicies refused with no last good version, enforced fail-closed (an ALLOW that matches nothing, a DENY of every request); /debug/rejected names them',
    registers: [this.registry],
  });
  readonly peerAuthnFailClosed = new Gauge({
    name: 'wren_cp_peer_authentications_fail_closed',
    help: 'PeerAuthentications refused with no last good version, enforced fail-closed (mTLS STRICT on every port of the workloads they select); /debug/rejected names them',
    registers: [this.registry],
  });
  /** Sets the two fail-closed gauges from the policy objects in force (both sources, every push). */
  countFailClosed(policy: { readonly authorizationPolicies: readonly { readonly failClosed?: unknown }[]; readonly peerAuthentications: readonly { readonly failClosed?: unknown }[] }): void {
    this.authzFailClosed.set(policy.authorizationPolicies.filter((p) => p.failClosed !== undefined).length);
    this.peerAuthnFailClosed.set(policy.peerAuthentications.filter((p) => p.failClosed !== undefined).length);
  }
  readonly ignoredKinds = new Counter({
    name: 'wren_cp_ignored_kinds_total',
    help: 'Manifest kinds the source does not read (HTTPRoute, Deployment, a typo in kind), counted once per file version and kind',
    labelNames: ['source', 'kind'] as const,
    registers: [this.registry],
  });
  readonly healthReports = new Counter({
    name: 'wren_cp_health_reports_total',
    help: "HealthReports received from proxies; partly-rejected: some entries named endpoints the proxy was not sent",
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly healthReportRejectedEntries = new Counter({
    name: 'wren_cp_health_report_rejected_entries_total',
    help: 'HealthReport entries dropped: an endpoint the reporting proxy was not sent, or an unknown kind',
    registers: [this.registry],
  });
  readonly reportedUnhealthy = new Gauge({
    name: 'wren_cp_reported_unhealthy_endpoints',
    help: 'Endpoint reports currently held (sum over connected proxies of the endpoints each reports unhealthy)',
    registers: [this.registry],
  });
  readonly discoveryRefused = new Counter({
    name: 'wren_cp_discovery_refused_total',
    help: 'Discovery streams refused (reason: subscribe-twice, bad-spiffe-id, not-subscribed: a protocol error; subscribe-too-large: over MAX_SUBSCRIBE_SERVICES or MAX_SUBSCRIBE_LABELS; response-too-large; client authentication: no-client-certificate, bad-client-certificate, untrusted-client-certificate, trust-anchor-removed, identity-mismatch, namespace-mismatch, unknown-pod, pod-mismatch, pod-not-certified: a certificate bound to a pod names another, labels-mismatch, certificate-expired, streams-per-pod: the pod already holds MAX_STREAMS_PER_POD streams (on plaintext, the pod the stream claims); streams-per-fleet: the certificates of its bootstrap token (or the service account tokens bound to no pod) already hold --discovery-max-streams-per-fleet; streams-per-address: a plaintext stream\'s source address already holds MAX_PLAINTEXT_STREAMS_PER_ADDRESS)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly reportsLimited = new Counter({
    name: 'wren_cp_discovery_reports_limited_total',
    help: 'Reports a proxy sent faster than its per-stream budget (REPORT_BUDGET: a burst of 10, then 5 a second per kind), dropped unread (kind: stats, health, identity)',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly adminLimitExceeded = new Counter({
    name: 'wren_cp_admin_limit_exceeded_total',
    help: 'Admin-port connections dropped on a limit (limit: max-connections, at accept over the cap; request-headers-timeout, no complete request head in time; delayed-close-timeout, a response the client stopped reading)',
    labelNames: ['limit'] as const,
    registers: [this.registry],
  });
  readonly adminTokenReviewsLimited = new Counter({
    name: 'wren_cp_admin_token_reviews_limited_total',
    help: "Admin-port token checks (x-wren-admin-token) given up on a TokenReview limit (limit: timeout, overloaded); the request got a 403",
    labelNames: ['limit'] as const,
    registers: [this.registry],
  });
  readonly adminTokenCacheEvictions = new Counter({
    name: 'wren_cp_admin_token_cache_evictions_total',
    help: 'Granted admin tokens (x-wren-admin-token) dropped from the full cache (256) before their 60 s were up; each costs a TokenReview on its next request',
    registers: [this.registry],
  });
  readonly services = new Gauge({ name: 'wren_cp_services', help: 'Services in the current mesh view', registers: [this.registry] });
  readonly endpoints = new Gauge({ name: 'wren_cp_endpoints', help: 'Ready endpoints in the current mesh view', registers: [this.registry] });

  constructor(opts: { processMetrics?: boolean } = {}) {
    if (opts.processMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'wren_cp_' });
  }
}
