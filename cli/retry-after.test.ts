import { DEFAULT_RETRY_AFTER, honourRetryAfter, retryAfterMs, RetryAfterExhausted, type Answer } from './retry-after.js';

describe('retryAfterMs (RFC 9110 section 10.2.3: delay-seconds or HTTP-date)', () => {
  const now = Date.parse('2026-12-07T20:00:00Z');
  test('delay-seconds', () => {
    expect(retryAfterMs('3', now)).toBe(3000);
    expect(retryAfterMs(' 0 ', now)).toBe(0);
  });
  test('an HTTP-date, less now, never below 0', () => {
    expect(retryAfterMs('Mon, 07 Dec 2026 20:00:05 GMT', now)).toBe(5000);
    expect(retryAfterMs('Mon, 07 Dec 2026 19:59:00 GMT', now)).toBe(0);
  });
  test('the three HTTP-date forms of RFC 9110 section 5.6.7, asctime as UTC whatever the local zone', () => {
    expect(retryAfterMs('Sunday, 06-Dec-26 20:00:07 GMT', Date.parse('2026-12-06T20:00:00Z'))).toBe(7000);
    expect(retryAfterMs('Mon Dec  7 20:00:09 2026', now)).toBe(9000);
  });
  test('what Date.parse takes but is no HTTP-date: undefined (ignored), not a wait', () => {
    // "x 5" is 2001-05-01 to V8 (no wait at all); a parenthesised comment hides any characters.
    for (const bad of ['x 5', 'Mon, 07 Dec 2026 20:00:05 GMT (\x9b2J)', '2026-12-07T20:00:05Z', 'Mon, 07 Dec 2026 20:00:05 +0000', 'tomorrow 5'])
      expect(retryAfterMs(bad, now)).toBeUndefined();
  });
  test('absent or malformed: undefined (ignored)', () => {
    expect(retryAfterMs(undefined, now)).toBeUndefined();
    for (const bad of ['', '-1', '1.5', 'soon', '1e3']) expect(retryAfterMs(bad, now)).toBeUndefined();
  });
});

describe('honourRetryAfter: bounded waits, bounded attempts, a clear error when it gives up', () => {
  /** A fake clock: sleep() moves it; every wait is recorded. */
  const fake = () => {
    let t = 1_000_000;
    const waits: number[] = [];
    return { waits, deps: { now: () => t, sleep: async (ms: number) => void (waits.push(ms), (t += ms)) } };
  };
  const answers = (...as: Answer[]) => {
    let i = 0;
    const calls = { n: 0 };
    return { calls, get: async () => (calls.n++, as[Math.min(i++, as.length - 1)]) };
  };
  const ok: Answer = { status: 200, body: '{}' };
  const busy = (s: string, status = 503): Answer => ({ status, body: '{"error":"busy"}', retryAfter: s });

  test('503 and 429 with Retry-After are asked again after the wait they name, then the answer is returned', async () => {
    const f = fake();
    const a = answers(busy('2'), busy('1', 429), ok);
    expect(await honourRetryAfter('cp/api/stat', a.get, DEFAULT_RETRY_AFTER, f.deps)).toBe(ok);
    expect(f.waits).toEqual([2000, 1000]);
    expect(a.calls.n).toBe(3);
  });

  test('a 503 without Retry-After (/ready: not ready) and other statuses are answers, returned at once', async () => {
    const f = fake();
    const notReady: Answer = { status: 503, body: 'draining' };
    expect(await honourRetryAfter('cp/ready', answers(notReady).get, DEFAULT_RETRY_AFTER, f.deps)).toBe(notReady);
    const teapot: Answer = { status: 500, body: 'x', retryAfter: '1' };
    expect(await honourRetryAfter('cp/x', answers(teapot).get, DEFAULT_RETRY_AFTER, f.deps)).toBe(teapot);
    expect(f.waits).toEqual([]);
  });

  test('at most maxAttempts requests: then RetryAfterExhausted naming the server, its answer and the waiting done', async () => {
    const f = fake();
    const a = answers(busy('1'));
    const e = await honourRetryAfter('127.0.0.1:15014/api/topology', a.get, DEFAULT_RETRY_AFTER, f.deps).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(RetryAfterExhausted);
    expect(a.calls.n).toBe(DEFAULT_RETRY_AFTER.maxAttempts);
    expect(f.waits).toEqual([1000, 1000, 1000]);
    expect((e as Error).message).toBe('127.0.0.1:15014/api/topology: still HTTP 503 with Retry-After: 1 after 4 attempt(s) and 3 s of waiting (at most 4 attempts, 30 s): the server is overloaded, try again later');
    expect((e as RetryAfterExhausted).last.status).toBe(503);
  });

  test('a wait longer than maxWaitMs is not taken: given up at once; nor past maxTotalWaitMs together', async () => {
    const f = fake();
    const e = await honourRetryAfter('cp/api/stat', answers(busy('11')).get, DEFAULT_RETRY_AFTER, f.deps).catch((x: unknown) => x as Error);
    expect((e as Error).message).toBe('cp/api/stat: HTTP 503 with Retry-After: 11, longer than the 10 s the CLI waits at once: the server is overloaded, try again later');
    expect(f.waits).toEqual([]);
    const g = fake();
    const a = answers(busy('9'));
    await expect(honourRetryAfter('cp/x', a.get, { maxAttempts: 10, maxWaitMs: 10_000, maxTotalWaitMs: 20_000 }, g.deps)).rejects.toThrow(/still HTTP 503 .* after 3 attempt\(s\) and 18 s of waiting/);
    expect(g.waits).toEqual([9000, 9000]);
  });
});
