import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type * as grpc from '@grpc/grpc-js';
import { formatSpiffeId, parseSpiffeId } from '../certs/spiffe.js';
import { systemClock, systemRandom } from '../common/clock.js';
import { createLogger, type Logger } from '../common/logger.js';
import { ConfigError } from '../common/schema.js';
import { hasProxyEnv, loadProxyConfig, PROXY_ENV, proxyConfigFromEnv, tlsFilesOf, type ProxyConfig } from '../proxy/config/proxy-config.js';
import { Proxy } from '../proxy/proxy.js';
import { ListenError } from '../common/listen.js';
import { TlsIdentity } from '../proxy/tls/tls-identity.js';
import type { CertifyClient } from '../proxy/identity/certify-client.js';
import type { WorkloadIdentity } from '../proxy/identity/workload-identity.js';
import { applyHeapFlags } from './heap-flags.js';
import { readCollectorTls } from '../proxy/tracing/tracing-config.js';

type Out = (s: string) => void;

export const PROXY_USAGE = `Usage: wren proxy [--config FILE] [--check]
       wren proxy await [options]      (wait for /ready; see wren proxy await --help)

Runs the sidecar proxy: outbound listener (default 127.0.0.1:15001), inbound mTLS
listener (default 0.0.0.0:15006), admin port (default 127.0.0.1:15000) and read-only
metrics port for Prometheus (default 0.0.0.0:15020, GET /stats/prometheus).

Without --config the proxy runs in-cluster mode: its configuration comes from the
environment the injector sets (POD_NAMESPACE, WREN_SERVICE_ACCOUNT, WREN_CONTROL_PLANE,
WREN_TOKEN_FILE, WREN_TRUST_BUNDLE, ...; see docs/identity.md), and it gets its
certificate from the control plane (Identity/Certify), renewing it before expiry.

Options:
  --config FILE   proxy configuration (YAML); see docs/configuration.md
  --check         validate the configuration and the files a start reads first (tls:
                  certificate, key and bundle, and that the certificate is identity.*'s;
                  identity.certify's trust bundle; tracing.collector.tls), print the
                  result, and exit (0, or 2)
  -h, --help      show this help

Signals: SIGTERM/SIGINT drain gracefully (inbound stops accepting, in-flight requests
finish within shutdown.gracePeriodMs, outbound keeps serving meanwhile and for at least
shutdown.minDrainMs, default 5 s, as the app may still call out); during startup
they stop it at once (exit 0). The same from the pod: curl -X POST -H 'wren-admin: 1'
http://127.0.0.1:15000/drain (admin actions need that header and come from localhost
only). More SIGTERMs during the drain are ignored; a second SIGINT exits at once (130).
SIGHUP is ignored (no configuration reload).

A listener that cannot bind (its port taken) stops the proxy at start: exit 1.
`;

function describeConfig(config: ProxyConfig): string {
  const mesh = config.discovery.controlPlane ? `control plane ${config.discovery.controlPlane}` : `${config.mesh.services.length} static service(s)`;
  const c = config.identity.certify;
  const id = c ? `certificates from ${c.controlPlane}` : 'certificates from files';
  const transport = config.discovery.controlPlane || c ? (config.discovery.insecure ? ' (plaintext to the control plane)' : '') : '';
  return `${mesh}, ${id}${transport}`;
}

/** `wren proxy`: parse config at the edge (errors name the field path or env var, exit 2), then run. */
export async function proxyCommand(argv: string[], out: Out, err: Out, env: Readonly<Record<string, string | undefined>> = process.env): Promise<number> {
  if (argv[0] === 'await') return (await import('./proxy-await.js')).proxyAwaitCommand(argv.slice(1), out, err);
  let values: { config?: string; check?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({ args: argv, options: { config: { type: 'string' }, check: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, strict: true }));
  } catch (e) {
    err(`wren proxy: ${(e as Error).message}\n\n${PROXY_USAGE}`);
    return 2;
  }
  if (values.help) {
    out(PROXY_USAGE);
    return 0;
  }
  if (!values.config && !hasProxyEnv(env)) {
    err(`wren proxy: --config FILE is required (or the injector's WREN_* environment for in-cluster mode)\n\n${PROXY_USAGE}`);
    return 2;
  }
  let config: ProxyConfig;
  try {
    config = values.config ? loadProxyConfig(values.config) : proxyConfigFromEnv(env);
  } catch (e) {
    if (e instanceof ConfigError) {
      err(`wren proxy: invalid configuration: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  // The file is the whole configuration: an injector's environment beside it is read by
  // nothing, so a sidecar whose command was given --config (a pod spec edited by hand, a
  // debugging session) would silently drop its pod's WREN_* settings. Said once, not refused:
  // the file is the operator's explicit choice.
  if (values.config && hasProxyEnv(env)) {
    const ignored = PROXY_ENV.filter((v) => v.name.startsWith('WREN_') && env[v.name] !== undefined).map((v) => v.name);
    err(`wren proxy: --config ${values.config} is the configuration; the in-cluster environment beside it is not read (${ignored.join(', ')})\n`);
  }
  if (values.check) {
    // What a start would refuse with exit 2 before binding anything, --check refuses too:
    // the certificate files (readable, a key that fits, a SPIFFE ID matching identity.*),
    // the Certify trust bundle and the span collector's TLS files, not only the YAML.
    const problem = startupFileProblem(config);
    if (problem) {
      err(`wren proxy: ${problem}\n`);
      return 2;
    }
    out(`configuration ok: ${describeConfig(config)}\n`);
    return 0;
  }
  return runProxy(config, err);
}

/**
 * Runs a proxy from a parsed config until SIGTERM/SIGINT or POST /drain.
 *
 * Signals, for the whole run (startup included):
 * - The first SIGTERM or SIGINT stops the proxy gracefully: during startup at once (the
 *   first-certificate wait and its retries are cancelled; exit 0, as after a drain), once
 *   it serves by a drain bounded by shutdown.gracePeriod.
 * - Later SIGTERMs are logged and ignored: the drain and its deadline go on (a stop signal
 *   can be sent twice: `docker stop` or `kill` repeated, a process manager, an operator).
 *   Istio's pilot-agent (signal.Notify, never reset) and linkerd2-proxy (tokio's handlers
 *   stay installed) ignore repeats the same way; only the SIGKILL at the end of
 *   terminationGracePeriodSeconds ends a draining sidecar early.
 * - A second SIGINT (Ctrl-C twice, from a terminal) exits at once with 130 (128 + SIGINT),
 *   the usual interactive convention; the kubelet never sends SIGINT.
 * - SIGHUP is logged and ignored: there is no configuration reload, and a closing terminal
 *   must not take the sidecar down (Envoy likewise "caught and eating SIGHUP").
 */
export async function runProxy(config: ProxyConfig, err: Out): Promise<number> {
  // Before the data path allocates anything: the young generation must not have grown yet.
  applyHeapFlags(process.execArgv, process.env.NODE_OPTIONS, undefined, undefined, config.concurrency > 1);
  // The signal handlers go in first, and stay for the whole run (process.on, not once:
  // after a once handler fires, node's default action, exit at once, would be back). A
  // SIGTERM that lands between 'proxy started' and the wait for it (the kubelet, or a test
  // that reacts to that line) must drain, not kill the process.
  const logger = createLogger({ level: config.log.level, base: { component: 'proxy' }, sink: (l) => err(l + '\n') });
  const stop = new AbortController();
  let sigints = 0;
  const onStop = (name: 'SIGTERM' | 'SIGINT') => {
    if (name === 'SIGINT' && ++sigints > 1) {
      logger.warn('second SIGINT: exiting now, in-flight requests are cut', { signal: name });
      process.exit(130);
    }
    const hint = name === 'SIGINT' ? { hint: 'SIGINT again exits at once' } : {};
    if (!stop.signal.aborted) {
      logger.info('stopping', { signal: name, ...hint });
      stop.abort(new SignalStop(name));
    } else logger.info('already stopping: signal ignored', { signal: name, ...hint });
  };
  const onSigterm = () => onStop('SIGTERM');
  const onSigint = () => onStop('SIGINT');
  const onSighup = () => logger.info('SIGHUP ignored: wren proxy has no configuration reload (SIGTERM drains)', { signal: 'SIGHUP' });
  process.on('SIGTERM', onSigterm);
  process.on('SIGINT', onSigint);
  process.on('SIGHUP', onSighup);
  try {
    return await startAndServe(config, err, stop.signal, logger);
  } finally {
    process.off('SIGTERM', onSigterm);
    process.off('SIGINT', onSigint);
    process.off('SIGHUP', onSighup);
  }
}

/** Why the proxy is stopping: the signal that said so. */
class SignalStop extends Error {
  constructor(readonly signal: string) {
    super(`stopped by ${signal}`);
  }
}

/** How long a signal-ended startup waits for the event loop to empty before it exits anyway. */
const STARTUP_STOP_EXIT_MS = 500;

/**
 * Startup ended by a signal: logged; exit 0, as after a drain (and as the control plane
 * after SIGTERM). Nothing of the proxy runs yet, but grpc-js neither times out a TLS
 * handshake nor abandons it when its channel closes: a control plane that accepts the
 * connection and never answers (or a network that drops the SYN) would keep the process
 * alive until the kubelet's SIGKILL. So the exit is forced if the event loop has not
 * emptied by itself within STARTUP_STOP_EXIT_MS (an unref'd timer: it holds nothing open).
 */
function stoppedDuringStartup(stop: AbortSignal, logger: Logger, phase: string): number {
  logger.info('stopped during startup', { signal: (stop.reason as SignalStop).signal, phase });
  setTimeout(() => process.exit(0), STARTUP_STOP_EXIT_MS).unref();
  return 0;
}

/**
 * Why certificate files issued to `spiffeId` cannot serve `identity`, or null when they
 * can. The proxy takes its namespace (routes, policy, metric labels, Subscribe) and trust
 * domain from the config, and peers see the certificate: the two must name one workload.
 */
export function certificateIdentityProblem(identity: ProxyConfig['identity'], spiffeId: string, certFile: string): string | null {
  let cert: { trustDomain: string; namespace: string; serviceAccount: string };
  try {
    cert = parseSpiffeId(spiffeId);
  } catch {
    return `the certificate in tls.certFile ${certFile} is issued to ${spiffeId}, not a workload ID of the form spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`;
  }
  const fields = (['trustDomain', 'namespace', 'serviceAccount'] as const).filter((k) => identity[k] !== cert[k]);
  if (fields.length === 0) return null;
  const wanted = formatSpiffeId({ trustDomain: identity.trustDomain, namespace: identity.namespace, serviceAccount: identity.serviceAccount });
  return `${fields.map((k) => `identity.${k} ${JSON.stringify(identity[k])}`).join(', ')} ${fields.length === 1 ? 'does' : 'do'} not match the certificate in tls.certFile ${certFile}, issued to ${spiffeId}: set ${fields.map((k) => `identity.${k}`).join(', ')} to the certificate's, or use a certificate issued to ${wanted}`;
}

/**
 * The workload certificate from `tls:` files, or why it cannot serve: the files unreadable,
 * a key that does not fit, or a certificate issued to another workload than identity.*.
 * Start-up and `--check` both refuse these with exit 2.
 */
function tlsFromFiles(config: ProxyConfig, files: NonNullable<ReturnType<typeof tlsFilesOf>>): TlsIdentity | { problem: string } {
  let tls: TlsIdentity;
  try {
    tls = TlsIdentity.fromFiles(files);
  } catch (e) {
    return { problem: `cannot load TLS material: ${(e as Error).message}` };
  }
  const problem = certificateIdentityProblem(config.identity, tls.spiffeId, files.certFile);
  return problem ? { problem } : tls;
}

/** The PEM that verifies the control plane for Certify (inline, or read from its file), or why it cannot be read. */
function certifyTrustBundle(cfg: NonNullable<ProxyConfig['identity']['certify']>): string | { problem: string } {
  try {
    return cfg.trustBundlePem ?? readFileSync(cfg.trustBundleFile!, 'utf8');
  } catch (e) {
    return { problem: `cannot read identity.certify.trustBundleFile: ${(e as Error).message}` };
  }
}

/**
 * Why a file of `tracing.collector.tls` cannot be read, or null: the span exporter reads them
 * when the proxy starts (readCollectorTls); checked here first so that a missing one is a
 * one-line error naming its field (exit 2), at start and by --check, not an exception out of Proxy.start.
 */
function tracingFileProblem(config: ProxyConfig): string | null {
  const collector = config.tracing.collector;
  if (collector === undefined) return null;
  try {
    readCollectorTls(collector.tls);
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

/** What start-up would refuse in the files it reads before listening (see startAndServe), or null. */
function startupFileProblem(config: ProxyConfig): string | null {
  const tracing = tracingFileProblem(config);
  if (tracing) return tracing;
  const files = tlsFilesOf(config);
  if (files) {
    const tls = tlsFromFiles(config, files);
    return tls instanceof TlsIdentity ? null : tls.problem;
  }
  if (config.discovery.insecure) return null;
  const bundle = certifyTrustBundle(config.identity.certify!);
  return typeof bundle === 'string' ? null : bundle.problem;
}

async function startAndServe(config: ProxyConfig, err: Out, stop: AbortSignal, logger: Logger): Promise<number> {
  const tracingProblem = tracingFileProblem(config);
  if (tracingProblem) {
    err(`wren proxy: ${tracingProblem}\n`);
    return 2;
  }
  const files = tlsFilesOf(config);
  const c = config.identity.certify;
  let tls: TlsIdentity;
  let workload: WorkloadIdentity | null = null;
  let certifyClient: CertifyClient | null = null;
  // Everything that talks to a control plane (grpc-js, proto-loader, the CSR code and
  // node-forge) loads only when one is configured: a sidecar on files alone never pays
  // for it (about 11 MB of resident memory, see docs/benchmarks.md).
  const usesControlPlane = Boolean(config.discovery.controlPlane || c);
  const cp = usesControlPlane
    ? await Promise.all([
        import('@grpc/grpc-js'),
        import('../proxy/discovery/connect-proxy.js'),
        import('../proxy/identity/certify-client.js'),
        import('../proxy/identity/control-plane-credentials.js'),
        import('../proxy/identity/workload-identity.js'),
      ]).then(([grpcJs, connect, certify, creds, workloadId]) => ({ grpcJs, ...connect, ...certify, ...creds, ...workloadId }))
    : null;
  // TLS to the control plane (discovery and Certify) unless discovery.insecure: its serving
  // certificate is verified with the trust bundle and its SPIFFE ID checked.
  let cpCredentials: grpc.ChannelCredentials | undefined;
  const secureTo = (bundlePem: string) => (!cp || config.discovery.insecure ? undefined : cp.controlPlaneCredentials(bundlePem, config.discovery.controlPlaneIdentity));
  if (files) {
    const loaded = tlsFromFiles(config, files);
    if (!(loaded instanceof TlsIdentity)) {
      err(`wren proxy: ${loaded.problem}\n`);
      return 2;
    }
    tls = loaded;
    cpCredentials = secureTo(tls.material.trustBundlePem);
  } else {
    const cfg = c!;
    const id = config.identity;
    const spiffeId = formatSpiffeId({ trustDomain: id.trustDomain, namespace: id.namespace, serviceAccount: id.serviceAccount });
    const idLogger = createLogger({ level: config.log.level, base: { component: 'identity', identity: spiffeId }, sink: (l) => err(l + '\n') });
    if (!config.discovery.insecure) {
      const bundle = certifyTrustBundle(cfg);
      if (typeof bundle !== 'string') {
        err(`wren proxy: ${bundle.problem}\n`);
        return 2;
      }
      cpCredentials = secureTo(bundle);
    }
    certifyClient = new cp!.CertifyClient(cfg.controlPlane, cpCredentials ?? cp!.grpcJs.credentials.createInsecure(), cpCredentials ? cp!.CONTROL_PLANE_CHANNEL_OPTIONS : {});
    workload = new cp!.WorkloadIdentity({
      spiffeId,
      certify: certifyClient.certify,
      readToken: cp!.tokenFromFile(cfg.tokenFile),
      clock: systemClock,
      random: systemRandom,
      logger: idLogger,
      lifetimeMs: cfg.lifetimeMs,
      timeoutMs: cfg.timeoutMs,
      runDir: cfg.runDir,
    });
    try {
      // A signal cancels the Certify call in flight and the retries (the default
      // startupTimeoutMs, 60 s, is longer than the kubelet's default 30 s grace).
      tls = await workload.obtain(cfg.startupTimeoutMs, stop);
    } catch (e) {
      certifyClient.close();
      if (stop.aborted) return stoppedDuringStartup(stop, logger, 'waiting for the first certificate');
      err(`wren proxy: ${(e as Error).message}\n`);
      return 1;
    }
  }
  if (stop.aborted) {
    certifyClient?.close();
    return stoppedDuringStartup(stop, logger, 'before listening');
  }
  let proxy: Proxy;
  try {
    proxy = await Proxy.start({ config, tls, staticMesh: config.discovery.controlPlane === undefined });
  } catch (e) {
    // A listener that cannot bind stops the sidecar (exit 1) with everything else closed.
    if (!(e instanceof ListenError)) throw e;
    err(`wren proxy: ${e.message}\n`);
    workload?.stop();
    certifyClient?.close();
    return 1;
  }
  if (workload) {
    workload.attachMetrics(proxy.metrics.registry);
    workload.start();
  }
  // With a control plane the proxy starts without a mesh (/ready 503 until the first
  // snapshot, bounded by discovery.firstConfigTimeoutMs) and keeps its last good config
  // whenever the control plane is unreachable.
  const address = config.discovery.controlPlane;
  const discovery = address
    ? cp!.connectControlPlane(proxy, { address, namespace: config.identity.namespace, pod: config.identity.pod, ...(cpCredentials ? { credentials: cpCredentials } : {}) })
    : null;
  // A signal during Proxy.start is honoured now that it is up: the drain starts at once.
  // A signal's drain keeps the outbound up for shutdown.minDrainMs (the app got the same
  // SIGTERM and may still call out); POST /drain's does not (Proxy.drain).
  await new Promise<void>((resolve) => {
    const drain = () => void proxy.drain({ minDrainMs: config.shutdown.minDrainMs }).then(resolve);
    if (stop.aborted) drain();
    else stop.addEventListener('abort', drain, { once: true });
    void proxy.drained.then(resolve);
  });
  workload?.stop();
  certifyClient?.close();
  await discovery?.stop();
  return 0;
}
