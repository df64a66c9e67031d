import { BOOTSTRAP_TOKEN_BURST, CertifyLimiter, certifyRefillMs, MAX_CERTIFY_REFILL_MS } from './certify-limiter.js';

describe('CertifyLimiter', () => {
  const principal = { namespace: 'shop', serviceAccount: 'web', via: 'tokenreview' };

  test('a token bucket per key: a burst, then one per refill interval, with the wait until the next', () => {
    let now = 0;
    const l = new CertifyLimiter({ burst: 3, refillMs: 1000, now: () => now, wallNow: () => now });
    expect([l.take('a'), l.take('a'), l.take('a')]).toEqual([null, null, null]);
    expect(l.take('a')).toEqual({ retryAfterMs: 1000, first: true });
    expect(l.take('b')).toBeNull();
    now += 400;
    // Refused again before a signature: not the first (one log line per run of refusals).
    expect(l.take('a')).toEqual({ retryAfterMs: 600, first: false });
    now += 600;
    expect(l.take('a')).toBeNull();
    expect(l.take('a')).toEqual({ retryAfterMs: 1000, first: true });
  });

  test('the refill follows the certificate lifetime, a minute at most', () => {
    expect(certifyRefillMs(24 * 3_600_000)).toBe(MAX_CERTIFY_REFILL_MS);
    expect(certifyRefillMs(4000)).toBe(1000);
  });

  test('keys: the pod of a bound token, the service account of another TokenReview token, and a renewed certificate its issuer call\'s key until it expires', () => {
    let wall = 1_000_000;
    const l = new CertifyLimiter({ refillMs: 1000, now: () => 0, wallNow: () => wall });
    expect(l.keyOf({ ...principal, pod: 'web-0' }, null, Buffer.from('t1'))).toBe('pod shop/web-0');
    // A token bound to no pod: one key per service account, whatever the token (a new one is minted at will).
    const t1 = l.keyOf(principal, null, Buffer.from('t1'));
    expect(t1).toBe('service-account shop/web');
    expect(l.keyOf(principal, null, Buffer.from('t2'))).toBe(t1);
    // TLS reports 0A0B..., the CA wrote 0a0b...
    l.issued('0a0bff', 'pod shop/web-0', wall + 5000);
    expect(l.keyOf(principal, 'A0BFF', Buffer.alloc(0))).toBe('pod shop/web-0');
    expect(l.keyOf(principal, 'ccdd', Buffer.alloc(0))).toBe('certificate shop/web serial ccdd');
    wall += 5000;
    expect(l.keyOf(principal, '0A0BFF', Buffer.alloc(0))).toBe('certificate shop/web serial a0bff');
    const shared = { ...principal, via: 'bootstrap', shared: true };
    const s = l.keyOf(shared, null, Buffer.from('sekrit'));
    expect(s).toMatch(/^bootstrap-token shop\/web [0-9a-f]{32}$/);
    expect(s).not.toContain('sekrit');
    // A token as the authenticators read it (presentedToken): its spellings are one key.
    expect(l.keyOf(shared, null, Buffer.from('sekrit\n'))).toBe(s);
    expect(l.keyOf(shared, null, Buffer.from(' sekrit\r\n'))).toBe(s);
    expect(l.keyOf(shared, null, Buffer.from('sekrit2'))).not.toBe(s);
  });

  test('a bootstrap token\'s bucket is sized for a fleet (20, one a second), and so is what its certificates renew', () => {
    let now = 0;
    const l = new CertifyLimiter({ refillMs: 60_000, now: () => now, wallNow: () => 1000 + now });
    const key = l.keyOf({ ...principal, via: 'bootstrap', shared: true }, null, Buffer.from('secret'));
    for (let i = 0; i < BOOTSTRAP_TOKEN_BURST; i++) expect(l.take(key)).toBeNull();
    expect(l.take(key)).toEqual({ retryAfterMs: 1000, first: true });
    l.issued('abc', key, 1000 + 86_400_000);
    expect(l.take(l.keyOf(principal, 'ABC', Buffer.alloc(0)))).toEqual({ retryAfterMs: 1000, first: false });
    now += 1000;
    expect(l.take(key)).toBeNull();
    // A workload's bucket is not: 5, then one a minute.
    const pod = l.keyOf({ ...principal, pod: 'web-0' }, null, Buffer.alloc(0));
    for (let i = 0; i < 5; i++) expect(l.take(pod)).toBeNull();
    expect(l.take(pod)).toEqual({ retryAfterMs: 60_000, first: true });
  });

  test('full buckets and expired lineages are dropped', () => {
    let now = 0;
    const l = new CertifyLimiter({ burst: 2, refillMs: 1000, now: () => now, wallNow: () => now });
    for (let i = 0; i < 100; i++) {
      l.take(`k${i}`);
      l.issued(`${i + 1}`, `k${i}`, now + 1500);
    }
    expect(l.size).toEqual({ buckets: 100, lineages: 100 });
    now += 2000;
    l.take('other');
    expect(l.size).toEqual({ buckets: 1, lineages: 0 });
  });

  test('lineages are bounded: past the bound the oldest is dropped and its certificate becomes its own key', () => {
    const l = new CertifyLimiter({ refillMs: 1000, maxLineages: 3, now: () => 0, wallNow: () => 0 });
    for (let i = 1; i <= 4; i++) l.issued(`${i}`, `pod shop/web-${i}`, 10_000);
    expect(l.size.lineages).toBe(3);
    expect(l.keyOf(principal, '1', Buffer.alloc(0))).toBe('certificate shop/web serial 1');
    expect(l.keyOf(principal, '4', Buffer.alloc(0))).toBe('pod shop/web-4');
  });
});
