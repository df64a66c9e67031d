import type * as grpc from '@grpc/grpc-js';
import { bundleFingerprints } from '../../contract/trust-anchors.js';
import { CONTROL_PLANE_CHANNEL_OPTIONS, controlPlaneStartupTrustOf, presentCertificate, updateControlPlaneTrust } from '../identity/control-plane-credentials.js';
import { TrustSync } from '../identity/trust-sync.js';
import { WorkloadIdentity } from '../identity/workload-identity.js';
import type { Proxy } from '../proxy.js';
import { DiscoveryClient } from './discovery-client.js';
import { HealthReporter } from './health-reporter.js';
import { StatsReporter } from '../stats/stats-reporter.js';

export interface ConnectControlPlaneOptions {
  /** host:port of the control plane's discovery endpoint (the proxy config's `discovery.controlPlane`). */
  readonly address: string;
  /** The proxy's namespace and pod, sent in Subscribe (shown on the control plane's /debug/proxies). */
  readonly namespace: string;
  readonly pod: string;
  /** The workload's labels, for policy selectors (default: the proxy config's identity.labels). The control plane prefers the Pod's own labels when it watches pods. */
  readonly labels?: Readonly<Record<string, string>>;
  /** Service keys "name.namespace" to watch; empty = all (default: the proxy config's discovery.services). */
  readonly services?: readonly string[];
  /** Reconnect backoff (default 100 ms -> 5 s with jitter; see DiscoveryClient). */
  readonly backoff?: { readonly initialMs?: number; readonly maxMs?: number };
  /** Insecure by default. From controlPlaneCredentials, they follow the trust bundle of every new certificate. */
  readonly credentials?: grpc.ChannelCredentials;
  /** What renews the proxy's certificate (default: the WorkloadIdentity that obtained proxy.tls, if any). */
  readonly workload?: WorkloadIdentity | null;
  /** Least time between two HealthReports (default 1 s; the first change is reported at once). */
  readonly healthReportIntervalMs?: number;
}

/**
 * Subscribes a running proxy to the control plane and returns the started client.
 *
 * Each accepted version is applied with `proxy.applySnapshot` (route table and clusters
 * swapped together); if that throws, the client NACKs it and the proxy keeps its last
 * good config. With listener workers it is ACKed once every worker has applied it, and
 * NACKed if one could not (that worker keeps its previous config: Proxy.whenApplied). Static stability comes from the client: a lost stream never changes the
 * config, the last good snapshot stays until a new stream delivers a valid one.
 *
 * Trust (docs/trust-anchor-rotation.md): the proxy reports what it trusts and presents
 * (IdentityReport) after subscribing and after every certificate rotation; when the
 * control plane pushes a trust state the proxy does not match, TrustSync renews the
 * certificate at once through the WorkloadIdentity; and after every rotation the bundle
 * the control-plane channel verifies the server with becomes the one Certify returned.
 *
 * Authentication (docs/security.md): with credentials from controlPlaneCredentials the
 * proxy presents its workload certificate (proxy.tls) on the discovery stream and on the
 * Certify calls that share those credentials; after a rotation every new connection
 * presents the renewed one. The control plane binds the stream to that identity and ends
 * it when the certificate expires; the proxy reconnects with its current certificate.
 *
 * Health (HealthReport, health-reporter.ts): whenever an endpoint's health changes in one of
 * its clusters (outlier ejection or its end, active checks, breaker, a run of connect
 * failures or its end), the proxy sends the complete list of endpoints it keeps out of
 * balancing or cannot connect to, at most once a second; the client resends the last list
 * after every reconnect.
 *
 * Traffic (StatsReport, proxy/stats/): every discovery.statsReport.intervalMs the proxy sends
 * its cumulative request, latency and connection counts per edge, read from its own metrics,
 * for `wren stat` and the dashboard (docs/operations.md).
 *
 * The caller stops the client (`await client.stop()`) when the proxy shuts down.
 */
export function connectControlPlane(proxy: Proxy, opts: ConnectControlPlaneOptions): DiscoveryClient {
  const logger = proxy.logger.child({ component: 'discovery', controlPlane: opts.address });
  const workload = opts.workload === undefined ? WorkloadIdentity.managing(proxy.tls) : opts.workload;
  const sync = new TrustSync({
    tls: proxy.tls, random: proxy.random, logger,
    renewSoon: workload ? (delayMs, reason) => workload.renewSoon(delayMs, reason) : null,
  });
  const client = new DiscoveryClient({
    address: opts.address,
    identity: { spiffeId: proxy.tls.spiffeId, namespace: opts.namespace, pod: opts.pod, labels: opts.labels ?? proxy.config.identity.labels },
    services: opts.services ?? proxy.config.discovery.services,
    clock: proxy.clock,
    random: proxy.random,
    logger,
    backoff: opts.backoff,
    credentials: opts.credentials,
    ...(opts.credentials?._isSecure() ? { channelOptions: CONTROL_PLANE_CHANNEL_OPTIONS } : {}),
    // With listener workers the version is answered once every worker has applied it (a NACK if one could not).
    apply: (snapshot) => {
      proxy.applySnapshot(snapshot);
      return proxy.whenApplied();
    },
    onTrustBundle: (state) => sync.onPush(state),
    onHealthReportClipped: (n) => proxy.metrics.limits.inc({ direction: 'discovery', limit: 'health-report-endpoints' }, n),
  });
  const startup = controlPlaneStartupTrustOf(opts.credentials);
  const startupTrustAnchorFingerprints = startup ? bundleFingerprints(startup) : [];
  const report = (): void => {
    try {
      client.reportIdentity({ ...sync.report(), startupTrustAnchorFingerprints });
    } catch (e) {
      logger.warn('cannot describe the certificate for the control plane', { error: e });
    }
  };
  if (workload) updateControlPlaneTrust(opts.credentials, proxy.tls.material.trustBundlePem);
  presentCertificate(opts.credentials, proxy.tls.material);
  report();
  const off = proxy.tls.onRotate(() => {
    updateControlPlaneTrust(opts.credentials, proxy.tls.material.trustBundlePem);
    // New connections present the renewed certificate. The open stream stays (a reconnect
    // per rotation would resend the whole snapshot and blur /debug/trust mid-rotation); the
    // control plane ends it when the certificate it was opened with expires, and the
    // reconnect makes a new channel with the renewed one (DiscoveryClient.channel).
    presentCertificate(opts.credentials, proxy.tls.material);
    report();
    sync.onRotate();
  });
  client.onStop(off);
  const health = new HealthReporter({
    clock: proxy.clock, clusters: () => proxy.clusterStates(), send: (list) => client.reportEjections(list), minIntervalMs: opts.healthReportIntervalMs,
    connectFailures: proxy.config.discovery.healthReport.connectFailures,
  });
  const offHealth = proxy.onHealthChange(() => health.changed());
  client.onStop(() => {
    offHealth();
    health.close();
  });
  const cfg = proxy.config.discovery.statsReport;
  const stats = new StatsReporter({
    clock: proxy.clock, logger, metricsText: proxy.metricsText, recentDecisions: proxy.recentDecisions, send: (r) => client.reportStats(r),
    workload: { name: proxy.config.identity.workload.name, namespace: proxy.config.identity.namespace }, intervalMs: cfg.intervalMs, maxEdges: cfg.maxEdges,
    startedAt: proxy.startedAt,
    onDropped: (n) => proxy.metrics.limits.inc({ direction: 'outbound', limit: 'stats-report-edges' }, n),
    onTrimmed: (n) => proxy.metrics.limits.inc({ direction: 'outbound', limit: 'stats-report-bytes' }, n),
  });
  stats.start();
  client.onStop(() => stats.close());
  client.start();
  return client;
}
