import { parseArgs } from 'node:util';
import { loadProxyConfig } from '../proxy/config/proxy-config.js';
import { TlsIdentity } from '../proxy/tls/tls-identity.js';
import { Proxy } from '../proxy/proxy.js';
import { ConfigError } from '../common/schema.js';
import { connectControlPlane } from '../proxy/discovery/connect-proxy.js';

type Out = (s: string) => void;

export const PROXY_USAGE = `Usage: wren proxy --config FILE [--check]

Runs the sidecar proxy: outbound listener (default 127.0.0.1:15001), inbound mTLS
listener (default 0.0.0.0:15006) and admin port (default 127.0.0.1:15000).

Options:
  --config FILE   proxy configuration (YAML); see docs/configuration.md
  --check         parse and validate the configuration, print the result, and exit
  -h, --help      show this help

Signals: SIGTERM/SIGINT drain gracefully (inbound stops accepting, in-flight requests
finish within shutdown.gracePeriod, outbound keeps serving meanwhile).
`;

/** `wren proxy`: parse config at the edge (errors name the field path, exit 2), then run. */
export async function proxyCommand(argv: string[], out: Out, err: Out): Promise<number> {
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
  if (!values.config) {
    err(`wren proxy: --config FILE is required\n\n${PROXY_USAGE}`);
    return 2;
  }
  let config;
  try {
    config = loadProxyConfig(values.config);
  } catch (e) {
    if (e instanceof ConfigError) {
      err(`wren proxy: invalid configuration: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  if (values.check) {
    out(`configuration ok: ${config.discovery.controlPlane ? `control plane ${config.discovery.controlPlane}` : `${config.mesh.services.length} static service(s)`}\n`);
    return 0;
  }
  let tls: TlsIdentity;
  try {
    tls = TlsIdentity.fromFiles(config.tls);
  } catch (e) {
    err(`wren proxy: cannot load TLS material: ${(e as Error).message}\n`);
    return 2;
  }
  const proxy = await Proxy.start({ config, tls, staticMesh: config.discovery.controlPlane === undefined });
  // With a control plane the proxy starts without a mesh (/ready 503 until the first
  // snapshot, bounded by discovery.firstConfigTimeoutMs) and keeps its last good config
  // whenever the control plane is unreachable.
  const address = config.discovery.controlPlane;
  const discovery = address ? connectControlPlane(proxy, { address, namespace: config.identity.namespace, pod: config.identity.pod }) : null;
  await new Promise<void>((resolve) => {
    const stop = () => void proxy.drain().then(resolve);
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    void proxy.drained.then(resolve);
  });
  await discovery?.stop();
  return 0;
}
