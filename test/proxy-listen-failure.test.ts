import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testPki } from './helpers/pki.js';
import { assertBuilt, builtWren, writeWorkloadFiles } from './helpers/proxy-process.js';

/**
 * A listener that cannot bind stops `wren proxy` (issue 11, item 6): with each of its
 * ports taken in turn, the built CLI exits non-zero naming the listener, address and
 * port, and leaves nothing listening (the other two ports are free again at once).
 */
const wren = builtWren;
const pki = testPki();
let dir: string;

beforeAll(async () => {
  assertBuilt();
  dir = await mkdtemp(join(tmpdir(), 'wren-listen-'));
  await writeWorkloadFiles(pki, dir, 'web');
});

afterAll(() => rm(dir, { recursive: true, force: true }));

function bind(port = 0): Promise<Server> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(port, '127.0.0.1', () => resolve(s));
  });
}
const portOf = (s: Server) => (s.address() as import('node:net').AddressInfo).port;
const close = (s: Server) => new Promise<void>((r) => s.close(() => r()));

test.each(['outbound', 'inbound', 'admin', 'metrics'] as const)('the %s port taken: exit 1 naming it, nothing left listening', async (taken) => {
  // Four free ports; the one under test stays held by another server.
  const holders = await Promise.all([bind(), bind(), bind(), bind()]);
  const ports = { outbound: portOf(holders[0]), inbound: portOf(holders[1]), admin: portOf(holders[2]), metrics: portOf(holders[3]) };
  const names = ['outbound', 'inbound', 'admin', 'metrics'] as const;
  await Promise.all(names.filter((n) => n !== taken).map((n) => close(holders[names.indexOf(n)])));
  const file = join(dir, `proxy-${taken}.json`);
  await writeFile(
    file,
    JSON.stringify({
      identity: { namespace: 'default', serviceAccount: 'web' },
      tls: { certFile: join(dir, 'cert.pem'), keyFile: join(dir, 'key.pem'), trustBundleFile: join(dir, 'bundle.pem') },
      listeners: Object.fromEntries(names.map((n) => [n, { address: '127.0.0.1', port: ports[n] }])),
    }),
  );
  const child = spawn(process.execPath, [wren, 'proxy', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  child.stdout.resume();
  const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  clearTimeout(kill);
  await close(holders[names.indexOf(taken)]);
  expect({ code, stderr }).toEqual({ code: 1, stderr: expect.stringContaining(`wren proxy: cannot listen on 127.0.0.1:${ports[taken]} (${taken} listener): EADDRINUSE`) });
  // The listeners that did bind were closed before the exit: their ports bind again.
  for (const n of names) await close(await bind(ports[n]));
});
