import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { parse as parseYaml } from 'yaml';
import { parseInboundPolicy, parseServices } from '../../contract/parse.js';
import type { InboundPolicy, Service } from '../../contract/model.js';
import { DEFAULT_INBOUND_POLICY, MIN_STATS_REPORT_INTERVAL_MS } from '../../contract/defaults.js';
import { MAX_SUBSCRIBE_SERVICES } from '../../contract/subscribe-limits.js';
import { CONTROL_PLANE_ADDRESS_PATTERN, controlPlaneSpiffeId, NAMESPACE_PATTERN, SERVICE_ACCOUNT_PATTERN, TRUST_DOMAIN_PATTERN } from '../../contract/identity.js';
import type { TelemetryOverrides } from '../telemetry/telemetry-settings.js';
import type { AccessLogFlush } from '../access-log/access-log.js';
import { parseTracingConfig, type TracingConfig } from '../tracing/tracing-config.js';
import { parseEgressSettings, NO_EGRESS, type EgressSettings } from '../../contract/egress.js';
import { APP_PROBES_ENV, parseAppProbes, type AppProbes } from '../../contract/app-probes.js';
import {
  ConfigError, arr, bool, duration, fail, jsonSyntaxProblem, literal, map, num, obj, optional, parseWith, port, record, str, withDefault, type Parser,
} from '../../common/schema.js';

/**
 * The least protocol.detectTimeoutMs taken. Istio takes any protocolDetectionTimeout of 1 ms
 * or more (0 there means no timeout, wait for ever); here 0 meant a timer firing at once, so
 * every plaintext client looked silent. 100 ms leaves a loaded node time to read a
 * client's first segment; a server-first port that cannot wait that long is declared opaque.
 */
const MIN_DETECT_TIMEOUT_MS = 100;

/**
 * The proxy's own configuration (bootstrap): identity, where its certificate comes from,
 * listeners, protocol handling and either a static mesh or a control-plane address.
 * Parsed once here; the rest of the proxy only sees the readonly result.
 *
 * The certificate comes from exactly one of:
 *  - `tls`: key/cert/bundle files (written by `wren certs`), loaded once;
 *  - `identity.certify`: the control plane's Identity/Certify (docs/identity.md): a key
 *    generated in memory, a CSR, a token read from `tokenFile`, renewed before expiry.
 */
export interface ListenerAddress {
  readonly address: string;
  /**
   * The IPv6 address bound on the same port ('' = none): `::` inbound and `::1` outbound
   * by default, so a dual-stack or IPv6 pod is served on both families (docs/configuration.md).
   * Skipped, with a warning, on a host without IPv6.
   */
  readonly ipv6Address: string;
  readonly port: number;
}

/** The metrics listener: off with `enabled: false` (then nothing binds and no pod annotation points at it). */
export interface MetricsListener extends ListenerAddress {
  readonly enabled: boolean;
}

export interface TlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
  readonly trustBundleFile: string;
}
/** `tls` when identity.certify is used instead: no files (every field undefined). */
export interface NoTlsFiles {
  readonly certFile?: undefined;
  readonly keyFile?: undefined;
  readonly trustBundleFile?: undefined;
}

export interface CertifyConfig {
  /** host:port of the control plane's gRPC port (default: discovery.controlPlane). */
  readonly controlPlane: string;
  /** Read on every Certify call: projected service-account tokens rotate. */
  readonly tokenFile: string;
  /** Trust anchors that verify the control plane's serving certificate: a file or the PEM itself (in-cluster: WREN_TRUST_BUNDLE). */
  readonly trustBundleFile: string | undefined;
  readonly trustBundlePem: string | undefined;
  /** Requested certificate lifetime; undefined = the control plane's default (it never grants more). */
  readonly lifetimeMs: number | undefined;
  /** When set, the current certificate chain and trust bundle (public material only) are written here for operators. */
  readonly runDir: string | undefined;
  /** Deadline of one Certify call. */
  readonly timeoutMs: number;
  /** How long `wren proxy` keeps retrying for its first certificate before giving up. */
  readonly startupTimeoutMs: number;
}

/**
 * An explicit upstream (Consul's `upstreams`: destination_name, local_bind_port,
 * local_bind_address): a local listener whose connections go to one mesh service port
 * as if that were their original destination. This is how a client with no iptables
 * redirect (a VM, a laptop, the local mesh) reaches the mesh over opaque TCP.
 */
export interface UpstreamConfig {
  /** `name.namespace`, or `name` in the proxy's own namespace. */
  readonly service: string;
  /** The service port. */
  readonly port: number;
  /** Where the listener binds (0: any free port, for tests). */
  readonly localPort: number;
  readonly localAddress: string;
  /** Declared protocol; default: the service port's, or detection (and the opaque-port list). */
  readonly protocol: 'opaque' | 'http1' | 'http2' | 'grpc' | undefined;
}

export interface ProxyConfig {
  readonly identity: {
    readonly trustDomain: string;
    readonly namespace: string;
    readonly serviceAccount: string;
    readonly pod: string;
    /** The workload's labels (policy selection); {} when unknown. */
    readonly labels: Readonly<Record<string, string>>;
    /**
     * This proxy's workload, for the metrics' source_* (outbound) and destination_*
     * (inbound) labels and the peer metadata it sends (docs/observability.md, Metrics).
     * In a cluster the injector sets it (WREN_WORKLOAD_*); '' = unknown, except that app
     * and version default to the labels app.kubernetes.io/name or app, app.kubernetes.io/version or version.
     */
    readonly workload: { readonly name: string; readonly app: string; readonly version: string };
    readonly certify: CertifyConfig | undefined;
  };
  readonly tls: TlsFiles | NoTlsFiles;
  readonly listeners: {
    readonly outbound: ListenerAddress;
    readonly inbound: ListenerAddress;
    readonly admin: ListenerAddress;
    /** Read-only Prometheus scrape port (Istio's 15020): /stats/prometheus, /healthz/ready and the app's rewritten kubelet probes (proxy/admin/metrics-server.ts). */
    readonly metrics: MetricsListener;
  };
  /** Where inbound traffic is delivered: the app in the same pod. */
  readonly app: { readonly address: string };
  /**
   * The app's kubelet probes the injector rewrote to the metrics port (contract/app-probes.ts;
   * in a cluster WREN_APP_PROBES): `/app-health/<container>/<livez|readyz|startupz>` → the
   * original probe, run against app.address (proxy/admin/app-prober.ts). Empty by default.
   */
  readonly appProbes: AppProbes;
  readonly protocol: {
    readonly detectTimeoutMs: number;
    /** Server-speaks-first ports: never wait for the client's first bytes. */
    readonly opaquePorts: readonly number[];
    /**
     * The inbound's own server-speaks-first ports, when they differ from opaquePorts (which
     * then decides the outbound only): what the pod annotation wren.io/opaque-ports sets,
     * as Linkerd's config.linkerd.io/opaque-ports is about how the pod is reached, not about
     * what it calls. Absent: opaquePorts, both ways.
     */
    readonly inboundOpaquePorts?: readonly number[];
    /**
     * How HTTP/1.1 requests travel to a peer sidecar (docs/configuration.md, Between sidecars):
     * 'mux' (the default) as HTTP/1.1 on virtual connections of the mesh multiplexer, many
     * multiplexed on one mTLS connection per peer (proxy/mux/); 'h1' as HTTP/1.1 over a
     * bounded pool of mTLS connections per peer, one exchange at a time per connection
     * (Istio's default); 'h2' as streams on the one multiplexed HTTP/2 session per peer
     * (Linkerd's). HTTP/2 and gRPC follow meshHttp2; upgrades and opaque TCP always take
     * the HTTP/2 session.
     */
    readonly meshHttp1: 'h1' | 'h2' | 'mux';
    /**
     * How HTTP/2 requests, gRPC included, travel to a peer sidecar: 'mux' as HTTP/1.1
     * messages (chunked, trailers) on virtual connections of the mesh multiplexer, the
     * original protocol in `wren-orig-proto` so the peer speaks HTTP/2 to its app again;
     * 'h2' as streams on the HTTP/2 session per peer. Upgrades (extended CONNECT) and
     * opaque TCP take the HTTP/2 session either way.
     */
    readonly meshHttp2: 'h2' | 'mux';
    /**
     * The HTTP/2 client the inbound delivers HTTP/2 and gRPC to its app with: 'frames', Wren's
     * frame-level client (proxy/h2/; the default), or 'node', node:http2 sessions.
     */
    readonly appHttp2: 'frames' | 'node';
    /**
     * The HTTP/2 server the outbound listener serves the app's h2c (prior knowledge) with:
     * 'frames', Wren's frame-level server (proxy/h2/h2-server-session.ts; the default), or
     * 'node', node:http2.
     */
    readonly outboundHttp2: 'frames' | 'node';
    /**
     * meshHttp1 'h1' and 'mux': connections per peer sidecar ('h1': mTLS connections; 'mux':
     * virtual connections on the multiplexer); requests beyond wait for one (as the
     * cluster's pending requests), counted as limit="mesh-http1-connections-per-peer".
     * Not used by 'h2', nor by meshHttp2 'mux', whose bound is limits.maxConcurrentStreams.
     */
    readonly meshHttp1MaxConnectionsPerPeer: number;
  };
  readonly limits: ProxyLimits;
  readonly shutdown: {
    /** The longest a drain lasts (SIGTERM, POST /drain): then whatever is in flight is cut. */
    readonly gracePeriodMs: number;
    /**
     * After SIGTERM/SIGINT the outbound keeps serving the app at least this long, even with
     * nothing in flight (Istio's terminationDrainDuration, 5 s): a classic sidecar gets its
     * SIGTERM together with the app, which may still call out while it shuts down. Never
     * more than gracePeriodMs (unset: 5 s or the grace period, the shorter). 0: exit as soon
     * as nothing is in flight (native sidecars: the app has exited before the signal).
     */
    readonly minDrainMs: number;
  };
  readonly log: { readonly level: 'debug' | 'info' | 'warn' | 'error' };
  readonly discovery: {
    readonly controlPlane: string | undefined;
    readonly firstConfigTimeoutMs: number;
    /**
     * Plaintext gRPC to the control plane, for discovery and Certify (tests, debugging; never
     * in a cluster). Otherwise TLS, verified with identity.certify's trust bundle, or with
     * tls.trustBundleFile when certificates come from files.
     */
    readonly insecure: boolean;
    /** The SPIFFE ID the control plane must present (default spiffe://<td>/ns/wren-system/sa/wren-control-plane). */
    readonly controlPlaneIdentity: string;
    /**
     * Egress scope, like an Istio Sidecar's `egress.hosts`: the services ("name.namespace")
     * this proxy subscribes to. Empty (the default): every service. A service not listed is
     * not routed by the mesh (its traffic passes through as to any unknown destination).
     */
    readonly services: readonly string[];
    /**
     * What the HealthReport to the control plane carries besides ejections, active-check
     * failures and open breakers (docs/control-plane.md, "Health-based withdrawal"):
     * `connectFailures`, an endpoint after this many connect failures in a row (0: never).
     */
    readonly healthReport: { readonly connectFailures: number };
    /**
     * The StatsReport (traffic per edge, for `wren stat` and the dashboard; docs/operations.md):
     * sent every `intervalMs` (0: never), with at most `maxEdges` edges (the busiest; the rest
     * are counted in wren_limit_exceeded_total{limit="stats-report-edges"}).
     */
    readonly statsReport: { readonly intervalMs: number; readonly maxEdges: number };
  };
  /** Static mesh; the control plane, when configured, replaces it. */
  readonly mesh: { readonly services: readonly Service[] };
  /** The local workload's inbound policy (mTLS mode, authorization; docs/policy.md); the control plane, when configured, replaces it. */
  readonly policy: InboundPolicy;
  /** Explicit upstream listeners (docs/configuration.md); [] by default. */
  readonly upstreams: readonly UpstreamConfig[];
  /** JWT verification (RequestAuthentication; docs/request-authentication.md). */
  readonly requestAuthn: RequestAuthnConfig;
  /**
   * Worker threads that run the listeners (Envoy's --concurrency, Istio's `concurrency`):
   * 1 serves on the main thread as before; N > 1 starts N workers that each bind every
   * data-path listener with SO_REUSEPORT, the main thread keeping the control plane, the
   * certificate and the admin port (proxy/workers/, docs/configuration.md).
   */
  readonly concurrency: number;
  /**
   * This workload's own trace sampling and access-log settings; unset fields are left to
   * what the control plane pushes, then to the defaults (proxy/telemetry/telemetry-settings.ts).
   */
  readonly telemetry: TelemetryOverrides;
  /**
   * When buffered access log lines are written (Envoy's --file-flush-min-size-kb and
   * --file-flush-interval-msec): once `minBytes` are buffered or `intervalMs` after the
   * first buffered line, and when the proxy stops (proxy/access-log/access-log.ts).
   */
  readonly accessLogFlush: AccessLogFlush;
  /** Span export: the OTLP/gRPC collector and the bounded batch queue (proxy/tracing/tracing-config.ts). */
  readonly tracing: TracingConfig;
  /**
   * Egress control (docs/traffic-management.md, Egress): `mode` ALLOW_ANY | REGISTRY_ONLY
   * (unset: the control plane's mesh-wide mode, else ALLOW_ANY) and this proxy's own
   * ExternalServices, added to the pushed ones; `connectTimeoutMs` bounds connecting to a
   * destination outside the mesh, for HTTP requests and passed-through connections alike
   * (Istio's mesh connectTimeout, which its PassthroughCluster uses, 10 s).
   */
  readonly egress: EgressSettings & { readonly connectTimeoutMs: number };
}

/** Clock skew and JWKS caching for RequestAuthentication (defaults: Envoy's clock skew and remote_jwks cache, jose's refetch cooldown, Istio's fetch timeout). */
export interface RequestAuthnConfig {
  readonly clockSkewMs: number;
  readonly jwksRefreshMs: number;
  readonly jwksRetryMs: number;
  readonly jwksFetchTimeoutMs: number;
  readonly jwksMinRefetchIntervalMs: number;
  /** A fetched JWKS larger than this is refused (wren_jwks_fetches_total{outcome="too-large"}). */
  readonly jwksMaxBytes: number;
  /** Verified tokens cached (Envoy jwt_cache_size, default 100); 0 = off. */
  readonly jwtCacheSize: number;
}

/**
 * Abuse limits on every listener (Envoy-like defaults; docs/security.md). A timeout of 0
 * turns it off.
 */
export interface ProxyLimits {
  readonly maxHeaderBytes: number;
  readonly maxConcurrentStreams: number;
  /** A request's head must arrive within this (HTTP/1.1: each request; HTTP/2: the connection's first stream). Envoy request_headers_timeout. */
  readonly requestHeadersTimeoutMs: number;
  /** A connection with no request in flight for this long is closed (Envoy idle_timeout, 1 h). */
  readonly idleConnectionTimeoutMs: number;
  /** A request/stream on which no byte moves either way for this long is reset (Envoy stream_idle_timeout, 5 min). */
  readonly streamIdleTimeoutMs: number;
  /**
   * An opaque TCP connection (outbound, egress passthrough, a peer's CONNECT stream or a
   * plaintext one to the app) or an upgraded one after its 101 on which no byte moves either
   * way for this long is closed (Envoy tcp_proxy idle_timeout, 1 h).
   */
  readonly tcpIdleTimeoutMs: number;
  /**
   * With `concurrency` above 1: how long the listener workers have to answer a config
   * snapshot (applied, or could not) before the discovery client NACKs it, so that one
   * worker whose event loop hangs cannot hold this proxy's config stream (the control
   * plane sends its next response only after an answer). 10 s.
   */
  readonly workerApplyTimeoutMs: number;
  /**
   * After an HTTP/1.1 connection's last response (`connection: close`, an error response, a
   * drain) the client has this long to close its side, then the socket is destroyed; while
   * the response's last bytes are still being written, any progress starts the wait again
   * (Envoy delayed_close_timeout, 1 s).
   */
  readonly delayedCloseTimeoutMs: number;
  /** Open connections per listener; more are refused at accept (Envoy max_downstream_connections). */
  readonly maxConnectionsPerListener: number;
  /**
   * HTTP/2 rapid reset (CVE-2023-44487) on the outbound listener, as Envoy's
   * overload.premature_reset_total_stream_count / premature_reset_min_stream_lifetime_seconds:
   * a connection whose streams are reset early too often gets GOAWAY and is closed.
   */
  readonly prematureResets: { readonly totalStreamCount: number; readonly minStreamLifetimeMs: number };
  /** Concurrent HTTP/2 streams one caller (peer identity) may hold to the local app. */
  readonly maxStreamsPerCaller: number;
  /**
   * Per-caller-identity token buckets each RateLimitPolicy keeps (docs/resilience.md, Local
   * rate limiting); beyond it the least recently used caller's bucket is dropped
   * (wren_limit_exceeded_total{limit="rate-limit-identity-buckets"}). Default 10,000.
   */
  readonly rateLimitIdentityBuckets: number;
  /**
   * PING every intervalMs on sessions to peers (HTTP/2, and the mesh multiplexer's on
   * wren-mux/2, where any byte answers) and to the app: a session that does not answer
   * within timeoutMs is destroyed.
   */
  readonly peerKeepalive: { readonly intervalMs: number; readonly timeoutMs: number };
  /**
   * HTTP/2 receive windows (RFC 9113 §6.9.2) of every session the sidecar holds: the
   * listeners' (SETTINGS_INITIAL_WINDOW_SIZE and the connection window) and the peer and app
   * sessions' (Envoy's initial_stream_window_size / initial_connection_window_size). The
   * stream window bounds the memory a slow reader on the far side can make a sidecar hold:
   * a stream is read only as fast as the next hop takes it, so at most one stream window
   * per stream is buffered unread, and maxConcurrentStreams streams per connection. The
   * connection window does not bound memory in Node (it is acknowledged as data arrives);
   * it only paces a connection's streams together.
   */
  readonly http2InitialStreamWindowBytes: number;
  readonly http2InitialConnectionWindowBytes: number;
}

/** The TLS files when the config uses them, else null (identity.certify). */
export function tlsFilesOf(c: ProxyConfig): TlsFiles | null {
  const t = c.tls;
  return t.certFile !== undefined ? { certFile: t.certFile, keyFile: t.keyFile!, trustBundleFile: t.trustBundleFile! } : null;
}

const IPV6_OR_EMPTY = /^$|^[0-9a-fA-F:]*:[0-9a-fA-F:.]*$/;
const listener = (address: string, ipv6Address: string, p: number): Parser<ListenerAddress> =>
  obj({ address: str({ default: address }), ipv6Address: str({ default: ipv6Address, pattern: IPV6_OR_EMPTY }), port: port(p) });

/** A Kubernetes label value (what the workload's app and version are), or ''. */
const LABEL_VALUE = /^$|^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const HOST_PORT = CONTROL_PLANE_ADDRESS_PATTERN;
/** A service key, "name.namespace" (contract/model.ts serviceKey). */
const SERVICE_KEY = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?\.[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

const SERVICE_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)?$/;

const upstream: Parser<UpstreamConfig> = map(
  obj({
    service: str({ pattern: SERVICE_NAME }),
    port: num({ int: true, min: 1, max: 65535 }),
    localPort: port(),
    localAddress: str({ default: '127.0.0.1' }),
    protocol: optional(literal(['opaque', 'http1', 'http2', 'grpc'] as const)),
  }),
  (u, path) => {
    if (isIP(u.localAddress) === 0) fail(`${path}.localAddress`, `expected an IP address, got ${JSON.stringify(u.localAddress)}`);
    return u;
  },
);

/** Linkerd's default opaque (server-speaks-first) ports: SMTP, MySQL, Galera, Postgres, ES, Redis, memcached. */
export const DEFAULT_OPAQUE_PORTS = [25, 587, 3306, 4444, 5432, 6379, 9300, 11211];

const shape = obj({
  identity: obj({
    trustDomain: str({ default: 'cluster.local', pattern: TRUST_DOMAIN_PATTERN }),
    namespace: str({ default: 'default', pattern: NAMESPACE_PATTERN }),
    serviceAccount: str({ default: 'default', pattern: SERVICE_ACCOUNT_PATTERN }),
    pod: str({ default: '' }),
    labels: record(str()),
    workload: obj({
      name: str({ default: '', pattern: /^$|^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/ }),
      app: optional(str({ pattern: LABEL_VALUE })),
      version: optional(str({ pattern: LABEL_VALUE })),
    }),
    certify: optional(
      obj({
        controlPlane: optional(str({ pattern: HOST_PORT })),
        tokenFile: str(),
        trustBundleFile: optional(str()),
        trustBundlePem: optional(str({ pattern: /-----BEGIN CERTIFICATE-----/ })),
        lifetimeMs: optional(duration()),
        runDir: optional(str()),
        timeoutMs: duration(10_000),
        startupTimeoutMs: duration(60_000),
      }),
    ),
  }),
  tls: optional(obj({ certFile: str(), keyFile: str(), trustBundleFile: str() })),
  listeners: obj({
    outbound: listener('127.0.0.1', '::1', 15001),
    inbound: listener('0.0.0.0', '::', 15006),
    admin: listener('127.0.0.1', '', 15000),
    // On every address like the inbound listener: Prometheus scrapes the pod IP (Istio's 15020).
    metrics: obj({ enabled: bool(true), address: str({ default: '0.0.0.0' }), ipv6Address: str({ default: '::', pattern: IPV6_OR_EMPTY }), port: port(15020) }),
  }),
  app: obj({ address: str({ default: '127.0.0.1' }) }),
  appProbes: parseAppProbes,
  protocol: obj({
    // At least MIN_DETECT_TIMEOUT_MS: a timer that fires before an ordinary client's first
    // segment is read decides "silent" for every plaintext request (0 fired at once), and a
    // silent connection is spliced to the app as server-first TCP (docs/security.md).
    detectTimeoutMs: map(duration(1000), (ms, path) =>
      ms >= MIN_DETECT_TIMEOUT_MS ? ms : fail(path, `expected at least ${MIN_DETECT_TIMEOUT_MS}ms (shorter, an ordinary client's first bytes can come after the timer, and a connection judged silent is spliced to the app unparsed); declare server-first ports in protocol.opaquePorts instead, got ${ms} ms`)),
    opaquePorts: arr(num({ int: true, min: 1, max: 65535 }), { default: DEFAULT_OPAQUE_PORTS }),
    inboundOpaquePorts: optional(arr(num({ int: true, min: 1, max: 65535 }))),
    // h1 by the numbers (docs/benchmarks.md, "HTTP/1.1 between sidecars"): less CPU and half the RSS per sidecar.
    meshHttp1: literal(['h1', 'h2', 'mux'] as const, 'mux'),
    // mux by the numbers (docs/benchmarks.md, "gRPC on the mesh multiplexer").
    meshHttp2: literal(['h2', 'mux'] as const, 'mux'),
    appHttp2: literal(['frames', 'node'] as const, 'frames'),
    outboundHttp2: literal(['frames', 'node'] as const, 'frames'),
    meshHttp1MaxConnectionsPerPeer: num({ int: true, min: 1, max: 65535, default: 256 }),
  }),
  limits: obj({
    maxHeaderBytes: num({ int: true, min: 1024, max: 1 << 20, default: 16 * 1024 }),
    maxConcurrentStreams: num({ int: true, min: 1, default: 1000 }),
    requestHeadersTimeoutMs: duration(10_000),
    idleConnectionTimeoutMs: duration(3_600_000),
    streamIdleTimeoutMs: duration(300_000),
    tcpIdleTimeoutMs: duration(3_600_000),
    // 0 would NACK every snapshot before a worker could answer: at least 1 ms.
    workerApplyTimeoutMs: map(duration(10_000), (ms, path) => (ms >= 1 ? ms : fail(path, `expected at least 1ms, got ${ms} ms`))),
    delayedCloseTimeoutMs: duration(1000),
    maxConnectionsPerListener: num({ int: true, min: 1, default: 4096 }),
    prematureResets: obj({
      totalStreamCount: num({ int: true, min: 2, default: 500 }),
      minStreamLifetimeMs: duration(1000),
    }),
    maxStreamsPerCaller: num({ int: true, min: 1, default: 100 }),
    // Per-identity rate-limit buckets kept per RateLimitPolicy (least recently used evicted).
    rateLimitIdentityBuckets: num({ int: true, min: 1, default: 10_000 }),
    peerKeepalive: obj({ intervalMs: duration(10_000), timeoutMs: duration(5_000) }),
    // RFC 9113 §6.5.2 / §6.9.1: 65,535 is the protocol's default and least useful window, 2^31-1 its maximum.
    http2InitialStreamWindowBytes: num({ int: true, min: 65_535, max: 2 ** 31 - 1, default: 1 << 20 }),
    http2InitialConnectionWindowBytes: num({ int: true, min: 65_535, max: 2 ** 31 - 1, default: 16 << 20 }),
  }),
  shutdown: obj({ gracePeriodMs: duration(30_000), minDrainMs: optional(duration()) }),
  log: obj({ level: literal(['debug', 'info', 'warn', 'error'] as const, 'info') }),
  discovery: obj({
    controlPlane: optional(str({ pattern: HOST_PORT })),
    firstConfigTimeoutMs: duration(30_000),
    insecure: bool(false),
    controlPlaneIdentity: optional(str({ pattern: /^spiffe:\/\/[^/]+\/.+/ })),
    // At most what the control plane takes in a Subscribe: a longer list is refused there, for ever.
    services: arr(str({ pattern: SERVICE_KEY }), { default: [], max: MAX_SUBSCRIBE_SERVICES }),
    // At most 16: the clusters announce only the first 16 connect failures in a row (cluster.ts).
    healthReport: obj({ connectFailures: num({ int: true, min: 0, max: 16, default: 2 }) }),
    statsReport: obj({
      intervalMs: map(duration(10_000), (ms, path) =>
        ms === 0 || ms >= MIN_STATS_REPORT_INTERVAL_MS ? ms : fail(path, `expected 0 (never) or at least ${MIN_STATS_REPORT_INTERVAL_MS}ms (what the control plane takes, at most 5 reports a second), got ${ms} ms`)),
      maxEdges: num({ int: true, min: 1, max: 10_000, default: 200 }),
    }),
  }),
  mesh: obj({ services: parseServices }),
  policy: withDefault(parseInboundPolicy, DEFAULT_INBOUND_POLICY),
  upstreams: arr(upstream, { default: [] }),
  requestAuthn: obj({
    clockSkewMs: duration(60_000),
    jwksRefreshMs: duration(300_000),
    jwksRetryMs: duration(10_000),
    jwksFetchTimeoutMs: duration(5_000),
    jwksMinRefetchIntervalMs: duration(30_000),
    jwksMaxBytes: num({ int: true, min: 1024, max: 64 << 20, default: 1 << 20 }),
    jwtCacheSize: num({ int: true, min: 0, max: 100_000, default: 100 }),
  }),
  // Bounded: every worker is a V8 isolate (~10 MB) and the kernel spreads connections
  // over the sockets, so more workers than cores only costs memory.
  concurrency: num({ int: true, min: 1, max: 64, default: 1 }),
  telemetry: obj({
    tracing: obj({ samplingPercent: optional(num({ min: 0, max: 100 })) }),
    accessLog: obj({ enabled: optional(bool()), samplingPercent: optional(num({ min: 0, max: 100 })) }),
  }),
  // minBytes at most the sink's 4 MiB cap (access-log.ts): a buffer that could never fill would only drop lines.
  accessLogFlush: obj({ intervalMs: duration(1000), minBytes: num({ int: true, min: 0, max: 4 << 20, default: 64 * 1024 }) }),
  tracing: parseTracingConfig,
  egress: (raw, path) => {
    const { connectTimeoutMs, ...rest } = (raw ?? {}) as Record<string, unknown>;
    const e = raw === undefined || raw === null ? NO_EGRESS : parseEgressSettings(rest, path);
    return Object.freeze({ ...e, connectTimeoutMs: duration(10_000)(connectTimeoutMs, `${path}.connectTimeoutMs`) });
  },
});

/** Cross-field rules: exactly one certificate source; certify's defaults; upstream ports; the minimum drain within the grace period; app probes need the metrics port. */
const parser: Parser<ProxyConfig> = map(shape, (c) => {
  const raw = c.identity.certify;
  if (c.tls && raw) fail('identity.certify', 'set either tls (certificate files) or identity.certify (certificates from the control plane), not both');
  if (!c.tls && !raw) fail('tls', 'required: either tls (certFile, keyFile, trustBundleFile) or identity.certify');
  let certify: CertifyConfig | undefined;
  if (raw) {
    const controlPlane = raw.controlPlane ?? c.discovery.controlPlane;
    if (!controlPlane) fail('identity.certify.controlPlane', 'required when discovery.controlPlane is not set');
    if (raw.trustBundleFile !== undefined && raw.trustBundlePem !== undefined) fail('identity.certify.trustBundlePem', 'set trustBundleFile or trustBundlePem, not both');
    if (!c.discovery.insecure && raw.trustBundleFile === undefined && raw.trustBundlePem === undefined)
      fail('identity.certify.trustBundleFile', 'required (or trustBundlePem): the trust anchors that verify the control plane');
    if (raw.lifetimeMs !== undefined && raw.lifetimeMs < 1000) fail('identity.certify.lifetimeMs', `expected at least 1s, got ${raw.lifetimeMs} ms`);
    certify = Object.freeze({ ...raw, controlPlane: controlPlane! });
  }
  checkUpstreamPorts(c.upstreams, c.listeners);
  const shutdown = shutdownOf(c.shutdown);
  // The rewritten kubelet probes are served on the metrics port only: without it nothing answers them.
  if (c.appProbes.size > 0 && !c.listeners.metrics.enabled)
    fail('appProbes', 'the app probes are served on the metrics port, which listeners.metrics.enabled: false turns off: enable the metrics listener or remove appProbes');
  return Object.freeze({
    ...c,
    identity: Object.freeze({ ...c.identity, certify, workload: workloadOf(c.identity) }),
    tls: c.tls ?? Object.freeze({}),
    shutdown,
    discovery: Object.freeze({ ...c.discovery, controlPlaneIdentity: c.discovery.controlPlaneIdentity ?? controlPlaneSpiffeId(c.identity.trustDomain) }),
  }) as ProxyConfig;
});

/** Istio's terminationDrainDuration default: how long a signalled sidecar keeps its outbound up, at least. */
const DEFAULT_MIN_DRAIN_MS = 5000;

/**
 * The minimum drain fits in the grace period: the grace period bounds the whole drain (and
 * is what is kept below the kubelet's terminationGracePeriodSeconds), so a minimum past it
 * could never be honoured. Unset, it is the default or the grace period, the shorter.
 */
function shutdownOf(s: { gracePeriodMs: number; minDrainMs: number | undefined }): ProxyConfig['shutdown'] {
  if (s.minDrainMs !== undefined && s.minDrainMs > s.gracePeriodMs)
    fail('shutdown.minDrainMs', `${s.minDrainMs} ms is longer than shutdown.gracePeriodMs (${s.gracePeriodMs} ms), which bounds the whole drain: lower it or raise the grace period`);
  return Object.freeze({ gracePeriodMs: s.gracePeriodMs, minDrainMs: s.minDrainMs ?? Math.min(DEFAULT_MIN_DRAIN_MS, s.gracePeriodMs) });
}

/** app/version unset: the workload's labels (Istio reads the same two pairs; '' when absent). */
function workloadOf(id: { labels: Readonly<Record<string, string>>; workload: { name: string; app?: string; version?: string } }): ProxyConfig['identity']['workload'] {
  const l = id.labels;
  const label = (v: string | undefined) => (v !== undefined && LABEL_VALUE.test(v) ? v : '');
  return Object.freeze({
    name: id.workload.name,
    app: id.workload.app ?? label(l['app.kubernetes.io/name'] ?? l.app),
    version: id.workload.version ?? label(l['app.kubernetes.io/version'] ?? l.version),
  });
}

/** Two listeners on one address and port cannot both bind: say which field, before start-up. */
function checkUpstreamPorts(ups: readonly UpstreamConfig[], listeners: Record<'outbound' | 'inbound' | 'admin' | 'metrics', ListenerAddress & { enabled?: boolean }>): void {
  const wildcard = (a: string) => a === '0.0.0.0' || a === '::';
  const taken: { address: string; port: number; what: string }[] = Object.entries(listeners)
    .filter(([, l]) => l.enabled !== false)
    .map(([k, l]) => ({ address: l.address, port: l.port, what: `listeners.${k}` }));
  ups.forEach((u, i) => {
    if (u.localPort === 0) return;
    const clash = taken.find((t) => t.port === u.localPort && (t.address === u.localAddress || wildcard(t.address) || wildcard(u.localAddress)));
    if (clash) fail(`upstreams[${i}].localPort`, `${u.localAddress}:${u.localPort} is already ${clash.what}'s`);
    taken.push({ address: u.localAddress, port: u.localPort, what: `upstreams[${i}]` });
  });
}

export function parseProxyConfig(raw: unknown, source = 'config'): ProxyConfig {
  return parseWith(parser, raw, source);
}

/** Reads and parses a YAML (or JSON) file; errors name the file and the field path. */
export function loadProxyConfig(file: string): ProxyConfig {
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ConfigError('', `cannot read config: ${(e as Error).message}`, file);
  }
  return parseProxyConfig(raw, file);
}

/**
 * In-cluster mode: the environment the injector gives the proxy container
 * (control-plane/injector/sidecar.ts buildProxyContainer), as config fields.
 * `kind` says how the text becomes a value before the shared parser checks it.
 */
export const PROXY_ENV: readonly { readonly name: string; readonly path: string; readonly kind?: 'number' | 'boolean' | 'list' | 'ports' | 'json'; readonly required?: boolean }[] = [
  { name: 'POD_NAME', path: 'identity.pod' },
  { name: 'POD_NAMESPACE', path: 'identity.namespace', required: true },
  // Inbound traffic goes to the pod IP, not 127.0.0.1 (Istio since 1.10, from its INSTANCE_IP =
  // status.podIP): a port the app binds to localhost only stays private to the pod, as without a mesh.
  { name: 'POD_IP', path: 'app.address' },
  { name: 'WREN_SERVICE_ACCOUNT', path: 'identity.serviceAccount', required: true },
  { name: 'WREN_TRUST_DOMAIN', path: 'identity.trustDomain' },
  { name: 'WREN_CONTROL_PLANE', path: 'discovery.controlPlane', required: true },
  { name: 'WREN_CONTROL_PLANE_IDENTITY', path: 'discovery.controlPlaneIdentity' },
  { name: 'WREN_CONTROL_PLANE_INSECURE', path: 'discovery.insecure', kind: 'boolean' },
  { name: 'WREN_TRUST_BUNDLE', path: 'identity.certify.trustBundlePem' },
  { name: 'WREN_TOKEN_FILE', path: 'identity.certify.tokenFile', required: true },
  { name: 'WREN_RUN_DIR', path: 'identity.certify.runDir' },
  { name: 'WREN_LOG_LEVEL', path: 'log.level' },
  { name: 'WREN_INBOUND_PORT', path: 'listeners.inbound.port', kind: 'number' },
  { name: 'WREN_OUTBOUND_PORT', path: 'listeners.outbound.port', kind: 'number' },
  { name: 'WREN_ADMIN_PORT', path: 'listeners.admin.port', kind: 'number' },
  { name: 'WREN_METRICS_PORT', path: 'listeners.metrics.port', kind: 'number' },
  { name: 'WREN_CONCURRENCY', path: 'concurrency', kind: 'number' },
  // Durations ("25s"): the injector derives them from the pod's terminationGracePeriodSeconds and its sidecar mode.
  { name: 'WREN_SHUTDOWN_GRACE_PERIOD', path: 'shutdown.gracePeriodMs' },
  { name: 'WREN_SHUTDOWN_MIN_DRAIN', path: 'shutdown.minDrainMs' },
  { name: 'WREN_EGRESS_SERVICES', path: 'discovery.services', kind: 'list' },
  { name: 'WREN_MESH_HTTP1', path: 'protocol.meshHttp1' },
  { name: 'WREN_MESH_HTTP2', path: 'protocol.meshHttp2' },
  // wren.io/opaque-ports: replaces the default list; "" is the pod's "none" (the annotation's empty value), not unset.
  { name: 'WREN_OPAQUE_PORTS', path: 'protocol.inboundOpaquePorts', kind: 'ports' },
  { name: 'WREN_WORKLOAD_NAME', path: 'identity.workload.name' },
  { name: 'WREN_WORKLOAD_APP', path: 'identity.workload.app' },
  { name: 'WREN_WORKLOAD_VERSION', path: 'identity.workload.version' },
  // The telemetry annotations (wren.io/tracing-sampling, wren.io/access-log, wren.io/access-log-sampling).
  { name: 'WREN_TRACING_SAMPLING', path: 'telemetry.tracing.samplingPercent', kind: 'number' },
  { name: 'WREN_ACCESS_LOG', path: 'telemetry.accessLog.enabled', kind: 'boolean' },
  { name: 'WREN_ACCESS_LOG_SAMPLING', path: 'telemetry.accessLog.samplingPercent', kind: 'number' },
  { name: 'WREN_TRACING_COLLECTOR', path: 'tracing.collector.address' },
  { name: 'WREN_TRACING_COLLECTOR_PLAINTEXT', path: 'tracing.collector.plaintext', kind: 'boolean' },
  // The app's rewritten kubelet probes (Istio's ISTIO_KUBE_APP_PROBERS), a JSON object.
  { name: APP_PROBES_ENV, path: 'appProbes', kind: 'json' },
];

/** True when the environment looks like an injected pod (the injector always sets WREN_CONTROL_PLANE). */
export function hasProxyEnv(env: Readonly<Record<string, string | undefined>>): boolean {
  return env.WREN_CONTROL_PLANE !== undefined;
}

/**
 * Builds the config from the injector's environment through the same parser as a file;
 * errors name the environment variable (`WREN_ADMIN_PORT: expected an integer ...`).
 * The trust bundle also verifies the control plane's certificate (identity.certify).
 */
export function proxyConfigFromEnv(env: Readonly<Record<string, string | undefined>>): ProxyConfig {
  const raw: Record<string, unknown> = { identity: { certify: {} } };
  for (const v of PROXY_ENV) {
    const text = env[v.name];
    if (text === undefined || (text === '' && v.kind !== 'ports')) {
      if (v.required) throw new ConfigError(v.name, 'required (the injector sets it; see docs/identity.md)', 'environment');
      continue;
    }
    let value: unknown = text;
    // Decimals too (a sampling percent of 0.5): an integer-only field still rejects them, naming the variable.
    if (v.kind === 'number' && /^\d+(\.\d+)?$/.test(text.trim())) value = Number(text.trim());
    if (v.kind === 'boolean' && /^(true|false)$/i.test(text.trim())) value = text.trim().toLowerCase() === 'true';
    if (v.kind === 'list') value = text.split(',').map((s) => s.trim()).filter(Boolean);
    // Anything not digits stays text, for the parser's error to name the variable.
    if (v.kind === 'ports') value = text.split(',').map((s) => s.trim()).filter(Boolean).map((s) => (/^\d{1,5}$/.test(s) ? Number(s) : s));
    if (v.kind === 'json') {
      try {
        value = JSON.parse(text);
      } catch (e) {
        throw new ConfigError(v.name, `expected JSON: ${jsonSyntaxProblem(e)}`, 'environment');
      }
    }
    const keys = v.path.split('.');
    let at = raw;
    for (const k of keys.slice(0, -1)) at = (at[k] ??= {}) as Record<string, unknown>;
    at[keys[keys.length - 1]] = value;
  }
  try {
    return parseProxyConfig(raw, 'environment');
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    // A list item's path ("discovery.services[0]") names the variable holding the list; a
    // field inside a JSON variable is named after it (WREN_APP_PROBES: ["/app-health/web/readyz"].port: ...).
    const json = PROXY_ENV.find((x) => x.kind === 'json' && e.path.startsWith(x.path) && /^[[.]|^$/.test(e.path.slice(x.path.length)));
    if (json) throw new ConfigError(json.name, `${e.path.slice(json.path.length) ? `${e.path.slice(json.path.length)}: ` : ''}${e.problem}`, 'environment');
    const v = PROXY_ENV.find((x) => x.path === e.path.replace(/\[\d+\]$/, '')) ?? (e.path === 'identity.certify.trustBundleFile' ? PROXY_ENV.find((x) => x.name === 'WREN_TRUST_BUNDLE') : undefined);
    throw new ConfigError(v ? v.name : e.path, e.problem, 'environment');
  }
}
