import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, request, type Server } from 'node:http';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { formatSpiffeId, writeSecretFile } from '../certs/index.js';
import { listen } from '../common/listen.js';

type Out = (s: string) => void;

const USAGE = `Usage: wren demo [--smoke] [--base-ip 127.0.1]

Starts a whole mesh on loopback, laid out like two pods and a control plane: each
"pod" has its own loopback address, its app and its sidecar on the standard ports.
  client pod     127.0.1.1    sidecar outbound :15001, inbound :15006, admin :15000
  web pod        127.0.1.2    app :8080, sidecar outbound :15001, inbound :15006, admin :15000
  control plane  127.0.1.254  discovery (gRPC) :15010, admin :15014
The mesh is a directory of manifests (MeshService, TrafficPolicy) that the control
plane watches: edit them and the sidecars follow. The control plane is also the mesh CA:
each sidecar makes its key in memory and gets its certificate through Identity/Certify,
proving who it is with a bootstrap token (in a cluster: its service-account token), and
renews it before expiry. Everything lives in a temp directory.

Options:
  --smoke        send a few requests through the mesh, print them, and exit (0 = all good)
  --base-ip P    the first three octets of the pod addresses (default 127.0.1)
  -h, --help     show this help
`;

/** `wren demo`: the local mesh, started with one command. */
export async function demoCommand(argv: string[], out: Out, err: Out): Promise<number> {
  let values: { smoke?: boolean; help?: boolean; 'base-ip'?: string };
  try {
    ({ values } = parseArgs({ args: argv, options: { smoke: { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, 'base-ip': { type: 'string' } }, strict: true }));
  } catch (e) {
    err(`wren demo: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    out(USAGE);
    return 0;
  }
  const base = values['base-ip'] ?? '127.0.1';
  const pods = { client: `${base}.1`, web: `${base}.2` };
  let failures = 0;
  const dir = await mkdtemp(join(tmpdir(), 'wren-demo-'));
  // One bootstrap token per workload (docs/identity.md): the control plane's token file,
  // and each sidecar's own token file, all 0600. No private key is ever written.
  const ids = Object.fromEntries(Object.keys(pods).map((name) => [name, formatSpiffeId({ trustDomain: 'cluster.local', namespace: 'default', serviceAccount: name })]));
  const tokens = Object.fromEntries(Object.keys(pods).map((name) => [name, randomBytes(24).toString('hex')]));
  const tokensFile = join(dir, 'bootstrap-tokens.yaml');
  await writeSecretFile(tokensFile, stringify({ tokens: Object.keys(pods).map((name) => ({ token: tokens[name], namespace: 'default', serviceAccount: name })) }));
  for (const name of Object.keys(pods)) await writeSecretFile(join(dir, `${name}.token`), tokens[name]);
  const bundleFile = join(dir, 'trust-bundle.pem');
  const app = await startWebApp(pods.web, 8080);
  const meshDir = join(dir, 'mesh');
  await mkdir(meshDir);
  const webFile = join(meshDir, 'web.yaml');
  await writeFile(webFile, webManifest(pods.web, ids.web, 1));
  await writeFile(join(meshDir, 'web-policy.yaml'), WEB_POLICY);
  const wren = fileURLToPath(new URL('./wren.js', import.meta.url));
  const stderr = values.smoke ? 'ignore' : 'inherit';
  const cp = { ip: `${base}.254`, discovery: `${base}.254:15010`, admin: `${base}.254:15014` };
  // TLS by default, with a root CA generated in memory; it writes the trust bundle for the sidecars.
  const controlPlane = spawn(
    process.execPath,
    [wren, 'control-plane', '--source', `dir:${meshDir}`, '--listen', cp.discovery, '--admin', cp.admin, '--bootstrap-tokens', tokensFile, '--write-trust-bundle', bundleFile],
    { stdio: ['ignore', 'inherit', stderr] },
  );
  const sidecars: ChildProcess[] = [];
  const stopAll = async () => {
    // Sidecars first, so they do not log a lost control plane on the way out.
    await stopChildren(sidecars);
    await stopChildren([controlPlane]);
    app.close();
  };
  try {
    await waitReady(cp.ip, 15014, controlPlane);
    if (!(await waitFor(async () => existsSync(bundleFile), 5000))) throw new Error(`${bundleFile} was not written`);
  } catch (e) {
    err(`wren demo: the control plane did not become ready: ${(e as Error).message}\n`);
    await stopAll();
    return 1;
  }
  for (const [name, ip] of Object.entries(pods)) {
    const cfg = {
      identity: {
        namespace: 'default', serviceAccount: name, pod: `${name}-0`,
        // Key in memory, certificate from the control plane, renewed before it expires.
        certify: { tokenFile: join(dir, `${name}.token`), trustBundleFile: bundleFile, runDir: join(dir, `${name}-run`) },
      },
      // IPv4 only: the pods share ::1, so IPv6 sockets on the standard ports would collide.
      listeners: { outbound: { address: ip, ipv6Address: '', port: 15001 }, inbound: { address: ip, ipv6Address: '', port: 15006 }, admin: { address: ip, port: 15000 } },
      app: { address: ip },
      shutdown: { gracePeriodMs: '5s' },
      // No static mesh: /ready stays 503 until the control plane's first snapshot.
      discovery: { controlPlane: cp.discovery, firstConfigTimeoutMs: '15s' },
    };
    const file = join(dir, `${name}-proxy.yaml`);
    await writeFile(file, stringify(cfg));
    sidecars.push(spawn(process.execPath, [wren, 'proxy', '--config', file], { stdio: ['ignore', 'inherit', stderr] }));
  }
  try {
    for (const [i, ip] of Object.values(pods).entries()) await waitReady(ip, 15000, sidecars[i]);
  } catch (e) {
    err(`wren demo: sidecars did not become ready: ${(e as Error).message}\n`);
    await stopAll();
    return 1;
  }
  out(`\nWren demo mesh is up (files in ${dir}${values.smoke ? ', removed on exit' : ''}).\n\n`);
  const dump = parseJson<{ version?: string; source?: string }>((await get(pods.client, 15000, 'admin', '/config_dump')).body) ?? {};
  out(`client sidecar config: version ${dump.version} from ${dump.source}\n`);
  if (dump.source !== `control-plane:${cp.discovery}`) failures++;
  const certs = parseJson<{ identity?: string; serial?: string; notAfter?: string }>((await get(pods.client, 15000, 'admin', '/certs')).body) ?? {};
  out(`client sidecar certificate: ${certs.identity} serial ${certs.serial} until ${certs.notAfter} (issued by the control plane through Certify)\n`);
  if (certs.identity !== ids.client) failures++;
  for (let i = 0; i < 3; i++) {
    const r = await get(pods.client, 15001, 'web', '/');
    out(`client -> web: HTTP ${r.status} ${r.body.trim()}\n`);
    if (r.status !== 200 || !r.body.includes(ids.client)) failures++;
  }
  if (values.smoke) {
    // Guard the live-edit promise: a manifest change reaches the client sidecar.
    const t0 = performance.now();
    await writeFile(webFile, webManifest(pods.web, ids.web, 2));
    const seen = await waitFor(async () => webWeight(await get(pods.client, 15000, 'admin', '/config_dump')) === 2, 10_000);
    out(seen ? `live edit of ${webFile} reached the client sidecar in ${Math.round(performance.now() - t0)} ms\n` : `live edit of ${webFile} did NOT reach the client sidecar\n`);
    if (!seen) failures++;
  }
  out(`
Try it:
  curl -x http://${pods.client}:15001 http://web/            # via the client's sidecar (mTLS between pods)
  curl http://${pods.client}:15000/clusters                  # the client sidecar's endpoints
  curl http://${pods.web}:15000/metrics | grep istio_requests_total
  curl http://${cp.ip}:15014/debug/proxies    # what the control plane sent each sidecar
  curl http://${pods.client}:15000/certs                     # the client sidecar's certificate (from Certify)
  curl -s http://${cp.ip}:15014/metrics | grep wren_identity # certificates issued / refused

The mesh is defined by the manifests in ${meshDir}/:
  edit ${webFile} (e.g. an endpoint's weight, or ready: false) and watch
  curl http://${pods.client}:15000/clusters change; ${join(meshDir, 'web-policy.yaml')} holds the TrafficPolicy.
`);
  if (values.smoke) {
    await stopAll();
    await rm(dir, { recursive: true, force: true });
    out(failures === 0 ? 'smoke test passed\n' : `smoke test FAILED (${failures} failed check(s))\n`);
    return failures === 0 ? 0 : 1;
  }
  out('\nCtrl-C stops the mesh.\n');
  await new Promise<void>((r) => {
    process.once('SIGINT', r);
    process.once('SIGTERM', r);
  });
  await stopAll();
  return 0;
}

/** The demo's app: says hello and shows who called it (the identity its sidecar verified). */
async function startWebApp(host: string, port: number): Promise<Server> {
  const s = createServer((req, res) => {
    const caller = /URI=([^;,]+)/.exec(String(req.headers['x-forwarded-client-cert'] ?? ''))?.[1] ?? 'unknown';
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ hello: 'from web', caller, requestId: req.headers['x-request-id'] }) + '\n');
  });
  await listen(s, port, host);
  return s;
}

function get(host: string, port: number, authority: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = request({ host, port, path, headers: { host: authority } }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', (e) => resolve({ status: 0, body: e.message }));
    req.end();
  });
}

async function waitReady(host: string, port: number, child: ChildProcess, timeoutMs = 15_000): Promise<void> {
  const ok = await waitFor(async () => {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the process exited (${child.exitCode ?? child.signalCode}) before ${host}:${port}/ready answered 200`);
    return (await get(host, port, 'admin', '/ready')).status === 200;
  }, timeoutMs);
  if (!ok) throw new Error(`${host}:${port}/ready did not answer 200 within ${timeoutMs} ms`);
}

async function waitFor(cond: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

/** The weight of the web endpoint in a sidecar's /config_dump (undefined if absent or unparsable). */
function webWeight(r: { status: number; body: string }): number | undefined {
  if (r.status !== 200) return undefined;
  const dump = parseJson<{ services?: { name: string; ports: { endpoints: { weight: number }[] }[] }[] }>(r.body);
  return dump?.services?.find((s) => s.name === 'web')?.ports[0]?.endpoints[0]?.weight;
}

function parseJson<T>(text: string): T | undefined {
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined;
  }
}

async function stopChildren(children: readonly ChildProcess[]): Promise<void> {
  const alive = children.filter((c) => c.exitCode === null && c.signalCode === null);
  for (const c of alive) c.kill('SIGTERM');
  await Promise.all(alive.map((c) => new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r(null) : c.once('exit', r)))));
}

/** mesh/web.yaml: the web Service and its one pod, as the compact MeshService manifest. */
function webManifest(ip: string, identity: string, weight: number): string {
  return `# The web service, read by the demo's control plane (wren control-plane --source dir:...).
# Edit and save: the control plane pushes the change to every sidecar within milliseconds.
# Try weight, ready: false, or adding an endpoint; see docs/control-plane.md for the format.
apiVersion: policy.wren.io/v1alpha1
kind: MeshService
metadata:
  name: web
  namespace: default
spec:
  ports:
    - name: http
      port: 80
      protocol: http1
  endpoints:
    - address: ${ip}
      port: 8080
      proxyPort: 15006
      identity: ${identity}
      weight: ${weight}
      ready: true
`;
}

/** mesh/web-policy.yaml: retries for web, as a TrafficPolicy resource. */
const WEB_POLICY = `apiVersion: policy.wren.io/v1alpha1
kind: TrafficPolicy
metadata:
  name: web-policy
  namespace: default
spec:
  targetRef:
    kind: MeshService
    name: web
  policy:
    retry:
      retryOn: [5xx]
      attempts: 2
`;
