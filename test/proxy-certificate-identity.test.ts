import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testPki } from './helpers/pki.js';
import { assertBuilt, builtWren, writeWorkloadFiles } from './helpers/proxy-process.js';

/**
 * `wren proxy --config` with `tls:` files: the identity block must name the workload the
 * certificate is issued to (docs/configuration.md). Peers see the certificate; the proxy
 * takes its namespace (routes, policy, metric labels, Subscribe) and trust domain from the
 * config. A certificate for another namespace, service account or trust domain stops
 * start-up with exit 2, naming the fields that differ and the certificate's SPIFFE ID;
 * the matching identity starts as before.
 */
const wren = builtWren;
const pki = testPki();
let dir: string;

beforeAll(async () => {
  assertBuilt(['cli/proxy-command.ts']);
  dir = await mkdtemp(join(tmpdir(), 'wren-cert-id-'));
  await writeWorkloadFiles(pki, dir, 'web');
});

afterAll(() => rm(dir, { recursive: true, force: true }));

/** Runs `wren proxy --config` with `identity`; SIGTERM once it has started. Resolves with its exit code, stderr and whether it started. */
async function run(name: string, identity: Record<string, string>): Promise<{ code: number | null; stderr: string; started: boolean }> {
  const file = join(dir, `${name}.json`);
  const port0 = { address: '127.0.0.1', port: 0 };
  await writeFile(file, JSON.stringify({
    identity,
    tls: { certFile: join(dir, 'cert.pem'), keyFile: join(dir, 'key.pem'), trustBundleFile: join(dir, 'bundle.pem') },
    listeners: { outbound: { ...port0, ipv6Address: '' }, inbound: { ...port0, ipv6Address: '' }, admin: port0, metrics: { ...port0, ipv6Address: '' } },
    shutdown: { gracePeriodMs: 100 },
  }));
  const child = spawn(process.execPath, [wren, 'proxy', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let started = false;
  child.stderr.on('data', (d: Buffer) => {
    stderr += d;
    if (!started && stderr.includes('"msg":"proxy started"')) {
      started = true;
      child.kill('SIGTERM');
    }
  });
  child.stdout.resume();
  const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  clearTimeout(kill);
  return { code, stderr, started };
}

test('a certificate issued to another namespace and service account: exit 2 naming both fields and its SPIFFE ID', async () => {
  const r = await run('other', { namespace: 'shop', serviceAccount: 'cart' });
  expect(r.started).toBe(false);
  expect(r.code).toBe(2);
  expect(r.stderr).toBe(
    `wren proxy: identity.namespace "shop", identity.serviceAccount "cart" do not match the certificate in tls.certFile ${join(dir, 'cert.pem')}, issued to spiffe://cluster.local/ns/default/sa/web: ` +
      'set identity.namespace, identity.serviceAccount to the certificate\'s, or use a certificate issued to spiffe://cluster.local/ns/shop/sa/cart\n',
  );
});

test('another trust domain alone is refused too', async () => {
  const r = await run('td', { namespace: 'default', serviceAccount: 'web', trustDomain: 'example.org' });
  expect(r.code).toBe(2);
  expect(r.stderr).toContain('wren proxy: identity.trustDomain "example.org" does not match the certificate');
});

test('the certificate\'s own identity starts', async () => {
  const r = await run('same', { namespace: 'default', serviceAccount: 'web', trustDomain: 'cluster.local' });
  expect(r.started).toBe(true);
  expect(r.code).toBe(0);
});
