import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { connect as netConnect } from 'node:net';
import type { Server } from 'node:http';
import { createServer, request } from '../common/node-http.js';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { formatSpiffeId, writeSecretFile } from '../certs/index.js';
import { listen } from '../common/listen.js';
import { startDemoCache } from './demo-cache.js';
import { SIDECAR_NODE_FLAGS } from './heap-flags.js';

type Out = (s: string) => void;

const USAGE = `Usage: wren demo [--smoke] [--base-ip 127.0.1]

Starts a whole mesh on loopback, laid out like three pods and a control plane: each
"pod" has its own loopback address, its app and its sidecar on the standard ports.
  client pod     127.0.1.1    sidecar outbound :15001, inbound :15006, admin :15000,
                              upstreams :16379 (cache, opaque TCP) and :18080 (web, HTTP)
  web pod        127.0.1.2    app :8080 (HTTP), sidecar outbound :15001, inbound :15006, admin :15000
  cache pod      127.0.1.3    app :6379 (a tiny Redis), sidecar outbound :15001, inbound :15006, admin :15000
  control plane  127.0.1.254  discovery (gRPC) :15010, admin :15014
The client's upstreams are local ports bound to one service each (Consul's explicit
upstreams): without an iptables redirect, this is how a TCP client enters the mesh.
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

/** `--base-ip`: three decimal octets, each 0-255 (the pods are .1 .2 .3, the control plane .254). */
const isBaseIp = (s: string): boolean => /^\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(s) && s.split('.').every((o) => Number(o) <= 255);

/** How the demo's hints run wren (see "Try it"). */
const WREN_CMD = 'node_modules/.bin/node dist/cli/wren.js';
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
  if (!isBaseIp(base)) {
    err(`wren demo: --base-ip: expected the first three octets of an IPv4 address (e.g. 127.0.2), got ${JSON.stringify(base)}\n\n${USAGE}`);
    return 2;
  }
  const pods = { client: `${base}.1`, web: `${base}.2`, cache: `${base}.3` };
  const upstream = { cache: { address: pods.client, port: 16379 }, web: { address: pods.client, port: 18080 } };
  let failures = 0;
  // The apps bind first, before anything is written or spawned: their ports taken (another
  // demo running on these addresses) is the usual way a demo cannot start, and it says so.
  const bindApp = async <S>(what: string, host: string, port: number, start: (h: string, p: number) => Promise<S>): Promise<S | string> =>
    start(host, port).catch((e: Error & { code?: string }) =>
      `wren demo: cannot start the ${what} on ${host}:${port}: ${e.code === 'EADDRINUSE' ? 'the address is in use (another demo running? stop it, or use --base-ip for other addresses)' : e.message}\n`);
  const app = await bindApp('web app', pods.web, 8080, startWebApp);
  if (typeof app === 'string') {
    err(app);
    return 1;
  }
  const cache = await bindApp('cache', pods.cache, 6379, startDemoCache);
  if (typeof cache === 'string') {
    app.close();
    err(cache);
    return 1;
  }
  const dir = await mkdtemp(join(tmpdir(), 'wren-demo-'));
  // One bootstrap token per workload (docs/identity.md): the control plane's token file,
  // and each sidecar's own token file, all 0600. No private key is ever written.
  const ids = Object.fromEntries(Object.keys(pods).map((name) => [name, formatSpiffeId({ trustDomain: 'cluster.local', namespace: 'default', serviceAccount: name })]));
  const tokens = Object.fromEntries(Object.keys(pods).map((name) => [name, randomBytes(24).toString('hex')]));
  const tokensFile = join(dir, 'bootstrap-tokens.yaml');
  await writeSecretFile(tokensFile, stringify({ tokens: Object.keys(pods).map((name) => ({ token: tokens[name], namespace: 'default', serviceAccount: name })) }));
  for (const name of Object.keys(pods)) await writeSecretFile(join(dir, `${name}.token`), tokens[name]);
  const bundleFile = join(dir, 'trust-bundle.pem');
  const meshDir = join(dir, 'mesh');
  await mkdir(meshDir);
  const webFile = join(meshDir, 'web.yaml');
  await writeFile(webFile, webManifest(pods.web, ids.web, 1));
  await writeFile(join(meshDir, 'cache.yaml'), cacheManifest(pods.cache, ids.cache));
  await writeFile(join(meshDir, 'web-policy.yaml'), WEB_POLICY);
  const wren = fileURLToPath(new URL('./wren.js', import.meta.url));
  const stderr = values.smoke ? 'ignore' : 'inherit';
  const cp = { ip: `${base}.254`, discovery: `${base}.254:15010`, admin: `${base}.254:15014` };
  // TLS by default, with a root CA generated in memory; it writes the trust bundle for the sidecars.
  const controlPlane = spawn(
    process.execPath,
    [...SIDECAR_NODE_FLAGS.filter((f) => f === '--disable-sigusr1'), wren, 'control-plane', '--source', `dir:${meshDir}`, '--listen', cp.discovery, '--admin', cp.admin, '--bootstrap-tokens', tokensFile, '--write-trust-bundle', bundleFile],
    { stdio: ['ignore', 'inherit', stderr] },
  );
  const sidecars: ChildProcess[] = [];
  const stopAll = async () => {
    // Sidecars first, so they do not log a lost control plane on the way out.
    await stopChildren(sidecars);
    await stopChildren([controlPlane]);
    app.close();
    cache.close();
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
        // The workload this sidecar serves (metrics' source_workload / destination_workload...);
        // in a cluster the injector sets it from the pod's owner (WREN_WORKLOAD_*).
        workload: { name, app: name, version: 'v1' },
        // Key in memory, certificate from the control plane, renewed before it expires.
        certify: { tokenFile: join(dir, `${name}.token`), trustBundleFile: bundleFile, runDir: join(dir, `${name}-run`) },
      },
      // IPv4 only: the pods share ::1, so IPv6 sockets on the standard ports would collide.
      listeners: { outbound: { address: ip, ipv6Address: '', port: 15001 }, inbound: { address: ip, ipv6Address: '', port: 15006 }, admin: { address: ip, port: 15000 }, metrics: { address: ip, ipv6Address: '', port: 15020 } },
      app: { address: ip },
      // No minimum drain: the demo's apps have no shutdown of their own that calls out, and Ctrl-C should stop the mesh at once.
      shutdown: { gracePeriodMs: '5s', minDrainMs: '0s' },
      // No static mesh: /ready stays 503 until the control plane's first snapshot.
      // Stats every 2 s (default 10 s) so `wren stat` and the dashboard follow the demo's traffic closely.
      discovery: { controlPlane: cp.discovery, firstConfigTimeoutMs: '15s', statsReport: { intervalMs: '2s' } },
      // Explicit upstreams: local ports that lead to one service each, no interception needed.
      upstreams:
        name === 'client'
          ? [
              { service: 'cache', port: 6379, localAddress: upstream.cache.address, localPort: upstream.cache.port },
              { service: 'web', port: 80, localAddress: upstream.web.address, localPort: upstream.web.port },
            ]
          : [],
    };
    const file = join(dir, `${name}-proxy.yaml`);
    await writeFile(file, stringify(cfg));
    sidecars.push(spawn(process.execPath, [...SIDECAR_NODE_FLAGS, wren, 'proxy', '--config', file], { stdio: ['ignore', 'inherit', stderr] }));
  }
  try {
    for (const [i, ip] of Object.values(pods).entries()) await waitReady(ip, 15000, sidecars[i]);
  } catch (e) {
    err(`wren demo: sidecars did not become ready: ${(e as Error).message}\n`);
    await stopAll();
    return 1;
  }
  out(`\nWren demo mesh is up (files in ${dir}, removed on exit).\n\n`);
  const dump = parseJson<{ version?: string; source?: string }>((await adminGet(pods.client, 15000, '/config_dump')).body) ?? {};
  out(`client sidecar config: version ${dump.version} from ${dump.source}\n`);
  if (dump.source !== `control-plane:${cp.discovery}`) failures++;
  const certs = parseJson<{ identity?: string; serial?: string; notAfter?: string }>((await adminGet(pods.client, 15000, '/certs')).body) ?? {};
  out(`client sidecar certificate: ${certs.identity} serial ${certs.serial} until ${certs.notAfter} (issued by the control plane through Certify)\n`);
  if (certs.identity !== ids.client) failures++;
  // Each sidecar's discovery stream is bound to the certificate it presented (docs/security.md).
  const subscribed = parseJson<{ proxies?: { identity?: { spiffeId?: string }; authenticatedAs?: string | null }[] }>((await adminGet(cp.ip, 15014, '/debug/proxies')).body)?.proxies ?? [];
  const authenticated = Object.values(ids).filter((id) => subscribed.some((p) => p.identity?.spiffeId === id && p.authenticatedAs === id));
  out(`control plane: ${authenticated.length}/${Object.keys(ids).length} sidecars subscribed with their workload certificate\n`);
  if (authenticated.length !== Object.keys(ids).length) failures++;
  for (let i = 0; i < 3; i++) {
    const r = await get(pods.client, 15001, 'web', '/');
    out(`client -> web: HTTP ${r.status} ${r.body.trim()}\n`);
    if (r.status !== 200 || !r.body.includes(ids.client)) failures++;
  }
  const viaWeb = await get(upstream.web.address, upstream.web.port, 'localhost', '/');
  out(`client -> web through the upstream port ${upstream.web.address}:${upstream.web.port}: HTTP ${viaWeb.status} ${viaWeb.body.trim()}\n`);
  if (viaWeb.status !== 200 || !viaWeb.body.includes(ids.client)) failures++;
  const cacheReplies = await respExchange(upstream.cache.address, upstream.cache.port, [['PING'], ['SET', 'greeting', 'hello through the mesh'], ['GET', 'greeting']]);
  out(`client -> cache through the upstream port ${upstream.cache.address}:${upstream.cache.port} (opaque TCP, Redis protocol): ${cacheReplies.join(' | ')}\n`);
  if (cacheReplies.join('|') !== '+PONG|+OK|$22 hello through the mesh') failures++;
  // Istio's standard labels: the web sidecar (reporter destination) names the caller's
  // workload and the service it meant, from the client sidecar's peer metadata.
  const webMetrics = (await adminGet(pods.web, 15000, '/metrics')).body;
  const inboundSeries = webMetrics.split('\n').find((l) => l.startsWith('istio_requests_total{reporter="destination"') && l.includes('source_workload="client"')) ?? '';
  const labelled = inboundSeries.includes('destination_service="web.default.svc.cluster.local"') && inboundSeries.includes('destination_workload="web"');
  out(`web sidecar metrics: ${labelled ? 'istio_requests_total{reporter="destination",source_workload="client",destination_workload="web",destination_service="web.default.svc.cluster.local"}' : `unexpected istio_requests_total: ${inboundSeries || 'none from client'}`}\n`);
  if (!labelled) failures++;
  // The control plane aggregates what the sidecars report (StatsReport): the client -> web edge
  // appears in `wren stat` and on the dashboard with the client's first report (2 s), which
  // counts the requests above from the young sidecar's start (docs/operations.md, wren stat);
  // a request still goes out on every poll, so the edge's counters grow either way.
  const dashboard = `http://${cp.ip}:15014/dashboard/`;
  const page = await adminGet(cp.ip, 15014, '/dashboard/');
  let edgeRate = '';
  await waitFor(async () => {
    await get(pods.client, 15001, 'web', '/');
    const rows = parseJson<{ rows: { from: { workload: string }; to: { service: string }; requestRate: number }[] }>((await adminGet(cp.ip, 15014, '/api/stat?kind=edge&window=30s')).body)?.rows ?? [];
    const e = rows.find((r) => r.from.workload === 'client' && r.to.service === 'web.default' && r.requestRate > 0);
    if (e) edgeRate = e.requestRate.toFixed(2);
    return e !== undefined;
  }, 10_000);
  out(`dashboard: ${dashboard}${page.status === 200 ? '' : ` NOT served (HTTP ${page.status})`}; wren stat: ${edgeRate ? `client -> web.default ${edgeRate} rps` : 'NO client -> web traffic reported'}\n`);
  if (page.status !== 200 || !edgeRate) failures++;
  if (values.smoke) {
    // Guard the live-edit promise: a manifest change reaches the client sidecar.
    const t0 = performance.now();
    await writeFile(webFile, webManifest(pods.web, ids.web, 2));
    const seen = await waitFor(async () => webWeight(await adminGet(pods.client, 15000, '/config_dump')) === 2, 10_000);
    out(seen ? `live edit of ${webFile} reached the client sidecar in ${Math.round(performance.now() - t0)} ms\n` : `live edit of ${webFile} did NOT reach the client sidecar\n`);
    if (!seen) failures++;
    // A Telemetry resource (namespace-wide) reaches the sidecars; removing it restores the defaults.
    const telemetryFile = join(meshDir, 'telemetry.yaml');
    await writeFile(telemetryFile, DEMO_TELEMETRY);
    const on = await waitFor(async () => accessLogFrom(await adminGet(pods.client, 15000, '/config_dump')) === 'true from pushed', 10_000);
    out(on ? `Telemetry ${telemetryFile}: the client sidecar's access logs are on (set by the control plane)\n` : `Telemetry ${telemetryFile} did NOT reach the client sidecar\n`);
    await rm(telemetryFile);
    const off = await waitFor(async () => accessLogFrom(await adminGet(pods.client, 15000, '/config_dump')) === 'false from default', 10_000);
    out(off ? 'Telemetry removed: access logs back to the default (off)\n' : 'removing the Telemetry did NOT restore the default\n');
    if (!on || !off) failures++;
  }
  // `wren check` (local mode) and `wren proxy-status` on the running mesh (docs/operations.md).
  const { checkCommand } = await import('./check/check-command.js');
  let checkOut = '';
  const checked = await waitFor(async () => {
    checkOut = '';
    return (await checkCommand(['--admin', cp.admin, '--source', `dir:${meshDir}`], (t) => void (checkOut += t), (t) => void (checkOut += t))) === 0;
  }, 10_000);
  out(`\nwren check --admin ${cp.admin} --source dir:${meshDir}\n${checkOut}`);
  if (!checked) failures++;
  const { proxyStatusCommand } = await import('./proxy-status.js');
  out(`\nwren proxy-status --control-plane ${cp.admin}\n`);
  if ((await proxyStatusCommand(['--control-plane', cp.admin], out, out)) !== 0) failures++;
  // The wren commands as a user types them from the checkout: node_modules/.bin/node is the
  // Node 24 that `npm ci` installs; the machine's own `node` may be older (README: 20 is
  // enough for npm), and wren refuses it (cli/node-version.ts names the same command).
  out(`
Try it:
  curl -x http://${pods.client}:15001 http://web/            # via the client's sidecar (mTLS between pods)
  curl http://${upstream.web.address}:${upstream.web.port}/                      # the same through the client's upstream port for web
  ${cacheTryCommand(upstream.cache.address, upstream.cache.port)}
  curl http://${pods.client}:15000/clusters                  # the client sidecar's endpoints
  curl http://${pods.web}:15000/metrics | grep istio_requests_total
  open ${dashboard}     # the dashboard: topology, services, proxies, why
  ${WREN_CMD} stat --watch --control-plane ${cp.ip}:15014   # traffic per service and workload
  curl http://${cp.ip}:15014/debug/proxies    # what the control plane sent each sidecar
  ${WREN_CMD} proxy-config client-0.default clusters --control-plane ${cp.admin}   # what the client sidecar has
  ${WREN_CMD} check --admin ${cp.admin}            # control plane, trust, every proxy synced
  curl http://${pods.client}:15000/certs                     # the client sidecar's certificate (from Certify)
  curl -s http://${pods.client}:15000/config_dump | jq .telemetry   # trace sampling, access logs, and who set them
  curl -s http://${cp.ip}:15014/metrics | grep wren_identity # certificates issued / refused

The mesh is defined by the manifests in ${meshDir}/:
  edit ${webFile} (e.g. an endpoint's weight, or ready: false) and watch
  curl http://${pods.client}:15000/clusters change; ${join(meshDir, 'web-policy.yaml')} holds the TrafficPolicy.
  Telemetry keeps its defaults (1 % tracing, access logs off); to turn access logs on for
  every demo sidecar, add a Telemetry (docs/observability.md):
  printf '${DEMO_TELEMETRY.replace(/\n/g, '\\n')}' > ${join(meshDir, 'telemetry.yaml')}
`);
  if (values.smoke) {
    await stopAll();
    await rm(dir, { recursive: true, force: true });
    out(failures === 0 ? 'smoke test passed\n' : `smoke test FAILED (${failures} failed check(s))\n`);
    return failures === 0 ? 0 : 1;
  }
  // The handlers go in before the line that invites the signal: one that lands between the
  // two (a script that reacts to the line) would otherwise meet node's default action and
  // kill the demo alone, leaving its control plane and sidecars running.
  const stopped = new Promise<void>((r) => {
    process.once('SIGINT', r);
    process.once('SIGTERM', r);
  });
  out('\nCtrl-C stops the mesh.\n');
  await stopped;
  await stopAll();
  // As --smoke does: every run made a fresh directory (bootstrap tokens included), which
  // nothing reads once its control plane, whose CA lived in memory, has stopped.
  await rm(dir, { recursive: true, force: true });
  return 0;
}

/** How to talk to the cache through its upstream port with what this machine has. */
function cacheTryCommand(host: string, port: number): string {
  const comment = '# opaque TCP through the client upstream (Redis protocol)';
  if (spawnSync('sh', ['-c', 'command -v redis-cli'], { stdio: 'ignore' }).status === 0) return `redis-cli -h ${host} -p ${port} ping     ${comment}`;
  if (spawnSync('sh', ['-c', 'command -v nc'], { stdio: 'ignore' }).status === 0) return `printf 'PING\\r\\n' | nc -q1 ${host} ${port}   ${comment}`;
  return `node -e "const s=require('net').connect(${port},'${host}',()=>s.end('PING\\r\\n'));s.pipe(process.stdout)"   ${comment}`;
}

/** Sends Redis commands (RESP arrays) on one connection; the replies (simple strings, errors, integers, bulk strings). */
function respExchange(host: string, port: number, commands: readonly string[][]): Promise<string[]> {
  const wire = commands.map((c) => `*${c.length}\r\n` + c.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')).join('');
  return new Promise((resolve) => {
    const replies: string[] = [];
    let got = '';
    const s = netConnect({ host, port }, () => s.write(wire));
    s.setTimeout(5000, () => s.destroy());
    s.on('data', (d) => {
      got += d;
      // Each reply is one line, or for a bulk string `$<len>` then a line holding it.
      for (let m; (m = /^(?:\$(\d+)\r\n([^]*?)\r\n|([-+:][^\r]*)\r\n)/.exec(got)); got = got.slice(m[0].length)) replies.push(m[3] ?? `$${m[1]} ${m[2]}`);
      if (replies.length >= commands.length) s.end();
    });
    s.on('error', (e) => replies.push(`-ERR ${e.message}`));
    s.on('close', () => resolve(replies));
  });
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

/** An admin port answers only a Host that is an IP literal or localhost (DNS rebinding, docs/security.md). */
function adminGet(host: string, port: number, path: string): Promise<{ status: number; body: string }> {
  return get(host, port, `${host}:${port}`, path);
}

async function waitReady(host: string, port: number, child: ChildProcess, timeoutMs = 15_000): Promise<void> {
  const ok = await waitFor(async () => {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the process exited (${child.exitCode ?? child.signalCode}) before ${host}:${port}/ready answered 200`);
    return (await adminGet(host, port, '/ready')).status === 200;
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

/** "<enabled> from <layer>" of the access-log switch in a sidecar's /config_dump (undefined if absent). */
function accessLogFrom(r: { status: number; body: string }): string | undefined {
  const t = parseJson<{ telemetry?: { settings: { accessLog: { enabled: boolean } }; from: { accessLog: { enabled: string } } } }>(r.body)?.telemetry;
  return r.status === 200 && t ? `${t.settings.accessLog.enabled} from ${t.from.accessLog.enabled}` : undefined;
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
      # The pod's workload, for the caller's metrics (destination_workload, destination_app...).
      workload: { name: web, namespace: default, app: web, version: v1 }
`;
}

/** mesh/cache.yaml: the cache Service (opaque TCP: the sidecars tunnel its bytes) and its one pod. */
function cacheManifest(ip: string, identity: string): string {
  return `# The cache service: a tiny Redis, reached from the client pod through its upstream port 16379.
apiVersion: policy.wren.io/v1alpha1
kind: MeshService
metadata:
  name: cache
  namespace: default
spec:
  ports:
    - name: redis
      port: 6379
      protocol: opaque
  endpoints:
    - address: ${ip}
      port: 6379
      proxyPort: 15006
      identity: ${identity}
      ready: true
      workload: { name: cache, namespace: default, app: cache, version: v1 }
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

/** A namespace-wide Telemetry for the demo's namespace: access logs on (the smoke run writes it, then removes it). */
const DEMO_TELEMETRY = `apiVersion: policy.wren.io/v1alpha1
kind: Telemetry
metadata: { name: demo-logs, namespace: default }
spec:
  accessLogging: [{}]
`;
