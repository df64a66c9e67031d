import { Worker } from 'node:worker_threads';
import { DEFAULT_POLICY } from '../../contract/defaults.js';
import { ProxyError } from '../errors/proxy-error.js';
import { ConcurrencyLimits, type Admission } from './concurrency-limits.js';
import { counterMemory, resetColumn, SharedCounters } from './shared-counters.js';

const policy = (maxRequests: number) => ({ ...DEFAULT_POLICY.circuitBreaker, maxRequests });

describe('SharedCounters', () => {
  test('two threads (columns) share one limit per cluster name; other clusters count apart', () => {
    const mem = counterMemory(2, true);
    const w0 = new ConcurrencyLimits(policy(3), undefined, new SharedCounters(mem, 0).cellsFor('web.demo:80'));
    const w1 = new ConcurrencyLimits(policy(3), undefined, new SharedCounters(mem, 1).cellsFor('web.demo:80'));
    const other = new ConcurrencyLimits(policy(3), undefined, new SharedCounters(mem, 1).cellsFor('api.demo:80'));
    const held = [w0.acquire('requests'), w1.acquire('requests'), w0.acquire('requests')] as Admission[];
    expect(w1.acquire('requests')).toBeInstanceOf(ProxyError);
    expect(w0.acquire('requests')).toBeInstanceOf(ProxyError);
    expect(w1.snapshot().requests).toEqual({ active: 3, max: 3 });
    expect(other.acquire('requests')).not.toBeInstanceOf(ProxyError);
    held[0]!.release();
    expect(w1.acquire('requests')).not.toBeInstanceOf(ProxyError);
  });

  test('a cluster made again (a snapshot that drops and restores it, or changes its limits) finds its in-flight count', () => {
    const mem = counterMemory(2, true);
    const before = new ConcurrencyLimits(policy(2), undefined, new SharedCounters(mem, 0).cellsFor('web.demo:80'));
    const held = before.acquire('requests') as Admission;
    const after = new ConcurrencyLimits(policy(1), undefined, new SharedCounters(mem, 1).cellsFor('web.demo:80'));
    expect(after.acquire('requests')).toBeInstanceOf(ProxyError);
    held.release();
    expect(after.acquire('requests')).not.toBeInstanceOf(ProxyError);
  });

  test("resetColumn forgets what an exited worker held, and only that", () => {
    const mem = counterMemory(2, true);
    const w0 = new ConcurrencyLimits(policy(2), undefined, new SharedCounters(mem, 0).cellsFor('web.demo:80'));
    const w1 = new ConcurrencyLimits(policy(2), undefined, new SharedCounters(mem, 1).cellsFor('web.demo:80'));
    w0.acquire('requests');
    w1.acquire('requests');
    expect(w0.acquire('requests')).toBeInstanceOf(ProxyError);
    resetColumn(mem, 1);
    expect(w0.snapshot().requests.active).toBe(1);
    expect(w0.acquire('requests')).not.toBeInstanceOf(ProxyError);
  });

  test('a full table: the cluster counts in its own thread, and says so', () => {
    let full = 0;
    const mem = counterMemory(1, false, 2);
    const c = new SharedCounters(mem, 0, () => full++);
    c.cellsFor('a');
    c.cellsFor('b');
    const third = c.cellsFor('c');
    expect(full).toBe(1);
    expect(third.cells.buffer).not.toBe(mem.cells.buffer);
    expect(c.cellsFor('a').cells).toBe(mem.cells);
  });

  test('add-then-check under contention: two threads racing for the slots never hold more than the maximum', async () => {
    const K = 1;
    const mem = counterMemory(3, true);
    const src = `
      const { parentPort, workerData } = require('node:worker_threads');
      Promise.all([import(workerData.limits), import(workerData.counters)]).then(([{ ConcurrencyLimits }, { SharedCounters }]) => {
        const cb = { maxConnections: 1, maxPendingRequests: 1, maxRequests: workerData.K, maxRetries: 1 };
        const l = new ConcurrencyLimits(cb, undefined, new SharedCounters(workerData.mem, workerData.column).cellsFor('web.demo:80'));
        Atomics.add(workerData.go, 0, 1);
        while (Atomics.load(workerData.go, 0) < 2);
        // Churn at the limit (take, keep a moment, give back), counting the slots held at once
        // in a separate counter raised only after an admission and lowered before its release.
        let most = 0;
        for (let i = 0; i < 200000; i++) {
          const a = l.acquire('requests');
          if (!a.release) continue;
          most = Math.max(most, Atomics.add(workerData.inUse, 0, 1) + 1);
          Atomics.sub(workerData.inUse, 0, 1);
          a.release();
        }
        // Then hold what can be held.
        let held = 0;
        for (let i = 0; i < workerData.K; i++) if (l.acquire('requests').release) held++;
        parentPort.postMessage({ held, most });
      });`;
    const dist = (f: string) => new URL(`../../dist/proxy/resilience/${f}`, import.meta.url).href;
    const go = new Int32Array(new SharedArrayBuffer(4));
    const inUse = new Int32Array(new SharedArrayBuffer(4));
    const run = (column: number) =>
      new Promise<{ held: number; most: number }>((resolve, reject) => {
        const w = new Worker(src, { eval: true, workerData: { limits: dist('concurrency-limits.js'), counters: dist('shared-counters.js'), mem, column, K, go, inUse } });
        w.once('message', (n: { held: number; most: number }) => void w.terminate().then(() => resolve(n)));
        w.once('error', reject);
      });
    const [r1, r2] = await Promise.all([run(1), run(2)]);
    expect(Math.max(r1.most, r2.most)).toBeLessThanOrEqual(K);
    const [a, b] = [r1.held, r2.held];
    expect(a + b).toBeLessThanOrEqual(K);
    const main = new ConcurrencyLimits(policy(K), undefined, new SharedCounters(mem, 0).cellsFor('web.demo:80'));
    expect(main.snapshot().requests.active).toBe(a + b); // every release landed: the count is exact
    let more = 0;
    while (!(main.acquire('requests') instanceof ProxyError)) more++;
    expect(a + b + more).toBe(K);
  });
});
