import { EGRESS_MODES, type EgressMode } from '../contract/egress.js';
import * as k8s from '@kubernetes/client-node';
import { ControlPlaneTracing } from './tracing.js';
import { MAX_LEAF_TTL_MS, writePublicFile } from '../certs/index.js';
import { systemClock, systemRandom } from '../common/clock.js';
import { createLogger, isLevel, type Level, type Logger } from '../common/logger.js';
import { ADMIN_TOKEN_AUDIENCE, DEFAULT_CONTROL_PLANE_NAMESPACE, TRUST_DOMAIN_PATTERN } from '../contract/identity.js';
import type { Authenticator } from './identity/authenticator.js';
import { BootstrapTokenAuthenticator } from './identity/bootstrap-token-authenticator.js';
import { CERTIFY_LIMIT_FIELDS, type CertifyLimitSettings } from './identity/certify-limit-settings.js';
import { generateIssuer, type Issuer } from './identity/issuer.js';
import { ReloadingIssuer } from './identity/issuer-reloader.js';
import { DEFAULT_TOKEN_REVIEW_LIMITS, TokenReviewAuthenticator, type TokenReviewLimits } from './identity/token-review-authenticator.js';
import { join } from 'node:path';
import { startInjectorWebhook, splitListen, WEBHOOK_CERT_DIR } from './injector/webhook-listener.js';
import { AutoSidecarMode, SIDECAR_MODES, versionReader, type SidecarMode } from './injector/sidecar-mode.js';
import { DEFAULT_WITHDRAWAL, WITHDRAWAL_FIELDS, type WithdrawalSettings } from './health/withdrawal-settings.js';
import { ADMIN_PATHS } from './admin-server.js';
import { DEFAULT_RENDER_BUDGET, type RenderBudgetSettings } from './dashboard/render-budget.js';
import { ControlPlane, splitHostPort } from './server.js';
import { ConfigError } from '../common/schema.js';
import type { ReportBudget } from './discovery/discovery-server.js';
import { REPORT_LIMIT_FIELDS, type StatsLimits } from './report-limit-settings.js';
import { DirSource } from './sources/dir-source.js';
import { KubernetesSource } from './sources/kubernetes-source.js';

/** Parsed command line of `wren control-plane`. */
export interface ControlPlaneArgs {
  readonly source: { readonly kind: 'kubernetes'; readonly kubeconfig: string | null } | { readonly kind: 'dir'; readonly path: string };
  readonly listen: string;
  readonly admin: string | null;
  /** The admin port's render budget for /api/ (--admin-render-budget, --admin-render-threshold). */
  readonly adminRenderBudget: RenderBudgetSettings;
  readonly trustDomain: string;
  readonly logLevel: Level;
  readonly debounceMs: number;
  readonly identity: {
    /** Operator-provided CA (tls.crt/tls.key[/ca.crt] or ca.crt/ca.key); null = generate a root in memory. */
    readonly caDir: string | null;
    readonly trustBundle: string | null;
    readonly bootstrapTokens: string | null;
    readonly certTtlMs: number;
    /** Bounds on each TokenReview (--token-review-timeout, --token-review-max-in-flight). */
    readonly tokenReview: TokenReviewLimits;
    /** The Certify limit (--certify-burst, --certify-refill, --certify-fleet-burst, --certify-fleet-refill); {}: the defaults. */
    readonly certifyLimit: CertifyLimitSettings;
    /** The control plane's namespace (its serving SPIFFE ID): --namespace, else $POD_NAMESPACE, else wren-system. */
    readonly namespace: string;
    /** Write the trust bundle here once started (lets a local demo's proxies trust a generated root). */
    readonly writeTrustBundle: string | null;
  };
  /** Plaintext gRPC instead of TLS (tests, debugging); proxies must then set discovery.insecure. */
  readonly insecure: boolean;
  /** The sidecar-injection webhook (HTTPS); null = not served. */
  readonly webhook: {
    readonly listen: string;
    readonly certDir: string;
    /** Where injected sidecars send their spans (--proxy-trace-collector; '' = nowhere). */
    readonly proxyTraceCollector: string;
    readonly proxyTraceCollectorPlaintext: boolean;
    /**
     * How sidecars are injected (--sidecar-mode): native (Kubernetes >= 1.29), classic, or
     * auto (the default: native when the API server's /version is 1.29 or newer, read at start
     * and every 5 min; injector/sidecar-mode.ts); a pod's wren.io/sidecar-mode wins.
     */
    readonly sidecarMode: SidecarMode;
  } | null;
  /** Mesh-wide health-based withdrawal (docs/control-plane.md). */
  readonly healthWithdrawal: WithdrawalSettings;
  /** The control plane's own spans to an OTLP/gRPC collector (--trace-collector); null = off. */
  readonly tracing: { readonly collector: string; readonly plaintext: boolean; readonly caFile: string | null } | null;
  /** Mesh-wide egress mode pushed to every proxy (--egress-mode); null: not set (proxies default to ALLOW_ANY). */
  readonly egressMode: EgressMode | null;
  /** What the control plane takes of the proxies' reports (--report-burst, --report-rate, --stats-max-*); {}: the defaults. */
  readonly reports: { readonly budget: Partial<ReportBudget>; readonly stats: StatsLimits };
  /** --discovery-max-streams-per-fleet; absent: the default (discovery-server.ts DEFAULT_MAX_STREAMS_PER_FLEET). */
  readonly maxDiscoveryStreamsPerFleet?: number;
  readonly help: boolean;
}

/** `paths` as lines indented by `indent`, at most `width` wide. */
function wrapPaths(paths: readonly string[], indent: number, width: number): string {
  const lines: string[] = [];
  let line = '';
  for (const p of paths) {
    if (line && indent + line.length + 1 + p.length > width) {
      lines.push(line);
      line = '';
    }
    line = line ? `${line} ${p}` : p;
  }
  if (line) lines.push(line);
  return lines.map((l) => ' '.repeat(indent) + l).join('\n');
}

export const CONTROL_PLANE_USAGE = `Usage: wren control-plane [options]

Serves mesh discovery (wren.discovery.v1) and workload certificates (wren.identity.v1)
to proxies over gRPC (TLS by default).

Options:
  --source kubernetes|dir:PATH  where services come from (default dir:./mesh)
                                kubernetes: watch the API server (kubeconfig as --kubeconfig says)
                                dir:PATH: YAML manifests in PATH, re-read on change
  --kubeconfig PATH             kubeconfig for --source kubernetes (default: KUBECONFIG, then ~/.kube/config,
                                then the in-cluster service account, as kubectl and client-go look);
                                refused with --source dir:PATH
  --listen HOST:PORT            gRPC discovery address (default 127.0.0.1:15010)
  --admin HOST:PORT|off         admin HTTP (default 127.0.0.1:15014; docs/control-plane.md, Admin):
${wrapPaths(ADMIN_PATHS, 32, 100)}
  --admin-render-budget N|off   refuse an /api/ page (dashboard, wren stat) for N times its last render
                                when that took --admin-render-threshold or more: 503 with Retry-After,
                                which the CLI and the dashboard wait out (default 4; 1..100; off: never)
  --admin-render-threshold DURATION  the render time that starts the budget (default 100ms; 1ms..10s)
  --trust-domain NAME           SPIFFE trust domain of endpoint identities (default cluster.local)
  --debounce-ms N               coalesce bursts of changes for N ms before pushing (default 2)

Identity (wren.identity.v1 Certify, on the same gRPC port; see docs/identity.md):
  --ca-dir DIR                  signing CA: tls.crt/tls.key[/ca.crt] (a kubernetes.io/tls Secret,
                                e.g. /var/run/wren/issuer) or ca.crt/ca.key (wren certs ca).
                                Without it a root CA is generated in memory (local demo only)
  --trust-bundle FILE           trust anchors handed to proxies (may hold several roots);
                                default: ca.crt of --ca-dir. Both are re-read every 10 s
                                when they change (trust-anchor rotation, no restart)
  --bootstrap-tokens FILE       authenticate proxies with tokens from FILE instead of TokenReview
                                (TokenReview is used with --source kubernetes)
  --cert-ttl DURATION           workload certificate lifetime and maximum, e.g. 24h, 90m (default 24h; 1s..90d)
  --token-review-timeout DURATION  give up a TokenReview the API server has not answered
                                after this long (default 5s; 100ms..5m)
  --token-review-max-in-flight N  TokenReviews open at once; Certify calls beyond are refused
                                RESOURCE_EXHAUSTED at once (default 32; 1..10000)
  --token-review-max-in-flight-per-source N  of those, open at once for one caller address
                                (a pod IP, an IPv6 caller's /64; loopback not counted), beyond refused the same way
                                (default 8; 1..10000). The --token-review-* flags need --source kubernetes
  --certify-burst N             certificates one workload (a pod) may get at once (default 5; 1..100000)
  --certify-refill DURATION     one more per this long (default a quarter of --cert-ttl, at most 1m; 1ms..24h)
  --certify-fleet-burst N       the same for a fleet's bucket: a bootstrap token, or a service account's
                                TokenReview tokens bound to no pod (default 20)
  --certify-fleet-refill DURATION  (default 1s, or --certify-refill if shorter)
  --namespace NS                the control plane's namespace, for its serving identity
                                spiffe://<td>/ns/NS/sa/wren-control-plane (default $POD_NAMESPACE or wren-system)
  --write-trust-bundle FILE     write the trust bundle to FILE once started
  --insecure                    serve gRPC in plaintext; proxies then need discovery.insecure: true
                                (default: TLS with a certificate the CA issues to the control plane)

Sidecar injector (AdmissionReview v1 over HTTPS; see docs/kubernetes.md):
  --webhook-listen HOST:PORT|off  serve the mutating webhook (default off; in the cluster 0.0.0.0:15017)
  --webhook-cert-dir DIR        tls.crt/tls.key of its serving certificate, re-read when they
                                change (default /var/run/wren/webhook); needs --webhook-listen
  --proxy-trace-collector HOST:PORT  OTLP/gRPC collector for the injected sidecars' spans
                                (WREN_TRACING_COLLECTOR; default none: sampling is still
                                decided and propagated, no span is recorded)
  --proxy-trace-collector-plaintext  the sidecars reach it in plaintext (default TLS, system roots)
  --sidecar-mode auto|native|classic  native: the proxy is an init container with restartPolicy
                                Always (needs Kubernetes 1.29+, older API servers refuse the pod);
                                classic: the first app container, for 1.28 and older; auto (default):
                                native when the API server's /version is 1.29 or newer (read at
                                start and every 5 min), else classic, and classic while it cannot
                                be read (--source dir:PATH has no API server: native).
                                A pod's wren.io/sidecar-mode annotation wins

Health-based withdrawal (proxies' HealthReports take an endpoint out mesh-wide; docs/control-plane.md):
  --health-withdrawal on|off    act on reports (default on; off: keep and show them only)
  --health-min-reporters N      distinct proxies that must report an endpoint (default 2)
  --health-window DURATION      their reports must start within this long (default 10s)
  --health-ttl DURATION         a withdrawal ends after this long at most (default 30s)
  --health-max-withdrawn-percent P  never withdraw more than P % of a service port's ready
                                endpoints (default 50, Envoy's panic threshold)

Proxies' reports (StatsReport, HealthReport, IdentityReport on the discovery stream; docs/control-plane.md):
  --report-burst N              reports of each kind one stream may send at once (default 10; 1..10000);
                                past the budget they are dropped unread and counted
  --report-rate N               then this many a second (default 5; 0.001..1000)
  --stats-max-series N          edge series the stats store keeps (default 20000; 1..10000000)
  --stats-max-series-per-proxy N  of them from one proxy (default 2000, or --stats-max-series
                                if only that is given; 1..10000000)
  --stats-max-reporters N       proxies whose stats are kept (default 10000; 1..1000000)
  --discovery-max-streams-per-fleet N  discovery streams the certificates of one bootstrap token
                                (or of a service account's tokens bound to no pod) hold at once;
                                beyond, refused RESOURCE_EXHAUSTED (default 256; 1..1000000)

Tracing of Certify calls and discovery subscriptions/pushes (docs/control-plane.md; default off):
  --trace-collector HOST:PORT   OTLP/gRPC collector to export the spans to
  --trace-collector-plaintext   plaintext gRPC to it (default TLS)
  --trace-collector-ca FILE     CA that verifies the collector (default the system roots)

Egress control (docs/traffic-management.md, Egress):
  --egress-mode ALLOW_ANY|REGISTRY_ONLY  what sidecars do with traffic to destinations outside the
                                mesh: pass it through (ALLOW_ANY, the default) or refuse it unless
                                an ExternalService declares it (REGISTRY_ONLY); a proxy's own
                                egress.mode wins

  --log-level debug|info|warn|error (default info)
  -h, --help                    show this help
`;

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function parseControlPlaneArgs(argv: readonly string[], env: Readonly<Record<string, string | undefined>> = process.env): ControlPlaneArgs {
  let source: ControlPlaneArgs['source'] = { kind: 'dir', path: './mesh' };
  let kubeconfig: string | null = null;
  let listen = '127.0.0.1:15010';
  let admin: string | null = '127.0.0.1:15014';
  let renderBudget: { factor: number; thresholdMs: number } = { ...DEFAULT_RENDER_BUDGET };
  let renderFlags = false;
  let trustDomain = 'cluster.local';
  let logLevel: Level = 'info';
  let debounceMs = 2;
  let caDir: string | null = null;
  let trustBundle: string | null = null;
  let bootstrapTokens: string | null = null;
  let certTtlMs = 24 * 3_600_000;
  let tokenReview: TokenReviewLimits = DEFAULT_TOKEN_REVIEW_LIMITS;
  /** The --token-review-* flags given: only TokenReviews read them, and only --source kubernetes makes any. */
  const tokenReviewFlags: string[] = [];
  const certify: { burst?: number; refillMs?: number } = {};
  const fleet: { burst?: number; refillMs?: number } = {};
  const certifyField = (into: { burst?: number; refillMs?: number }, k: keyof typeof CERTIFY_LIMIT_FIELDS, flag: string, raw: unknown): void => {
    try {
      into[k] = CERTIFY_LIMIT_FIELDS[k](raw, flag);
    } catch (e) {
      throw e instanceof ConfigError ? new UsageError(e.message) : e;
    }
  };
  const budget: { burst?: number; perSecond?: number } = {};
  const statsLimits: { maxSeries?: number; maxSeriesPerReporter?: number; maxReporters?: number } = {};
  let maxStreamsPerFleet: number | undefined;
  /** A number flag through its field's parser (the flag is the path): the same bounds as the embedded option. */
  const reportField = <K extends keyof typeof REPORT_LIMIT_FIELDS>(k: K, flag: string, v: string): number => {
    try {
      return REPORT_LIMIT_FIELDS[k](/^\d+(\.\d+)?$/.test(v) ? Number(v) : v, flag);
    } catch (e) {
      throw e instanceof ConfigError ? new UsageError(e.message) : e;
    }
  };
  let namespace = env.POD_NAMESPACE || DEFAULT_CONTROL_PLANE_NAMESPACE;
  let writeTrustBundle: string | null = null;
  let insecure = false;
  let webhookListen: string | null = null;
  let webhookCertDir = WEBHOOK_CERT_DIR;
  let webhookCertDirGiven = false;
  let webhookOff = false;
  let proxyTraceCollector = '';
  let proxyTracePlaintext = false;
  let sidecarMode: SidecarMode | null = null;
  let help = false;
  let traceCollector: string | null = null;
  let tracePlaintext = false;
  let traceCa: string | null = null;
  let egressMode: EgressMode | null = null;
  const health: { -readonly [K in keyof WithdrawalSettings]: WithdrawalSettings[K] } = { ...DEFAULT_WITHDRAWAL };
  const field = <K extends keyof WithdrawalSettings>(k: K, flag: string, raw: unknown): void => {
    try {
      health[k] = WITHDRAWAL_FIELDS[k](raw, flag) as WithdrawalSettings[K];
    } catch (e) {
      throw e instanceof ConfigError ? new UsageError(e.message) : e;
    }
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [flag, inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined || v === '') throw new UsageError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '-h':
      case '--help':
        help = true;
        break;
      case '--source': {
        const v = value();
        if (v === 'kubernetes') source = { kind: 'kubernetes', kubeconfig: null };
        else if (v.startsWith('dir:') && v.length > 4) source = { kind: 'dir', path: v.slice(4) };
        else throw new UsageError(`--source: expected kubernetes or dir:PATH, got ${JSON.stringify(v)}`);
        break;
      }
      case '--kubeconfig':
        kubeconfig = value();
        break;
      case '--listen':
        listen = value();
        splitHostPort(listen);
        break;
      case '--admin': {
        const v = value();
        admin = v === 'off' ? null : v;
        if (admin) splitHostPort(admin);
        break;
      }
      case '--admin-render-budget': {
        const v = value();
        const n = /^\d+(\.\d+)?$/.test(v) ? Number(v) : NaN;
        if (v !== 'off' && !(n >= 1 && n <= 100)) throw new UsageError(`--admin-render-budget: expected a factor in 1..100 or off, got ${JSON.stringify(v)}`);
        renderBudget = { ...renderBudget, factor: v === 'off' ? 0 : n };
        renderFlags = true;
        break;
      }
      case '--admin-render-threshold': {
        const v = value();
        const m = /^(\d+(?:\.\d+)?)(ms|s)$/.exec(v);
        const ms = m ? Number(m[1]) * DURATION_UNITS[m[2]] : NaN;
        if (!(ms >= 1 && ms <= 10_000)) throw new UsageError(`--admin-render-threshold: expected a duration from 1ms to 10s like 100ms, got ${JSON.stringify(v)}`);
        renderBudget = { ...renderBudget, thresholdMs: ms };
        renderFlags = true;
        break;
      }
      case '--trust-domain':
        trustDomain = value();
        if (!TRUST_DOMAIN_PATTERN.test(trustDomain)) throw new UsageError(`--trust-domain: expected a DNS name, got ${JSON.stringify(trustDomain)}`);
        break;
      case '--log-level': {
        const v = value();
        if (!isLevel(v)) throw new UsageError(`--log-level: expected debug, info, warn or error, got ${JSON.stringify(v)}`);
        logLevel = v;
        break;
      }
      case '--debounce-ms': {
        const v = Number(value());
        if (!Number.isFinite(v) || v < 0 || v > 1000) throw new UsageError('--debounce-ms: expected a number of ms in 0..1000');
        debounceMs = v;
        break;
      }
      case '--egress-mode': {
        const v = value();
        if (!(EGRESS_MODES as readonly string[]).includes(v)) throw new UsageError(`--egress-mode: expected ${EGRESS_MODES.join(' or ')}, got ${JSON.stringify(v)}`);
        egressMode = v as EgressMode;
        break;
      }
      case '--ca-dir':
        caDir = value();
        break;
      case '--trust-bundle':
        trustBundle = value();
        break;
      case '--bootstrap-tokens':
        bootstrapTokens = value();
        break;
      case '--cert-ttl': {
        const v = value();
        const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(v);
        const ms = m ? Number(m[1]) * DURATION_UNITS[m[2]] : NaN;
        // At most the CA's 90 days (Istio's maximum workload TTL), checked here: past it the flag
        // was taken and the start failed later, exit 1, with a message that named no flag.
        if (!(ms >= 1000 && ms <= MAX_LEAF_TTL_MS)) throw new UsageError(`--cert-ttl: expected a duration of at least 1s and at most 90d (the CA signs no longer) like 24h, 90m, 30s, got ${JSON.stringify(v)}`);
        certTtlMs = ms;
        break;
      }
      case '--token-review-timeout': {
        const v = value();
        tokenReviewFlags.push(flag);
        const m = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(v);
        const ms = m ? Number(m[1]) * DURATION_UNITS[m[2]] : NaN;
        if (!(ms >= 100 && ms <= 300_000)) throw new UsageError(`--token-review-timeout: expected a duration from 100ms to 5m like 5s, got ${JSON.stringify(v)}`);
        tokenReview = { ...tokenReview, timeoutMs: ms };
        break;
      }
      case '--token-review-max-in-flight': {
        const v = value();
        tokenReviewFlags.push(flag);
        const n = /^\d+$/.test(v) ? Number(v) : NaN;
        if (!(n >= 1 && n <= 10_000)) throw new UsageError(`--token-review-max-in-flight: expected a whole number in 1..10000, got ${JSON.stringify(v)}`);
        tokenReview = { ...tokenReview, maxInFlight: n };
        break;
      }
      case '--token-review-max-in-flight-per-source': {
        const v = value();
        tokenReviewFlags.push(flag);
        const n = /^\d+$/.test(v) ? Number(v) : NaN;
        if (!(n >= 1 && n <= 10_000)) throw new UsageError(`--token-review-max-in-flight-per-source: expected a whole number in 1..10000, got ${JSON.stringify(v)}`);
        tokenReview = { ...tokenReview, maxInFlightPerSource: n };
        break;
      }
      case '--certify-burst': {
        const v = value();
        certifyField(certify, 'burst', flag, /^\d+$/.test(v) ? Number(v) : v);
        break;
      }
      case '--certify-refill':
        certifyField(certify, 'refillMs', flag, value());
        break;
      case '--certify-fleet-burst': {
        const v = value();
        certifyField(fleet, 'burst', flag, /^\d+$/.test(v) ? Number(v) : v);
        break;
      }
      case '--certify-fleet-refill':
        certifyField(fleet, 'refillMs', flag, value());
        break;
      case '--report-burst':
        budget.burst = reportField('burst', flag, value());
        break;
      case '--report-rate':
        budget.perSecond = reportField('perSecond', flag, value());
        break;
      case '--stats-max-series':
        statsLimits.maxSeries = reportField('maxSeries', flag, value());
        break;
      case '--stats-max-series-per-proxy':
        statsLimits.maxSeriesPerReporter = reportField('maxSeriesPerReporter', flag, value());
        break;
      case '--stats-max-reporters':
        statsLimits.maxReporters = reportField('maxReporters', flag, value());
        break;
      case '--discovery-max-streams-per-fleet':
        maxStreamsPerFleet = reportField('maxStreamsPerFleet', flag, value());
        break;
      case '--namespace':
        namespace = value();
        if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(namespace)) throw new UsageError(`--namespace: expected a Kubernetes namespace name, got ${JSON.stringify(namespace)}`);
        break;
      case '--write-trust-bundle':
        writeTrustBundle = value();
        break;
      case '--insecure':
        insecure = true;
        break;
      case '--webhook-listen': {
        const v = value();
        webhookListen = v === 'off' ? null : v;
        webhookOff = v === 'off';
        if (webhookListen) {
          try {
            splitListen(webhookListen);
          } catch (e) {
            throw new UsageError(`--webhook-listen: ${(e as Error).message}`);
          }
        }
        break;
      }
      case '--webhook-cert-dir':
        webhookCertDir = value();
        webhookCertDirGiven = true;
        break;
      case '--health-withdrawal': {
        const v = value();
        if (v !== 'on' && v !== 'off') throw new UsageError(`--health-withdrawal: expected on or off, got ${JSON.stringify(v)}`);
        health.enabled = v === 'on';
        break;
      }
      case '--health-min-reporters':
        field('minReporters', flag, Number(value()));
        break;
      case '--health-window':
        field('windowMs', flag, value());
        break;
      case '--health-ttl':
        field('ttlMs', flag, value());
        break;
      case '--health-max-withdrawn-percent':
        field('maxWithdrawnPercent', flag, Number(value()));
        break;
      case '--trace-collector':
        traceCollector = value();
        if (!/^[^\s:]+:\d+$/.test(traceCollector)) throw new UsageError(`--trace-collector: expected host:port, got ${JSON.stringify(traceCollector)}`);
        break;
      case '--proxy-trace-collector':
        proxyTraceCollector = value();
        if (!/^[^\s:]+:\d+$/.test(proxyTraceCollector)) throw new UsageError(`--proxy-trace-collector: expected host:port, got ${JSON.stringify(proxyTraceCollector)}`);
        break;
      case '--proxy-trace-collector-plaintext':
        proxyTracePlaintext = true;
        break;
      case '--sidecar-mode': {
        const v = value();
        if (!(SIDECAR_MODES as readonly string[]).includes(v)) throw new UsageError(`--sidecar-mode: expected auto, native or classic, got ${JSON.stringify(v)}`);
        sidecarMode = v as SidecarMode;
        break;
      }
      case '--trace-collector-plaintext':
        tracePlaintext = true;
        break;
      case '--trace-collector-ca':
        traceCa = value();
        break;
      default:
        throw new UsageError(`unknown argument ${JSON.stringify(arg)}`);
    }
  }
  // A flag that would change nothing is refused, not ignored: the operator meant something by it.
  if (kubeconfig !== null && source.kind !== 'kubernetes') throw new UsageError('--kubeconfig is for --source kubernetes; with --source dir:PATH nothing reads it');
  // Both TokenReview authenticators (Certify's, the admin port's) are built from the API
  // server's kubeconfig: with a directory source there is none, and these flags bounded nothing.
  if (tokenReviewFlags.length > 0 && source.kind !== 'kubernetes')
    throw new UsageError(`${[...new Set(tokenReviewFlags)].join(', ')}: TokenReviews are made with --source kubernetes only; with --source dir:PATH nothing reads ${tokenReviewFlags.length > 1 ? 'them' : 'it'}`);
  // Except a webhook turned off explicitly (`--webhook-listen off`, docs/kubernetes.md): the
  // install manifest passes both flags, and editing only the first is the documented way
  // off; refused, it put the control plane in a crash loop. The directory is then unused
  // by the operator's own choice.
  if (webhookCertDirGiven && !webhookListen && !webhookOff) throw new UsageError('--webhook-cert-dir configures the injector webhook: it needs --webhook-listen HOST:PORT');
  if (source.kind === 'kubernetes') source = { kind: 'kubernetes', kubeconfig };
  if (trustBundle && !caDir) throw new UsageError('--trust-bundle needs --ca-dir (a generated root is its own bundle)');
  if (!traceCollector && (tracePlaintext || traceCa)) throw new UsageError('--trace-collector-plaintext and --trace-collector-ca need --trace-collector');
  if (proxyTracePlaintext && !proxyTraceCollector) throw new UsageError('--proxy-trace-collector-plaintext needs --proxy-trace-collector');
  if ((proxyTraceCollector || proxyTracePlaintext) && !webhookListen) throw new UsageError('--proxy-trace-collector configures injected sidecars: it needs --webhook-listen');
  if (sidecarMode !== null && !webhookListen && !webhookOff) throw new UsageError('--sidecar-mode configures injected sidecars: it needs --webhook-listen');
  if (tracePlaintext && traceCa) throw new UsageError('--trace-collector-plaintext and --trace-collector-ca are exclusive');
  if (renderFlags && admin === null) throw new UsageError('--admin-render-budget and --admin-render-threshold configure the admin port: they need it (not --admin off)');
  return {
    source, listen, admin, adminRenderBudget: Object.freeze(renderBudget), trustDomain, logLevel, debounceMs, insecure, help, egressMode, healthWithdrawal: Object.freeze(health),
    reports: { budget: { ...budget }, stats: { ...statsLimits } },
    ...(maxStreamsPerFleet !== undefined ? { maxDiscoveryStreamsPerFleet: maxStreamsPerFleet } : {}),
    webhook: webhookListen ? { listen: webhookListen, certDir: webhookCertDir, proxyTraceCollector, proxyTraceCollectorPlaintext: proxyTracePlaintext, sidecarMode: sidecarMode ?? 'auto' } : null,
    tracing: traceCollector ? { collector: traceCollector, plaintext: tracePlaintext, caFile: traceCa } : null,
    identity: {
      caDir, trustBundle, bootstrapTokens, certTtlMs, tokenReview, namespace, writeTrustBundle,
      certifyLimit: { ...certify, ...(Object.keys(fleet).length > 0 ? { bootstrapToken: fleet } : {}) },
    },
  };
}

function kubeConfigFor(kubeconfig: string | null): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  if (kubeconfig) kc.loadFromFile(kubeconfig);
  else kc.loadFromDefault();
  return kc;
}

/** Starts a control plane from parsed args (system clock and randomness). */
export async function startControlPlane(args: ControlPlaneArgs, logger: Logger = createLogger({ level: args.logLevel, base: { component: 'control-plane' } })): Promise<ControlPlane> {
  const src = args.source;
  const kc = src.kind === 'kubernetes' ? kubeConfigFor(src.kubeconfig) : null;
  const idArgs = args.identity;
  let issuer: Issuer;
  let reloading: ReloadingIssuer | null = null;
  if (idArgs.caDir) {
    // Re-read while running: trust-anchor rotation edits these files (docs/trust-anchor-rotation.md).
    issuer = reloading = await ReloadingIssuer.load({
      dir: idArgs.caDir, trustDomain: args.trustDomain, clock: systemClock, logger: logger.child({ component: 'identity' }), ...(idArgs.trustBundle ? { trustBundleFile: idArgs.trustBundle } : {}),
    });
  } else {
    issuer = generateIssuer(args.trustDomain);
    logger.warn('no --ca-dir: generated an in-memory root CA for this process only (local demo); restarting the control plane changes the trust anchor', {
      code: 'GENERATED_ROOT', trustDomain: args.trustDomain,
    });
  }
  let authenticator: Authenticator | null = null;
  if (idArgs.bootstrapTokens) authenticator = BootstrapTokenAuthenticator.fromFile(idArgs.bootstrapTokens);
  // Each authenticator has its own bound: a flood of junk Certify tokens does not lock operators out of the admin pages.
  else if (kc) authenticator = TokenReviewAuthenticator.fromKubeConfig(kc, { clock: systemClock, limits: idArgs.tokenReview });
  else logger.warn('no authenticator (--bootstrap-tokens FILE or --source kubernetes): Certify refuses every request', { code: 'NO_AUTHENTICATOR' });
  const cp = await ControlPlane.start({
    listen: args.listen,
    admin: args.admin,
    adminRenderBudget: args.adminRenderBudget,
    trustDomain: args.trustDomain,
    clock: systemClock,
    random: systemRandom,
    logger,
    debounceMs: args.debounceMs,
    processMetrics: true,
    identity: { issuer, authenticator, certTtlMs: idArgs.certTtlMs, namespace: idArgs.namespace, certifyLimit: idArgs.certifyLimit },
    adminAuthenticator: kc ? TokenReviewAuthenticator.fromKubeConfig(kc, { clock: systemClock, audiences: [ADMIN_TOKEN_AUDIENCE], limits: idArgs.tokenReview }) : null,
    transport: args.insecure ? 'insecure' : 'tls',
    healthWithdrawal: args.healthWithdrawal,
    reportBudget: args.reports.budget,
    statsLimits: args.reports.stats,
    ...(args.maxDiscoveryStreamsPerFleet !== undefined ? { maxDiscoveryStreamsPerFleet: args.maxDiscoveryStreamsPerFleet } : {}),
    ...(args.egressMode ? { egressMode: args.egressMode } : {}),
    ...(args.tracing ? { tracing: new ControlPlaneTracing({ ...args.tracing, namespace: idArgs.namespace, clock: systemClock, logger }) } : {}),
    source: (ctx) => {
      if (src.kind === 'dir') return new DirSource({ ...ctx, dir: src.path });
      return new KubernetesSource({ ...ctx, kubeConfig: kc! });
    },
  });
  try {
    if (reloading) {
      reloading.start();
      const r = reloading;
      cp.addCompanion(async () => r.stop());
      if (idArgs.writeTrustBundle) {
        const file = idArgs.writeTrustBundle;
        r.onChange(() => void writePublicFile(file, r.trustBundlePem).catch((e: Error) => logger.warn('cannot write the trust bundle', { file, error: e.message })));
      }
    }
    if (idArgs.writeTrustBundle) await writePublicFile(idArgs.writeTrustBundle, issuer.trustBundlePem);
    if (args.webhook) {
      const mode = args.webhook.sidecarMode;
      // auto needs an API server to ask; a directory source has none (tests, demos): native, the offline default (`wren inject`).
      let auto: AutoSidecarMode | null = null;
      if (mode === 'auto' && kc) {
        const a = (auto = new AutoSidecarMode({ readVersion: versionReader(kc), clock: systemClock, logger, registry: cp.metrics.registry }));
        await a.start();
        cp.addCompanion(async () => a.stop());
      }
      const webhook = await startInjectorWebhook({
        listen: args.webhook.listen,
        certFile: join(args.webhook.certDir, 'tls.crt'),
        keyFile: join(args.webhook.certDir, 'tls.key'),
        // A getter: the injector resolves its options per admission request, so new pods get the current bundle.
        inject: {
          trustDomain: args.trustDomain,
          get trustBundlePem() { return issuer.trustBundlePem; },
          proxyTraceCollector: args.webhook.proxyTraceCollector,
          proxyTraceCollectorPlaintext: args.webhook.proxyTraceCollectorPlaintext,
          // A getter, read per admission request: auto's answer changes when the cluster is upgraded.
          get nativeSidecars() { return auto ? auto.nativeSidecars : mode !== 'classic'; },
          // Read per admission request too: a pod annotated native on a cluster auto read as older than 1.29 is warned.
          get olderThanNativeSidecars() { return auto?.kubernetesVersion !== undefined && !auto.nativeSidecars ? auto.kubernetesVersion : undefined; },
        },
        logger,
      });
      cp.addCompanion(() => webhook.close());
    }
  } catch (e) {
    await cp.kill();
    throw e;
  }
  return cp;
}

/**
 * Runs until SIGTERM/SIGINT, then shuts down gracefully. The handlers go in before the
 * start: a signal that lands while it starts (or just after its 'started' line) shuts it
 * down once it is up instead of killing it with the default action.
 */
export async function runControlPlaneUntilSignal(args: ControlPlaneArgs, logger?: Logger): Promise<void> {
  let signalled!: () => void;
  const signal = new Promise<void>((r) => (signalled = r));
  process.on('SIGTERM', signalled);
  process.on('SIGINT', signalled);
  try {
    const cp = await startControlPlane(args, logger);
    await signal;
    await cp.close().catch(() => undefined);
  } finally {
    process.off('SIGTERM', signalled);
    process.off('SIGINT', signalled);
  }
}
