import type { EgressMode } from '../contract/egress.js';
import type { ControlPlaneTracing } from './tracing.js';
import * as grpc from '@grpc/grpc-js';
import type { Clock, Random } from '../common/clock.js';
import type { Logger } from '../common/logger.js';
import { StatsStore } from './stats/stats-store.js';
import { StatsMetrics } from './stats/stats-metrics.js';
import { startAdminServer, type AdminServerHandle } from './admin-server.js';
import type { RenderBudgetSettings } from './dashboard/render-budget.js';
import { AdminAccess } from './admin-access.js';
import { DiscoveryServer, MAX_RESPONSE_BYTES } from './discovery/discovery-server.js';
import { ControlPlaneMetrics } from './metrics.js';
import { EndpointWithdrawal } from './health/endpoint-withdrawal.js';
import { WithdrawalMetrics } from './health/withdrawal-metrics.js';
import { overlayWithdrawals } from './health/withdrawal-overlay.js';
import { parseWithdrawalSettings } from './health/withdrawal-settings.js';
import { controlPlaneSpiffeId, DEFAULT_CONTROL_PLANE_NAMESPACE } from '../contract/identity.js';
import { MAX_REQUEST_BYTES } from '../contract/discovery.js';
import { num, obj, optional, parseWith, type Parser } from '../common/schema.js';
import type { Authenticator } from './identity/authenticator.js';
import { IdentityMetrics } from './identity/identity-metrics.js';
import { parseCertifyLimit } from './identity/certify-limit-settings.js';
import { parseReportBudget, REPORT_LIMIT_FIELDS, parseStatsLimits, type StatsLimits } from './report-limit-settings.js';
import type { ReportBudget } from './discovery/discovery-server.js';
import { IdentityService, type IdentityServiceOptions } from './identity/identity-service.js';
import type { Issuer } from './identity/issuer.js';
import { ServingIdentity } from './identity/serving-identity.js';
import type { MeshSource, SourceContext } from './sources/source.js';
import { MeshStore } from './store/mesh-store.js';

/** The identity service (wren.identity.v1 Certify) and the CA behind it. */
export interface ControlPlaneIdentityOptions {
  /** The signing CA and trust bundle (control-plane/identity/issuer.ts: loadIssuerDir or generateIssuer). */
  readonly issuer: Issuer;
  /** Who vouches for tokens; null = every Certify is refused (FAILED_PRECONDITION). */
  readonly authenticator: Authenticator | null;
  /** Default and maximum workload certificate lifetime (default 24 h). */
  readonly certTtlMs?: number;
  /** Namespace of the control plane's service account, for its serving SPIFFE ID (default wren-system). */
  readonly namespace?: string;
  /**
   * The Certify limit per workload and per fleet (IdentityServiceOptions.certifyLimit; the CLI's
   * --certify-* flags); absent: the defaults. Checked at start, errors name
   * identity.certifyLimit.FIELD.
   */
  readonly certifyLimit?: IdentityServiceOptions['certifyLimit'];
}

/**
 * How long the gRPC port keeps a connection, and how many calls one may have open.
 * grpc-js's defaults keep every connection for ever: one that never makes a call (the port
 * takes clients without a certificate: a proxy's first Certify has none), one whose peer
 * is gone without a FIN (the server never pings), and one holding any number of calls that
 * never send their message (a Certify waits for its request). Each held its socket, TLS
 * state and HTTP/2 session (and its calls) until the process ended. These are istiod's
 * (`--keepaliveInterval 30s --keepaliveTimeout 10s --keepaliveMaxServerConnectionAge 30m`,
 * grace 10 s); a proxy reconnects at once and gets a full snapshot, keeping its config
 * meanwhile (docs/control-plane.md, Static stability).
 */
export interface GrpcConnectionLimits {
  /** Ping a connection quiet this long (grpc.keepalive_time_ms)... */
  readonly keepaliveMs: number;
  /** ...and close it without an answer within this (grpc.keepalive_timeout_ms). */
  readonly keepaliveTimeoutMs: number;
  /** Close a connection with no call open for this long (grpc.max_connection_idle_ms). */
  readonly maxIdleMs: number;
  /** GOAWAY a connection this old (grpc.max_connection_age_ms, jittered by grpc-js)... */
  readonly maxAgeMs: number;
  /** ...and close it this long after, calls still open or not (grpc.max_connection_age_grace_ms). */
  readonly maxAgeGraceMs: number;
  /** Calls open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS); a proxy has one or two. */
  readonly maxConcurrentStreams: number;
}

export const DEFAULT_GRPC_CONNECTION_LIMITS: GrpcConnectionLimits = Object.freeze({
  keepaliveMs: 30_000,
  keepaliveTimeoutMs: 10_000,
  maxIdleMs: 300_000,
  maxAgeMs: 30 * 60_000,
  maxAgeGraceMs: 10_000,
  maxConcurrentStreams: 100,
});

/**
 * ControlPlaneOptions.grpcConnections, checked at start with errors naming the field
 * (`grpcConnections.keepaliveMs: ...`). They went to grpc-js as given, which arms its
 * timers with them, and Node takes a NaN or negative delay as 1 ms (adv29). Whole
 * milliseconds from 1, at most 2^31-1 (setTimeout's ceiling).
 */
const ms = num({ int: true, min: 1, max: 2 ** 31 - 1 });
const grpcConnectionsParser: Parser<Partial<GrpcConnectionLimits>> = obj({
  keepaliveMs: optional(ms), keepaliveTimeoutMs: optional(ms), maxIdleMs: optional(ms), maxAgeMs: optional(ms), maxAgeGraceMs: optional(ms),
  maxConcurrentStreams: optional(num({ int: true, min: 1, max: 2 ** 31 - 1 })),
});

/**
 * One control-plane replica: a source feeding a MeshStore, the discovery gRPC server
 * (plus, when configured, the identity service on the same gRPC server) and the admin
 * HTTP server. Replicas share nothing: each builds its view from the
 * source on its own, so any number can run behind one Service.
 */
export interface ControlPlaneOptions {
  /** host:port for gRPC discovery (port 0 = any). */
  readonly listen: string;
  /** host:port for the admin server; null = none. */
  readonly admin: string | null;
  /** The admin port's render budget for its /api/ pages (--admin-render-budget; dashboard/render-budget.ts); absent: DEFAULT_RENDER_BUDGET. */
  readonly adminRenderBudget?: RenderBudgetSettings;
  readonly trustDomain: string;
  readonly clock: Clock;
  readonly random: Random;
  readonly logger: Logger;
  readonly source: (ctx: SourceContext) => MeshSource & { errors?: () => readonly string[]; ignored?: () => readonly unknown[] };
  readonly debounceMs?: number;
  /** Explicit gRPC server credentials; overrides `transport`. */
  readonly credentials?: grpc.ServerCredentials;
  /** Serves wren.identity.v1 Identity/Certify when set. */
  readonly identity?: ControlPlaneIdentityOptions;
  /**
   * 'tls': serve gRPC (discovery and identity) over TLS with a certificate the identity CA
   * issues to spiffe://<td>/ns/<namespace>/sa/wren-control-plane, renewed in place; needs
   * `identity`. 'insecure' (the API default, kept for tests): plaintext h2c. The CLI
   * defaults to 'tls' (control-plane/main.ts).
   */
  readonly transport?: 'insecure' | 'tls';
  readonly processMetrics?: boolean;
  /**
   * Mesh-wide health-based withdrawal (control-plane/health/withdrawal-settings.ts), raw:
   * { enabled, minReporters, windowMs, ttlMs, maxWithdrawnPercent }; parsed here, errors
   * name the field (healthWithdrawal.minReporters: ...). Absent: the defaults.
   */
  readonly healthWithdrawal?: unknown;
  /** The control plane's own spans (Certify, discovery subscriptions and pushes); absent: none. */
  readonly tracing?: ControlPlaneTracing;
  /** Mesh-wide egress mode pushed to every proxy (--egress-mode; docs/traffic-management.md, Egress); absent: not set. */
  readonly egressMode?: EgressMode;
  /**
   * Checks the ServiceAccount tokens that open the admin port's debug pages, /api/ and the
   * dashboard to a non-loopback client (admin-access.ts; Kubernetes mode: a TokenReview for
   * the audience `wren-admin`). Absent: those answer localhost only.
   */
  readonly adminAuthenticator?: Authenticator | null;
  /** The gRPC port's connection limits (tests shorten them); absent fields: DEFAULT_GRPC_CONNECTION_LIMITS. */
  readonly grpcConnections?: Partial<GrpcConnectionLimits>;
  /**
   * Reports per discovery stream and kind (discovery-server.ts REPORT_BUDGET; --report-burst,
   * --report-rate); absent fields: the default. Checked at start, errors name reportBudget.FIELD.
   */
  readonly reportBudget?: Partial<ReportBudget>;
  /**
   * The stats store's bounds (report-limit-settings.ts; --stats-max-series,
   * --stats-max-series-per-proxy, --stats-max-reporters); absent fields: the defaults. Checked
   * at start, errors name statsLimits.FIELD.
   */
  readonly statsLimits?: StatsLimits;
  /**
   * Discovery streams the certificates of one bootstrap token (or of a service account's
   * tokens bound to no pod) may hold at once (discovery-server.ts DEFAULT_MAX_STREAMS_PER_FLEET,
   * 256; --discovery-max-streams-per-fleet). Checked at start, 1 to 1,000,000.
   */
  readonly maxDiscoveryStreamsPerFleet?: number;
}

export function splitHostPort(s: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(s);
  if (!m) throw new Error(`expected host:port, got ${JSON.stringify(s)}`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`port out of range in ${JSON.stringify(s)}`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

export class ControlPlane {
  /** What proxies are sent: the source's view with health-withdrawn endpoints marked unready. */
  readonly store: MeshStore;
  /** The source's own view (Kubernetes readiness, files). */
  readonly sourceStore: MeshStore;
  readonly withdrawal: EndpointWithdrawal;
  /** The proxies' StatsReports aggregated (control-plane/stats/): `wren stat` and the dashboard read it. */
  readonly stats: StatsStore;
  private readonly unoverlay: () => void;
  readonly metrics: ControlPlaneMetrics;
  readonly discovery: DiscoveryServer;
  readonly source: MeshSource & { errors?: () => readonly string[]; ignored?: () => readonly unknown[] };
  /** The identity service, when `identity` was configured. */
  readonly identity: IdentityService | null = null;
  /** The control plane's own serving certificate, when transport is 'tls'. */
  readonly serving: ServingIdentity | null = null;
  private grpcServer: grpc.Server | null = null;
  private admin: AdminServerHandle | null = null;
  private draining = false;
  /** Servers started next to this control plane (the injector webhook), closed with it. */
  private readonly companions: (() => Promise<void>)[] = [];
  private sourceStarted: Promise<void> = Promise.resolve();
  grpcPort = 0;
  adminPort = 0;

  private constructor(private readonly o: ControlPlaneOptions) {
    this.metrics = new ControlPlaneMetrics({ processMetrics: o.processMetrics });
    this.store = new MeshStore(o.clock, o.random);
    this.sourceStore = new MeshStore(o.clock, o.random);
    this.withdrawal = new EndpointWithdrawal({
      settings: parseWithdrawalSettings(o.healthWithdrawal), clock: o.clock, logger: o.logger, metrics: new WithdrawalMetrics(this.metrics.registry),
    });
    const statsMetrics = new StatsMetrics(this.metrics.registry);
    // Checked here, errors naming the field: a NaN bound in the store compared false and kept everything.
    const statsLimits = parseStatsLimits(o.statsLimits, 'statsLimits');
    const reportBudget = parseReportBudget(o.reportBudget, 'reportBudget');
    const maxStreamsPerFleet = o.maxDiscoveryStreamsPerFleet === undefined ? undefined : parseWith((r) => REPORT_LIMIT_FIELDS.maxStreamsPerFleet(r, 'maxDiscoveryStreamsPerFleet'), o.maxDiscoveryStreamsPerFleet);
    this.stats = new StatsStore({ clock: o.clock, ...statsLimits, onLimit: (limit, n) => statsMetrics.dropped.inc({ limit }, n), onIngest: (series) => {
      statsMetrics.reports.inc();
      statsMetrics.series.set(series);
    } });
    this.unoverlay = overlayWithdrawals(this.sourceStore, this.store, this.withdrawal);
    this.source = o.source({
      store: this.sourceStore, metrics: this.metrics, logger: o.logger, clock: o.clock, random: o.random, trustDomain: o.trustDomain, debounceMs: o.debounceMs,
    });
    const id = o.identity;
    if (id) {
      const logger = o.logger.child({ component: 'identity' });
      const serveTls = o.transport === 'tls' && !o.credentials;
      const metrics = new IdentityMetrics(this.metrics.registry, id.issuer);
      // Over our own TLS (which asks for client certificates) a proxy may renew with its current certificate instead of a token.
      const certifyLimit = parseCertifyLimit(id.certifyLimit, 'identity.certifyLimit');
      this.identity = new IdentityService({ issuer: id.issuer, authenticator: id.authenticator, certTtlMs: id.certTtlMs, clock: o.clock, logger, metrics, acceptClientCertificates: serveTls, tracing: o.tracing, certifyLimit });
      if (serveTls) {
        const spiffeId = controlPlaneSpiffeId(id.issuer.ca.trustDomain, id.namespace ?? DEFAULT_CONTROL_PLANE_NAMESPACE);
        this.serving = new ServingIdentity({ issuer: id.issuer, spiffeId, ttlMs: this.identity.certTtlMs, clock: o.clock, random: o.random, logger });
      }
    }
    // Proxies authenticate with their workload certificate wherever the control plane serves its own TLS.
    const clientAuth = this.serving ? { trustDomain: o.identity!.issuer.ca.trustDomain, podsAuthoritative: this.source.name === 'kubernetes' } : undefined;
    this.discovery = new DiscoveryServer({
      store: this.store, metrics: this.metrics, clock: o.clock, logger: o.logger, withdrawal: this.withdrawal, stats: this.stats, ...(o.identity ? { issuer: o.identity.issuer } : {}), ...(clientAuth ? { clientAuth } : {}), tracing: o.tracing, egressMode: o.egressMode,
      reportBudget,
      ...(maxStreamsPerFleet !== undefined ? { maxStreamsPerFleet } : {}),
    });
    if (o.tracing) {
      o.tracing.registerMetrics(this.metrics.registry);
      this.discovery.onPush((p) => o.tracing!.pushed(p));
    }
    if (o.transport === 'tls' && !o.credentials && !this.serving) throw new Error("transport 'tls' needs the identity options (the CA issues the control plane's serving certificate)");
  }

  /** Binds both servers and starts the source; proxies get their first snapshot once the source has synced. */
  static async start(o: ControlPlaneOptions): Promise<ControlPlane> {
    const given = parseWith((r) => grpcConnectionsParser(r, 'grpcConnections'), o.grpcConnections);
    const cp = new ControlPlane(o);
    const c = { ...DEFAULT_GRPC_CONNECTION_LIMITS, ...Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined)) };
    const server = new grpc.Server({
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.http2.min_ping_interval_without_data_ms': 5_000,
      'grpc.max_send_message_length': MAX_RESPONSE_BYTES,
      // grpc-js's default, said here: what proxies keep their reports under (contract/discovery.ts MAX_REQUEST_BYTES).
      'grpc.max_receive_message_length': MAX_REQUEST_BYTES,
      'grpc.keepalive_time_ms': c.keepaliveMs,
      'grpc.keepalive_timeout_ms': c.keepaliveTimeoutMs,
      'grpc.max_connection_idle_ms': c.maxIdleMs,
      'grpc.max_connection_age_ms': c.maxAgeMs,
      'grpc.max_connection_age_grace_ms': c.maxAgeGraceMs,
      'grpc.max_concurrent_streams': c.maxConcurrentStreams,
    });
    server.addService(DiscoveryServer.definition(), cp.discovery.implementation);
    if (cp.identity) server.addService(IdentityService.definition(), cp.identity.implementation);
    const credentials = o.credentials ?? cp.serving?.credentials ?? grpc.ServerCredentials.createInsecure();
    try {
      cp.grpcPort = await new Promise<number>((resolve, reject) => server.bindAsync(o.listen, credentials, (e, port) => (e ? reject(e) : resolve(port))));
    } catch (e) {
      cp.serving?.stop();
      throw e;
    }
    cp.serving?.start();
    cp.grpcServer = server;
    if (o.admin) {
      const { host, port } = splitHostPort(o.admin);
      const a = await startAdminServer(host, port, {
        store: cp.store, metrics: cp.metrics, discovery: cp.discovery, withdrawal: cp.withdrawal, stats: cp.stats, clock: o.clock, draining: () => cp.draining,
        sourceErrors: () => cp.source.errors?.() ?? [], sourceIgnored: () => cp.source.ignored?.() ?? [], sourceName: cp.source.name,
        access: new AdminAccess({ namespace: o.identity?.namespace ?? DEFAULT_CONTROL_PLANE_NAMESPACE, authenticator: o.adminAuthenticator ?? null, clock: o.clock, limited: cp.metrics.adminTokenReviewsLimited, evicted: cp.metrics.adminTokenCacheEvictions }),
        sourceRejected: () => cp.source.rejected?.() ?? [],
        ...(o.adminRenderBudget ? { renderBudget: o.adminRenderBudget } : {}),
      });
      cp.admin = a;
      cp.adminPort = a.port;
    }
    cp.sourceStarted = cp.source.start().catch((e: Error) => o.logger.error('source failed to start', { source: cp.source.name, error: e.message }));
    o.logger.info('control plane listening', {
      grpc: `${o.listen.replace(/:\d+$/, '')}:${cp.grpcPort}`, admin: o.admin ? cp.adminPort : null, source: cp.source.name,
      transport: o.credentials ? 'custom' : cp.serving ? 'tls' : 'insecure', ...(cp.serving ? { servingIdentity: cp.serving.spiffeId } : {}),
      // Without our TLS nothing proves who a proxy is: Subscribe is taken at its word (docs/security.md).
      proxyAuthentication: cp.serving ? 'client-certificate' : 'none',
      identity: cp.identity ? { issuer: o.identity!.issuer.source, authenticator: o.identity!.authenticator?.name ?? null, certTtlMs: cp.identity.certTtlMs } : null,
    });
    return cp;
  }

  whenReady(): Promise<void> {
    return this.store.whenReady();
  }

  private stopWithdrawal(): void {
    this.unoverlay();
    this.withdrawal.close();
  }

  /** Abrupt stop (tests, crash simulation): connections drop without a status. */
  /** Close `close` together with this control plane (kill and close). */
  addCompanion(close: () => Promise<void>): void {
    this.companions.push(close);
  }

  async kill(): Promise<void> {
    this.draining = true;
    await Promise.all(this.companions.splice(0).map((c) => c().catch(() => undefined)));
    this.serving?.stop();
    this.grpcServer?.forceShutdown();
    await this.source.stop();
    await this.sourceStarted;
    this.stopWithdrawal();
    void this.admin?.close();
    await this.o.tracing?.shutdown();
  }

  /** Graceful: /ready turns 503, streams end with UNAVAILABLE (proxies move to another replica), then servers close. */
  async close(graceMs = 5_000): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    await Promise.all(this.companions.splice(0).map((c) => c().catch(() => undefined)));
    this.serving?.stop();
    this.discovery.closeAll();
    const server = this.grpcServer;
    if (server) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    await this.source.stop();
    await this.sourceStarted;
    this.stopWithdrawal();
    await this.admin?.close();
    await this.o.tracing?.shutdown();
  }
}
