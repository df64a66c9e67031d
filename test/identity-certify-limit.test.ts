import * as grpc from '@grpc/grpc-js';
import { X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCsr, generateKeyPair, splitPemCerts } from '../certs/index.js';
import { readCert } from '../certs/x509.js';
import { seededRandom, systemClock, systemRandom } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { controlPlaneSpiffeId } from '../contract/identity.js';
import { BOOTSTRAP_TOKEN_BURST, CERTIFY_BURST } from '../control-plane/identity/certify-limiter.js';
import { generateIssuer, type Issuer } from '../control-plane/identity/issuer.js';
import { BootstrapTokenAuthenticator } from '../control-plane/identity/bootstrap-token-authenticator.js';
import { TokenReviewAuthenticator } from '../control-plane/identity/token-review-authenticator.js';
import { ControlPlane } from '../control-plane/server.js';
import { DirSource } from '../control-plane/sources/dir-source.js';
import { CertifyClient } from '../proxy/identity/certify-client.js';
import { CONTROL_PLANE_CHANNEL_OPTIONS, controlPlaneCredentials, presentCertificate } from '../proxy/identity/control-plane-credentials.js';
import { WorkloadIdentity } from '../proxy/identity/workload-identity.js';
import { FakeKubeApi } from './fake-kube-api.js';
import { waitFor } from './control-plane-harness.js';

/**
 * The Certify limit per workload (control-plane/identity/certify-limiter.ts) over the real
 * path: TLS gRPC, tokens checked by TokenReview through @kubernetes/client-node against the
 * fake API server (bound to pods web-0 and web-1), renewals by client certificate. Before it,
 * one certificate renewing itself back to back got about 390 signatures a second (adv21).
 */
const TD = 'cluster.local';
const WEB = `spiffe://${TD}/ns/shop/sa/web`;
const TTL_MS = 2000;

let dir: string;
let api: FakeKubeApi;
let issuer: Issuer;
let cp: ControlPlane;
const cps: ControlPlane[] = [];
const clients: CertifyClient[] = [];

async function startCp(certTtlMs: number): Promise<ControlPlane> {
  cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, trustDomain: TD, clock: systemClock, random: seededRandom(1), logger: silentLogger,
    source: (ctx) => new DirSource({ ...ctx, dir: join(dir, 'mesh') }),
    identity: { issuer, authenticator: TokenReviewAuthenticator.fromKubeConfig(api.kubeConfig(), { clock: systemClock }), certTtlMs },
    transport: 'tls',
  });
  cps.push(cp);
  return cp;
}

async function refused(reason: string): Promise<number> {
  const v = (await cp.metrics.registry.getSingleMetric('wren_identity_certificates_refused_total')!.get()).values;
  return v.find((x) => x.labels.reason === reason)?.value ?? 0;
}

function client(): { c: CertifyClient; creds: grpc.ChannelCredentials } {
  const creds = controlPlaneCredentials(issuer.trustBundlePem, controlPlaneSpiffeId(TD));
  const c = new CertifyClient(`127.0.0.1:${cp.grpcPort}`, creds, CONTROL_PLANE_CHANNEL_OPTIONS);
  clients.push(c);
  return { c, creds };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wren-certify-limit-'));
  await mkdir(join(dir, 'mesh'));
  api = await FakeKubeApi.start();
  api.tokens.set('tok-web-0', { username: 'system:serviceaccount:shop:web', audiences: ['wren-identity'], pod: 'web-0' });
  api.tokens.set('tok-web-1', { username: 'system:serviceaccount:shop:web', audiences: ['wren-identity'], pod: 'web-1' });
  api.tokens.set('tok-web-2', { username: 'system:serviceaccount:shop:web', audiences: ['wren-identity'], pod: 'web-2' });
  api.tokens.set('tok-web-3', { username: 'system:serviceaccount:shop:web', audiences: ['wren-identity'], pod: 'web-3' });
  // A StatefulSet's pod db-0, then db-0 created again: the same name, another UID.
  api.tokens.set('tok-db-0-first', { username: 'system:serviceaccount:shop:web', audiences: ['wren-identity'], pod: 'db-0', podUid: '3f0e2c4a-0000-4000-8000-00000000000a' });
  api.tokens.set('tok-db-1', { username: 'system:serviceaccount:shop:web', audiences: ['wren-identity'], pod: 'db-1', podUid: '3f0e2c4a-0000-4000-8000-00000000001a' });
  api.tokens.set('tok-db-0-again', { username: 'system:serviceaccount:shop:web', audiences: ['wren-identity'], pod: 'db-0', podUid: '3f0e2c4a-0000-4000-8000-00000000000b' });
  issuer = generateIssuer(TD, new Date(Date.now() - 3_600_000));
});

afterAll(async () => {
  for (const c of clients) c.close();
  for (const c of cps) await c.kill();
  await api?.close();
  await rm(dir, { recursive: true, force: true });
});

test('one certificate renewing itself back to back gets the burst, then RESOURCE_EXHAUSTED with grpc-retry-pushback-ms, counted; another pod is served', async () => {
  await startCp(24 * 3_600_000);
  const { c, creds } = client();
  const keyPem = generateKeyPair().privateKeyPem;
  const csrPem = createCsr(keyPem, WEB);
  const first = await c.certify({ identity: WEB, token: Buffer.from('tok-web-0'), csrPem, requestedLifetimeMs: 0 }, 5000);
  presentCertificate(creds, { keyPem, certChainPem: first.certChainPem });
  const outcomes: (grpc.ServiceError | null)[] = [];
  for (let i = 0; i < 3 * CERTIFY_BURST; i++)
    outcomes.push(await c.certify({ identity: WEB, token: Buffer.alloc(0), csrPem, requestedLifetimeMs: 0 }, 5000).then(() => null, (e: grpc.ServiceError) => e));
  expect(outcomes.filter((o) => o === null)).toHaveLength(CERTIFY_BURST - 1);
  const refusals = outcomes.filter((o) => o !== null);
  expect(refusals.map((e) => e!.code)).toEqual(refusals.map(() => grpc.status.RESOURCE_EXHAUSTED));
  const pushback = Number(refusals[0]!.metadata.get('grpc-retry-pushback-ms')[0]);
  expect(pushback).toBeGreaterThan(0);
  expect(pushback).toBeLessThanOrEqual(60_000);
  expect(await refused('rate_limited')).toBe(refusals.length);
  // The same pod with a new token (the kubelet refreshes it) is the same workload; another pod is not.
  // (On a channel of its own: `c` presents the certificate, and the call would renew by it.)
  const again = await client().c.certify({ identity: WEB, token: Buffer.from('tok-web-0'), csrPem, requestedLifetimeMs: 0 }, 5000).then(() => null, (e: grpc.ServiceError) => e);
  expect(again?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  const other = client().c;
  expect((await other.certify({ identity: WEB, token: Buffer.from('tok-web-1'), csrPem, requestedLifetimeMs: 0 }, 5000)).certChainPem).toContain('BEGIN CERTIFICATE');
});

test('a sidecar renewing by its own schedule, by certificate, is never refused, even with --cert-ttl 2s', async () => {
  await startCp(TTL_MS);
  const { c, creds } = client();
  const wi = new WorkloadIdentity({
    spiffeId: WEB, certify: c.certify, readToken: async () => Buffer.from('tok-web-2'), clock: systemClock, random: systemRandom, logger: silentLogger,
  });
  const tls = await wi.obtain(10_000);
  presentCertificate(creds, tls.material);
  tls.onRotate(() => presentCertificate(creds, tls.material));
  wi.start();
  try {
    await waitFor(() => wi.counts.success >= 2 * CERTIFY_BURST, `${2 * CERTIFY_BURST} certificates`, 20_000);
  } finally {
    wi.stop();
  }
  expect(wi.counts.failure).toBe(0);
  expect(await refused('rate_limited')).toBe(0);
}, 30_000);

test('two replicas sharing the CA: a sidecar renewing at one then the other spends one budget, not a full bucket at each renewal (adv41)', async () => {
  // Each replica (its own process state, as two pods of the Deployment) behind its own channel.
  const replicas = [await startCp(24 * 3_600_000), await startCp(24 * 3_600_000)];
  const keyPem = generateKeyPair().privateKeyPem;
  const csrPem = createCsr(keyPem, WEB);
  const channels = replicas.map((r) => {
    const creds = controlPlaneCredentials(issuer.trustBundlePem, controlPlaneSpiffeId(TD));
    const c = new CertifyClient(`127.0.0.1:${r.grpcPort}`, creds, CONTROL_PLANE_CHANNEL_OPTIONS);
    clients.push(c);
    return { c, creds };
  });
  let cert = await channels[0].c.certify({ identity: WEB, token: Buffer.from('tok-web-3'), csrPem, requestedLifetimeMs: 0 }, 5000);
  const firstCert = cert;
  // The state is in the certificate every TLS peer of the sidecar reads: it names the pod only
  // as a digest (the same under every CA: its token named no UID here), never web-3 in the clear.
  const stateOf = (pem: string): string => readCert(splitPemCerts(pem)[0]).ext.certifyState ?? '';
  const podKey = /^wren certify-limit v1 \d+(?:\.\d+)? \d+ (pod shop\/web [0-9a-f]{32})$/.exec(stateOf(cert.certChainPem))?.[1];
  expect([stateOf(cert.certChainPem), podKey]).toEqual([expect.not.stringContaining('web-3'), expect.any(String)]);
  const outcomes: (grpc.ServiceError | null)[] = [];
  for (let i = 1; i <= 3 * CERTIFY_BURST; i++) {
    // Each renewal at the other replica, by the newest certificate (the one the other issued).
    const { c, creds } = channels[i % 2];
    presentCertificate(creds, { keyPem, certChainPem: cert.certChainPem });
    const r = await c.certify({ identity: WEB, token: Buffer.alloc(0), csrPem, requestedLifetimeMs: 0 }, 5000).then((x) => x, (e: grpc.ServiceError) => e);
    if ('certChainPem' in r) {
      cert = r;
      outcomes.push(null);
    } else outcomes.push(r);
  }
  // The other replica's certificate carries the same key.
  expect(stateOf(cert.certChainPem)).toMatch(new RegExp(` ${podKey}$`));
  // Keyed by the serials each replica issued, every renewal at the other one was a full bucket: all 15 signed.
  expect(outcomes.filter((o) => o === null)).toHaveLength(CERTIFY_BURST - 1);
  expect(outcomes.filter((o) => o !== null).map((e) => e!.code)).toEqual(Array(2 * CERTIFY_BURST + 1).fill(grpc.status.RESOURCE_EXHAUSTED));
  // What the chain spent is in each replica's bucket for the pod: its token gets nothing more at
  // either, nor its first certificate (which says 4 were left): an older certificate is worth no
  // more than the replica's own record of the key.
  for (const [i, { c, creds }] of channels.entries()) {
    // The token on a channel that presents no certificate (these present one: the call would renew by it).
    const tokenOnly = new CertifyClient(`127.0.0.1:${replicas[i].grpcPort}`, controlPlaneCredentials(issuer.trustBundlePem, controlPlaneSpiffeId(TD)), CONTROL_PLANE_CHANNEL_OPTIONS);
    clients.push(tokenOnly);
    const byToken = await tokenOnly.certify({ identity: WEB, token: Buffer.from('tok-web-3'), csrPem, requestedLifetimeMs: 0 }, 5000).then(() => null, (e: grpc.ServiceError) => e);
    expect(byToken?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    presentCertificate(creds, { keyPem, certChainPem: firstCert.certChainPem });
    const byOlder = await c.certify({ identity: WEB, token: Buffer.alloc(0), csrPem, requestedLifetimeMs: 0 }, 5000).then(() => null, (e: grpc.ServiceError) => e);
    expect(byOlder?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  }
  expect(stateOf(firstCert.certChainPem)).toMatch(/^wren certify-limit v1 4\.\d{3} /);
  // A replica with no record of the pod (a third one, or one restarted) believes what the
  // certificate says: that replica's budget at most, as the pod's token would get there.
  const third = await startCp(24 * 3_600_000);
  const creds = controlPlaneCredentials(issuer.trustBundlePem, controlPlaneSpiffeId(TD));
  const c3 = new CertifyClient(`127.0.0.1:${third.grpcPort}`, creds, CONTROL_PLANE_CHANNEL_OPTIONS);
  clients.push(c3);
  presentCertificate(creds, { keyPem, certChainPem: firstCert.certChainPem });
  const atThird = await c3.certify({ identity: WEB, token: Buffer.alloc(0), csrPem, requestedLifetimeMs: 0 }, 5000);
  expect(stateOf(atThird.certChainPem)).toMatch(new RegExp(`^wren certify-limit v1 3\\.\\d{3} \\d+ ${podKey}$`));
});

test('a certificate signed when the state named its pod (`pod shop/web-4`) renews into one that does not, from what it had left', async () => {
  await startCp(24 * 3_600_000);
  const { c, creds } = client();
  const keyPem = generateKeyPair().privateKeyPem;
  const csrPem = createCsr(keyPem, WEB);
  // As a control plane before 2026-12-07 wrote it: one signature left.
  const old = issuer.ca.issue(csrPem, { identity: WEB, ttlMs: 3_600_000, certifyState: `wren certify-limit v1 1.000 ${Date.now()} pod shop/web-4` });
  presentCertificate(creds, { keyPem, certChainPem: old.certPem + old.chainPems.join('') });
  const renewed = await c.certify({ identity: WEB, token: Buffer.alloc(0), csrPem, requestedLifetimeMs: 0 }, 5000);
  const state = readCert(splitPemCerts(renewed.certChainPem)[0]).ext.certifyState ?? '';
  expect(state).toMatch(/^wren certify-limit v1 0(?:\.\d+)? \d+ pod shop\/web [0-9a-f]{32}$/);
  expect(state).not.toContain('web-4');
  // The budget went with it: nothing left, by that certificate or by the new one.
  presentCertificate(creds, { keyPem, certChainPem: renewed.certChainPem });
  const again = await c.certify({ identity: WEB, token: Buffer.alloc(0), csrPem, requestedLifetimeMs: 0 }, 5000).then(() => null, (e: grpc.ServiceError) => e);
  expect(again?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
});

test('a StatefulSet\'s pod created again under its name (TokenReview names another pod-uid) starts with a full budget, not what its predecessor left', async () => {
  await startCp(24 * 3_600_000);
  const { c } = client();
  const csrPem = createCsr(generateKeyPair().privateKeyPem, WEB);
  const call = (token: string): Promise<grpc.ServiceError | null> =>
    c.certify({ identity: WEB, token: Buffer.from(token), csrPem, requestedLifetimeMs: 0 }, 5000).then(() => null, (e: grpc.ServiceError) => e);
  for (let i = 0; i < CERTIFY_BURST; i++) expect(await call('tok-db-0-first')).toBeNull();
  expect((await call('tok-db-0-first'))?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  // Keyed by namespace and name, the new pod was refused at start: its sidecar waited out the old pod's budget.
  for (let i = 0; i < CERTIFY_BURST; i++) expect(await call('tok-db-0-again')).toBeNull();
  expect((await call('tok-db-0-again'))?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
});

test('an issuer rotated to a new CA while the control plane runs (the old root still in the bundle): the pod\'s certificates of the old CA renew from what they carry, and its token shares that bucket', async () => {
  const next = generateIssuer(TD, new Date(Date.now() - 3_600_000));
  const bundle = issuer.trustBundlePem + next.trustBundlePem;
  // As issuer-reloader.ts swaps it: a snapshot per call, listeners told after the swap.
  let current: Issuer = { ca: issuer.ca, trustBundlePem: bundle, source: 'test' };
  const listeners = new Set<() => void>();
  const rotating: Issuer = {
    get ca() { return current.ca; }, get trustBundlePem() { return current.trustBundlePem; }, source: 'test', snapshot: () => current,
    onChange: (fn) => (listeners.add(fn), () => void listeners.delete(fn)),
  };
  cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, trustDomain: TD, clock: systemClock, random: seededRandom(1), logger: silentLogger,
    source: (ctx) => new DirSource({ ...ctx, dir: join(dir, 'mesh') }),
    identity: { issuer: rotating, authenticator: TokenReviewAuthenticator.fromKubeConfig(api.kubeConfig(), { clock: systemClock }), certTtlMs: 24 * 3_600_000 },
    transport: 'tls',
  });
  cps.push(cp);
  const creds = controlPlaneCredentials(bundle, controlPlaneSpiffeId(TD));
  const c = new CertifyClient(`127.0.0.1:${cp.grpcPort}`, creds, CONTROL_PLANE_CHANNEL_OPTIONS);
  clients.push(c);
  const keyPem = generateKeyPair().privateKeyPem;
  const csrPem = createCsr(keyPem, WEB);
  const byCert = (certChainPem: string) => {
    presentCertificate(creds, { keyPem, certChainPem });
    return c.certify({ identity: WEB, token: Buffer.alloc(0), csrPem, requestedLifetimeMs: 0 }, 5000);
  };
  // The token on a channel of its own, which presents no certificate (one that did would renew by it).
  const tokenOnly = new CertifyClient(`127.0.0.1:${cp.grpcPort}`, controlPlaneCredentials(bundle, controlPlaneSpiffeId(TD)), CONTROL_PLANE_CHANNEL_OPTIONS);
  clients.push(tokenOnly);
  const byToken = () => tokenOnly.certify({ identity: WEB, token: Buffer.from('tok-db-1'), csrPem, requestedLifetimeMs: 0 }, 5000);
  let cert = await byToken();
  for (let i = 1; i < CERTIFY_BURST - 1; i++) cert = await byCert(cert.certChainPem);
  current = { ca: next.ca, trustBundlePem: bundle, source: 'test' };
  for (const fn of listeners) fn();
  // One signature left: the old CA's certificate is believed and spends it; the new certificate is the new CA's.
  const last = await byCert(cert.certChainPem);
  expect(new X509Certificate(splitPemCerts(last.certChainPem)[0]).checkIssued(new X509Certificate(next.ca.certPem))).toBe(true);
  // Neither the pod's token (under the new CA's HMAC key, a bucket of its own before) nor the new certificate gets more.
  const refused = (p: Promise<unknown>) => p.then(() => null, (e: grpc.ServiceError) => e.code);
  expect(await refused(byToken())).toBe(grpc.status.RESOURCE_EXHAUSTED);
  expect(await refused(byCert(last.certChainPem))).toBe(grpc.status.RESOURCE_EXHAUSTED);
});

describe('bootstrap tokens', () => {
  const T1 = 'bootstrap-token-one-0123456789';
  const T2 = 'bootstrap-token-two-0123456789';
  const CART = `spiffe://${TD}/ns/shop/sa/cart`;

  async function startBootstrapCp(): Promise<ControlPlane> {
    cp = await ControlPlane.start({
      listen: '127.0.0.1:0', admin: null, trustDomain: TD, clock: systemClock, random: seededRandom(1), logger: silentLogger,
      source: (ctx) => new DirSource({ ...ctx, dir: join(dir, 'mesh') }),
      identity: {
        issuer,
        authenticator: new BootstrapTokenAuthenticator([{ token: T1, namespace: 'shop', serviceAccount: 'web' }, { token: T2, namespace: 'shop', serviceAccount: 'web' }]),
        certTtlMs: 24 * 3_600_000,
        // The default burst; a refill slower than the default second, so what the calls below get does not depend on how fast they run.
        certifyLimit: { bootstrapToken: { refillMs: 60_000 } },
      },
      transport: 'tls',
    });
    cps.push(cp);
    return cp;
  }

  const outcome = (p: Promise<unknown>): Promise<grpc.ServiceError | null> => p.then(() => null, (e: grpc.ServiceError) => e);

  test('one token gets its fleet\'s burst, then RESOURCE_EXHAUSTED with pushback, counted: however it is spelled, whatever identity is asked, and for the certificates it got', async () => {
    await startBootstrapCp();
    const { c, creds } = client();
    const keyPem = generateKeyPair().privateKeyPem;
    const csrPem = createCsr(keyPem, WEB);
    const first = await c.certify({ identity: WEB, token: Buffer.from(T1), csrPem, requestedLifetimeMs: 0 }, 5000);
    const outcomes: (grpc.ServiceError | null)[] = [];
    // The same secret as the authenticator reads it (trimmed), each spelling a would-be bucket of its own.
    const spellings = [T1, `${T1}\n`, ` ${T1}`, `\t${T1} \r\n`];
    // Five at a time, as a fleet booting together would call.
    for (let i = 0; i < 2 * BOOTSTRAP_TOKEN_BURST; i += 5)
      outcomes.push(...(await Promise.all(Array.from({ length: 5 }, (_, k) =>
        outcome(c.certify({ identity: WEB, token: Buffer.from(spellings[(i + k) % spellings.length]), csrPem, requestedLifetimeMs: k % 2 === 0 ? 0 : 60_000 }, 5000))))));
    expect(outcomes.filter((o) => o === null)).toHaveLength(BOOTSTRAP_TOKEN_BURST - 1);
    const refusals = outcomes.filter((o) => o !== null);
    expect(refusals.map((e) => e!.code)).toEqual(refusals.map(() => grpc.status.RESOURCE_EXHAUSTED));
    const pushback = Number(refusals[0]!.metadata.get('grpc-retry-pushback-ms')[0]);
    expect(pushback).toBeGreaterThan(0);
    expect(pushback).toBeLessThanOrEqual(60_000);
    expect(await refused('rate_limited')).toBe(refusals.length);
    // Another identity: the token does not prove it, nothing is signed, the bucket is no fuller or emptier.
    const other = await outcome(c.certify({ identity: CART, token: Buffer.from(T1), csrPem: createCsr(keyPem, CART), requestedLifetimeMs: 0 }, 5000));
    expect(other?.code).toBe(grpc.status.PERMISSION_DENIED);
    // A certificate the token got renews on the token's account, not on a full bucket of its own.
    presentCertificate(creds, { keyPem, certChainPem: first.certChainPem });
    expect((await outcome(c.certify({ identity: WEB, token: Buffer.alloc(0), csrPem, requestedLifetimeMs: 0 }, 5000)))?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    // Another token for the same workload is another bucket.
    const second = client().c;
    expect((await second.certify({ identity: WEB, token: Buffer.from(T2), csrPem, requestedLifetimeMs: 0 }, 5000)).certChainPem).toContain('BEGIN CERTIFICATE');
  });

  test('unknown tokens keep nothing in the limiter: its memory is the tokens that signed', async () => {
    await startBootstrapCp();
    const { c } = client();
    const csrPem = createCsr(generateKeyPair().privateKeyPem, WEB);
    const bad = await Promise.all(Array.from({ length: 200 }, (_, i) => outcome(c.certify({ identity: WEB, token: Buffer.from(`not-a-token-${i}-0123456789`), csrPem, requestedLifetimeMs: 0 }, 5000))));
    expect(bad.map((e) => e?.code)).toEqual(bad.map(() => grpc.status.UNAUTHENTICATED));
    expect(cp.identity!.limiter.size).toEqual({ buckets: 0 });
    await c.certify({ identity: WEB, token: Buffer.from(T1), csrPem, requestedLifetimeMs: 0 }, 5000);
    expect(cp.identity!.limiter.size).toEqual({ buckets: 1 });
  });
});
