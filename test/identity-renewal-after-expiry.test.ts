import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { seededRandom, systemClock, systemRandom } from '../common/clock.js';
import { createLogger, silentLogger } from '../common/logger.js';
import { BootstrapTokenAuthenticator } from '../control-plane/identity/bootstrap-token-authenticator.js';
import { generateIssuer } from '../control-plane/identity/issuer.js';
import { ControlPlane } from '../control-plane/server.js';
import { DirSource } from '../control-plane/sources/dir-source.js';
import { CertifyClient } from '../proxy/identity/certify-client.js';
import { CONTROL_PLANE_CHANNEL_OPTIONS, controlPlaneCredentials, presentCertificate } from '../proxy/identity/control-plane-credentials.js';
import { WorkloadIdentity } from '../proxy/identity/workload-identity.js';

/**
 * A sidecar whose certificate expired while it could not reach the control plane: its
 * channel still presents that certificate (the last one it was given), and the control
 * plane, which asks for a client certificate without requiring one, must take the call on
 * the token instead of refusing it, or the sidecar would stay locked out until restarted.
 * Real control plane (TLS, bootstrap tokens, 2-second certificates), real Certify channel.
 */
const TD = 'cluster.local';
const TOKEN = 'bootstrap-token-web-0123456789abcdef';
const ID = `spiffe://${TD}/ns/default/sa/web`;

let dir: string;
let cp: ControlPlane;
let client: CertifyClient;
let wi: WorkloadIdentity;
const cpLogs: string[] = [];
/** The control plane as the sidecar sees it: unreachable while set. */
let away = false;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wren-renew-expired-'));
  await mkdir(join(dir, 'mesh'));
  await writeFile(join(dir, 'tokens.yaml'), `tokens:\n  - { token: ${TOKEN}, namespace: default, serviceAccount: web }\n`);
  const issuer = generateIssuer(TD, new Date(Date.now() - 3_600_000));
  cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, trustDomain: TD, clock: systemClock, random: seededRandom(5), logger: createLogger({ sink: (l) => void cpLogs.push(l) }),
    source: (ctx) => new DirSource({ ...ctx, dir: join(dir, 'mesh') }),
    identity: { issuer, authenticator: BootstrapTokenAuthenticator.fromFile(join(dir, 'tokens.yaml')), certTtlMs: 2000 },
    transport: 'tls',
  });
  const creds = controlPlaneCredentials(issuer.trustBundlePem, cp.serving!.spiffeId);
  client = new CertifyClient(`127.0.0.1:${cp.grpcPort}`, creds, CONTROL_PLANE_CHANNEL_OPTIONS);
  wi = new WorkloadIdentity({
    spiffeId: ID, readToken: async () => Buffer.from(TOKEN), clock: systemClock, random: systemRandom, logger: silentLogger,
    policy: { retryMaxMs: 400 },
    certify: (req, timeoutMs, signal) => (away ? Promise.reject(Object.assign(new Error('14 UNAVAILABLE'), { code: 14, details: 'unreachable' })) : client.certify(req, timeoutMs, signal)),
  });
  const tls = await wi.obtain(10_000);
  // As connectControlPlane does: the channel presents the current certificate, renewal after renewal.
  presentCertificate(creds, tls.material);
  tls.onRotate(() => presentCertificate(creds, tls.material));
  wi.start();
}, 30_000);

afterAll(async () => {
  wi?.stop();
  client?.close();
  await cp?.kill();
  await rm(dir, { recursive: true, force: true, maxRetries: 5 });
});

const issuedVia = () => cpLogs.map((l) => JSON.parse(l) as { msg: string; via?: string; identity?: string }).filter((l) => l.msg === 'certificate issued' && l.identity === ID).map((l) => l.via);

test('renewal after the certificate expired: the expired certificate the channel presents does not lock the sidecar out; the token signs', async () => {
  // A renewal by certificate first (the channel presents the one Certify gave).
  const end = Date.now() + 10_000;
  while (!issuedVia().includes('client-certificate') && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  expect(issuedVia()).toContain('client-certificate');
  // The control plane is away for longer than the certificate lives.
  away = true;
  await wi.settled(); // a renewal already on the wire completes
  const last = wi.tls.leaf().serialNumber;
  const notAfter = wi.tls.notAfterMs;
  while (Date.now() <= notAfter + 500) await new Promise((r) => setTimeout(r, 50));
  expect(wi.tls.leaf().serialNumber).toBe(last);
  expect(wi.counts.failure).toBeGreaterThan(0);
  const before = issuedVia().length;
  // Back: the next try presents the expired certificate and is signed on the token.
  away = false;
  const until = Date.now() + 10_000;
  while (wi.tls.leaf().serialNumber === last && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  expect(wi.tls.leaf().serialNumber).not.toBe(last);
  expect(wi.tls.notAfterMs).toBeGreaterThan(Date.now());
  expect(issuedVia()[before]).toBe('bootstrap');
}, 30_000);
