import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { createCsr, generateKeyPair, splitPemCerts } from '../../certs/index.js';
import { parseExtensions } from '../../certs/x509.js';
import { FakeClock } from '../../common/clock.js';
import { createLogger } from '../../common/logger.js';
import { AuthError, type Authenticator } from './authenticator.js';
import { BootstrapTokenAuthenticator } from './bootstrap-token-authenticator.js';
import { IdentityMetrics } from './identity-metrics.js';
import { BOOTSTRAP_TOKEN_BURST, BOOTSTRAP_TOKEN_REFILL_MS, CERTIFY_BURST, MAX_CERTIFY_REFILL_MS } from './certify-limiter.js';
import { CertifyError, IdentityService } from './identity-service.js';
import { generateIssuer, type Issuer } from './issuer.js';
import { TokenReviewAuthenticator, type TokenReviewApi } from './token-review-authenticator.js';
import { IDENTITY_TOKEN_AUDIENCE } from '../../contract/identity.js';

const ID = 'spiffe://cluster.local/ns/shop/sa/web';
const issuer = generateIssuer('cluster.local');
const csrPem = createCsr(generateKeyPair().privateKeyPem, ID);

function service(authenticator: Authenticator | null, certTtlMs?: number, logs: string[] = [], registry = new Registry()): IdentityService {
  return new IdentityService({
    issuer, authenticator, certTtlMs, clock: new FakeClock(Date.now()), logger: createLogger({ sink: (l) => void logs.push(l), level: 'debug' }),
    metrics: new IdentityMetrics(registry, issuer),
  });
}

const proves = (namespace: string, serviceAccount: string): Authenticator => ({ name: 'fake', authenticate: async () => ({ namespace, serviceAccount, via: 'fake' }) });
/** TokenReview of a pod-bound token: the pod is named by the token (`token-of-pod-a`: the pod a). */
const provesPod: Authenticator = { name: 'fake', authenticate: async (t) => ({ namespace: 'shop', serviceAccount: 'web', via: 'tokenreview', pod: t.toString().replace(/^token-of-/, '') }) };
const failsWith = (e: Error): Authenticator => ({ name: 'fake', authenticate: async () => Promise.reject(e) });

async function status(s: IdentityService, req: Partial<Parameters<IdentityService['certify']>[0]> = {}): Promise<number> {
  try {
    await s.certify({ identity: ID, token: Buffer.from('secret-token-value'), csrPem, requestedLifetimeMs: 0, ...req });
    return grpc.status.OK;
  } catch (e) {
    expect(e).toBeInstanceOf(CertifyError);
    return (e as CertifyError).status;
  }
}

describe('IdentityService', () => {
  test('maps each failure to its gRPC status', async () => {
    expect(await status(service(null))).toBe(grpc.status.FAILED_PRECONDITION);
    expect(await status(service(failsWith(new AuthError('unavailable', 'API server down'))))).toBe(grpc.status.UNAVAILABLE);
    expect(await status(service(failsWith(new AuthError('unauthenticated', 'bad token'))))).toBe(grpc.status.UNAUTHENTICATED);
    expect(await status(service(failsWith(new Error('boom'))))).toBe(grpc.status.UNAVAILABLE);
    expect(await status(service(proves('shop', 'cart')))).toBe(grpc.status.PERMISSION_DENIED);
    expect(await status(service(proves('shop', 'web')), { requestedLifetimeMs: 500 })).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await status(service(proves('shop', 'web')), { identity: 'spiffe://cluster.local/web' })).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await status(service(proves('shop', 'web')), { csrPem: '' })).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await status(service(proves('shop', 'web')))).toBe(grpc.status.OK);
  });

  test('TokenReview limits and CSR key refusals have their own status and refusal reason', async () => {
    const cases: [Authenticator, Partial<Parameters<IdentityService['certify']>[0]>, number, string][] = [
      [failsWith(new AuthError('unavailable', 'no answer within 5000 ms', { limit: 'timeout' })), {}, grpc.status.UNAVAILABLE, 'authenticator_timeout'],
      [failsWith(new AuthError('unavailable', '32 in flight', { limit: 'overloaded' })), {}, grpc.status.RESOURCE_EXHAUSTED, 'authenticator_overloaded'],
      [failsWith(new AuthError('unavailable', 'caller went away', { limit: 'abandoned' })), {}, grpc.status.CANCELLED, 'cancelled'],
      [proves('shop', 'web'), { csrPem: createCsr(generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 3 }).privateKey.export({ type: 'pkcs1', format: 'pem' }) as string, ID) }, grpc.status.OK, ''],
      [proves('shop', 'web'), { csrPem: createCsr(generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs1', format: 'pem' }) as string, ID) }, grpc.status.INVALID_ARGUMENT, 'unsupported_key'],
      [proves('shop', 'web'), { csrPem: csrPem + ' '.repeat(8192) }, grpc.status.INVALID_ARGUMENT, 'csr_too_large'],
    ];
    for (const [authenticator, req, code, reason] of cases) {
      const registry = new Registry();
      expect(await status(service(authenticator, undefined, [], registry), req)).toBe(code);
      const refused = (await registry.getSingleMetric('wren_identity_certificates_refused_total')!.get()).values;
      expect(refused.map((v) => [v.labels.reason, v.value])).toEqual(reason ? [[reason, 1]] : []);
    }
  });

  test('requested lifetimes are honoured up to the configured one', async () => {
    const s = service(proves('shop', 'web'), 120_000);
    const now = Date.now();
    const capped = await s.certify({ identity: ID, token: Buffer.from('t'), csrPem, requestedLifetimeMs: 3_600_000 });
    expect(Math.abs(capped.validUntilMs - now - 120_000)).toBeLessThan(2000);
    const shorter = await s.certify({ identity: ID, token: Buffer.from('t'), csrPem, requestedLifetimeMs: 5000 });
    expect(Math.abs(shorter.validUntilMs - now - 5000)).toBeLessThan(2000);
    expect(() => service(null, 10)).toThrow(/lifetime must be between/);
  });

  test('renewal by certificate: the certificate must be current at the call, not only at its connection\'s handshake (adv16)', async () => {
    const clock = new FakeClock(Date.now());
    const logs: string[] = [];
    const s = new IdentityService({ issuer, authenticator: failsWith(new AuthError('unauthenticated', 'no token was presented')), clock, logger: createLogger({ sink: (l) => void logs.push(l), level: 'debug' }), metrics: new IdentityMetrics(new Registry(), issuer) });
    const client = { spiffeId: ID, namespace: 'shop', serviceAccount: 'web', notAfterMs: clock.wallNow() + 1000, serial: 'ab' };
    const req = { identity: ID, token: Buffer.alloc(0), csrPem, requestedLifetimeMs: 0 };
    expect((await s.certify(req, 'peer', client)).certChainPem).toContain('BEGIN CERTIFICATE');
    clock.advance(1000);
    await expect(s.certify(req, 'peer', client)).rejects.toMatchObject({ status: grpc.status.UNAUTHENTICATED });
    expect(logs.join('\n')).toContain('client certificate expired');
  });

  test('signatures per workload are bounded: a chain of renewals by certificate shares one bucket, RESOURCE_EXHAUSTED with a pushback past it (adv21)', async () => {
    const clock = new FakeClock(Date.now());
    const registry = new Registry();
    const logs: string[] = [];
    const s = new IdentityService({
      issuer, authenticator: provesPod, clock, logger: createLogger({ sink: (l) => void logs.push(l) }), metrics: new IdentityMetrics(registry, issuer),
      acceptClientCertificates: false,
    });
    const req = { identity: ID, token: Buffer.alloc(0), csrPem, requestedLifetimeMs: 0 };
    const peerOf = (r: { certChainPem: string }) => {
      const c = new X509Certificate(r.certChainPem);
      // As peer-certificate.ts reads a client certificate: the Certify limit's state with it.
      return { spiffeId: ID, namespace: 'shop', serviceAccount: 'web', notAfterMs: new Date(c.validTo).getTime(), serial: c.serialNumber, certifyState: parseExtensions(c.raw).certifyState };
    };
    // The first certificate by token, then each renewal presents the certificate just issued:
    // keyed by serial, every new certificate would have come with a full bucket of its own.
    let cert = await s.certify({ ...req, token: Buffer.from('token-of-pod-a') }, 'peer');
    for (let i = 1; i < CERTIFY_BURST; i++) cert = await s.certify(req, 'peer', peerOf(cert));
    const refused = await s.certify(req, 'peer', peerOf(cert)).then(() => null, (e: CertifyError) => e);
    expect(refused).toMatchObject({ status: grpc.status.RESOURCE_EXHAUSTED, reason: 'rate_limited' });
    // 24 h certificates: one more a minute.
    expect(refused!.retryAfterMs).toBe(MAX_CERTIFY_REFILL_MS);
    // A flood of refusals is counted, and logged once (not a line per call).
    for (let i = 0; i < 50; i++) await s.certify(req, 'peer', peerOf(cert)).catch(() => undefined);
    const counted = (await registry.getSingleMetric('wren_identity_certificates_refused_total')!.get()).values;
    expect(counted.map((v) => [v.labels.reason, v.value])).toEqual([['rate_limited', 51]]);
    expect(logs.filter((l) => l.includes('certificate refused'))).toHaveLength(1);
    // Another workload (its own token) is not affected.
    expect((await s.certify({ ...req, token: Buffer.from('token-of-pod-b') }, 'peer')).certChainPem).toContain('BEGIN CERTIFICATE');
    // Refilled after the pushback: the chain renews again, once.
    clock.advance(refused!.retryAfterMs!);
    cert = await s.certify(req, 'peer', peerOf(cert));
    await expect(s.certify(req, 'peer', peerOf(cert))).rejects.toMatchObject({ reason: 'rate_limited' });
  });

  test('a chain of renewals is bounded whatever the length of the names in its key: a bootstrap token for a long namespace and service account (adv47)', async () => {
    // 2 x 300 characters: the key (bootstrap-token ns/sa digest) was longer than the state's
    // parser reads, so each renewal was keyed by its certificate's serial, a full bucket each.
    const ns = 'n'.repeat(300);
    const sa = 's'.repeat(300);
    const id = `spiffe://cluster.local/ns/${ns}/sa/${sa}`;
    const csr = createCsr(generateKeyPair().privateKeyPem, id);
    const token = 'long-names-token-0123456789';
    const s = new IdentityService({
      issuer, authenticator: new BootstrapTokenAuthenticator([{ token, namespace: ns, serviceAccount: sa }]), clock: new FakeClock(Date.now()),
      logger: createLogger({ sink: () => undefined }), metrics: new IdentityMetrics(new Registry(), issuer),
    });
    const req = { identity: id, token: Buffer.alloc(0), csrPem: csr, requestedLifetimeMs: 0 };
    const peerOf = (r: { certChainPem: string }) => {
      const c = new X509Certificate(r.certChainPem);
      return { spiffeId: id, namespace: ns, serviceAccount: sa, notAfterMs: new Date(c.validTo).getTime(), serial: c.serialNumber, certifyState: parseExtensions(c.raw).certifyState };
    };
    let cert = await s.certify({ ...req, token: Buffer.from(token) });
    for (let i = 1; i < BOOTSTRAP_TOKEN_BURST; i++) cert = await s.certify(req, 'peer', peerOf(cert));
    await expect(s.certify(req, 'peer', peerOf(cert))).rejects.toMatchObject({ status: grpc.status.RESOURCE_EXHAUSTED, reason: 'rate_limited', retryAfterMs: BOOTSTRAP_TOKEN_REFILL_MS });
    // The token itself shares the bucket.
    await expect(s.certify({ ...req, token: Buffer.from(token) })).rejects.toMatchObject({ reason: 'rate_limited' });
    expect(s.limiter.size.buckets).toBe(1);
  });

  test('a renewal loop at the sidecar\'s own pace never meets the limit, even for short lifetimes', async () => {
    const clock = new FakeClock(Date.now());
    const ttl = 4000;
    const s = new IdentityService({ issuer, authenticator: proves('shop', 'web'), certTtlMs: ttl, clock, logger: createLogger({ sink: () => undefined }), metrics: new IdentityMetrics(new Registry(), issuer) });
    const req = { identity: ID, token: Buffer.alloc(0), csrPem, requestedLifetimeMs: 0 };
    let cert = await s.certify({ ...req, token: Buffer.from('token-of-pod-a') });
    // The earliest a sidecar renews: 65% of the lifetime (renewal-schedule.ts: 70% ± 5%), and an
    // early renewal on every other round (a trust change: trust-sync.ts) right after.
    for (let i = 0; i < 20; i++) {
      clock.advance(0.65 * ttl);
      const c = new X509Certificate(cert.certChainPem);
      const peer = { spiffeId: ID, namespace: 'shop', serviceAccount: 'web', notAfterMs: new Date(c.validTo).getTime(), serial: c.serialNumber, certifyState: parseExtensions(c.raw).certifyState };
      cert = await s.certify(req, 'peer', peer);
      if (i % 2 === 0) cert = await s.certify({ ...req, token: Buffer.from('token-of-pod-a') });
    }
    expect(cert.certChainPem).toContain('BEGIN CERTIFICATE');
  });

  test('a pod-bound token charges the pod; a bootstrap token (shared by a fleet) its fleet-sized bucket, however spelled, whatever identity is asked', async () => {
    const clock = new FakeClock(Date.now());
    const podAuth: Authenticator = { name: 'fake', authenticate: async () => ({ namespace: 'shop', serviceAccount: 'web', via: 'tokenreview', pod: 'web-a' }) };
    const mk = (a: Authenticator) => new IdentityService({ issuer, authenticator: a, clock, logger: createLogger({ sink: () => undefined }), metrics: new IdentityMetrics(new Registry(), issuer) });
    const byPod = mk(podAuth);
    // Different tokens (the kubelet refreshes them), one pod.
    for (let i = 0; i < CERTIFY_BURST; i++) await byPod.certify({ identity: ID, token: Buffer.from(`token-${i}`), csrPem, requestedLifetimeMs: 0 });
    await expect(byPod.certify({ identity: ID, token: Buffer.from('token-x'), csrPem, requestedLifetimeMs: 0 })).rejects.toMatchObject({ reason: 'rate_limited' });
    const tokens = new BootstrapTokenAuthenticator([{ token: 'one-shared-secret-0', namespace: 'shop', serviceAccount: 'web' }, { token: 'another-secret-000', namespace: 'shop', serviceAccount: 'web' }]);
    const byToken = mk(tokens);
    const other = `spiffe://${issuer.ca.trustDomain}/ns/shop/sa/cart`;
    for (let i = 0; i < BOOTSTRAP_TOKEN_BURST; i++) {
      await byToken.certify({ identity: ID, token: Buffer.from(i % 2 === 0 ? 'one-shared-secret-0\n' : ' one-shared-secret-0'), csrPem, requestedLifetimeMs: 0 });
      // Asking for another identity signs nothing and is not a bucket of its own.
      await expect(byToken.certify({ identity: other, token: Buffer.from('one-shared-secret-0'), csrPem, requestedLifetimeMs: 0 })).rejects.toMatchObject({ reason: 'identity_mismatch' });
    }
    await expect(byToken.certify({ identity: ID, token: Buffer.from('one-shared-secret-0'), csrPem, requestedLifetimeMs: 0 })).rejects.toMatchObject({ reason: 'rate_limited', retryAfterMs: BOOTSTRAP_TOKEN_REFILL_MS });
    clock.advance(BOOTSTRAP_TOKEN_REFILL_MS);
    await byToken.certify({ identity: ID, token: Buffer.from('one-shared-secret-0'), csrPem, requestedLifetimeMs: 0 });
    expect((await byToken.certify({ identity: ID, token: Buffer.from('another-secret-000'), csrPem, requestedLifetimeMs: 0 })).certChainPem).toContain('BEGIN CERTIFICATE');
    expect(byToken.limiter.size.buckets).toBe(2);
  });

  test('TokenReview tokens bound to no pod charge their service account, a fleet-sized bucket: a new token is no new bucket (adv29)', async () => {
    const clock = new FakeClock(Date.now());
    // The real authenticator over a fake API server that vouches for any token, bound to no pod
    // (`kubectl create token web`: the TokenRequest API mints as many as its caller asks).
    const api: TokenReviewApi = {
      createTokenReview: async (body) => ({ ...body, status: { authenticated: true, audiences: [IDENTITY_TOKEN_AUDIENCE], user: { username: 'system:serviceaccount:shop:web' } } }),
    };
    const registry = new Registry();
    const s = new IdentityService({
      issuer, authenticator: new TokenReviewAuthenticator(api, { clock }), clock, logger: createLogger({ sink: () => undefined }), metrics: new IdentityMetrics(registry, issuer),
    });
    const call = (i: number) => s.certify({ identity: ID, token: Buffer.from(`minted-token-${i}`), csrPem, requestedLifetimeMs: 0 });
    for (let i = 0; i < BOOTSTRAP_TOKEN_BURST; i++) await call(i);
    await expect(call(BOOTSTRAP_TOKEN_BURST)).rejects.toMatchObject({ reason: 'rate_limited', retryAfterMs: BOOTSTRAP_TOKEN_REFILL_MS });
    await expect(call(BOOTSTRAP_TOKEN_BURST + 1)).rejects.toMatchObject({ reason: 'rate_limited' });
    expect(s.limiter.size.buckets).toBe(1);
    clock.advance(BOOTSTRAP_TOKEN_REFILL_MS);
    expect((await call(1000)).certChainPem).toContain('BEGIN CERTIFICATE');
  });

  test('a StatefulSet\'s pod created again (same name, same namespace, another UID) starts with a full budget; the same pod cannot start over', async () => {
    const clock = new FakeClock(Date.now());
    // TokenReview answers with the pod's name and UID (`token-of-NAME-UID`).
    const podAuth: Authenticator = {
      name: 'fake', authenticate: async (t) => {
        const [, pod, podUid] = /^token-of-(.+)-(uid\d+)/.exec(t.toString())!;
        return { namespace: 'shop', serviceAccount: 'web', via: 'tokenreview', pod, podUid };
      },
    };
    const s = new IdentityService({ issuer, authenticator: podAuth, clock, logger: createLogger({ sink: () => undefined }), metrics: new IdentityMetrics(new Registry(), issuer) });
    const req = { identity: ID, csrPem, requestedLifetimeMs: 0 };
    const peerOf = (r: { certChainPem: string }) => {
      const c = new X509Certificate(r.certChainPem);
      return { spiffeId: ID, namespace: 'shop', serviceAccount: 'web', notAfterMs: new Date(c.validTo).getTime(), serial: c.serialNumber, certifyState: parseExtensions(c.raw).certifyState };
    };
    // db-0 spends its budget, by its tokens and its certificates.
    let cert = await s.certify({ ...req, token: Buffer.from('token-of-db-0-uid1') });
    for (let i = 1; i < CERTIFY_BURST; i++) cert = await s.certify({ ...req, token: Buffer.alloc(0) }, 'peer', peerOf(cert));
    await expect(s.certify({ ...req, token: Buffer.from('token-of-db-0-uid1-refreshed') })).rejects.toMatchObject({ reason: 'rate_limited' });
    await expect(s.certify({ ...req, token: Buffer.alloc(0) }, 'peer', peerOf(cert))).rejects.toMatchObject({ reason: 'rate_limited' });
    // The pod is deleted and the StatefulSet creates db-0 again: keyed by the name, it was refused at start.
    let next = await s.certify({ ...req, token: Buffer.from('token-of-db-0-uid2') });
    for (let i = 1; i < CERTIFY_BURST; i++) next = await s.certify({ ...req, token: Buffer.alloc(0) }, 'peer', peerOf(next));
    await expect(s.certify({ ...req, token: Buffer.from('token-of-db-0-uid2') })).rejects.toMatchObject({ reason: 'rate_limited' });
    // Its certificates carry a key of their own, not the predecessor's.
    expect(peerOf(next).certifyState!.split(' ').slice(-1)).not.toEqual(peerOf(cert).certifyState!.split(' ').slice(-1));
  });

  test('an issuer rotated to another CA (the old root still in the bundle): the pod\'s token and the certificates the old CA signed are one budget, not one each', async () => {
    const clock = new FakeClock(Date.now());
    const old = generateIssuer('cluster.local');
    const next = generateIssuer('cluster.local');
    // What issuer-reloader.ts hands out after the swap: the new CA, both roots in the bundle.
    let current: Issuer = old;
    const rotating: Issuer = {
      get ca() { return current.ca; }, get trustBundlePem() { return current.trustBundlePem; }, source: 'test', snapshot: () => current,
    };
    const podAuth: Authenticator = { name: 'fake', authenticate: async () => ({ namespace: 'shop', serviceAccount: 'web', via: 'tokenreview', pod: 'web-5d8f9', podUid: '8e2f0c1a-1111-4222-8333-444455556666' }) };
    const s = new IdentityService({ issuer: rotating, authenticator: podAuth, clock, logger: createLogger({ sink: () => undefined }), metrics: new IdentityMetrics(new Registry(), old) });
    const req = { identity: ID, csrPem, requestedLifetimeMs: 0 };
    const peerOf = (r: { certChainPem: string }) => {
      const c = new X509Certificate(splitPemCerts(r.certChainPem)[0]);
      return { spiffeId: ID, namespace: 'shop', serviceAccount: 'web', notAfterMs: new Date(c.validTo).getTime(), serial: c.serialNumber, certifyState: parseExtensions(c.raw).certifyState };
    };
    let cert = await s.certify({ ...req, token: Buffer.from('t') });
    for (let i = 1; i < CERTIFY_BURST - 1; i++) cert = await s.certify({ ...req, token: Buffer.alloc(0) }, 'peer', peerOf(cert));
    current = { ca: next.ca, trustBundlePem: old.trustBundlePem + next.trustBundlePem, source: 'test' };
    // One signature left, by either: the token (the CA's new HMAC key made it a key of its own, a full bucket)...
    const byToken = await s.certify({ ...req, token: Buffer.from('t') });
    expect(new X509Certificate(splitPemCerts(byToken.certChainPem)[0]).verify(new X509Certificate(next.ca.certPem).publicKey)).toBe(true);
    await expect(s.certify({ ...req, token: Buffer.alloc(0) }, 'peer', peerOf(cert))).rejects.toMatchObject({ reason: 'rate_limited' });
    await expect(s.certify({ ...req, token: Buffer.from('t') })).rejects.toMatchObject({ reason: 'rate_limited' });
    // ...or a certificate of the old CA, at a replica that has no bucket for the pod yet (it restarted with the new CA): what it carries is honoured.
    const fresh = new IdentityService({ issuer: current, authenticator: podAuth, clock, logger: createLogger({ sink: () => undefined }), metrics: new IdentityMetrics(new Registry(), next) });
    await fresh.certify({ ...req, token: Buffer.alloc(0) }, 'peer', peerOf(cert));
    await expect(fresh.certify({ ...req, token: Buffer.from('t') })).rejects.toMatchObject({ reason: 'rate_limited' });
  });

  test('refusals a client causes at will (junk tokens) are all counted but logged at most 10 a second per reason, the next line saying how many were left out', async () => {
    const clock = new FakeClock(Date.now());
    const registry = new Registry();
    const logs: string[] = [];
    const s = new IdentityService({ issuer, authenticator: failsWith(new AuthError('unauthenticated', 'bad token')), clock, logger: createLogger({ sink: (l) => void logs.push(l) }), metrics: new IdentityMetrics(registry, issuer) });
    const req = { identity: ID, token: Buffer.from('junk'), csrPem, requestedLifetimeMs: 0 };
    for (let i = 0; i < 30; i++) await s.certify(req, 'peer').catch(() => undefined);
    const counted = (await registry.getSingleMetric('wren_identity_certificates_refused_total')!.get()).values;
    expect(counted.map((v) => [v.labels.reason, v.value])).toEqual([['unauthenticated', 30]]);
    const refusals = () => logs.filter((l) => l.includes('certificate refused')).map((l) => JSON.parse(l) as { reason: string; suppressed?: number });
    expect(refusals()).toHaveLength(10);
    expect(refusals().every((l) => l.suppressed === undefined)).toBe(true);
    clock.advance(1000);
    await s.certify(req, 'peer').catch(() => undefined);
    expect(refusals()).toHaveLength(11);
    expect(refusals()[10]).toMatchObject({ reason: 'unauthenticated', suppressed: 20 });
  });

  test('never logs the token', async () => {
    const logs: string[] = [];
    await status(service(proves('shop', 'cart'), undefined, logs));
    await status(service(proves('shop', 'web'), undefined, logs));
    expect(logs.join('\n')).toContain('certificate refused');
    expect(logs.join('\n')).toContain('certificate issued');
    expect(logs.join('\n')).not.toContain('secret-token-value');
  });
});
