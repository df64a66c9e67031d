import { untilIdle } from './net/until-idle.js';
import { RecentRetries } from './stats/recent-retries.js';
import { mergeDecisions, type RecentDecisions } from './stats/recent-decisions.js';
import { TelemetrySource } from './telemetry/telemetry-settings.js';
import { AccessLog } from './access-log/access-log.js';
import type { ProxyConfig } from './config/proxy-config.js';
import type { InboundPolicy, MeshSnapshot } from '../contract/model.js';
import { DEFAULT_INBOUND_POLICY } from '../contract/defaults.js';
import { systemClock, systemRandom, type Clock, type Random } from '../common/clock.js';
import { createLogger, type Logger } from '../common/logger.js';
import { TlsIdentity } from './tls/tls-identity.js';
import { WorkloadLabels } from './metrics/workload-labels.js';
import { ProxyMetrics } from './metrics/proxy-metrics.js';
import { RouteTable } from './outbound/route-table.js';
import { explainRoute } from './routing/explain-route.js';
import { ClusterSet, type ClusterFactory } from './outbound/cluster-set.js';
import { Cluster } from './resilience/cluster.js';
import { PromClusterMetrics } from './resilience/cluster-metrics.js';
import { PeerPool, PEER_SESSION_HEADERS } from './outbound/peer-pool.js';
import { meshH1Pool } from './outbound/mesh-h1-pool.js';
import { AppH2Client } from './h2/app-h2-client.js';
import { meshMuxPool } from './outbound/mesh-mux-pool.js';
import type { MuxLimit } from './mux/mux-session.js';
import { H1Pool } from './http/h1-pool.js';
import { EndpointDrain } from './outbound/endpoint-drain.js';
import { MeshProbes } from './resilience/mesh-probes.js';
import { OutboundListener } from './outbound/outbound-listener.js';
import { EgressPolicy } from './egress/egress-policy.js';
import { egressHttp } from './egress/egress-http.js';
import { UpstreamListener } from './outbound/upstream-listener.js';
import { outboundStack } from './outbound/stack.js';
import { outboundTcpStack } from './outbound/tcp-stack.js';
import { InboundListener } from './inbound/inbound-listener.js';
import { OpenPassthroughs } from './egress/open-passthroughs.js';
import { OpenTunnels } from './policy/open-tunnels.js';
import { inboundStack } from './inbound/stack.js';
import { AppConnector, APP_CONNECT_TIMEOUT_MS } from './inbound/app-connector.js';
import { H2_HEADER_HARD_CAP_FACTOR } from './http/h2-server.js';
import { AdminServer } from './admin/admin-server.js';
import { certificateReadiness, registerReadinessGauge, type Readiness } from './admin/readiness.js';
import { MetricsServer } from './admin/metrics-server.js';
import { AppProber } from './admin/app-prober.js';
import { CompiledInboundPolicy, type JwtDeps } from './policy/compiled-policy.js';
import { RateLimiter } from './ratelimit/rate-limiter.js';
import { JwksRegistry } from './policy/jwks-source.js';
import { policyShown } from '../contract/jwks-uri-shown.js';
import { redactQuery } from './access-log/redact-query.js';
import { PolicyTelemetry } from './policy/policy-telemetry.js';
import type { OriginalDst } from './net/original-dst.js';
import type { AddressInfo, Socket } from 'node:net';
import { ListenError } from '../common/listen.js';
import { Agent } from '../common/node-http.js';
import type { Writable } from 'node:stream';
import { loadAddon } from './net/original-dst.js';
import { WorkerPool } from './workers/worker-pool.js';
import type { SharedLimitsMemory } from './workers/shared-limits.js';
import { SharedCounters } from './resilience/shared-counters.js';
import { SharedOutliers } from './resilience/shared-outliers.js';
import { admissionMemory, CallerCounts, ListenerConnections } from './net/shared-admission.js';
import { MeshTracer } from './tracing/mesh-tracer.js';

/** Resets relayed on one session to the app before it is retired (http/session-resets.ts). */
const APP_SESSION_RESET_BUDGET = 500;

export interface ProxyOptions {
  readonly config: ProxyConfig;
  readonly tls: TlsIdentity;
  readonly clock?: Clock;
  readonly random?: Random;
  readonly logger?: Logger;
  /** How clusters are built (default: the resilience Cluster; tests and benchmarks may pass RoundRobinCluster). */
  readonly clusterFactory?: ClusterFactory;
  readonly originalDst?: (s: Socket) => OriginalDst | undefined;
  /** Original destination of inbound connections (default SO_ORIGINAL_DST); tests without iptables stand in for it. */
  readonly inboundOriginalDst?: (s: Socket) => OriginalDst | undefined;
  /** Serve the static mesh from the config at start (false when a control plane will send it). */
  readonly staticMesh?: boolean;
  /**
   * Set inside a listener worker (proxy/workers/worker-main.ts, config `concurrency` > 1):
   * the data-path listeners bind with SO_REUSEPORT, there is no admin port and no process
   * metrics (the main thread has both).
   */
  readonly worker?: {
    readonly id: number;
    /** The rate-limit buckets and cluster counters of the sidecar, shared by every worker (proxy/workers/shared-limits.ts). */
    readonly shared?: SharedLimitsMemory;
  };
  /** Where access log lines go (default process.stdout); tests capture them. */
  readonly accessLogSink?: Writable;
}

const READY: Readiness = { ready: true, reason: 'ready', code: 'ready' };

/**
 * One sidecar: outbound listener, inbound listener and admin port around a config that
 * is applied atomically (route table and clusters swapped together). Applying new
 * config never drops in-flight requests: they keep the endpoint they already picked.
 */
export class Proxy {
  readonly metrics: ProxyMetrics;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly random: Random;
  /** When this proxy was built (its clock), before any counter of its metrics: the StatsReport's uptime counts from here. */
  readonly startedAt: number;
  /** Trace sampling and access logging in force (the config's, then the control plane's). */
  readonly telemetry: TelemetrySource;
  /** Trace sampling, propagation and span export (proxy/tracing/, docs/observability.md). */
  readonly tracer: MeshTracer;
  /** What /metrics serves (with workers: every thread's sum), for the control plane's StatsReport (proxy/stats/). */
  readonly metricsText: () => Promise<string>;
  /** This proxy's most recent authorization denials (main thread's; bounded), for the StatsReport. */
  readonly recentDecisions: () => Promise<RecentDecisions>;
  /** This thread's own recent denials and retries (a listener worker answers the pool with them). */
  readonly ownDecisions: () => RecentDecisions;
  private routes: RouteTable;
  /** Egress control: the proxy's own `egress` config over what the control plane pushed (proxy/egress). */
  private egressPolicy: EgressPolicy;
  private readonly egressHttp: ReturnType<typeof egressHttp>;
  private readonly clusters: ClusterSet;
  private readonly peers: PeerPool;
  private readonly appSessions: PeerPool;
  /** HTTP/2 to the app on the frame-level client (protocol.appHttp2 'frames', proxy/h2/). */
  private readonly appFrames: AppH2Client | undefined;
  /** HTTP/1.1 to peer sidecars when protocol.meshHttp1 is 'h1' (outbound/mesh-h1-pool.ts) or 'mux' (mesh-mux-pool.ts). */
  private readonly meshH1: H1Pool | undefined;
  /** HTTP/2 and gRPC to peer sidecars when protocol.meshHttp2 is 'mux' (outbound/mesh-mux-pool.ts). */
  private readonly meshH2: H1Pool | undefined;
  /** Closes the pooled connections to endpoints each snapshot removed from every cluster. */
  private readonly endpointDrain: EndpointDrain;
  private readonly outbound: OutboundListener;
  /** Explicit upstreams (config `upstreams`): local ports bound to one service each. */
  private readonly upstreams: readonly UpstreamListener[];
  private readonly inbound: InboundListener;
  private readonly admin: AdminServer;
  /** The read-only scrape port (listeners.metrics); null when disabled or in a listener worker. */
  private readonly scrape: MetricsServer | null;
  private readonly outboundAgent = new Agent({ keepAlive: true, maxSockets: 256 });
  private readonly appAgent = new Agent({ keepAlive: true, maxSockets: 256 });
  private hasConfig = false;
  /** The local workload's inbound policy (mTLS modes, authorization), swapped atomically. */
  private inboundPolicy: CompiledInboundPolicy;
  /** The inbound tunnels open to the app, re-authorized on each policy change (policy/open-tunnels.ts). */
  private readonly tunnels: OpenTunnels;
  /** The outbound connections egress control let through, judged again when the egress settings change. */
  private readonly passthroughs: OpenPassthroughs;
  /** The inbound policy's rate limits; its buckets outlive policy pushes that leave a RateLimitPolicy unchanged. */
  private readonly rateLimiter: RateLimiter;
  /** JWKS of the RequestAuthentication rules in force, kept across policy updates. */
  private readonly jwks: JwksRegistry;
  /** Its buffered lines are written when the proxy stops (access-log.ts, AccessLogFlush). */
  private readonly accessLog: AccessLog;
  private readonly jwtDeps: JwtDeps;
  private closedResolve!: () => void;
  /** Resolves once the proxy has closed (after a drain, POST /drain included). */
  readonly drained = new Promise<void>((r) => (this.closedResolve = r));
  private draining: Promise<void> | null = null;
  private ports = { outbound: 0, inbound: 0, admin: 0, metrics: 0 };
  private readonly healthListeners = new Set<() => void>();
  /** A listener worker's: tells the other workers of an ejection or uneject it decided (worker-main.ts). */
  private outlierAnnounce: (cluster: string, endpoint: string) => void = () => undefined;
  /**
   * concurrency > 1, main thread: the listener workers, which bind and serve the data path
   * (this thread's own listeners are built but never bound); null otherwise, where this
   * thread serves as it always has, at no extra cost.
   */
  private readonly pool: WorkerPool | null;
  /** The workers' answer to the latest snapshot (WorkerPool.applySnapshot); null without workers. */
  private workersApplied: Promise<void> | null = null;
  private upstreamPortList: readonly number[] | null = null;
  /** Ports a caller's target port may not name: every port of the proxy's own (filled in as listeners bind). */
  private readonly reservedPorts = new Set<number>();

  private constructor(readonly config: ProxyConfig, readonly tls: TlsIdentity, opts: ProxyOptions) {
    this.clock = opts.clock ?? systemClock;
    this.random = opts.random ?? systemRandom;
    this.startedAt = this.clock.now();
    this.logger = opts.logger ?? createLogger({ level: config.log.level, base: { component: 'proxy', identity: tls.spiffeId } });
    this.telemetry = new TelemetrySource(config.telemetry);
    // This workload (the source of its outbound requests, the destination of its inbound ones) for Istio's metric labels.
    const local = new WorkloadLabels({ ...config.identity.workload, namespace: config.identity.namespace }, () => tls.spiffeId);
    this.metrics = new ProxyMetrics({ defaultMetrics: !opts.worker, local });
    const id = config.identity;
    this.tracer = new MeshTracer({
      config: config.tracing, settings: this.telemetry, random: this.random, clock: this.clock, logger: this.logger, registry: this.metrics.registry,
      selfIdentity: () => tls.spiffeId, appAddress: config.app.address,
      resource: { service: id.workload.app || id.workload.name || id.serviceAccount, namespace: id.namespace, pod: id.pod },
    });
    this.pool = config.concurrency > 1 && !opts.worker
      ? new WorkerPool({ count: config.concurrency, config, tls, logger: this.logger, clock: this.clock, registry: this.metrics.registry, limits: this.metrics.limits, onHealthChange: () => this.healthChanged() })
      : null;
    this.routes = new RouteTable({ version: '', source: 'none', services: [] }, config.identity.namespace);
    const clusterMetrics = new PromClusterMetrics(this.metrics.registry);
    // Active health checks to meshed endpoints ride the same mTLS sessions as user traffic.
    const meshProbes = new MeshProbes((t, connectTimeoutMs) => this.peers.probeSession(t, connectTimeoutMs));
    const shared = opts.worker?.shared;
    // Listener workers count the clusters' limits together; alone, each cluster counts its own.
    const counters = shared && new SharedCounters(shared.counters, opts.worker!.id, () => this.metrics.limits.inc({ direction: 'outbound', limit: 'shared-cluster-slots' }));
    // The listener limits too (connections per listener, requests per caller to the app): the
    // workers' shared block, each worker in its column; alone, a private one of one column.
    const admission = shared?.admission ?? admissionMemory(1, false);
    const column = shared ? opts.worker!.id : 0;
    const connections = (listener: 'outbound' | 'inbound') => new ListenerConnections(admission, listener, column, config.limits.maxConnectionsPerListener);
    // And outlier detection: an endpoint's consecutive failures and its ejection are the sidecar's, each decision announced to the other workers.
    const outlierTable = shared && new SharedOutliers(shared.outliers, () => this.metrics.limits.inc({ direction: 'outbound', limit: 'shared-outlier-slots' }), opts.worker!.id);
    // In the place of a worker that exited: what it tracked, this one takes up again as its config comes.
    outlierTable?.forgetHolds();
    const outliers = outlierTable && { table: outlierTable, announce: (cluster: string, endpoint: string) => this.outlierAnnounce(cluster, endpoint) };
    const resilient: ClusterFactory = (name, policy) =>
      new Cluster({ name, policy, clock: this.clock, random: this.random, metrics: clusterMetrics, logger: this.logger, meshProbes, onHealthChange: () => this.healthChanged(), counters, outliers });
    this.clusters = new ClusterSet(opts.clusterFactory ?? resilient);
    const onConnection = (kind: 'mtls' | 'plaintext') => this.metrics.peerConnections.inc({ kind });
    const keepalive = config.limits.peerKeepalive;
    const onKeepaliveTimeout = () => this.metrics.limits.inc({ direction: 'outbound', limit: 'peer-keepalive-timeout' });
    const windows = { streamBytes: config.limits.http2InitialStreamWindowBytes, connectionBytes: config.limits.http2InitialConnectionWindowBytes };
    // A peer sidecar's 1xx flood (more than MAX_INTERIM_RESPONSES) is counted as any upstream's, on every mesh transport.
    const onPeerResponseLimit = (limit: 'interim-responses') => this.metrics.limits.inc({ direction: 'outbound', limit });
    this.peers = new PeerPool({ tls, connectTimeoutMs: 1000, logger: this.logger, onConnection, keepalive, onKeepaliveTimeout, clock: this.clock, windows, onLimit: onPeerResponseLimit });
    // A Node (nghttp2) app drops a session past 1000 resets in a burst (rapid-reset guard);
    // retire ours at half that, so relayed cancellations never cost other callers' streams.
    const onResetBudget = () => this.metrics.limits.inc({ direction: 'inbound', limit: 'app-session-reset-budget' });
    // An app session that does not answer a keepalive PING, counted alike whichever client speaks to the app.
    const onAppKeepaliveTimeout = () => this.metrics.limits.inc({ direction: 'inbound', limit: 'app-keepalive-timeout' });
    this.appSessions = new PeerPool({
      tls, connectTimeoutMs: 1000, logger: this.logger, keepalive, onKeepaliveTimeout: onAppKeepaliveTimeout, clock: this.clock, resetBudget: APP_SESSION_RESET_BUDGET, onResetBudget, windows,
      // An app's 1xx flood on node:http2 (appHttp2 node), counted as the frame-level client's is.
      onLimit: (limit) => this.metrics.limits.inc({ direction: 'inbound', limit }),
      fromApp: true,
    });
    this.appFrames =
      config.protocol.appHttp2 === 'frames'
        ? new AppH2Client({
            address: config.app.address, clock: this.clock, logger: this.logger, connectTimeoutMs: APP_CONNECT_TIMEOUT_MS,
            streamWindowBytes: windows.streamBytes, connectionWindowBytes: windows.connectionBytes,
            // The app's response heads: as much as the listeners' hard cap on request heads (h2-server.ts).
            maxHeaderListBytes: config.limits.maxHeaderBytes * H2_HEADER_HARD_CAP_FACTOR,
            resetBudget: APP_SESSION_RESET_BUDGET, onResetBudget, keepalive,
            onKeepaliveTimeout: onAppKeepaliveTimeout,
            // The app is untrusted here as the app on the outbound is: its floods count as the frame-level server's do.
            onLimit: (limit) => this.metrics.limits.inc({ direction: 'inbound', limit }),
          })
        : undefined;
    const meshOpts = {
      tls, maxConnectionsPerPeer: config.protocol.meshHttp1MaxConnectionsPerPeer, connectTimeoutMs: 1000, maxHeaderBytes: config.limits.maxHeaderBytes, onConnection: () => onConnection('mtls'),
      idleTimeoutMs: config.limits.idleConnectionTimeoutMs,
      // h1: TCP keepalive on each connection; mux: PING (mesh-h1-pool.ts, mesh-mux-pool.ts).
      keepalive,
      onIdleTimeout: () => this.metrics.limits.inc({ direction: 'outbound', limit: 'mesh-idle-connection-timeout' }),
      onQueued: () => this.metrics.limits.inc({ direction: 'outbound', limit: 'mesh-http1-connections-per-peer' }),
      onResponseLimit: onPeerResponseLimit,
    };
    // The mesh multiplexer's sessions: the peer's time to end its half after ours, as on every
    // HTTP/1.1 connection; PINGed as the HTTP/2 peer sessions are (limits.peerKeepalive).
    const muxOpts = {
      ...meshOpts,
      closeTimeoutMs: config.limits.delayedCloseTimeoutMs,
      clock: this.clock,
      onLimit: (limit: MuxLimit) => {
        this.metrics.limits.inc({ direction: 'outbound', limit });
        if (limit === 'peer-keepalive-timeout') this.logger.warn('mesh session did not answer a PING; closing it', { code: 'PEER_KEEPALIVE_TIMEOUT', timeoutMs: keepalive.timeoutMs });
      },
    };
    this.meshH1 =
      config.protocol.meshHttp1 === 'h1'
        ? meshH1Pool(meshOpts)
        : config.protocol.meshHttp1 === 'mux'
          ? meshMuxPool({ ...muxOpts, windowBytes: config.limits.http2InitialStreamWindowBytes, connectionWindowBytes: config.limits.http2InitialConnectionWindowBytes })
          : undefined;
    // A pool of its own for HTTP/2: as many streams per peer as an HTTP/2 session would
    // carry (limits.maxConcurrentStreams, the peer's own bound per session), so long-lived
    // gRPC streams never wait behind HTTP/1.1's bound, nor hold its connections.
    this.meshH2 =
      config.protocol.meshHttp2 === 'mux'
        ? meshMuxPool({
            ...muxOpts,
            // The responses an HTTP/2 session takes (the peer's, to its app, is one): the
            // mesh's HTTP/1.1 measure of the same fields is smaller, 16 fields for the peer's own.
            maxHeaderBytes: PEER_SESSION_HEADERS.maxBytes,
            maxHeaderCount: PEER_SESSION_HEADERS.maxFields + 16,
            maxConnectionsPerPeer: config.limits.maxConcurrentStreams,
            meshH2: true,
            onQueued: () => this.metrics.limits.inc({ direction: 'outbound', limit: 'mesh-http2-streams-per-peer' }),
            windowBytes: config.limits.http2InitialStreamWindowBytes,
            connectionWindowBytes: config.limits.http2InitialConnectionWindowBytes,
          })
        : undefined;
    // The pool on the outbound's agent (unmeshed HTTP/1.1 endpoints): its limits counted as the outbound's.
    this.endpointDrain = new EndpointDrain({ h1: H1Pool.of(this.outboundAgent, (limit) => this.metrics.limits.inc({ direction: 'outbound', limit })), peers: this.peers, mesh: { h1: this.meshH1, h2: this.meshH2 } });
    const L = config.listeners;
    // The proxy's own ports, which a peer's target port may never name (proxy/inbound/target-port.ts):
    // its listeners and its explicit upstreams, whose bound ports are added once they listen
    // (a port 0 in the config is only known then). An upstream listener reached from the
    // inbound would call its service with this workload's identity: a confused deputy.
    const reserved = this.reservedPorts;
    for (const port of [L.inbound.port, L.outbound.port, L.admin.port, L.metrics.enabled ? L.metrics.port : 0, 15000, 15001, 15006, 15020, ...config.upstreams.map((u) => u.localPort)]) if (port > 0) reserved.add(port);
    const accessLog = new AccessLog({ telemetry: this.telemetry, random: this.random, clock: this.clock, sink: opts.accessLogSink ?? process.stdout, registry: this.metrics.registry, flush: config.accessLogFlush });
    this.accessLog = accessLog;
    const common = { metrics: this.metrics, clock: this.clock, logger: this.logger, telemetry: this.telemetry, accessLog, tracer: this.tracer };
    const policyTelemetry = new PolicyTelemetry(this.metrics.registry, this.logger.child({ component: 'policy' }), this.clock);
    const recentRetries = new RecentRetries(this.clock, () => this.metrics.limits.inc({ direction: 'outbound', limit: 'recent-retries' }));
    this.ownDecisions = () => ({ denials: policyTelemetry.recentDenials(), retries: recentRetries.recent(), droppedRetries: recentRetries.dropped });
    const ra = config.requestAuthn;
    this.jwks = new JwksRegistry({
      clock: this.clock,
      logger: this.logger.child({ component: 'jwks' }),
      settings: { refreshMs: ra.jwksRefreshMs, retryMs: ra.jwksRetryMs, fetchTimeoutMs: ra.jwksFetchTimeoutMs, minRefetchIntervalMs: ra.jwksMinRefetchIntervalMs, maxBytes: ra.jwksMaxBytes },
      onFetch: (source, outcome) => policyTelemetry.jwksFetch(source, outcome),
      onTimeout: () => this.metrics.limits.inc({ direction: 'inbound', limit: 'jwks-fetch-timeout' }),
    });
    this.jwtDeps = {
      registry: this.jwks, clock: this.clock, clockSkewSec: ra.clockSkewMs / 1000, cacheSize: ra.jwtCacheSize,
      onCacheEvict: () => this.metrics.limits.inc({ direction: 'inbound', limit: 'jwt-cache-size' }),
    };
    this.inboundPolicy = new CompiledInboundPolicy(config.policy ?? DEFAULT_INBOUND_POLICY, this.jwtDeps, config.identity.trustDomain);
    this.rateLimiter = new RateLimiter(
      { clock: this.clock, maxIdentityBuckets: config.limits.rateLimitIdentityBuckets, onEvict: () => this.metrics.limits.inc({ direction: 'inbound', limit: 'rate-limit-identity-buckets' }), shared: (shared ?? this.pool?.shared)?.buckets },
      this.inboundPolicy.policy.rateLimits ?? [],
    );
    this.tunnels = new OpenTunnels(() => this.inboundPolicy, policyTelemetry);
    const inboundCommon = {
      ...common, app: new AppConnector(config.app.address, this.appSessions, this.appAgent, this.clock, this.appFrames, (limit) => this.metrics.limits.inc({ direction: 'inbound', limit })), reservedPorts: reserved,
      selfIdentity: () => tls.spiffeId, policy: () => this.inboundPolicy, policyTelemetry, tunnels: this.tunnels,
      maxStreamsPerCaller: config.limits.maxStreamsPerCaller, callerCounts: new CallerCounts(admission, column), rateLimiter: this.rateLimiter,
    };
    this.egressPolicy = new EgressPolicy(config.egress, undefined);
    this.passthroughs = new OpenPassthroughs((c) => policyTelemetry.egressClosed(c));
    this.egressHttp = egressHttp({
      policy: () => this.egressPolicy, connectTimeoutMs: config.egress.connectTimeoutMs, maxHeaderBytes: config.limits.maxHeaderBytes,
      onRefused: () => this.metrics.egressRefused.inc({ protocol: 'http' }),
      onTlsPoolRetired: (reason) => this.metrics.egressTlsPoolsRetired.inc({ reason }),
      clock: this.clock,
      onLimit: (limit) => this.metrics.limits.inc({ direction: 'outbound', limit }),
    });
    this.outbound = new OutboundListener({
      ...common,
      address: L.outbound.address,
      ipv6Address: L.outbound.ipv6Address,
      port: L.outbound.port,
      detectTimeoutMs: config.protocol.detectTimeoutMs,
      opaquePorts: new Set(config.protocol.opaquePorts),
      maxHeaderBytes: config.limits.maxHeaderBytes,
      limits: config.limits,
      http2Server: config.protocol.outboundHttp2,
      connections: connections('outbound'),
      routes: () => this.routes,
      originalDst: opts.originalDst,
      egress: () => this.egressPolicy,
      passthroughs: this.passthroughs,
      passthroughConnectTimeoutMs: config.egress.connectTimeoutMs,
      tcp: outboundTcpStack({ ...common, routes: () => this.routes, clusters: () => this.clusters, peers: this.peers }),
      http: outboundStack({
        ...common, random: this.random, routes: () => this.routes, clusters: () => this.clusters, peers: this.peers, agent: this.outboundAgent, mesh: { h1: this.meshH1, h2: this.meshH2 }, egress: this.egressHttp.layer,
        onRetried: recentRetries.record,
      }),
    });
    this.upstreams = config.upstreams.map((u) => new UpstreamListener(u, this.outbound));
    this.inbound = new InboundListener({
      ...common,
      address: L.inbound.address,
      ipv6Address: L.inbound.ipv6Address,
      port: L.inbound.port,
      appAddress: config.app.address,
      reservedPorts: reserved,
      maxHeaderBytes: config.limits.maxHeaderBytes,
      maxConcurrentStreams: config.limits.maxConcurrentStreams,
      limits: config.limits,
      connections: connections('inbound'),
      tls,
      http: inboundStack(inboundCommon),
      plaintextHttp: inboundStack({ ...inboundCommon, plaintext: true }),
      policy: () => this.inboundPolicy,
      policyTelemetry,
      tunnels: this.tunnels,
      detectTimeoutMs: config.protocol.detectTimeoutMs,
      // The pod's own (wren.io/opaque-ports) when set: how it is reached, not what it calls.
      opaquePorts: new Set(config.protocol.inboundOpaquePorts ?? config.protocol.opaquePorts),
      originalDst: opts.inboundOriginalDst,
    });
    const pool = this.pool;
    const registryText = pool
      ? () => pool.metrics(this.metrics.registry)
      : async () => ({ contentType: this.metrics.registry.contentType, body: await this.metrics.registry.metrics() });
    this.metricsText = async () => (await registryText()).body;
    // With listener workers the data path (and so its denials and retries) is theirs: asked for at report time.
    this.recentDecisions = pool ? async () => mergeDecisions([this.ownDecisions(), ...(await pool.recentDecisions())]) : async () => this.ownDecisions();
    this.scrape = L.metrics.enabled && !opts.worker
      ? new MetricsServer({
          ...L.metrics, logger: this.logger, clock: this.clock, limits: config.limits, ready: () => this.readiness(), metrics: registryText,
          onLimit: (limit) => this.metrics.limits.inc({ direction: 'metrics', limit }),
          appProbes: config.appProbes.size === 0 ? undefined : new AppProber({
            probes: config.appProbes, address: config.app.address, clock: this.clock, logger: this.logger,
            onResult: (probe, result) => this.metrics.appProbes.inc({ probe, result }),
          }),
        })
      : null;
    this.admin = new AdminServer({
      address: L.admin.address,
      ipv6Address: L.admin.ipv6Address,
      port: L.admin.port,
      logger: pool ? levelFollowing(this.logger, (l) => pool.setLogLevel(l)) : this.logger,
      ready: () => this.readiness(),
      metrics: registryText,
      configDump: () => this.configDump(),
      clusters: () => (pool ? pool.currentClusterStates() : this.clusterStates()),
      certs: () => this.certs(),
      drain: () => void this.drain(),
      debugRoute: (q) => explainRoute(this.routes, q),
      clock: this.clock,
      delayedCloseMs: config.limits.delayedCloseTimeoutMs,
      limits: config.limits,
      onLimit: (limit) => this.metrics.limits.inc({ direction: 'admin', limit }),
    });
    // The main thread answers /ready; a listener worker's registry would only repeat it.
    if (!opts.worker) registerReadinessGauge(this.metrics.registry, () => this.readiness());
    if (opts.staticMesh !== false) this.applySnapshot({ version: 'static', source: 'static-config', services: config.mesh.services });
  }

  static async start(opts: ProxyOptions): Promise<Proxy> {
    const p = new Proxy(opts.config, opts.tls, opts);
    if (!loadAddon() && !opts.worker) p.logger.warn('SO_ORIGINAL_DST addon not built; routing by Host header only', { code: 'NO_ORIGINAL_DST' });
    // With a collector, the tracing SDK loads now (mesh-tracer.ts): before any listener
    // binds, so every request's span is recorded.
    try {
      await p.tracer.ready;
    } catch (e) {
      await p.close().catch(() => undefined);
      throw e;
    }
    // Every listener binds or the proxy does not start: a sidecar missing one (its port
    // still held by a predecessor that is draining) must not report ready (issue 11). The
    // explicit upstreams count too; what did bind is closed again. A worker binds the data
    // path with SO_REUSEPORT next to its siblings; with workers, this thread binds only admin.
    const reuse = opts.worker ? { reusePort: true } : {};
    const admin = { name: 'admin', ...opts.config.listeners.admin, listen: () => p.admin.listen() };
    const mp = p.scrape;
    const main = mp ? [admin, { name: 'metrics', ...opts.config.listeners.metrics, listen: () => mp.listen() }] : [admin];
    const dataPath = [
      { name: 'outbound', ...opts.config.listeners.outbound, listen: () => p.outbound.listen(reuse) },
      { name: 'inbound', ...opts.config.listeners.inbound, listen: () => p.inbound.listen(reuse) },
      ...p.upstreams.map((u) => ({ name: `upstream ${u.config.service}:${u.config.port}`, address: u.config.localAddress, port: u.config.localPort, listen: () => u.listen(reuse) })),
    ];
    const listeners = p.pool ? main : opts.worker ? dataPath : [...dataPath, ...main];
    const bound = await Promise.allSettled(listeners.map((l) => l.listen()));
    const failed = bound.findIndex((r) => r.status === 'rejected');
    if (failed >= 0) {
      await p.close().catch(() => undefined);
      const l = listeners[failed];
      const reason = (bound[failed] as PromiseRejectedResult).reason as NodeJS.ErrnoException;
      // SO_REUSEPORT is Linux >= 3.9 (and some BSDs); elsewhere Node refuses the option.
      if (opts.worker && reason?.code === 'ENOTSUP') p.logger.error('this platform has no SO_REUSEPORT: set concurrency: 1', { code: 'REUSEPORT_UNSUPPORTED' });
      throw new ListenError(l.name, l.address, l.port, reason);
    }
    const port = (name: string) => (bound[listeners.findIndex((l) => l.name === name)] as PromiseFulfilledResult<AddressInfo> | undefined)?.value.port ?? 0;
    p.ports = { outbound: port('outbound'), inbound: port('inbound'), admin: port('admin'), metrics: port('metrics') };
    if (p.pool) {
      try {
        const w = await p.pool.start({ admin: p.ports.admin, metrics: p.ports.metrics });
        p.ports = { ...p.ports, outbound: w.outbound, inbound: w.inbound };
        p.upstreamPortList = w.upstreams;
      } catch (e) {
        await p.close().catch(() => undefined);
        throw e;
      }
    }
    if (!p.hasConfig && !opts.worker) {
      // Bounded wait for the first config: past it the proxy reports ready anyway (it can
      // pass traffic through) rather than keep the pod out of service forever. Counted
      // (0 until then, so an alert can tell "never fired" from "not scraped").
      const firstConfigTimeout = { direction: 'discovery', limit: 'first-config-timeout' } as const;
      p.metrics.limits.inc(firstConfigTimeout, 0);
      const t = p.clock.setTimeout(() => {
        if (p.hasConfig) return;
        p.logger.warn('no config from the control plane yet; reporting ready without it', { code: 'FIRST_CONFIG_TIMEOUT', firstConfigTimeoutMs: opts.config.discovery.firstConfigTimeoutMs });
        p.metrics.limits.inc(firstConfigTimeout);
        p.hasConfig = true;
      }, opts.config.discovery.firstConfigTimeoutMs);
      t.unref?.();
    }
    for (const bp of [p.ports.outbound, p.ports.inbound, p.ports.admin, p.ports.metrics, ...p.upstreamPorts]) if (bp > 0) p.reservedPorts.add(bp);
    const ups = p.upstreams.map((u, k) => `${u.config.service}:${u.config.port}@${u.config.localAddress}:${p.upstreamPorts[k]}`);
    // A worker says so apart: 'proxy started' means every listener of the sidecar is up.
    p.logger.info(opts.worker ? 'listener worker started' : 'proxy started', { ...p.ports, upstreams: ups, ...(p.pool ? { workers: opts.config.concurrency } : {}) });
    return p;
  }

  /** Swap in a new mesh config atomically. Throws (keeping the old config) if it cannot be applied. */
  /** Every cluster's state by name (what GET /clusters shows): endpoints, their health, limits. */
  clusterStates(): Record<string, unknown> {
    if (this.pool) return this.pool.clusterStates();
    return Object.fromEntries([...this.clusters.entries()].map(([k, c]) => [k, c.snapshot()]));
  }

  /**
   * Calls `fn` whenever an endpoint's health may have changed (an ejection or its end,
   * active checks failing or passing, a breaker opening or closing, new config). Returns
   * the function that stops it. For the control plane's HealthReport (health-reporter.ts).
   */
  onHealthChange(fn: () => void): () => void {
    this.healthListeners.add(fn);
    return () => void this.healthListeners.delete(fn);
  }

  /** A listener worker: `fn` is told of every ejection or uneject this worker decides for the sidecar (one at a time: the last set wins). */
  onOutlierChange(fn: (cluster: string, endpoint: string) => void): void {
    this.outlierAnnounce = fn;
  }

  /** A listener worker: another worker ejected or unejected `endpoint` of `cluster` for the sidecar. */
  outlierChanged(cluster: string, endpoint: string): void {
    this.clusters.byName(cluster)?.outlierChanged?.(endpoint);
  }

  private healthChanged(): void {
    for (const fn of this.healthListeners) fn();
  }

  applySnapshot(snapshot: MeshSnapshot): void {
    const routes = new RouteTable(snapshot, this.config.identity.namespace);
    const inbound = snapshot.inboundPolicy && snapshot.inboundPolicy !== this.inboundPolicy.policy ? new CompiledInboundPolicy(snapshot.inboundPolicy, this.jwtDeps, this.config.identity.trustDomain) : null;
    const egress = snapshot.egress ? new EgressPolicy(this.config.egress, snapshot.egress) : null;
    // With workers the clusters (and their health checks) live in the workers only.
    if (!this.pool) {
      this.clusters.apply(snapshot.services);
      this.endpointDrain.applied(snapshot.services);
    }
    if (snapshot.telemetry) {
      // Every listener worker applies the same snapshot (worker-main.ts), so each one's TelemetrySource gets it too.
      const before = JSON.stringify(this.telemetry.explain());
      this.telemetry.applyPushed(snapshot.telemetry);
      const after = this.telemetry.explain();
      if (JSON.stringify(after) !== before) this.logger.info('telemetry settings applied', { version: snapshot.version, ...after });
    }
    if (egress) {
      const before = JSON.stringify(this.egressPolicy);
      this.egressPolicy = egress;
      if (JSON.stringify(this.egressPolicy) !== before) {
        this.logger.info('egress settings applied', { version: snapshot.version, mode: this.egressPolicy.mode, modeSource: this.egressPolicy.modeSource, externalServices: this.egressPolicy.services.map((e) => e.name) });
        // Passthroughs the new settings refuse are closed, as the inbound's tunnels on a policy change.
        this.passthroughs.egressChanged(this.egressPolicy);
        // And the TLS origination pools of settings no longer declared are retired.
        this.egressHttp.prune();
      }
    }
    if (inbound) {
      this.inboundPolicy = inbound;
      // Open tunnels (CONNECT streams, opaque splices, switched upgrades) are judged again, as
      // ztunnel does (istio/ztunnel#772): those it denies, or plaintext to a port now STRICT,
      // are closed. HTTP requests need nothing here: each is judged as it arrives.
      this.tunnels.policyChanged(inbound);
      this.rateLimiter.update(inbound.policy.rateLimits ?? []);
      this.jwks.retainOnly(inbound.policy.jwtRules);
      this.logger.info('inbound policy applied', { version: snapshot.version, policy: inbound.summary() });
    }
    // The workers last, once this thread has taken all of the snapshot: a step above that
    // throws NACKs the version, and the workers must not serve one the proxy refused (they
    // were sent it first, and served it while the main thread and the control plane kept
    // the previous one).
    if (this.pool) {
      const applied = this.pool.applySnapshot(snapshot);
      // Awaited by the discovery client (whenApplied); a proxy given snapshots directly may ignore it.
      applied.catch(() => undefined);
      this.workersApplied = applied;
    }
    this.routes = routes;
    this.healthChanged(); // clusters or endpoints may be gone, and their health with them
    this.hasConfig = true;
    this.logger.info('config applied', { version: snapshot.version, source: snapshot.source, services: snapshot.services.length });
  }

  /**
   * With listener workers: settles once every listening worker has applied the latest
   * snapshot, or rejects with the first one's failure to (it keeps its previous config), so
   * the discovery client ACKs or NACKs the version for the whole proxy. Undefined without
   * workers: applySnapshot took the snapshot whole, or threw.
   */
  whenApplied(): Promise<void> | undefined {
    return this.workersApplied ?? undefined;
  }

  /** The inbound policy in force (mTLS modes, authorization policies). */
  get policy(): InboundPolicy {
    return this.inboundPolicy.policy;
  }

  get snapshot(): MeshSnapshot {
    return this.routes.snapshot;
  }

  get outboundPort(): number {
    return this.ports.outbound;
  }
  get inboundPort(): number {
    return this.ports.inbound;
  }
  get adminPort(): number {
    return this.ports.admin;
  }
  /** The read-only metrics port (0 when listeners.metrics is disabled). */
  get metricsPort(): number {
    return this.ports.metrics;
  }
  /** The bound local port of each configured upstream, in config order. */
  get upstreamPorts(): readonly number[] {
    return this.upstreamPortList ?? this.upstreams.map((u) => u.address().port);
  }

  private readiness(): Readiness {
    if (this.draining) return { ready: false, reason: 'draining', code: 'draining' };
    // The workers share this thread's TlsIdentity material (rotations are sent to them), so its notAfter is theirs.
    const certificate = certificateReadiness(this.tls.notAfterMs, this.clock.wallNow());
    if (certificate) return certificate;
    if (!this.hasConfig) return { ready: false, reason: 'waiting for the first config', code: 'waiting-for-config' };
    const workers = this.pool?.notReady();
    if (workers) return { ready: false, reason: workers, code: 'workers-not-ready' };
    return READY;
  }

  private configDump(): unknown {
    const { tls, ...rest } = this.config;
    return {
      version: this.routes.snapshot.version,
      source: this.routes.snapshot.source,
      identity: this.tls.spiffeId,
      certificates: tls.certFile ? 'files' : `control plane Certify (${this.config.identity.certify?.controlPlane ?? '?'})`,
      // File paths only; key material (and the token) is never dumped.
      bootstrap: {
        ...rest, tls: tls.certFile ? { certFile: tls.certFile, trustBundleFile: tls.trustBundleFile } : undefined, mesh: undefined,
        // A jwksUri's query may carry an API key: shown as the logs show it (contract/jwks-uri-shown.ts uriShown).
        policy: policyShown(rest.policy),
        // A probe header may carry a credential (Authorization): names only. So may its path's
        // query (?access_token=): redacted as the access log redacts it.
        appProbes: Object.fromEntries([...rest.appProbes].map(([k, p]) => [k, p.kind === 'http' ? { ...p, path: redactQuery(p.path), headers: p.headers.map((h) => ({ name: h.name, value: '(redacted)' })) } : p])),
      },
      services: this.routes.snapshot.services,
      inboundPolicy: policyShown(this.inboundPolicy.policy),
      // The settings in force and the layer each field came from: local (config, annotations) > pushed (Telemetry resources) > default.
      telemetry: this.telemetry.explain(),
      // The egress mode in force (and where it came from) and every ExternalService, the config's and the pushed ones.
      egress: this.egressPolicy.toJSON(),
    };
  }

  private certs(): unknown {
    const leaf = this.tls.leaf();
    const anchors = this.tls.material.trustBundlePem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    return {
      identity: this.tls.spiffeId,
      serial: leaf.serialNumber,
      notBefore: new Date(leaf.validFrom).toISOString(),
      notAfter: new Date(leaf.validTo).toISOString(),
      issuer: leaf.issuer,
      trustAnchors: anchors.map((pem) => {
        const c = new (leaf.constructor as typeof import('node:crypto').X509Certificate)(pem);
        return { subject: c.subject, notAfter: new Date(c.validTo).toISOString(), fingerprint256: c.fingerprint256 };
      }),
    };
  }

  /**
   * Graceful shutdown (SIGTERM, POST /drain): readiness fails, the inbound listener stops
   * accepting and sends GOAWAY, while the outbound listener keeps serving the app (its
   * idle connections told to close: outbound-listener.ts drain()); everything closes once
   * no inbound request and no outbound request or tunnel is in flight, or when the grace
   * period ends, whichever comes first. Istio's order (pilot-agent drains the inbound only
   * and keeps Envoy serving outbound for terminationDrainDuration: an app still calls out
   * while it shuts down) and Linkerd's (in-flight requests complete before the proxy exits).
   * With listener workers, the process closes when every worker's drain is done.
   *
   * `minDrainMs` (a signal's drain: shutdown.minDrainMs): the close waits at least this
   * long even with nothing in flight. A classic sidecar gets the kubelet's SIGTERM together
   * with the app, which may only start calling out (flushing, deregistering) after it: an
   * exit the moment nothing is in flight refused or reset those calls. Istio's pilot-agent
   * keeps Envoy up for terminationDrainDuration (5 s) after SIGTERM, and with
   * EXIT_ON_ZERO_ACTIVE_CONNECTIONS waits minDrainDuration before it looks at the
   * connections; Linkerd's wait-before-exit is a preStop sleep. POST /drain passes none:
   * it is asked for from inside the pod (a Job's app when it is done), not sent alongside
   * the app's own stop.
   */
  drain(opts: { readonly minDrainMs?: number } = {}): Promise<void> {
    if (this.draining) return this.draining;
    const minDrainMs = Math.min(opts.minDrainMs ?? 0, this.config.shutdown.gracePeriodMs);
    this.logger.info('draining', { gracePeriodMs: this.config.shutdown.gracePeriodMs, minDrainMs });
    this.draining = (this.pool ? this.pool.drain(this.config.shutdown.gracePeriodMs, minDrainMs) : this.quiesce(minDrainMs)).then(() => this.close());
    return this.draining;
  }

  /**
   * The drain without the close (a listener worker's: worker-main.ts, the pool closes every
   * worker once all are done): resolves when the inbound has drained and no outbound request
   * or tunnel is in flight, but not before `minDrainMs`; or at the end of the grace period.
   */
  async quiesce(minDrainMs = 0): Promise<void> {
    const graceMs = this.config.shutdown.gracePeriodMs;
    const start = this.clock.now();
    const deadline = start + graceMs;
    this.outbound.drain();
    const inboundClean = await this.inbound.drain(graceMs);
    const outboundBusy = (): number => (this.metrics.inFlight.outbound ?? 0) + this.outbound.tunnelsInFlight;
    const minLeft = start + Math.min(minDrainMs, graceMs) - this.clock.now();
    if (minLeft > 0) {
      // The outbound serves new connections and requests meanwhile (outbound-listener.ts drain()).
      this.logger.info('minimum drain: outbound keeps serving the app', { minDrainMs, leftMs: minLeft, outboundInflight: outboundBusy() });
      await new Promise<void>((r) => this.clock.setTimeout(r, minLeft));
      // Connections the app opened since the signal: told to close once idle too, so they
      // neither wait for the close nor are cut under a request by it.
      this.outbound.drain();
    }
    const outboundClean = await untilIdle(this.clock, outboundBusy, Math.max(0, deadline - this.clock.now()));
    if (!inboundClean || !outboundClean) {
      this.logger.warn('grace period ended with requests in flight', { code: 'DRAIN_TIMEOUT', inflight: this.inbound.streamsInFlight, outboundInflight: outboundBusy() });
    }
  }

  get isDraining(): boolean {
    return this.draining !== null;
  }

  async close(): Promise<void> {
    await this.pool?.close();
    this.tunnels.closeAll();
    this.inbound.close();
    this.peers.close();
    this.meshH1?.destroy();
    this.meshH2?.destroy();
    this.appSessions.close();
    this.appFrames?.close();
    this.clusters.close();
    this.jwks.close();
    this.outboundAgent.destroy();
    this.egressHttp.destroy();
    this.appAgent.destroy();
    this.metrics.close();
    await Promise.all([this.outbound.close(), this.admin.close(), this.scrape?.close(), ...this.upstreams.map((u) => u.close()), this.tracer.shutdown()]);
    await this.accessLog.close();
    this.closedResolve();
  }
}

/** The admin port's logger: POST /logging changes the level here and in every worker. */
function levelFollowing(logger: Logger, onChange: (l: Logger['level']) => void): Logger {
  return {
    debug: (m, f) => logger.debug(m, f),
    info: (m, f) => logger.info(m, f),
    warn: (m, f) => logger.warn(m, f),
    error: (m, f) => logger.error(m, f),
    child: (f) => logger.child(f),
    get level() {
      return logger.level;
    },
    set level(l) {
      logger.level = l;
      onChange(l);
    },
  };
}
