import { Worker } from 'node:worker_threads';
import { FakeClock } from '../../common/clock.js';
import { bucketMemory, bucketRate, SharedBuckets } from './shared-buckets.js';

/** One bucket on a fake timeline (ms): full at start, refill at the rate, capped at burst (what token-bucket.test.ts checked). */
function bucket(rate: { requestsPerSecond: number; burst: number }, startMs: number) {
  const clock = new FakeClock(startMs);
  const table = new SharedBuckets(bucketMemory(16, clock, false), clock, 16, () => undefined);
  const slot = table.slot(1234n, false);
  const r = bucketRate(rate);
  const at = (ms: number) => {
    clock.advance(ms - clock.now());
    return table.nowNs();
  };
  return {
    available: (ms: number) => table.available(slot, r, at(ms)),
    waitMs: (ms: number) => table.waitMs(slot, r, at(ms)),
    take: (ms: number) => table.tryTake(slot, r, at(ms)),
  };
}

describe('SharedBuckets: one bucket', () => {
  test('starts full with burst tokens, each take removes one, and it refills at requestsPerSecond', () => {
    const b = bucket({ requestsPerSecond: 10, burst: 3 }, 1000);
    for (let i = 0; i < 3; i++) {
      expect(b.available(1000)).toBeGreaterThanOrEqual(1);
      expect(b.take(1000)).toBe(true);
    }
    expect(b.available(1000)).toBe(0);
    expect(b.take(1000)).toBe(false);
    // 10/s: one token per 100 ms.
    expect(b.waitMs(1000)).toBe(100);
    expect(b.available(1050)).toBeCloseTo(0.5);
    expect(b.waitMs(1050)).toBeCloseTo(50);
    expect(b.available(1100)).toBeCloseTo(1);
    expect(b.waitMs(1100)).toBe(0);
  });

  test('never holds more than burst, however long it idles', () => {
    const b = bucket({ requestsPerSecond: 100, burst: 5 }, 0);
    b.take(0);
    expect(b.available(3_600_000)).toBe(5);
  });

  test('a fractional rate: 0.5/s gives one token per two seconds', () => {
    const b = bucket({ requestsPerSecond: 0.5, burst: 1 }, 0);
    b.take(0);
    expect(b.waitMs(0)).toBe(2000);
    expect(b.available(1999)).toBeLessThan(1);
    expect(b.available(2000)).toBeCloseTo(1);
  });

  test('time going backwards (a clock step, or a thread whose clock is behind) neither adds nor removes tokens', () => {
    const b = bucket({ requestsPerSecond: 10, burst: 2 }, 5000);
    b.take(5000);
    expect(b.available(4000)).toBe(1);
  });
});

describe('SharedBuckets: the table', () => {
  test('per-identity buckets are bounded for the whole table: at the bound the least recently used one is taken over, counted', () => {
    const clock = new FakeClock(0);
    let evicted = 0;
    const t = new SharedBuckets(bucketMemory(2, clock, false), clock, 2, () => evicted++);
    const a = t.slot(11n, true);
    const b = t.slot(21n, true);
    expect(t.slot(11n, true)).toBe(a); // found again, and now used after b
    const c = t.slot(31n, true);
    expect(evicted).toBe(1);
    expect(t.holds(b, 21n)).toBe(false); // b was the least recently used
    expect(t.holds(a, 11n)).toBe(true);
    expect(t.slot(31n, true)).toBe(c);
    // Fixed buckets do not count against the per-identity bound.
    t.slot(40n, false);
    t.slot(42n, false);
    expect(evicted).toBe(1);
  });

  test('two tables over one memory (two workers) see one bucket', () => {
    const clock = new FakeClock(0);
    const mem = bucketMemory(16, clock, true);
    const w0 = new SharedBuckets(mem, clock, 16, () => undefined);
    const w1 = new SharedBuckets(mem, clock, 16, () => undefined);
    const r = bucketRate({ requestsPerSecond: 1, burst: 3 });
    const s = w0.slot(77n, false);
    expect(w1.slot(77n, false)).toBe(s);
    expect(w0.tryTake(s, r, 0)).toBe(true);
    expect(w1.tryTake(s, r, 0)).toBe(true);
    expect(w0.tryTake(s, r, 0)).toBe(true);
    expect(w1.tryTake(s, r, 0)).toBe(false);
    w0.refund(s, r);
    expect(w1.tryTake(s, r, 0)).toBe(true);
  });

  test('compare-exchange under contention: two threads hammering one bucket never take more than it holds', async () => {
    const clock = new FakeClock(0);
    const mem = bucketMemory(16, clock, true);
    const burst = 20_000;
    const table = new SharedBuckets(mem, clock, 16, () => undefined);
    const slot = table.slot(99n, false);
    // Each thread tries 3/4 of the burst as fast as it can on the same frozen instant: no refill.
    const src = `
      const { parentPort, workerData } = require('node:worker_threads');
      import(workerData.url).then(({ SharedBuckets, bucketRate }) => {
        const clock = { now: () => 0, setTimeout, clearTimeout };
        const t = new SharedBuckets(workerData.mem, clock, 16, () => undefined);
        const r = bucketRate({ requestsPerSecond: 0.001, burst: workerData.burst });
        Atomics.add(workerData.go, 0, 1);
        while (Atomics.load(workerData.go, 0) < 2);
        let ok = 0;
        for (let i = 0; i < workerData.tries; i++) if (t.tryTake(workerData.slot, r, t.nowNs())) ok++;
        parentPort.postMessage(ok);
      });`;
    const url = new URL('../../dist/proxy/ratelimit/shared-buckets.js', import.meta.url).href;
    const go = new Int32Array(new SharedArrayBuffer(4));
    const run = () =>
      new Promise<number>((resolve, reject) => {
        const w = new Worker(src, { eval: true, workerData: { url, mem, slot, burst, tries: (burst * 3) / 4, go } });
        w.once('message', (n: number) => void w.terminate().then(() => resolve(n)));
        w.once('error', reject);
      });
    const [a, b] = await Promise.all([run(), run()]);
    expect(a + b).toBe(burst);
    expect(a).toBeGreaterThan(0);
    expect(b).toBeGreaterThan(0);
  });
});
