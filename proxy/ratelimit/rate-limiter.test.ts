import { FakeClock, systemClock } from '../../common/clock.js';
import { parseRateLimitPolicy } from '../../contract/parse-ratelimit.js';
import { Worker } from 'node:worker_threads';
import { RateLimiter } from './rate-limiter.js';
import { bucketMemory } from './shared-buckets.js';

const A = 'spiffe://cluster.local/ns/demo/sa/a';
const B = 'spiffe://cluster.local/ns/demo/sa/b';
const VIP = 'spiffe://cluster.local/ns/demo/sa/vip';
const policy = (spec: Record<string, unknown>) => parseRateLimitPolicy({ name: 'demo/rl', ...spec }, 'p');

function limiter(specs: Record<string, unknown>[], maxIdentityBuckets = 100) {
  const clock = new FakeClock(0);
  let evicted = 0;
  const rl = new RateLimiter({ clock, maxIdentityBuckets, onEvict: () => evicted++ }, specs.map(policy));
  /** How many of n requests at the same instant get through. */
  const burst = (n: number, identity = A, path = '/', method = 'GET', port = 8080) => {
    let ok = 0;
    for (let i = 0; i < n; i++) if (rl.check(port, identity, method, path) === null) ok++;
    return ok;
  };
  return { clock, rl, burst, evicted: () => evicted };
}

describe('RateLimiter', () => {
  test('no policy: inactive, everything admitted', () => {
    const { rl, burst } = limiter([]);
    expect(rl.active).toBe(false);
    expect(burst(1000)).toBe(1000);
  });

  test('total: burst admitted at once, the excess refused with scope total and Retry-After in whole seconds', () => {
    const { rl, burst, clock } = limiter([{ total: { requestsPerSecond: 2, burst: 5 } }]);
    expect(burst(8)).toBe(5);
    expect(rl.check(8080, A, 'GET', '/')).toEqual({ policy: 'demo/rl', scope: 'total', retryAfterSec: 1 });
    clock.advance(1000); // two tokens back
    expect(burst(5)).toBe(2);
  });

  test('Retry-After rounds the wait up to whole seconds (0.2/s: 5 s per token)', () => {
    const { rl, burst } = limiter([{ total: { requestsPerSecond: 0.2, burst: 1 } }]);
    expect(burst(1)).toBe(1);
    expect(rl.check(8080, A, 'GET', '/')?.retryAfterSec).toBe(5);
  });

  test('identity: one bucket per caller, so a noisy caller is limited and a quiet one is not; unauthenticated callers share one', () => {
    const { rl, burst } = limiter([{ identity: { requestsPerSecond: 1, burst: 3 } }]);
    expect(burst(10, A)).toBe(3);
    expect(rl.check(8080, A, 'GET', '/')?.scope).toBe('identity');
    expect(burst(3, B)).toBe(3);
    expect(burst(2, '')).toBe(2);
    expect(burst(2, '')).toBe(1);
  });

  test('overrides: the named callers share their override bucket instead of a per-identity one', () => {
    const { rl, burst } = limiter([{ identity: { requestsPerSecond: 1, burst: 1 }, overrides: [{ clients: [VIP, B], requestsPerSecond: 10, burst: 4 }] }]);
    expect(burst(3, VIP)).toBe(3);
    expect(burst(3, B)).toBe(1); // the override's 4 tokens are shared
    expect(rl.check(8080, B, 'GET', '/')?.scope).toBe('override');
    expect(burst(3, A)).toBe(1);
  });

  test('routes: the first matching route replaces total for its requests; method and prefix both match', () => {
    const { burst, rl } = limiter([
      { total: { requestsPerSecond: 1, burst: 2 }, routes: [{ match: { pathPrefix: '/api/', method: 'post' }, requestsPerSecond: 1, burst: 1 }, { match: { pathPrefix: '/api/' }, requestsPerSecond: 1, burst: 3 }] },
    ]);
    expect(burst(5, A, '/api/x', 'POST')).toBe(1);
    expect(rl.check(8080, A, 'POST', '/api/x')?.scope).toBe('route');
    expect(burst(5, A, '/api/x', 'GET')).toBe(3);
    expect(burst(5, A, '/other', 'GET')).toBe(2);
  });

  test('a refused request takes no token from the buckets that had one', () => {
    const { burst } = limiter([{ total: { requestsPerSecond: 1, burst: 8 }, identity: { requestsPerSecond: 1, burst: 2 } }]);
    expect(burst(5, A)).toBe(2); // A's bucket refuses 3: total keeps 6
    expect(burst(20, B)).toBe(2);
    expect(burst(20, '')).toBe(2);
    expect(burst(20, VIP)).toBe(2); // 2+2+2+2 = 8: exactly total's burst
    expect(burst(1, 'spiffe://cluster.local/ns/demo/sa/z')).toBe(0);
  });

  test('ports: a policy with ports limits only those', () => {
    const { burst } = limiter([{ ports: [9090], total: { requestsPerSecond: 1, burst: 1 } }]);
    expect(burst(5, A, '/', 'GET', 8080)).toBe(5);
    expect(burst(5, A, '/', 'GET', 9090)).toBe(1);
  });

  test('per-identity buckets are bounded: the least recently used goes, counted', () => {
    const { burst, evicted } = limiter([{ identity: { requestsPerSecond: 1, burst: 1 } }], 2);
    expect(burst(2, A)).toBe(1);
    expect(burst(1, B)).toBe(1);
    expect(burst(1, A)).toBe(0); // A used last: B is the oldest
    expect(burst(1, VIP)).toBe(1); // evicts B
    expect(evicted()).toBe(1);
    expect(burst(1, A)).toBe(0); // A's empty bucket was kept
    expect(burst(1, B)).toBe(1); // B comes back to a full bucket (evicting VIP)
    expect(evicted()).toBe(2);
  });

  test('update keeps the buckets of an unchanged policy and starts a changed one full', () => {
    const p1 = { total: { requestsPerSecond: 1, burst: 2 } };
    const { rl, burst } = limiter([p1]);
    expect(burst(2)).toBe(2);
    rl.update([policy(p1)]);
    expect(burst(1)).toBe(0);
    rl.update([policy({ total: { requestsPerSecond: 1, burst: 3 } })]);
    expect(burst(5)).toBe(3);
  });

  test('several policies: a request one refuses takes no token from another (a noisy caller cannot drain the shared total)', () => {
    // ADV5-4: platform team caps the workload at 10/s total, the app team adds 1/s per caller.
    // A noisy caller sends 10 at once: 1 admitted, 9 refused by the per-caller policy; had
    // they taken a-total's tokens, every other caller would then get 429 (scope total).
    const clock = new FakeClock(0);
    const rl = new RateLimiter({ clock, maxIdentityBuckets: 100, onEvict: () => undefined }, [
      parseRateLimitPolicy({ name: 'demo/a-total', total: { requestsPerSecond: 10, burst: 10 } }, 'a'),
      parseRateLimitPolicy({ name: 'demo/b-per-caller', identity: { requestsPerSecond: 1, burst: 1 } }, 'b'),
    ]);
    let admitted = 0;
    for (let i = 0; i < 10; i++) if (rl.check(8080, A, 'GET', '/') === null) admitted++;
    expect(admitted).toBe(1);
    expect(rl.check(8080, A, 'GET', '/')).toEqual({ policy: 'demo/b-per-caller', scope: 'identity', retryAfterSec: 1 });
    // Nine refused, one served: a-total has 9 tokens left, so 9 other callers pass and the 10th does not.
    for (let i = 0; i < 9; i++) expect(rl.check(8080, `${B}-${i}`, 'GET', '/')).toBeNull();
    expect(rl.check(8080, VIP, 'GET', '/')).toEqual({ policy: 'demo/a-total', scope: 'total', retryAfterSec: 1 });
  });

  test('several policies: a policy for another port admits without taking, and does not keep a stale bucket list', () => {
    const clock = new FakeClock(0);
    const rl = new RateLimiter({ clock, maxIdentityBuckets: 100, onEvict: () => undefined }, [
      parseRateLimitPolicy({ name: 'demo/a', ports: [9090], total: { requestsPerSecond: 1, burst: 2 } }, 'a'),
      parseRateLimitPolicy({ name: 'demo/b', total: { requestsPerSecond: 1, burst: 5 } }, 'b'),
    ]);
    expect(rl.check(9090, A, 'GET', '/')).toBeNull(); // a: 1 left, b: 4
    for (let i = 0; i < 4; i++) expect(rl.check(8080, A, 'GET', '/')).toBeNull(); // b only: 0 left
    expect(rl.check(8080, A, 'GET', '/')?.policy).toBe('demo/b');
    clock.advance(1000); // b: 1 token back, a: 2 (capped)
    expect(rl.check(8080, A, 'GET', '/')).toBeNull();
    expect(rl.check(9090, A, 'GET', '/')?.policy).toBe('demo/b');
    clock.advance(1000);
    expect(rl.check(9090, A, 'GET', '/')).toBeNull();
  });

  test('two limiters over one shared table (two workers) hold one set of buckets, and the per-identity bound is the table\'s', () => {
    const clock = new FakeClock(0);
    const shared = bucketMemory(2, clock, true);
    let evicted = 0;
    const o = { clock, maxIdentityBuckets: 2, onEvict: () => evicted++, shared };
    const specs = [policy({ total: { requestsPerSecond: 1, burst: 5 }, identity: { requestsPerSecond: 1, burst: 2 } })];
    const w0 = new RateLimiter(o, specs);
    const w1 = new RateLimiter(o, specs);
    expect(w0.check(8080, A, 'GET', '/')).toBeNull();
    expect(w1.check(8080, A, 'GET', '/')).toBeNull();
    expect(w0.check(8080, A, 'GET', '/')?.scope).toBe('identity'); // A's two tokens, taken one in each worker
    expect(w1.check(8080, B, 'GET', '/')).toBeNull();
    expect(w0.check(8080, VIP, 'GET', '/')).toBeNull(); // a third caller: the least recently used (A) goes
    expect(evicted).toBe(1);
    expect(w1.check(8080, B, 'GET', '/')).toBeNull(); // total: 5 taken
    expect(w0.check(8080, A, 'GET', '/')?.scope).toBe('total');
  });

  test("a changed policy frees the old one's buckets: its callers do not count against the bound, nor push live callers out", () => {
    const { rl, burst, evicted } = limiter([{ identity: { requestsPerSecond: 1, burst: 1 } }], 2);
    expect(burst(1, A)).toBe(1);
    expect(burst(1, B)).toBe(1); // two per-identity buckets: the bound
    rl.update([policy({ identity: { requestsPerSecond: 1, burst: 2 } })]);
    expect(burst(3, A)).toBe(2); // a new, full bucket
    expect(burst(3, B)).toBe(2);
    expect(evicted()).toBe(0); // the old policy's two buckets were let go, not evicted
    expect(burst(1, A)).toBe(0); // and A's new bucket is still there
  });

  test('two threads checking at once: a request refused by one bucket gives back what it took from the others', async () => {
    // X's own bucket holds one token and refills every 20 µs, so the two threads race for
    // it all the time: both see a token, both take one from `total`, one loses X's and must
    // give `total`'s back. Afterwards `total` must hold exactly TOTAL minus X's admissions.
    const TOTAL = 100_000;
    const clock = systemClock; // the workers' clock below is the same: performance.timeOrigin + performance.now()
    const shared = bucketMemory(100, clock, true);
    const specs = [
      { name: 'demo/a-total', total: { requestsPerSecond: 0.001, burst: TOTAL } },
      { name: 'demo/b-x', identity: { requestsPerSecond: 50_000, burst: 1 }, overrides: [{ clients: [VIP], requestsPerSecond: 0.001, burst: 10 * TOTAL }] },
    ];
    const src = `
      const { parentPort, workerData } = require('node:worker_threads');
      Promise.all([import(workerData.limiter), import(workerData.parse)]).then(([{ RateLimiter }, { parseRateLimitPolicy }]) => {
        const clock = { now: () => performance.timeOrigin + performance.now(), setTimeout, clearTimeout };
        const rl = new RateLimiter({ clock, maxIdentityBuckets: 100, onEvict: () => undefined, shared: workerData.shared },
          workerData.specs.map((p, i) => parseRateLimitPolicy(p, String(i))));
        Atomics.add(workerData.go, 0, 1);
        while (Atomics.load(workerData.go, 0) < 2);
        let x = 0;
        for (let i = 0; i < 30000; i++) if (rl.check(8080, workerData.x, 'GET', '/') === null) x++;
        parentPort.postMessage(x);
      });`;
    const dist = (f: string) => new URL(`../../dist/${f}`, import.meta.url).href;
    const go = new Int32Array(new SharedArrayBuffer(4));
    const run = () =>
      new Promise<number>((resolve, reject) => {
        const w = new Worker(src, { eval: true, workerData: { limiter: dist('proxy/ratelimit/rate-limiter.js'), parse: dist('contract/parse-ratelimit.js'), shared, go, specs, x: A } });
        w.once('message', (n: number) => void w.terminate().then(() => resolve(n)));
        w.once('error', reject);
      });
    const [a, b] = await Promise.all([run(), run()]);
    expect(a + b).toBeGreaterThan(0);
    // What is left in total: drained by VIP, whose override bucket never refuses.
    const main = new RateLimiter({ clock, maxIdentityBuckets: 100, onEvict: () => undefined, shared }, specs.map((p, i) => parseRateLimitPolicy(p, String(i))));
    let left = 0;
    while (main.check(8080, VIP, 'GET', '/') === null) left++;
    expect(a + b + left).toBe(TOTAL);
  });
});
