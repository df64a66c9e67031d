import { parseArgs } from 'node:util';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, request, type Server } from 'node:http';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { writeDevMesh } from '../certs/index.js';

type Out = (s: string) => void;

const USAGE = `Usage: wren demo [--smoke] [--base-ip 127.0.1]

Starts a whole mesh on loopback, laid out like two pods: each "pod" has its own
loopback address, its app and its sidecar on the standard ports.
  client pod  127.0.1.1  sidecar outbound :15001, inbound :15006, admin :15000
  web pod     127.0.1.2  app :8080, sidecar outbound :15001, inbound :15006, admin :15000
Certificates come from a fresh dev CA (wren certs dev-mesh) in a temp directory.

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
  const dir = await mkdtemp(join(tmpdir(), 'wren-demo-'));
  const pki = await writeDevMesh(join(dir, 'pki'), {
    trustDomain: 'cluster.local',
    workloads: [
      { namespace: 'default', serviceAccount: 'client', name: 'client' },
      { namespace: 'default', serviceAccount: 'web', name: 'web' },
    ],
  });
  const files = Object.fromEntries(pki.workloads.map((w) => [w.name, w]));
  const app = await startWebApp(pods.web, 8080);
  const webService = {
    name: 'web',
    namespace: 'default',
    ports: [{ port: 80, protocol: 'http1', endpoints: [{ address: pods.web, port: 8080, proxyPort: 15006, identity: files.web.spiffeId }] }],
    policy: { retry: { retryOn: ['5xx'], attempts: 2 } },
  };
  const children: ChildProcess[] = [];
  for (const [name, ip] of Object.entries(pods)) {
    const cfg = {
      identity: { namespace: 'default', serviceAccount: name, pod: `${name}-0` },
      tls: { certFile: files[name].certFile, keyFile: files[name].keyFile, trustBundleFile: pki.caCertFile },
      listeners: { outbound: { address: ip, port: 15001 }, inbound: { address: ip, port: 15006 }, admin: { address: ip, port: 15000 } },
      app: { address: ip },
      shutdown: { gracePeriodMs: '5s' },
      mesh: { services: [webService] },
    };
    const file = join(dir, `${name}-proxy.yaml`);
    await writeFile(file, stringify(cfg));
    const child = spawn(process.execPath, [fileURLToPath(new URL('./wren.js', import.meta.url)), 'proxy', '--config', file], {
      stdio: ['ignore', 'inherit', values.smoke ? 'ignore' : 'inherit'],
    });
    children.push(child);
  }
  const stopAll = async () => {
    for (const c of children) c.kill('SIGTERM');
    await Promise.all(children.map((c) => new Promise((r) => (c.exitCode !== null ? r(null) : c.once('exit', r)))));
    app.close();
  };
  try {
    for (const ip of Object.values(pods)) await waitReady(ip, 15000);
  } catch (e) {
    err(`wren demo: sidecars did not become ready: ${(e as Error).message}\n`);
    await stopAll();
    return 1;
  }
  out(`\nWren demo mesh is up (files in ${dir}).\n\n`);
  let failures = 0;
  for (let i = 0; i < 3; i++) {
    const r = await get(pods.client, 15001, 'web', '/');
    out(`client -> web: HTTP ${r.status} ${r.body.trim()}\n`);
    if (r.status !== 200 || !r.body.includes(files.client.spiffeId)) failures++;
  }
  out(`
Try it:
  curl -x http://${pods.client}:15001 http://web/            # via the client's sidecar (mTLS between pods)
  curl http://${pods.client}:15000/clusters                  # the client sidecar's endpoints
  curl http://${pods.web}:15000/metrics | grep istio_requests_total
`);
  if (values.smoke) {
    await stopAll();
    out(failures === 0 ? 'smoke test passed\n' : `smoke test FAILED (${failures} bad responses)\n`);
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
function startWebApp(host: string, port: number): Promise<Server> {
  const s = createServer((req, res) => {
    const caller = /URI=([^;,]+)/.exec(String(req.headers['x-forwarded-client-cert'] ?? ''))?.[1] ?? 'unknown';
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ hello: 'from web', caller, requestId: req.headers['x-request-id'] }) + '\n');
  });
  return new Promise((resolve, reject) => {
    s.once('error', reject);
    s.listen(port, host, () => resolve(s));
  });
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

async function waitReady(host: string, port: number, timeoutMs = 15_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const r = await get(host, port, 'admin', '/ready');
    if (r.status === 200) return;
    await new Promise((r2) => setTimeout(r2, 100));
  }
  throw new Error(`${host}:${port}/ready did not answer 200 within ${timeoutMs} ms`);
}
