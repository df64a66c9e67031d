import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLOCK_SKEW_MS } from '../certs/ca.js';
import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { BootstrapTokenAuthenticator } from '../control-plane/identity/bootstrap-token-authenticator.js';
import { generateIssuer } from '../control-plane/identity/issuer.js';
import { ControlPlane } from '../control-plane/server.js';
import { DirSource } from '../control-plane/sources/dir-source.js';
import { SIDECAR_NODE_FLAGS } from '../cli/heap-flags.js';
import { httpText } from './helpers/http-text.js';

/**
 * A control plane whose clock runs 2 s more ahead of the sidecar's than the CA backdates
 * notBefore by (CLOCK_SKEW_MS, certs/ca.ts), so every certificate it signs starts a second or
 * two after the sidecar's now. The built `wren proxy` takes it, waits for its notBefore and
 * starts (docs/identity.md, "A control plane whose clock runs ahead"); it used to refuse
 * each one and ask again, getting another that started in the future, until its startup
 * timeout ended the process.
 */
const TD = 'cluster.local';
const TOKEN = 'bootstrap-token-web-0123456789abcdef';
const AHEAD_MS = CLOCK_SKEW_MS + 2_000;

let dir: string;
let cp: ControlPlane;
const issuer = generateIssuer(TD, new Date(Date.now() - 3_600_000));
let child: ChildProcess | null = null;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wren-clock-skew-'));
  await mkdir(join(dir, 'mesh'));
  await writeFile(join(dir, 'tokens.yaml'), `tokens:\n  - { token: ${TOKEN}, namespace: default, serviceAccount: web }\n`);
  await writeFile(join(dir, 'token'), TOKEN);
  cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, trustDomain: TD, random: seededRandom(5), logger: silentLogger,
    clock: { ...systemClock, wallNow: () => Date.now() + AHEAD_MS },
    source: (ctx) => new DirSource({ ...ctx, dir: join(dir, 'mesh') }),
    identity: { issuer, authenticator: BootstrapTokenAuthenticator.fromFile(join(dir, 'tokens.yaml')) },
    transport: 'tls',
  });
}, 30_000);

afterAll(async () => {
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child!.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }
  await cp?.kill();
  await rm(dir, { recursive: true, force: true, maxRetries: 5 });
});

test('the sidecar starts with a certificate from a control plane ahead by 2 s more than the backdating, once its notBefore has come', async () => {
  const loopback = { address: '127.0.0.1', ipv6Address: '', port: 0 };
  const controlPlane = `127.0.0.1:${cp.grpcPort}`;
  const file = join(dir, 'proxy.json');
  await writeFile(file, JSON.stringify({
    identity: { namespace: 'default', serviceAccount: 'web', pod: 'web-0', certify: { controlPlane, tokenFile: join(dir, 'token'), trustBundlePem: issuer.trustBundlePem } },
    discovery: { controlPlane },
    listeners: { outbound: loopback, inbound: loopback, admin: { address: '127.0.0.1', port: 0 }, metrics: loopback },
    shutdown: { gracePeriodMs: 200, minDrainMs: 0 },
  }));
  let output = '';
  child = spawn(process.execPath, [...SIDECAR_NODE_FLAGS, join(import.meta.dirname, '..', 'dist', 'cli', 'wren.js'), 'proxy', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (output += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (output += d));
  // The control plane's own serving certificate starts ~2 s after the sidecar's now too: its first tries fail the TLS handshake.
  const end = Date.now() + 20_000;
  let started: RegExpExecArray | null;
  while (!(started = /"msg":"proxy started".*?"admin":(\d+)/.exec(output)) && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  expect(started ? 'started' : output.slice(-1500)).toBe('started');
  expect(output).toMatch(/"code":"CERT_NOT_YET_VALID"/);
  const certs = JSON.parse((await httpText(Number(started![1]), '/certs')).body) as { notBefore: string };
  expect(new Date(certs.notBefore).getTime()).toBeLessThanOrEqual(Date.now());
  expect(new Date(certs.notBefore).getTime()).toBeGreaterThan(Date.now() - 30_000);
}, 40_000);
