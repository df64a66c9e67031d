import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { rbacCheck } from '../cli/check/kube-checks.js';
import { kubeReplicas, replicaJson } from '../cli/control-plane-admin.js';
import { KubeHttp } from '../cli/kube-http.js';
import { systemClock } from '../common/clock.js';
import { AuthError } from '../control-plane/identity/authenticator.js';
import { TokenReviewAuthenticator } from '../control-plane/identity/token-review-authenticator.js';
import { kubeWriteRetries } from '../control-plane/kube-write-retry.js';
import { ControlPlaneMetrics } from '../control-plane/metrics.js';
import { FakeKubeApi } from './fake-kube-api.js';
import { until } from './helpers/until.js';

/**
 * Write requests to the API server answered 429 with Retry-After (API Priority and
 * Fairness, which rejects before executing), as client-go retries them for any verb: the
 * control plane's TokenReview (through @kubernetes/client-node) and the CLI's
 * SelfSubjectAccessReview and TokenRequest (its raw client), each against the fake API
 * server the other tests use, told to answer the next requests of a path 429. Each is
 * asked again after the wait, within its bounds (attempts, total wait, the request's own
 * deadline), and counted.
 */
const TOKEN_REVIEWS = 'POST /apis/authentication.k8s.io/v1/tokenreviews';
const SSAR = 'POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews';
const TOKEN_REQUEST = 'POST /api/v1/namespaces/wren-system/serviceaccounts/wren-cli/token';
const LIMITS = { timeoutMs: 5000, maxInFlight: 8, maxInFlightPerSource: 8 };

let api: FakeKubeApi;
beforeAll(async () => {
  api = await FakeKubeApi.start();
  api.tokens.set('good', { username: 'system:serviceaccount:shop:web', audiences: ['wren-identity'] });
});
afterAll(() => api.close());
beforeEach(() => {
  api.throttle.clear();
  api.throttledSent.clear();
});

/** The authenticator's outcome: the principal's namespace/name, or the AuthError's code and message. */
async function review(a: TokenReviewAuthenticator): Promise<string> {
  return a.authenticate(Buffer.from('good')).then(
    (p) => `ok ${p.namespace}/${p.serviceAccount}`,
    (e: AuthError) => `${e.kind}: ${e.message.split('\n')[0]}`,
  );
}

describe('TokenReview (the control plane, through @kubernetes/client-node)', () => {
  test('two 429s with Retry-After: 1: asked again after each wait, authenticated, both retries counted (wren_cp_kube_write_retries_total)', async () => {
    const metrics = new ControlPlaneMetrics();
    const metric = async (outcome: string) => (await metrics.registry.getSingleMetric('wren_cp_kube_write_retries_total')!.get()).values.find((v) => v.labels.request === 'TokenReview' && v.labels.outcome === outcome)?.value ?? 0;
    const before = { retried: await metric('retried'), gaveUp: await metric('gave-up') };
    api.throttle.set(TOKEN_REVIEWS, { count: 2, retryAfter: '1' });
    const started = performance.now();
    expect(await review(TokenReviewAuthenticator.fromKubeConfig(api.kubeConfig(), { clock: systemClock, limits: LIMITS }))).toBe('ok shop/web');
    expect(api.throttledSent.get(TOKEN_REVIEWS)).toBe(2);
    expect(performance.now() - started).toBeGreaterThanOrEqual(1900);
    expect(await metric('retried')).toBe(before.retried + 2);
    expect(await metric('gave-up')).toBe(before.gaveUp);
  });

  test('bounded by attempts: an API server that keeps answering 429 is asked maxAttempts times, then the caller is refused UNAVAILABLE with the 429, counted as gave-up', async () => {
    const gaveUp = kubeWriteRetries('TokenReview', 'gave-up');
    api.throttle.set(TOKEN_REVIEWS, { count: 100, retryAfter: '1' });
    const a = TokenReviewAuthenticator.fromKubeConfig(api.kubeConfig(), { clock: systemClock, limits: LIMITS, retry: { maxAttempts: 2, maxTotalWaitMs: 3000 } });
    expect(await review(a)).toBe('unavailable: TokenReview failed (HTTP 429): HTTP-Code: 429');
    expect(api.throttledSent.get(TOKEN_REVIEWS)).toBe(2);
    expect(kubeWriteRetries('TokenReview', 'gave-up')).toBe(gaveUp + 1);
  });

  test('bounded by the total wait: with 1.5 s of waiting allowed, a 1 s Retry-After is waited once, not twice', async () => {
    api.throttle.set(TOKEN_REVIEWS, { count: 100, retryAfter: '1' });
    const a = TokenReviewAuthenticator.fromKubeConfig(api.kubeConfig(), { clock: systemClock, limits: LIMITS, retry: { maxAttempts: 10, maxTotalWaitMs: 1500 } });
    expect(await review(a)).toMatch(/^unavailable: TokenReview failed \(HTTP 429\)/);
    expect(api.throttledSent.get(TOKEN_REVIEWS)).toBe(2);
  });

  test('bounded by the review\'s timeout: a Retry-After the time left cannot hold is given up at once, not waited into the timeout', async () => {
    const gaveUp = kubeWriteRetries('TokenReview', 'gave-up');
    api.throttle.set(TOKEN_REVIEWS, { count: 100, retryAfter: '2' });
    const a = TokenReviewAuthenticator.fromKubeConfig(api.kubeConfig(), { clock: systemClock, limits: { ...LIMITS, timeoutMs: 1500 }, retry: { maxAttempts: 10, maxTotalWaitMs: 10_000 } });
    const started = performance.now();
    expect(await review(a)).toMatch(/^unavailable: TokenReview failed \(HTTP 429\)/);
    expect(performance.now() - started).toBeLessThan(1000);
    expect(api.throttledSent.get(TOKEN_REVIEWS)).toBe(1);
    expect(kubeWriteRetries('TokenReview', 'gave-up')).toBe(gaveUp + 1);
  });

  test('a caller that goes away during the wait ends it: refused at once (abandoned), its slot freed for the next review', async () => {
    api.throttle.set(TOKEN_REVIEWS, { count: 1, retryAfter: '3' });
    const a = TokenReviewAuthenticator.fromKubeConfig(api.kubeConfig(), { clock: systemClock, limits: { ...LIMITS, maxInFlight: 1 } });
    const gone = new AbortController();
    const started = performance.now();
    const first = a.authenticate(Buffer.from('good'), gone.signal).then(() => 'ok', (e: AuthError) => `${e.kind} ${e.limit}`);
    expect(await until(() => api.throttledSent.get(TOKEN_REVIEWS) === 1, 5000)).toBe(true);
    gone.abort();
    expect(await first).toBe('unavailable abandoned');
    // The one slot is free again (not held for the 3 s wait): the next review is made and answered.
    expect(await until(async () => (await review(a)) === 'ok shop/web', 1000)).toBe(true);
    expect(performance.now() - started).toBeLessThan(2500);
  });
});

describe('the CLI\'s SelfSubjectAccessReview and TokenRequest (its raw client)', () => {
  test('wren check\'s rbac: a 429 with Retry-After: 1 on SelfSubjectAccessReview is asked again; the check passes, the wait counted', async () => {
    api.throttle.set(SSAR, { count: 1, retryAfter: '1' });
    const kube = new KubeHttp(api.kubeConfig(), 5000);
    const c = await rbacCheck({ kube, now: () => Date.now(), minDays: 7 });
    expect([c.status, c.message]).toEqual(['ok', 'you may read what these checks read (5 permissions)']);
    expect(api.throttledSent.get(SSAR)).toBe(1);
    expect(kube.throttledRetries).toBe(1);
  });

  test('wren check\'s rbac: past the bounds (4 requests) the check fails saying what the API server asked and how long it waited', async () => {
    api.throttle.set(SSAR, { count: 100, retryAfter: '1' });
    const kube = new KubeHttp(api.kubeConfig(), 5000);
    const c = await rbacCheck({ kube, now: () => Date.now(), minDays: 7 });
    expect(c.status).toBe('fail');
    expect(c.message).toMatch(/^POST http:\/\/127\.0\.0\.1:\d+\/apis\/authorization\.k8s\.io\/v1\/selfsubjectaccessreviews: still HTTP 429 with Retry-After: 1 after 4 attempt\(s\) and 3 s of waiting/);
  }, 20_000);

  test('the admin token (TokenRequest for wren-cli): a 429 with Retry-After: 1 is asked again, and the token reaches the control plane', async () => {
    // The control plane's admin port, reached through the pod proxy: it answers with the token it was sent.
    const admin: Server = createServer((req, res) => res.end(String(req.headers['x-wren-admin-token'] ?? '')));
    await new Promise<void>((r) => admin.listen(0, '127.0.0.1', r));
    try {
      api.apply('pods', {
        apiVersion: 'v1', kind: 'Pod', metadata: { name: 'wren-control-plane-a', namespace: 'wren-system', labels: { 'app.kubernetes.io/name': 'wren-control-plane', 'app.kubernetes.io/part-of': 'wren' } },
        spec: { containers: [] }, status: { phase: 'Running' },
      });
      api.podProxies.set('wren-system/wren-control-plane-a:15014', `127.0.0.1:${(admin.address() as AddressInfo).port}`);
      api.throttle.set(TOKEN_REQUEST, { count: 1, retryAfter: '1' });
      const kube = new KubeHttp(api.kubeConfig(), 5000);
      const [replica] = await kubeReplicas(kube);
      expect(api.throttledSent.get(TOKEN_REQUEST)).toBe(1);
      const r = await replica.get('/debug/proxy-status');
      expect(r.body).toMatch(/^minted-wren-system-wren-cli-\d+$/);
      expect(api.tokens.get(r.body)?.audiences).toEqual(['wren-admin']);
    } finally {
      await new Promise((r) => admin.close(r));
    }
  });

  test('the admin token past the bounds: the control plane\'s 403 is reported with why no token was sent (the API server still throttling), not alone', async () => {
    // The admin port as control-plane/admin-access.ts answers another address without a token.
    const admin: Server = createServer((req, res) => {
      if (req.headers['x-wren-admin-token']) return res.end('{}');
      res.writeHead(403).end('an admin token is required (x-wren-admin-token)\n');
    });
    await new Promise<void>((r) => admin.listen(0, '127.0.0.1', r));
    try {
      api.apply('pods', {
        apiVersion: 'v1', kind: 'Pod', metadata: { name: 'wren-control-plane-b', namespace: 'wren-system', labels: { 'app.kubernetes.io/name': 'wren-control-plane', 'app.kubernetes.io/part-of': 'wren' } },
        spec: { containers: [] }, status: { phase: 'Running' },
      });
      api.podProxies.set('wren-system/wren-control-plane-b:15014', `127.0.0.1:${(admin.address() as AddressInfo).port}`);
      api.throttle.set(TOKEN_REQUEST, { count: 100, retryAfter: '1' });
      const kube = new KubeHttp(api.kubeConfig(), 5000);
      const replicas = await kubeReplicas(kube);
      const replica = replicas.find((r) => r.name === 'wren-system/wren-control-plane-b')!;
      await expect(replicaJson(replica, '/debug/proxy-status')).rejects.toThrow(
        /^wren-system\/wren-control-plane-b\/debug\/proxy-status: HTTP 403 an admin token is required \(x-wren-admin-token\) \(no admin token: TokenRequest wren-system\/wren-cli: still HTTP 429 with Retry-After: 1 after 4 attempt\(s\) and 3 s of waiting/,
      );
    } finally {
      api.throttle.delete(TOKEN_REQUEST);
      await new Promise((r) => admin.close(r));
    }
  }, 20_000);
});
