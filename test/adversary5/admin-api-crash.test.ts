import type { ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startControlPlaneProcess } from '../helpers/control-plane-process.js';

/**
 * ADV5-5: one unauthenticated GET crashes the control plane.
 *
 * The dashboard API on the control plane's admin port decodes the path with
 * decodeURIComponent (control-plane/dashboard/dashboard-api.ts, /api/services/NAME and
 * /api/proxies/POD) inside the admin server's synchronous request handler
 * (control-plane/admin-server.ts); a malformed percent-escape throws URIError, nothing
 * catches it, and the process dies on the uncaught exception. The install binds the admin
 * port on 0.0.0.0:15014 and exposes it on the wren-control-plane Service
 * (manifests/install/30-control-plane.yaml), and the DNS-rebinding guard lets any IP-literal
 * Host through, so any pod in the cluster can do this:
 *
 *   curl http://<control-plane ClusterIP>:15014/api/services/%ZZ
 *
 * The same for a request-target in absolute form that the URL parser refuses
 * (`GET http://[ HTTP/1.1`): `new URL(req.url, 'http://admin')` throws before any check,
 * the Host guard included (the proxy's admin server catches the same throw; the data path's
 * h1-server.ts guards its own `new URL`).
 *
 * Both replicas go down with two requests; every proxy loses its control plane (no config
 * updates, no certificate renewals). What should happen (docs/configuration.md, brief: "Bad
 * input gets a clear error and loses nothing: malformed request -> 4xx and the server keeps
 * serving"): 400, and the control plane keeps answering.
 */
let dir: string;
let child: ChildProcess | undefined;
let stop: () => Promise<void> = async () => undefined;
let exited: { code: number | null; signal: string | null } | null = null;
let adminPort = 0;

beforeEach(async () => {
  exited = null;
  dir = await mkdtemp(join(tmpdir(), 'wren-adv5-admin-'));
  const cp = await startControlPlaneProcess(dir, '127.0.0.1:0');
  ({ child, adminPort, stop } = cp);
  const me = cp.child;
  me.on('exit', (code, signal) => {
    if (child === me) exited = { code, signal };
  });
  // /ready is 200 once the (empty) directory is read.
  for (let i = 0; i < 100; i++) {
    if ((await fetch(`http://127.0.0.1:${adminPort}/ready`).catch(() => null))?.status === 200) break;
    await new Promise((r) => setTimeout(r, 50));
  }
});

afterEach(async () => {
  await stop();
  await rm(dir, { recursive: true, force: true });
});

/** One raw HTTP/1.1 request; the status code, or why there was none. */
function rawStatus(target: string): Promise<number | string> {
  return new Promise((resolve) => {
    const s = connect(adminPort, '127.0.0.1', () => s.write(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`));
    let out = '';
    s.on('data', (d: Buffer) => (out += d.toString('latin1')));
    s.on('error', (e) => resolve(`no answer: ${e.message}`));
    s.on('close', () => resolve(/^HTTP\/1\.1 (\d{3})/.exec(out) ? Number(/^HTTP\/1\.1 (\d{3})/.exec(out)![1]) : `no answer (${JSON.stringify(out.slice(0, 40))})`));
  });
}

test.each(['/api/services/%ZZ', '/api/proxies/%E0%A4%A', 'http://['])('ADV5-5: GET %s is a 4xx and the control plane keeps serving', async (target) => {
  // ADVERSARY: ADV5-5
  const res = await rawStatus(target);
  await new Promise((r) => setTimeout(r, 200));
  const live = await fetch(`http://127.0.0.1:${adminPort}/live`).then((r) => r.status, () => 'down');
  // On main: no answer, the process exits with code 1 (URIError: URI malformed / TypeError: Invalid URL), /live is down.
  expect({ res, is4xx: typeof res === 'number' && res >= 400 && res < 500, live, exited }).toEqual({ res: expect.anything(), is4xx: true, live: 200, exited: null });
});
