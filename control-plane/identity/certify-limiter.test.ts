import { createHash } from 'node:crypto';
import { bootstrapTokenIdSync } from './bootstrap-token-id.js';
import { BOOTSTRAP_TOKEN_BURST, CertifyLimiter, certifyRefillMs, encodeCertifyState, MAX_CERTIFY_REFILL_MS, MAX_STATE_SKEW_MS, parseCertifyState } from './certify-limiter.js';

/** A pod's digest as the key carries it without a UID (a plain SHA-256 of namespace and name, the same under every CA). */
const nameDigest = (t: string): string => createHash('sha256').update(t).digest('hex');

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

  test('keys: the pod of a bound token, the service account of another TokenReview token, and a renewal what its certificate carries (else its serial)', () => {
    const l = new CertifyLimiter({ refillMs: 1000, now: () => 0, wallNow: () => 0 });
    // The pod's name only as a digest: the key is in a certificate every peer reads.
    const pod = l.keyOf({ ...principal, pod: 'web-0' }, null, Buffer.from('t1'));
    expect(pod).toBe(`pod shop/web ${nameDigest('pod shop/web-0').slice(0, 32)}`);
    expect(pod).not.toContain('web-0');
    expect(l.keyOf({ ...principal, pod: 'web-0' }, null, Buffer.from('t2'))).toBe(pod);
    expect(l.keyOf({ ...principal, pod: 'web-1' }, null, Buffer.from('t1'))).not.toBe(pod);
    expect(l.keyOf({ ...principal, namespace: 'other', pod: 'web-0' }, null, Buffer.from('t1'))).not.toContain(pod.split(' ')[2]);
    // A token bound to no pod: one key per service account, whatever the token (a new one is minted at will).
    const t1 = l.keyOf(principal, null, Buffer.from('t1'));
    expect(t1).toBe('service-account shop/web');
    expect(l.keyOf(principal, null, Buffer.from('t2'))).toBe(t1);
    // What the certificate carries, whichever replica signed it; without it, its serial (TLS reports 0A0B..., the CA wrote 0a0b...).
    expect(l.keyOf(principal, { serial: 'A0BFF', state: { key: pod, tokens: 2, atWallMs: 0 } }, Buffer.alloc(0))).toBe(pod);
    // A certificate signed before keys were digests names the pod: its renewal is charged to the pod's key as it is now (and carries that).
    expect(l.keyOf(principal, { serial: 'A0BFF', state: { key: 'pod shop/web-0', tokens: 2, atWallMs: 0 } }, Buffer.alloc(0))).toBe(pod);
    expect(l.keyOf(principal, { serial: '0A0BFF', state: null }, Buffer.alloc(0))).toBe('certificate shop/web serial a0bff');
    const shared = { ...principal, via: 'bootstrap', shared: true };
    const s = l.keyOf(shared, null, Buffer.from('sekrit'));
    // Its scrypt id (bootstrap-token-id.ts), not a plain hash a peer reading the certificate could test guesses against quickly.
    expect(s).toBe(`bootstrap-token shop/web ${bootstrapTokenIdSync('shop', 'web', 'sekrit')}`);
    expect(s).not.toContain(nameDigest('sekrit').slice(0, 32));
    expect(s).not.toContain('sekrit');
    // A token as the authenticators read it (presentedToken): its spellings are one key.
    expect(l.keyOf(shared, null, Buffer.from('sekrit\n'))).toBe(s);
    expect(l.keyOf(shared, null, Buffer.from(' sekrit\r\n'))).toBe(s);
    expect(l.keyOf(shared, null, Buffer.from('sekrit2'))).not.toBe(s);
  });

  test('the state a certificate carries: written and read back; text it did not write is no state', () => {
    const st = { key: `bootstrap-token shop/web ${'a'.repeat(32)}`, tokens: 2.5, atWallMs: 1_800_000_000_123 };
    expect(parseCertifyState(encodeCertifyState(st))).toEqual(st);
    expect(parseCertifyState(encodeCertifyState({ key: 'pod shop/web-0', tokens: -0.2, atWallMs: 5 }))).toEqual({ key: 'pod shop/web-0', tokens: 0, atWallMs: 5 });
    expect(encodeCertifyState(st)).toBe(`wren certify-limit v1 2.500 1800000000123 ${st.key}`);
    for (const bad of [undefined, '', '1 2 pod a/b', 'wren certify-limit v1 x 1 pod a/b', 'wren certify-limit v1 1 2 cluster-admin a/b', 'wren certify-limit v1 1 2 pod a/b\nsecond line', `wren certify-limit v1 1 2 pod ${'x'.repeat(700)}`])
      expect(parseCertifyState(bad)).toBeNull();
  });

  test('a pod is its instance: the UID TokenReview names with the pod, not the name alone (a StatefulSet\'s pod created again), and the same under any CA', () => {
    const l = new CertifyLimiter({ refillMs: 1000, now: () => 0, wallNow: () => 0 });
    const web0 = { ...principal, pod: 'web-0', podUid: '5c1b0a6e-0000-4000-8000-000000000001' };
    const key = l.keyOf(web0, null, Buffer.from('t1'));
    expect(key).toMatch(/^pod shop\/web [0-9a-f]{32}$/);
    expect(key).not.toContain('web-0');
    expect(key).not.toContain(web0.podUid);
    // The same instance, whatever token it presents: one key.
    expect(l.keyOf(web0, null, Buffer.from('t2'))).toBe(key);
    // The pod created again under the same name: another UID, another key (a full bucket).
    expect(l.keyOf({ ...web0, podUid: '5c1b0a6e-0000-4000-8000-000000000002' }, null, Buffer.from('t1'))).not.toBe(key);
    expect(l.keyOf({ ...principal, pod: 'web-0' }, null, Buffer.from('t1'))).not.toBe(key);
    // Another replica (under any CA) derives the same key.
    const rotated = new CertifyLimiter({ refillMs: 1000, now: () => 0, wallNow: () => 0 });
    expect(rotated.keyOf(web0, null, Buffer.alloc(0))).toBe(key);
    // The renewal of a certificate that carries it is charged to it.
    expect(rotated.keyOf(principal, { serial: 'ab', state: { key, tokens: 1, atWallMs: 0 } }, Buffer.alloc(0))).toBe(key);
  });

  test('every key a certificate is charged to is one it can carry and read back, however long its names (adv47)', () => {
    const l = new CertifyLimiter({ refillMs: 1000, now: () => 0, wallNow: () => 1000 });
    // A bootstrap token's namespace and service account are bounded only by the SPIFFE ID's 2048 bytes.
    const long = { namespace: 'n'.repeat(1000), serviceAccount: 's'.repeat(1000), via: 'bootstrap' };
    const keys = [
      l.keyOf({ ...long, shared: true }, null, Buffer.from('sekrit')),
      l.keyOf(long, null, Buffer.alloc(0)),
      l.keyOf({ ...long, pod: 'p'.repeat(300) }, null, Buffer.alloc(0)),
      l.keyOf(long, { serial: 'ABC', state: null }, Buffer.alloc(0)),
      l.keyOf({ ...principal, pod: 'pod\u00e9\n' }, null, Buffer.alloc(0)),
    ];
    for (const key of keys) expect(parseCertifyState(encodeCertifyState({ key, tokens: 1, atWallMs: 5 }))).toEqual({ key, tokens: 1, atWallMs: 5 });
    expect(new Set(keys).size).toBe(keys.length);
    // The kind (which sets the rate) is kept; another token or service account is another key.
    expect(keys.map((k) => k.split(' ')[0])).toEqual(['bootstrap-token', 'service-account', 'pod', 'certificate', 'pod']);
    expect(l.keyOf({ ...long, shared: true }, null, Buffer.from('sekrit2'))).not.toBe(keys[0]);
    expect(l.keyOf({ ...long, serviceAccount: 's'.repeat(999) }, null, Buffer.alloc(0))).not.toBe(keys[1]);
    // Short keys as before.
    expect(l.keyOf({ ...principal, pod: 'web-0' }, null, Buffer.alloc(0))).toBe(`pod shop/web ${nameDigest('pod shop/web-0').slice(0, 32)}`);
  });

  test('a bucket holds no more than the certificate renewing says was left, refilled since (another replica signed it)', () => {
    let now = 0;
    let wall = 1_000_000;
    const l = new CertifyLimiter({ burst: 5, refillMs: 1000, now: () => now, wallNow: () => wall });
    // Signed elsewhere with one left, just now: one signature here, not a fresh burst of 5.
    const carried = { key: 'pod shop/web-0', tokens: 1, atWallMs: wall };
    expect(l.take(carried.key, carried)).toBeNull();
    expect(l.stateOf(carried.key)).toEqual({ key: carried.key, tokens: 0, atWallMs: wall });
    expect(l.take(carried.key, { ...carried, tokens: 0 })).toEqual({ retryAfterMs: 1000, first: true });
    // Nothing left when signed, and no bucket here yet: refused, from what the certificate says.
    expect(l.take('pod shop/web-1', { key: 'pod shop/web-1', tokens: 0.5, atWallMs: wall })).toEqual({ retryAfterMs: 500, first: true });
    // Refilled since it was signed (wall clock), up to the burst; a signer's clock ahead refills nothing.
    now += 2000;
    wall += 2000;
    expect(l.take('pod shop/web-2', { key: 'pod shop/web-2', tokens: 0, atWallMs: wall - 2000 })).toBeNull();
    expect(l.stateOf('pod shop/web-2').tokens).toBe(1);
    // Nor does the pushback count the refill from now: not before our clock reaches the timestamp.
    expect(l.take('pod shop/web-3', { key: 'pod shop/web-3', tokens: 0.5, atWallMs: wall + 60_000 })).toEqual({ retryAfterMs: 60_500, first: true });
    // A certificate saying more than this bucket has left takes no more than the bucket.
    for (let i = 0; i < 5; i++) l.take('pod shop/web-4');
    expect(l.take('pod shop/web-4', { key: 'pod shop/web-4', tokens: 5, atWallMs: wall })).toEqual({ retryAfterMs: 1000, first: true });
  });

  test('a signer\'s clock ahead of ours: nothing refilled before its timestamp, and a pushback that waits for it (never shorter than the refill needs)', () => {
    let now = 0;
    let wall = 1_000_000;
    const l = new CertifyLimiter({ burst: 5, refillMs: 1000, now: () => now, wallNow: () => wall });
    const advance = (ms: number): void => {
      now += ms;
      wall += ms;
    };
    // Signed 30 s ahead of our clock with nothing left: a signature is free when our clock shows 31 s more.
    const carried = { key: 'pod shop/web-0', tokens: 0, atWallMs: wall + 30_000 };
    const r = l.take(carried.key, carried);
    expect(r).toEqual({ retryAfterMs: 31_000, first: true });
    // The pushback is honest: a retry just before it is refused, one at it is served.
    advance(r!.retryAfterMs - 1);
    expect(l.take(carried.key, carried)).toMatchObject({ retryAfterMs: expect.any(Number) });
    advance(1);
    expect(l.take(carried.key, carried)).toBeNull();
    // A signer whose clock ran an hour ahead holds a pod off no longer than the skew allowed (MAX_STATE_SKEW_MS) and the refill.
    const far = { key: 'pod shop/web-1', tokens: 0.25, atWallMs: wall + 3_600_000 };
    expect(l.take(far.key, far)).toEqual({ retryAfterMs: MAX_STATE_SKEW_MS + 750, first: true });
    advance(MAX_STATE_SKEW_MS + 750);
    expect(l.take(far.key, far)).toBeNull();
    // Behind our clock: refilled since, nothing to wait for beyond the refill.
    expect(l.take('pod shop/web-2', { key: 'pod shop/web-2', tokens: 0, atWallMs: wall - 400 })).toEqual({ retryAfterMs: 600, first: true });
  });

  test('what is left is carried rounded down: a replica continuing a budget gets no part of a signature it did not have', () => {
    expect(encodeCertifyState({ key: 'pod a/b c', tokens: 0.9996, atWallMs: 1 })).toBe('wren certify-limit v1 0.999 1 pod a/b c');
    expect(encodeCertifyState({ key: 'pod a/b c', tokens: 4.99999, atWallMs: 1 })).toBe('wren certify-limit v1 4.999 1 pod a/b c');
    for (const t of [0, 0.001, 0.3, 0.57, 1, 1.005, 2.5, 4.9995, 5]) expect(parseCertifyState(encodeCertifyState({ key: 'pod a/b c', tokens: t, atWallMs: 1 }))!.tokens).toBeLessThanOrEqual(t);
    // The time no earlier than it was (an earlier one is refill not earned).
    expect(encodeCertifyState({ key: 'pod a/b c', tokens: 1, atWallMs: 1000.2 })).toBe('wren certify-limit v1 1.000 1001 pod a/b c');
    // Replica A signs with 0.9996 left; B, at once, continues from the certificate: nothing to sign with.
    let now = 0;
    const a = new CertifyLimiter({ burst: 5, refillMs: 1000, now: () => now, wallNow: () => 5000 + now });
    const b = new CertifyLimiter({ burst: 5, refillMs: 1000, now: () => now, wallNow: () => 5000 + now });
    for (let i = 0; i < 5; i++) expect(a.take('pod shop/web a')).toBeNull();
    now += 999.6;
    expect(a.take('pod shop/web a')).toEqual({ retryAfterMs: 1, first: true });
    const carried = parseCertifyState(encodeCertifyState(a.stateOf('pod shop/web a')))!;
    expect(b.take(carried.key, carried)).toMatchObject({ first: true });
  });

  test('a bootstrap token\'s bucket is sized for a fleet (20, one a second), and so is what its certificates renew', () => {
    let now = 0;
    const l = new CertifyLimiter({ refillMs: 60_000, now: () => now, wallNow: () => 1000 + now });
    const key = l.keyOf({ ...principal, via: 'bootstrap', shared: true }, null, Buffer.from('secret'));
    for (let i = 0; i < BOOTSTRAP_TOKEN_BURST; i++) expect(l.take(key)).toBeNull();
    expect(l.take(key)).toEqual({ retryAfterMs: 1000, first: true });
    // A certificate it got carries its key: its renewal is charged there.
    expect(l.take(l.keyOf(principal, { serial: 'ABC', state: l.stateOf(key) }, Buffer.alloc(0)))).toEqual({ retryAfterMs: 1000, first: false });
    now += 1000;
    expect(l.take(key)).toBeNull();
    // A workload's bucket is not: 5, then one a minute.
    const pod = l.keyOf({ ...principal, pod: 'web-0' }, null, Buffer.alloc(0));
    for (let i = 0; i < 5; i++) expect(l.take(pod)).toBeNull();
    expect(l.take(pod)).toEqual({ retryAfterMs: 60_000, first: true });
  });

  test('full buckets are dropped', () => {
    let now = 0;
    const l = new CertifyLimiter({ burst: 2, refillMs: 1000, now: () => now, wallNow: () => now });
    for (let i = 0; i < 100; i++) l.take(`k${i}`);
    expect(l.size).toEqual({ buckets: 100 });
    now += 2000;
    l.take('other');
    expect(l.size).toEqual({ buckets: 1 });
  });
});
