import { request as httpRequest } from 'node:http';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import { proxyCommand } from '../cli/proxy-command.js';

const pki = testPki();

function get(port: number, host: string, path: string): Promise<{ status: number; body: string; error?: string }> {
  return new Promise((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, headers: { host } }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, error: res.headers['wren-proxy-error'] as string | undefined }));
    });
    req.on('error', (e) => resolve({ status: 0, body: e.message }));
    req.end();
  });
}

describe('graceful shutdown', () => {
  let slow: FakeApp, other: FakeApp;
  afterAll(async () => {
    await slow.close();
    await other.close();
  });

  test('in-flight requests finish, readiness fails, inbound stops accepting, outbound keeps serving', async () => {
    slow = await fakeApp('slow');
    other = await fakeApp('other');
    const server = await startProxy({ pki, serviceAccount: 'slow', services: [meshService('other', 80, [{ appPort: other.port, proxy: null }])] });
    const client = await startProxy({ pki, serviceAccount: 'client', services: [meshService('slow', 80, [{ appPort: slow.port, proxy: server }])] });
    try {
      expect((await get(client.outboundPort, 'slow', '/name')).status).toBe(200);
      const inflight = get(client.outboundPort, 'slow', '/slow?ms=600');
      await new Promise((r) => setTimeout(r, 100));
      const drain = await fetch(`http://127.0.0.1:${server.adminPort}/drain`, { method: 'POST', headers: { 'wren-admin': '1' } });
      expect(drain.status).toBe(202);
      expect((await fetch(`http://127.0.0.1:${server.adminPort}/ready`)).status).toBe(503);
      // The draining pod's app can still call out through its sidecar.
      const out = await get(server.outboundPort, 'other', '/name');
      expect(out).toMatchObject({ status: 200, body: 'other' });
      // New requests to the draining pod are not accepted there.
      const fresh = await get(client.outboundPort, 'slow', '/name');
      expect(fresh.status).toBeGreaterThanOrEqual(500);
      // The request that was in flight completes normally.
      expect(await inflight).toMatchObject({ status: 200, body: 'slow slow' });
      await server.drained;
    } finally {
      await client.close();
      await server.close();
    }
  });
});

describe('wren proxy configuration errors', () => {
  async function run(yaml: string): Promise<{ code: number; err: string }> {
    const dir = await mkdtemp(join(tmpdir(), 'wren-cfg-'));
    const file = join(dir, 'proxy.yaml');
    await writeFile(file, yaml);
    let err = '';
    const code = await proxyCommand(['--config', file, '--check'], () => undefined, (s) => (err += s));
    return { code, err };
  }

  test('a wrong field is named by its path and the exit code is non-zero', async () => {
    const base = 'tls: { certFile: a, keyFile: b, trustBundleFile: c }\n';
    const r1 = await run(base + 'mesh:\n  services:\n    - name: web\n      ports:\n        - port: http\n');
    expect(r1.code).toBe(2);
    expect(r1.err).toContain('mesh.services[0].ports[0].port: expected a number, got "http"');
    const r2 = await run(base + 'listeners:\n  outbound: { port: 15001, adress: 127.0.0.1 }\n');
    expect(r2.code).toBe(2);
    expect(r2.err).toContain('listeners.outbound.adress: unknown field');
    const r3 = await run(base + 'protocol: { detectTimeoutMs: soon }\n');
    expect(r3.err).toContain('protocol.detectTimeoutMs: expected a duration');
    // --check reads the certificate files as a start would: a good config names real ones.
    const files = await mkdtemp(join(tmpdir(), 'wren-cfg-tls-'));
    const w = pki.issue('default', 'web');
    await writeFile(join(files, 'cert.pem'), w.certChainPem);
    await writeFile(join(files, 'key.pem'), w.keyPem, { mode: 0o600 });
    await writeFile(join(files, 'ca.pem'), pki.bundlePem);
    const ok = await run(`identity: { namespace: default, serviceAccount: web }\ntls: { certFile: ${join(files, 'cert.pem')}, keyFile: ${join(files, 'key.pem')}, trustBundleFile: ${join(files, 'ca.pem')} }\n`);
    expect(ok).toEqual({ code: 0, err: '' });
  });

  test('missing --config and unknown flags exit 2 with usage', async () => {
    let err = '';
    expect(await proxyCommand([], () => undefined, (s) => (err += s))).toBe(2);
    expect(err).toContain('--config FILE is required');
    expect(await proxyCommand(['--bogus'], () => undefined, (s) => (err += s))).toBe(2);
    let out = '';
    expect(await proxyCommand(['--help'], (s) => (out += s), () => undefined)).toBe(0);
    expect(out).toContain('Usage: wren proxy');
  });
});
