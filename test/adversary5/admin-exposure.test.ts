import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { startControlPlaneProcess } from '../helpers/control-plane-process.js';

/**
 * ADV5-9: the installed control plane serves its debug pages, the dashboard and its API to
 * anyone who can reach the pod, without authentication.
 *
 * manifests/install/30-control-plane.yaml runs `--admin=0.0.0.0:15014` (for the kubelet's
 * probes and Prometheus) and publishes 15014 on the wren-control-plane Service; the admin
 * server (control-plane/admin-server.ts) answers every GET whose Host is an IP literal, from
 * any source address. What an attacker in any pod does: `curl http://<control-plane IP>:15014/debug/view`
 * (every Service, endpoint and pod IP, every AuthorizationPolicy and RequestAuthentication,
 * the routes), `/debug/proxy-config?pod=NS/NAME` (what any proxy was sent), `/api/why`
 * (who was denied what, on which path), `/debug/trust`: the map of what to attack and which
 * policies to dodge. docs/operations.md presents the dashboard as reached by
 * `kubectl port-forward` (localhost); the proxy's own admin port is localhost-only. Istio's
 * istiod answers its 15014 debug endpoints only from localhost or with a service-account
 * token of an allowed namespace (ENABLE_DEBUG_ENDPOINT_AUTH, on by default; istio.io "Debug
 * Endpoints"). What should happen: from a non-loopback address, the debug pages, /api/ and
 * /dashboard/ are refused (or need credentials); /ready, /live and /metrics may stay open.
 */
const external = Object.values(networkInterfaces()).flat().find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
let dir: string;
let stop: () => Promise<void> = async () => undefined;
let adminPort = 0;

/** The `--admin=` value the install gives the control plane. */
async function installedAdminHost(): Promise<string> {
  const docs = parseAllDocuments(await readFile(join(import.meta.dirname, '..', '..', 'manifests', 'install', '30-control-plane.yaml'), 'utf8')).map((d) => d.toJS() as Record<string, unknown>);
  const dep = docs.find((d) => d?.['kind'] === 'Deployment') as { spec: { template: { spec: { containers: { args: string[] }[] } } } };
  const arg = dep.spec.template.spec.containers[0].args.find((a) => a.startsWith('--admin='))!;
  return arg.slice('--admin='.length).replace(/:\d+$/, '');
}

beforeAll(async () => {
  if (!external) return;
  dir = await mkdtemp(join(tmpdir(), 'wren-adv5-exposed-'));
  const host = await installedAdminHost();
  ({ adminPort, stop } = await startControlPlaneProcess(dir, `${host}:0`));
});

afterAll(async () => {
  await stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

(external ? test : test.skip)('ADV5-9: as installed, the control plane\'s debug pages, API and dashboard are not served to other hosts unauthenticated', async () => {
  // ADVERSARY: ADV5-9
  const status = (path: string) => fetch(`http://${external}:${adminPort}${path}`).then((r) => r.status, () => 'refused');
  const got: Record<string, number | string> = {};
  for (const p of ['/debug/view', '/debug/proxies', '/debug/trust', '/api/why', '/api/topology', '/dashboard/']) got[p] = await status(p);
  // On main: every one is 200 to a client on another address (here the host's own non-loopback address).
  expect(Object.entries(got).filter(([, s]) => s === 200).map(([p]) => p)).toEqual([]);
});
