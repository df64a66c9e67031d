import { FakeClock } from '../common/clock.js';
import { AdminAccess } from './admin-access.js';
import { AuthError, type Authenticator, type Principal } from './identity/authenticator.js';

/** An authenticator that knows a few tokens and counts its reviews. */
function tokens(known: Record<string, Principal>): Authenticator & { reviews: number } {
  const a = {
    name: 'fake',
    reviews: 0,
    authenticate(t: Buffer): Promise<Principal> {
      a.reviews++;
      const p = known[t.toString('utf8')];
      return p ? Promise.resolve(p) : Promise.reject(new AuthError('unauthenticated', 'invalid bearer token'));
    },
  };
  return a;
}

const admin: Principal = { namespace: 'wren-system', serviceAccount: 'wren-cli', via: 'fake' };
const app: Principal = { namespace: 'default', serviceAccount: 'web', via: 'fake' };
const EXTERNAL = '10.1.2.3';

describe('AdminAccess', () => {
  test('/live, /ready and /metrics answer anyone; everything else only loopback without a token', async () => {
    const a = new AdminAccess({ namespace: 'wren-system', authenticator: null, clock: new FakeClock() });
    for (const p of ['/live', '/ready', '/metrics']) expect(await a.refusal(p, EXTERNAL, {})).toBeNull();
    for (const from of ['127.0.0.1', '127.0.1.254', '::1', '::ffff:127.0.0.1']) expect(await a.refusal('/debug/view', from, {})).toBeNull();
    for (const p of ['/debug/view', '/debug/proxy-config', '/api/why', '/dashboard/', '/nope']) {
      expect(await a.refusal(p, EXTERNAL, {})).toContain('x-wren-admin-token');
    }
    // Not loopback: an IPv4-mapped non-loopback, a look-alike, no address at all.
    for (const from of ['::ffff:10.0.0.1', '::2', undefined]) expect(await a.refusal('/api/why', from, {})).not.toBeNull();
    expect(await a.refusal('/api/why', EXTERNAL, { 'x-wren-admin-token': 't' })).toContain('no Kubernetes API to check tokens with');
  });

  test("a token of a ServiceAccount of the control plane's namespace opens the rest; others are refused saying why", async () => {
    const auth = tokens({ good: admin, other: app });
    const a = new AdminAccess({ namespace: 'wren-system', authenticator: auth, clock: new FakeClock() });
    expect(await a.refusal('/debug/view', EXTERNAL, { 'x-wren-admin-token': 'good' })).toBeNull();
    expect(await a.refusal('/debug/view', EXTERNAL, { 'x-wren-admin-token': 'other' })).toContain('ServiceAccount default/web');
    expect(await a.refusal('/debug/view', EXTERNAL, { 'x-wren-admin-token': 'forged' })).toContain('the token was refused (invalid bearer token)');
    // A repeated header arrives as a list: not a token.
    expect(await a.refusal('/debug/view', EXTERNAL, { 'x-wren-admin-token': ['good', 'good'] })).not.toBeNull();
  });

  test('a granted token is reviewed again after a minute, a refused one every time', async () => {
    const auth = tokens({ good: admin });
    const clock = new FakeClock();
    const a = new AdminAccess({ namespace: 'wren-system', authenticator: auth, clock });
    await a.refusal('/api/why', EXTERNAL, { 'x-wren-admin-token': 'good' });
    await a.refusal('/api/why', EXTERNAL, { 'x-wren-admin-token': 'good' });
    expect(auth.reviews).toBe(1);
    clock.advance(60_001);
    expect(await a.refusal('/api/why', EXTERNAL, { 'x-wren-admin-token': 'good' })).toBeNull();
    expect(auth.reviews).toBe(2);
    await a.refusal('/api/why', EXTERNAL, { 'x-wren-admin-token': 'bad' });
    await a.refusal('/api/why', EXTERNAL, { 'x-wren-admin-token': 'bad' });
    expect(auth.reviews).toBe(4);
  });

  test('a token check given up on a TokenReview limit is a 403 and is counted by limit', async () => {
    const counted: string[] = [];
    const limited = { inc: ({ limit }: { limit: string }) => void counted.push(limit) };
    const fails = (e: Error): Authenticator => ({ name: 'fake', authenticate: () => Promise.reject(e) });
    for (const limit of ['timeout', 'overloaded'] as const) {
      const a = new AdminAccess({ namespace: 'wren-system', authenticator: fails(new AuthError('unavailable', `limit ${limit}`, { limit })), clock: new FakeClock(), limited });
      expect(await a.refusal('/debug/view', EXTERNAL, { 'x-wren-admin-token': 'good' })).toContain(`the token was refused (limit ${limit})`);
    }
    const other = new AdminAccess({ namespace: 'wren-system', authenticator: fails(new AuthError('unavailable', 'API server down')), clock: new FakeClock(), limited });
    await other.refusal('/debug/view', EXTERNAL, { 'x-wren-admin-token': 'good' });
    expect(counted).toEqual(['timeout', 'overloaded']);
  });

  test('a granted token dropped from the full cache (256) before its minute is counted, and is reviewed again; an expired one makes room uncounted', async () => {
    const known: Record<string, Principal> = {};
    for (let i = 0; i < 300; i++) known[`t${i}`] = admin;
    const auth = tokens(known);
    const clock = new FakeClock();
    let evicted = 0;
    const a = new AdminAccess({ namespace: 'wren-system', authenticator: auth, clock, evicted: { inc: () => void evicted++ } });
    for (let i = 0; i < 256; i++) expect(await a.refusal('/api/why', EXTERNAL, { 'x-wren-admin-token': `t${i}` })).toBeNull();
    expect(evicted).toBe(0);
    // The 257th evicts t0, the oldest grant, still within its minute.
    await a.refusal('/api/why', EXTERNAL, { 'x-wren-admin-token': 't256' });
    expect(evicted).toBe(1);
    const reviews = auth.reviews;
    await a.refusal('/api/why', EXTERNAL, { 'x-wren-admin-token': 't0' });
    expect(auth.reviews).toBe(reviews + 1);
    expect(evicted).toBe(2);
    // Once every grant has expired, new ones take the expired ones' room: nothing live is dropped.
    clock.advance(60_001);
    for (let i = 1; i < 40; i++) await a.refusal('/api/why', EXTERNAL, { 'x-wren-admin-token': `t${256 + i}` });
    expect(evicted).toBe(2);
  });
});
