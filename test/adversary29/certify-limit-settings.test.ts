import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCsr, generateKeyPair } from '../../certs/index.js';
import { seededRandom, systemClock } from '../../common/clock.js';
import { silentLogger } from '../../common/logger.js';
import { generateIssuer } from '../../control-plane/identity/issuer.js';
import { parseControlPlaneArgs, startControlPlane } from '../../control-plane/main.js';
import { ControlPlane } from '../../control-plane/server.js';
import { DirSource } from '../../control-plane/sources/dir-source.js';

/**
 * The Certify limit (control-plane/identity/certify-limiter.ts) could only be set through the
 * embedded API, and nothing checked it there: a burst of 0 refused every Certify, a refill of
 * 0 or NaN turned the limit off, silently. `wren control-plane` now takes --certify-burst,
 * --certify-refill, --certify-fleet-burst and --certify-fleet-refill, and the embedded
 * options are checked at start with errors that name the field.
 */
const ID = 'spiffe://cluster.local/ns/shop/sa/web';
const csrPem = createCsr(generateKeyPair().privateKeyPem, ID);
let dir: string;
let cp: ControlPlane | null = null;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wren-adv29-certify-'));
  await mkdir(join(dir, 'mesh'));
  await writeFile(join(dir, 'tokens.yaml'), 'tokens:\n  - token: fleet-token-0123456789\n    namespace: shop\n    serviceAccount: web\n', { mode: 0o600 });
});

afterAll(async () => {
  await cp?.kill();
  await rm(dir, { recursive: true, force: true });
});

test('the flags reach the running identity service: the workload and the fleet bucket', async () => {
  cp = await startControlPlane(
    parseControlPlaneArgs([
      '--source', `dir:${join(dir, 'mesh')}`, '--listen', '127.0.0.1:0', '--admin', 'off', '--insecure', '--bootstrap-tokens', join(dir, 'tokens.yaml'),
      '--certify-burst', '2', '--certify-refill', '10m', '--certify-fleet-burst', '3', '--certify-fleet-refill', '5m',
    ], {}),
    silentLogger,
  );
  const id = cp.identity!;
  const byToken = () => id.certify({ identity: ID, token: Buffer.from('fleet-token-0123456789'), csrPem, requestedLifetimeMs: 0 });
  for (let i = 0; i < 3; i++) await byToken();
  // Real time passes between the calls: about 5 min to the next signature (not the default 1 s).
  const fleet = await byToken().then(() => null, (e: { reason: string; retryAfterMs: number }) => e);
  expect(fleet?.reason).toBe('rate_limited');
  expect(fleet!.retryAfterMs).toBeGreaterThan(240_000);
  expect(fleet!.retryAfterMs).toBeLessThanOrEqual(300_000);
  // A renewal by a certificate this process did not issue: a workload bucket of its own.
  const peer = { spiffeId: ID, namespace: 'shop', serviceAccount: 'web', notAfterMs: Date.now() + 3_600_000, serial: 'abc123' };
  const renew = () => id.certify({ identity: ID, token: Buffer.alloc(0), csrPem, requestedLifetimeMs: 0 }, 'peer', peer);
  for (let i = 0; i < 2; i++) await renew();
  // ...about 10 min to the next (not the default 1 min).
  const workload = await renew().then(() => null, (e: { reason: string; retryAfterMs: number }) => e);
  expect(workload?.reason).toBe('rate_limited');
  expect(workload!.retryAfterMs).toBeGreaterThan(540_000);
  expect(workload!.retryAfterMs).toBeLessThanOrEqual(600_000);
});

test.each([
  [{ burst: 0 }, /^identity\.certifyLimit\.burst: expected a number in 1\.\.100000, got 0$/],
  [{ refillMs: Number.NaN }, /^identity\.certifyLimit\.refillMs: expected a duration/],
  [{ bootstrapToken: { burst: 1.5 } }, /^identity\.certifyLimit\.bootstrapToken\.burst: expected an integer/],
  [{ brust: 3 } as object, /^identity\.certifyLimit\.brust: unknown field/],
])('embedded: %j is refused at start, the error naming the field', async (certifyLimit, msg) => {
  const start = ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, trustDomain: 'cluster.local', clock: systemClock, random: seededRandom(1), logger: silentLogger,
    source: (ctx) => new DirSource({ ...ctx, dir: join(dir, 'mesh') }),
    identity: { issuer: generateIssuer('cluster.local'), authenticator: null, certifyLimit },
  });
  await expect(start).rejects.toThrow(msg);
});
