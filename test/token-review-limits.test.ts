import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { createCsr, generateKeyPair } from '../certs/index.js';
import { FakeClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { IdentityMetrics } from '../control-plane/identity/identity-metrics.js';
import { IdentityService } from '../control-plane/identity/identity-service.js';
import { generateIssuer } from '../control-plane/identity/issuer.js';
import { TokenReviewAuthenticator, type TokenReviewLimits } from '../control-plane/identity/token-review-authenticator.js';
import { CertifyClient } from '../proxy/identity/certify-client.js';
import { FakeKubeApi } from './fake-kube-api.js';
import { until } from './helpers/until.js';
import { networkInterfaces } from 'node:os';

/**
 * TokenReview's bounds end to end (the adversarial run's B3): Certify over real gRPC, the
 * TokenReview through @kubernetes/client-node to a local HTTP server that reads each review
 * and never answers. The service and the authenticator run on a fake clock, so only the
 * test moves the TokenReview timeout; gRPC deadlines are real time.
 */
const TD = 'cluster.local';
const WEB = `spiffe://${TD}/ns/shop/sa/web`;
const issuer = generateIssuer(TD);
const csrPem = createCsr(generateKeyPair().privateKeyPem, WEB);

let api: FakeKubeApi;
beforeAll(async () => {
  api = await FakeKubeApi.start();
  api.holdTokenReviews = true;
});
afterAll(async () => {
  for (const res of api.heldTokenReviews) res.destroy();
  await api.close();
});

interface Rig {
  readonly clock: FakeClock;
  readonly client: CertifyClient;
  refused(reason: string): Promise<number>;
  close(): void;
}

async function rig(limits: TokenReviewLimits, host = '127.0.0.1'): Promise<Rig> {
  api.tokenReviewsReceived = 0;
  const clock = new FakeClock(Date.now());
  const registry = new Registry();
  const authenticator = TokenReviewAuthenticator.fromKubeConfig(api.kubeConfig(), { clock, limits });
  const service = new IdentityService({ issuer, authenticator, clock, logger: silentLogger, metrics: new IdentityMetrics(registry, issuer) });
  const server = new grpc.Server();
  server.addService(IdentityService.definition(), service.implementation);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync(`${host}:0`, grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  const client = new CertifyClient(`${host}:${port}`, grpc.credentials.createInsecure());
  return {
    clock,
    client,
    refused: async (reason) => (await registry.getSingleMetric('wren_identity_certificates_refused_total')!.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0,
    close: () => {
      client.close();
      server.forceShutdown();
    },
  };
}

/** A Certify with a junk token, settled to its gRPC status name. */
const certify = (r: Rig, i: number, deadlineMs: number): Promise<string> =>
  r.client.certify({ identity: WEB, token: Buffer.from(`junk-${i}`), csrPem, requestedLifetimeMs: 0 }, deadlineMs).then(
    () => 'OK',
    (e: grpc.ServiceError) => grpc.status[e.code],
  );

test('40 junk-token Certify calls whose deadlines pass: 32 TokenReviews are opened and all are closed at the deadline, 8 calls are refused at once', async () => {
  const r = await rig({ timeoutMs: 5000, maxInFlight: 32, maxInFlightPerSource: 8 });
  try {
    // 3 s deadlines: every review must reach the API server before its call gives up, which
    // with 1 s only 3 of 32 did once, the suite and other work sharing 2 CPUs.
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => certify(r, i, 3000)));
    const count = (s: string): number => results.filter((x) => x === s).length;
    expect([count('DEADLINE_EXCEEDED'), count('RESOURCE_EXHAUSTED')]).toEqual([32, 8]);
    expect(api.tokenReviewsReceived).toBe(32);
    // The fake clock never reaches the 5 s timeout: only the calls' deadlines end the reviews.
    expect(await until(() => api.heldTokenReviews.size === 0, 3000)).toBe(true);
    expect(await r.refused('authenticator_overloaded')).toBe(8);
    expect(await until(async () => (await r.refused('cancelled')) === 32, 3000)).toBe(true);
    expect(r.clock.pending()).toBe(0);
  } finally {
    r.close();
  }
});

test('a TokenReview with no answer is given up at the timeout: UNAVAILABLE, counted, the HTTP request closed', async () => {
  const r = await rig({ timeoutMs: 5000, maxInFlight: 32, maxInFlightPerSource: 8 });
  try {
    const call = certify(r, 0, 20_000);
    expect(await until(() => api.heldTokenReviews.size === 1, 5000)).toBe(true);
    r.clock.advance(4999);
    await new Promise((res) => setTimeout(res, 100));
    expect(api.heldTokenReviews.size).toBe(1);
    r.clock.advance(1);
    expect(await call).toBe('UNAVAILABLE');
    expect(await until(() => api.heldTokenReviews.size === 0, 3000)).toBe(true);
    expect(await r.refused('authenticator_timeout')).toBe(1);
    // The slot came back: the next review is made, and ends the same way.
    const next = certify(r, 1, 20_000);
    expect(await until(() => api.heldTokenReviews.size === 1, 5000)).toBe(true);
    r.clock.advance(5000);
    expect(await next).toBe('UNAVAILABLE');
    expect(api.tokenReviewsReceived).toBe(2);
  } finally {
    r.close();
  }
});

test('beyond maxInFlight a Certify is refused RESOURCE_EXHAUSTED at once, without a TokenReview', async () => {
  const r = await rig({ timeoutMs: 5000, maxInFlight: 2, maxInFlightPerSource: 2 });
  try {
    const open = [certify(r, 0, 20_000), certify(r, 1, 20_000)];
    expect(await until(() => api.heldTokenReviews.size === 2, 5000)).toBe(true);
    const t0 = Date.now();
    expect(await certify(r, 2, 20_000)).toBe('RESOURCE_EXHAUSTED');
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(api.tokenReviewsReceived).toBe(2);
    expect(await r.refused('authenticator_overloaded')).toBe(1);
    r.clock.advance(5000);
    expect(await Promise.all(open)).toEqual(['UNAVAILABLE', 'UNAVAILABLE']);
  } finally {
    r.close();
  }
});

/** This host's first non-loopback IPv4 address: calls from it are counted by address (loopback is not). */
const hostAddress = Object.values(networkInterfaces()).flat().find((i) => i && i.family === 'IPv4' && !i.internal)?.address ?? null;
const withAddress = hostAddress ? test : test.skip;
if (!hostAddress) console.warn('token-review-limits: skipped the per-address test: this host has no non-loopback IPv4 address');

withAddress('one caller address gets at most maxInFlightPerSource TokenReviews: junk tokens from one pod cannot take every slot and refuse every other pod', async () => {
  const r = await rig({ timeoutMs: 5000, maxInFlight: 32, maxInFlightPerSource: 4 }, hostAddress!);
  try {
    const open = Array.from({ length: 4 }, (_, i) => certify(r, i, 20_000));
    expect(await until(() => api.tokenReviewsReceived === 4, 5000)).toBe(true);
    // Two more from the same address: refused at once, no TokenReview, its own reason.
    expect(await Promise.all([certify(r, 10, 20_000), certify(r, 11, 20_000)])).toEqual(['RESOURCE_EXHAUSTED', 'RESOURCE_EXHAUSTED']);
    expect(api.tokenReviewsReceived).toBe(4);
    expect(await r.refused('authenticator_source_overloaded')).toBe(2);
    expect(await r.refused('authenticator_overloaded')).toBe(0);
    // The held reviews end at the timeout; then the address has its share again.
    r.clock.advance(5000);
    expect(await Promise.all(open)).toEqual(['UNAVAILABLE', 'UNAVAILABLE', 'UNAVAILABLE', 'UNAVAILABLE']);
    void certify(r, 20, 20_000);
    expect(await until(() => api.tokenReviewsReceived === 5, 5000)).toBe(true);
    r.clock.advance(5000);
  } finally {
    r.close();
  }
});
