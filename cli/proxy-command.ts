import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type * as grpc from '@grpc/grpc-js';
import { formatSpiffeId } from '../certs/spiffe.js';
import { systemClock, systemRandom } from '../common/clock.js';
import { createLogger } from '../common/logger.js';
import { ConfigError } from '../common/schema.js';
import { hasProxyEnv, loadProxyConfig, proxyConfigFromEnv, tlsFilesOf, type ProxyConfig } from '../proxy/config/proxy-config.js';
import { Proxy } from '../proxy/proxy.js';
import { ListenError } from '../common/listen.js';
import { TlsIdentity } from '../proxy/tls/tls-identity.js';
import type { CertifyClient } from '../proxy/identity/certify-client.js';
import type { WorkloadIdentity } from '../proxy/identity/workload-identity.js';
import { applyHeapFlags } from './heap-flags.js';

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
  --check         parse and validate the configuration, print the result, and exit
  -h, --help      show this help

Signals: SIGTERM/SIGINT drain gracefully (inbound stops accepting, in-flight requests
finish within shutdown.gracePeriod, outbound keeps serving meanwhile). The same from
the pod: curl -X POST -H 'wren-admin: 1' http://127.0.0.1:15000/drain (admin actions
need that header and come from localhost only).

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
  if (values.check) {
    out(`configuration ok: ${describeConfig(config)}\n`);
    return 0;
  }
  return runProxy(config, err);
}

/** Runs a proxy from a parsed config until SIGTERM/SIGINT or POST /drain. */
export async function runProxy(config: ProxyConfig, err: Out): Promise<number> {
  // Before the data path allocates anything: the young generation must not have grown yet.
  applyHeapFlags(process.execArgv, process.env.NODE_OPTIONS, undefined, undefined, config.concurrency > 1);
  // The signal handlers go in first: a SIGTERM that lands between 'proxy started' and the
  // wait for it (the kubelet, or a test that reacts to that line) must drain, not kill the
  // process with the default action. Before the proxy is up a signal is remembered and
  // honoured as soon as it is.
  const signal: StopSignal = { requested: false, stop: null };
  const onSignal = () => (signal.stop ? signal.stop() : (signal.requested = true));
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  try {
    return await startAndServe(config, err, signal);
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}

interface StopSignal {
  requested: boolean;
  stop: (() => void) | null;
}

async function startAndServe(config: ProxyConfig, err: Out, signal: StopSignal): Promise<number> {
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
    try {
      tls = TlsIdentity.fromFiles(files);
    } catch (e) {
      err(`wren proxy: cannot load TLS material: ${(e as Error).message}\n`);
      return 2;
    }
    cpCredentials = secureTo(tls.material.trustBundlePem);
  } else {
    const cfg = c!;
    const id = config.identity;
    const spiffeId = formatSpiffeId({ trustDomain: id.trustDomain, namespace: id.namespace, serviceAccount: id.serviceAccount });
    const logger = createLogger({ level: config.log.level, base: { component: 'identity', identity: spiffeId }, sink: (l) => err(l + '\n') });
    if (!config.discovery.insecure) {
      let bundle: string;
      try {
        bundle = cfg.trustBundlePem ?? readFileSync(cfg.trustBundleFile!, 'utf8');
      } catch (e) {
        err(`wren proxy: cannot read identity.certify.trustBundleFile: ${(e as Error).message}\n`);
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
      logger,
      lifetimeMs: cfg.lifetimeMs,
      timeoutMs: cfg.timeoutMs,
      runDir: cfg.runDir,
    });
    try {
      tls = await workload.obtain(cfg.startupTimeoutMs);
    } catch (e) {
      err(`wren proxy: ${(e as Error).message}\n`);
      certifyClient.close();
      return 1;
    }
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
  await new Promise<void>((resolve) => {
    signal.stop = () => void proxy.drain().then(resolve);
    if (signal.requested) signal.stop();
    void proxy.drained.then(resolve);
  });
  workload?.stop();
  certifyClient?.close();
  await discovery?.stop();
  return 0;
}
