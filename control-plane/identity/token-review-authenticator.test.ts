import type * as k8s from '@kubernetes/client-node';
import { FakeClock } from '../../common/clock.js';
import { AuthError } from './authenticator.js';
import { TokenReviewAuthenticator, type TokenReviewApi } from './token-review-authenticator.js';

const clock = new FakeClock();
const authn = (api: TokenReviewApi, opts: { audiences?: string[] } = {}): TokenReviewAuthenticator => new TokenReviewAuthenticator(api, { clock, ...opts });

/** A TokenReview API that answers with a fixed status and records what it was asked. */
function api(status: k8s.V1TokenReviewStatus | Error): TokenReviewApi & { asked: k8s.V1TokenReview[] } {
  const asked: k8s.V1TokenReview[] = [];
  return {
    asked,
    async createTokenReview(body) {
      asked.push(body);
      if (status instanceof Error) throw status;
      return { ...body, status };
    },
  };
}

const sa = (username: string, audiences = ['wren-identity'], extra?: Record<string, string[]>): k8s.V1TokenReviewStatus => ({
  authenticated: true, audiences, user: { username, ...(extra ? { extra } : {}) },
});

async function refusal(a: TokenReviewAuthenticator, token = 'jwt'): Promise<AuthError> {
  const e = await a.authenticate(Buffer.from(token)).catch((x: unknown) => x);
  expect(e).toBeInstanceOf(AuthError);
  return e as AuthError;
}

describe('TokenReviewAuthenticator', () => {
  test('asks the API server about the token with audience wren-identity and maps the service account', async () => {
    const fake = api(sa('system:serviceaccount:shop:web', ['wren-identity'], { 'authentication.kubernetes.io/pod-name': ['web-7d9'] }));
    const a = authn(fake);
    expect(await a.authenticate(Buffer.from('the.jwt.token\n'))).toEqual({ namespace: 'shop', serviceAccount: 'web', via: 'tokenreview', pod: 'web-7d9' });
    expect(fake.asked).toEqual([{ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token: 'the.jwt.token', audiences: ['wren-identity'] } }]);
  });

  test('a pod-bound token names its pod instance: the UID as well as the name (a StatefulSet\'s pod created again has the same name)', async () => {
    const extra = { 'authentication.kubernetes.io/pod-name': ['web-0'], 'authentication.kubernetes.io/pod-uid': ['0b7a1f7e-3c2d-4e5f-8a9b-1c2d3e4f5a6b'] };
    expect(await authn(api(sa('system:serviceaccount:shop:web', ['wren-identity'], extra))).authenticate(Buffer.from('t')))
      .toEqual({ namespace: 'shop', serviceAccount: 'web', via: 'tokenreview', pod: 'web-0', podUid: '0b7a1f7e-3c2d-4e5f-8a9b-1c2d3e4f5a6b' });
    // A UID without a pod name is no pod.
    expect(await authn(api(sa('system:serviceaccount:shop:web', ['wren-identity'], { 'authentication.kubernetes.io/pod-uid': ['u'] }))).authenticate(Buffer.from('t')))
      .toEqual({ namespace: 'shop', serviceAccount: 'web', via: 'tokenreview' });
  });

  test('refuses unauthenticated tokens, tokens whose audience is not confirmed, and non-service-account users', async () => {
    expect((await refusal(authn(api({ authenticated: false, error: 'token has expired' })))).message).toContain('token has expired');
    // An API server that ignores spec.audiences answers with the token's own audience (or none).
    expect((await refusal(authn(api(sa('system:serviceaccount:shop:web', []))))).message).toContain('did not confirm audience wren-identity');
    expect((await refusal(authn(api(sa('system:serviceaccount:shop:web', ['https://kubernetes.default.svc'])))))).toMatchObject({ kind: 'unauthenticated' });
    expect((await refusal(authn(api(sa('system:node:worker-1'))))).message).toContain('not a service account');
    expect((await refusal(authn(api(sa('system:serviceaccount:shop'))))).kind).toBe('unauthenticated');
    const fake = api(sa('system:serviceaccount:shop:web'));
    expect((await refusal(authn(fake), '  ')).message).toBe('no token was presented');
    expect(fake.asked).toHaveLength(0);
  });

  test('an API failure is unavailable (retry), not a verdict on the token', async () => {
    const e = await refusal(authn(api(Object.assign(new Error('HTTP-Code: 403\nMessage: forbidden'), { code: 403 }))));
    expect(e.kind).toBe('unavailable');
    expect(e.message).toBe('TokenReview failed (HTTP 403): HTTP-Code: 403');
  });

  test('custom audiences', async () => {
    const fake = api(sa('system:serviceaccount:a:b', ['mesh']));
    expect(await authn(fake, { audiences: ['mesh'] }).authenticate(Buffer.from('t'))).toMatchObject({ namespace: 'a', serviceAccount: 'b' });
    expect(fake.asked[0].spec.audiences).toEqual(['mesh']);
  });
});

/** An API server that never answers on its own: each request waits until the test settles it, or (`honour`) until its signal fires. */
function hanging(honour: boolean) {
  const open: { body: k8s.V1TokenReview; signal: AbortSignal; answer: (r: k8s.V1TokenReviewStatus) => void }[] = [];
  const api: TokenReviewApi = {
    createTokenReview: (body, signal) =>
      new Promise((resolve, reject) => {
        const entry = { body, signal, answer: (status: k8s.V1TokenReviewStatus) => resolve({ ...body, status }) };
        open.push(entry);
        if (honour) signal.addEventListener('abort', () => reject(new Error('This operation was aborted')));
      }),
  };
  return { api, open };
}

/** The settled outcome of a promise so far, without waiting: a test under fake time looks, advances, looks again. */
function watch<T>(p: Promise<T>): { state: 'pending' | 'resolved' | 'rejected'; error?: AuthError } {
  const w: { state: 'pending' | 'resolved' | 'rejected'; error?: AuthError } = { state: 'pending' };
  p.then(() => (w.state = 'resolved'), (e: AuthError) => Object.assign(w, { state: 'rejected', error: e }));
  return w;
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('TokenReview limits (fake time)', () => {
  const limits = { timeoutMs: 5000, maxInFlight: 2, maxInFlightPerSource: 2 };

  test('a review the API server does not answer is given up after timeoutMs: the caller gets limit "timeout" and the request is aborted', async () => {
    const c = new FakeClock();
    const { api, open } = hanging(true);
    const w = watch(new TokenReviewAuthenticator(api, { clock: c, limits }).authenticate(Buffer.from('junk')));
    await tick();
    expect(open).toHaveLength(1);
    c.advance(4999);
    await tick();
    expect(w.state).toBe('pending');
    expect(open[0].signal.aborted).toBe(false);
    c.advance(1);
    await tick();
    expect(w).toMatchObject({ state: 'rejected', error: { kind: 'unavailable', limit: 'timeout', message: expect.stringContaining('within 5000 ms') } });
    expect(open[0].signal.aborted).toBe(true);
    expect(c.pending()).toBe(0);
  });

  test('at most maxInFlight reviews are open; one more is refused at once without a request; a slot comes back when its request ends, not when its caller was answered', async () => {
    const c = new FakeClock();
    const { api, open } = hanging(false);
    const a = new TokenReviewAuthenticator(api, { clock: c, limits });
    const first = [watch(a.authenticate(Buffer.from('t1'))), watch(a.authenticate(Buffer.from('t2')))];
    await tick();
    const third = watch(a.authenticate(Buffer.from('t3')));
    await tick();
    expect(third).toMatchObject({ state: 'rejected', error: { kind: 'unavailable', limit: 'overloaded' } });
    expect(open).toHaveLength(2);
    // Both callers are answered at the timeout, but this API ignores the abort: its requests are still open.
    c.advance(5000);
    await tick();
    expect(first.map((w) => w.error?.limit)).toEqual(['timeout', 'timeout']);
    const fourth = watch(a.authenticate(Buffer.from('t4')));
    await tick();
    expect(fourth.error?.limit).toBe('overloaded');
    expect(open).toHaveLength(2);
    // One request ends (an answer nobody waits for any more): its slot is free again.
    open[0].answer({ authenticated: false });
    await tick();
    const fifth = watch(a.authenticate(Buffer.from('t5')));
    await tick();
    expect(fifth.state).toBe('pending');
    expect(open).toHaveLength(3);
  });

  test('one caller address has at most maxInFlightPerSource of the reviews open; others still get theirs; callers with no address (loopback) are not counted by address; a slot comes back when its request ends', async () => {
    const c = new FakeClock();
    const { api, open } = hanging(false);
    const a = new TokenReviewAuthenticator(api, { clock: c, limits: { timeoutMs: 5000, maxInFlight: 6, maxInFlightPerSource: 2 } });
    const flood = [watch(a.authenticate(Buffer.from('j1'), undefined, '10.0.0.9')), watch(a.authenticate(Buffer.from('j2'), undefined, '10.0.0.9'))];
    await tick();
    const third = watch(a.authenticate(Buffer.from('j3'), undefined, '10.0.0.9'));
    await tick();
    expect(third).toMatchObject({ state: 'rejected', error: { kind: 'unavailable', limit: 'source-overloaded', message: expect.stringContaining('from 10.0.0.9') } });
    expect(open).toHaveLength(2);
    // Another pod, and a loopback caller (no address), still get theirs.
    const other = watch(a.authenticate(Buffer.from('p1'), undefined, '10.0.0.7'));
    const local = [watch(a.authenticate(Buffer.from('l1'), undefined, null)), watch(a.authenticate(Buffer.from('l2'))), watch(a.authenticate(Buffer.from('l3')))];
    await tick();
    expect([other, ...local].map((w) => w.state)).toEqual(['pending', 'pending', 'pending', 'pending']);
    expect(open).toHaveLength(6);
    expect(flood.map((w) => w.state)).toEqual(['pending', 'pending']);
    // One of the flooding address's requests ends: it may have one more open.
    open[0].answer({ authenticated: false });
    await tick();
    expect(flood[0].state).toBe('rejected');
    const again = watch(a.authenticate(Buffer.from('j4'), undefined, '10.0.0.9'));
    await tick();
    expect(again.state).toBe('pending');
    expect(open).toHaveLength(7);
  });

  test('the caller going away abandons the review (limit "abandoned") and aborts its request', async () => {
    const c = new FakeClock();
    const { api, open } = hanging(true);
    const gone = new AbortController();
    const w = watch(new TokenReviewAuthenticator(api, { clock: c, limits }).authenticate(Buffer.from('junk'), gone.signal));
    await tick();
    gone.abort();
    await tick();
    expect(w).toMatchObject({ state: 'rejected', error: { limit: 'abandoned' } });
    expect(open[0].signal.aborted).toBe(true);
    expect(c.pending()).toBe(0);
    // Already gone: no request at all.
    const again = watch(new TokenReviewAuthenticator(api, { clock: c, limits }).authenticate(Buffer.from('junk'), gone.signal));
    await tick();
    expect(again.error?.limit).toBe('abandoned');
    expect(open).toHaveLength(1);
  });

  test('limits are checked', () => {
    expect(() => new TokenReviewAuthenticator(hanging(true).api, { clock, limits: { timeoutMs: 0, maxInFlight: 1, maxInFlightPerSource: 1 } })).toThrow(RangeError);
    expect(() => new TokenReviewAuthenticator(hanging(true).api, { clock, limits: { timeoutMs: 1000, maxInFlight: 0.5, maxInFlightPerSource: 1 } })).toThrow(RangeError);
    expect(() => new TokenReviewAuthenticator(hanging(true).api, { clock, limits: { timeoutMs: 1000, maxInFlight: 1, maxInFlightPerSource: 0 } })).toThrow(RangeError);
  });
});
