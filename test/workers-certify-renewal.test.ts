import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCsr, generateKeyPair } from '../certs/index.js';
import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { BootstrapTokenAuthenticator } from '../control-plane/identity/bootstrap-token-authenticator.js';
import { generateIssuer, type Issuer } from '../control-plane/identity/issuer.js';
import { ControlPlane } from '../control-plane/server.js';
import { DirSource } from '../control-plane/sources/dir-source.js';
import { SIDECAR_NODE_FLAGS } from '../cli/heap-flags.js';
import { httpText } from './helpers/http-text.js';

/**
 * The built `wren proxy` with `concurrency: 2` (two listener workers sharing the ports with
 * SO_REUSEPORT) getting its certificate from a real control plane's Certify (TLS,
 * bootstrap tokens) that issues 4-second certificates: every renewal the main thread
 * obtains reaches both workers, so connections opened after it are served with the renewed
 * certificate whichever worker the kernel hands them to, and the key stays in memory: the
 * process writes no file holding it and logs none of it.
 */
const TD = 'cluster.local';
const TTL_MS = 4000;
const TOKEN = 'bootstrap-token-web-0123456789abcdef';
/** Enough fresh connections that the kernel's SO_REUSEPORT hash sends some to each of two sockets (all to one: 2^-39). */
const CONNECTIONS = 40;

let dir: string;
let issuer: Issuer;
let cp: ControlPlane;
let child: ChildProcess;
let output = '';
let adminPort = 0;
let inboundPort = 0;
/** A peer certificate from the same CA, for the probe connections. */
let peer: { keyPem: string; certPem: string };

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wren-workers-certify-'));
  await mkdir(join(dir, 'mesh'));
  await mkdir(join(dir, 'run'));
  await writeFile(join(dir, 'tokens.yaml'), `tokens:\n  - { token: ${TOKEN}, namespace: default, serviceAccount: web }\n`);
  await writeFile(join(dir, 'token'), TOKEN);
  issuer = generateIssuer(TD, new Date(Date.now() - 3_600_000));
  cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, trustDomain: TD, clock: systemClock, random: seededRandom(5), logger: silentLogger,
    source: (ctx) => new DirSource({ ...ctx, dir: join(dir, 'mesh') }),
    identity: { issuer, authenticator: BootstrapTokenAuthenticator.fromFile(join(dir, 'tokens.yaml')), certTtlMs: TTL_MS },
    transport: 'tls',
  });
  const keyPem = generateKeyPair().privateKeyPem;
  peer = { keyPem, certPem: issuer.ca.issue(createCsr(keyPem, `spiffe://${TD}/ns/default/sa/probe`), { identity: `spiffe://${TD}/ns/default/sa/probe`, ttlMs: 600_000 }).certPem };
  const loopback = { address: '127.0.0.1', ipv6Address: '', port: 0 };
  const controlPlane = `127.0.0.1:${cp.grpcPort}`;
  const file = join(dir, 'proxy.json');
  await writeFile(file, JSON.stringify({
    identity: { namespace: 'default', serviceAccount: 'web', pod: 'web-0', certify: { controlPlane, tokenFile: join(dir, 'token'), trustBundlePem: issuer.trustBundlePem, runDir: join(dir, 'run') } },
    discovery: { controlPlane },
    listeners: { outbound: loopback, inbound: loopback, admin: { address: '127.0.0.1', port: 0 }, metrics: loopback },
    shutdown: { gracePeriodMs: 200, minDrainMs: 0 },
    log: { level: 'debug' },
    concurrency: 2,
  }));
  child = spawn(process.execPath, [...SIDECAR_NODE_FLAGS, join(import.meta.dirname, '..', 'dist', 'cli', 'wren.js'), 'proxy', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'], cwd: dir });
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (output += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (output += d));
  const end = Date.now() + 30_000;
  let started: RegExpExecArray | null;
  while (!(started = /"msg":"proxy started".*?"inbound":(\d+),"admin":(\d+).*"workers":2/.exec(output)) && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  if (!started) throw new Error(`the proxy did not start: ${output.slice(-2000)}`);
  inboundPort = Number(started[1]);
  adminPort = Number(started[2]);
}, 60_000);

afterAll(async () => {
  if (child && child.exitCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
  await cp?.kill();
  await rm(dir, { recursive: true, force: true, maxRetries: 5 });
});

const admin = async (path: string) => httpText(adminPort, path);

/** The serial the inbound presents on a fresh mTLS connection (upper case, as /certs shows it). */
function presentedSerial(): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port: inboundPort, key: peer.keyPem, cert: peer.certPem, ca: issuer.trustBundlePem, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined });
    s.once('secureConnect', () => {
      resolve(s.getPeerCertificate().serialNumber.toUpperCase());
      s.destroy();
    });
    s.once('error', reject);
  });
}

async function perWorker(): Promise<number[]> {
  const m = (await admin('/metrics')).body;
  return [0, 1].map((w) => {
    const line = m.split('\n').find((l) => l.startsWith(`wren_worker_connections_total{worker="${w}"}`));
    return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
  });
}

const currentSerial = async () => (JSON.parse((await admin('/certs')).body) as { serial: string }).serial.toUpperCase();

test('every Certify renewal reaches both workers: fresh connections after it are served with the renewed certificate by each', async () => {
  const seen = new Set<string>();
  // Three renewals (one every ~2.8 s).
  for (let round = 0; round < 3; round++) {
    const before = await currentSerial();
    const end = Date.now() + 15_000;
    while ((await currentSerial()) === before && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    const serial = await currentSerial();
    expect(serial).not.toBe(before);
    const counts = await perWorker();
    // The rotation is a message to each worker: allow it a moment, never an old certificate after that.
    let got: string[];
    const until = Date.now() + 2000;
    do got = await Promise.all(Array.from({ length: CONNECTIONS }, presentedSerial));
    while (got.some((s) => s !== serial) && (await currentSerial()) === serial && Date.now() < until);
    if ((await currentSerial()) !== serial) continue; // renewed again meanwhile (a loaded machine): the next round checks that one
    expect(got).toEqual(Array(CONNECTIONS).fill(serial));
    const spread = (await perWorker()).map((v, i) => v - counts[i]);
    expect(Math.min(...spread)).toBeGreaterThan(0);
    seen.add(serial);
  }
  expect(seen.size).toBeGreaterThan(0);
  // Renewals were counted, and none failed.
  const m = (await admin('/metrics')).body;
  expect(Number(/^wren_identity_cert_renewals_total\{result="success"\} (\d+)/m.exec(m)?.[1])).toBeGreaterThanOrEqual(4);
  expect(m).not.toMatch(/^wren_identity_cert_renewals_total\{result="failure"\} [1-9]/m);
}, 60_000);

test('no admin page of the sidecar (the main thread, which holds the key the workers are sent) shows key material', async () => {
  const pages = ['/', '/ready', '/live', '/metrics', '/config_dump', '/clusters', '/certs', '/debug/route?authority=web&path=/', '/nowhere'];
  for (const page of pages) {
    const r = await admin(page);
    expect({ page, key: /PRIVATE KEY|keyPem|"key"\s*:/i.test(r.body) }).toEqual({ page, key: false });
  }
  // /config_dump names the certificates' source, and /certs the public certificate only.
  expect((await admin('/config_dump')).body).toContain('control plane Certify');
  expect(JSON.parse((await admin('/certs')).body)).toEqual(expect.objectContaining({ identity: `spiffe://${TD}/ns/default/sa/web`, serial: expect.any(String) }));
});

test('the private key of no renewal is in the logs, and the run dir holds only public certificates', async () => {
  expect(output).toMatch(/"msg":"certificate renewed"/);
  // Logs at debug level, the workers' lines relayed through the main thread's logger.
  expect(output).not.toMatch(/PRIVATE KEY/);
  const files = await readdir(join(dir, 'run'));
  expect(files.sort()).toEqual(['identity.crt', 'trust-bundle.crt']);
  for (const f of files) expect(await readFile(join(dir, 'run', f), 'utf8')).not.toMatch(/PRIVATE KEY/);
  // Nor anywhere else under its working directory.
  const all = await readdir(dir, { recursive: true });
  for (const f of all) {
    const text = await readFile(join(dir, f)).catch(() => null);
    if (text) expect(text.toString('latin1')).not.toMatch(/PRIVATE KEY/);
  }
});
