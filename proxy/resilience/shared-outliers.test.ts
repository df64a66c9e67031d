import { Worker } from 'node:worker_threads';
import { FakeClock, seededRandom, systemClock } from '../../common/clock.js';
import { DEFAULT_POLICY } from '../../contract/defaults.js';
import type { OutlierPolicy } from '../../contract/model.js';
import { classify } from './classify.js';
import { OutlierDetector, type OutlierEvent } from './outlier-detector.js';
import { BUCKET, CELLS, CHANGING, EJECTED, EJECTED_AT, EJECTION_MS, EXT_TOTAL, FROM_EJECTED, GENERATION, outlierMemory, SharedOutliers, STATE_MASK, TIMES, UNEJECTED_AT, type OutlierMemory } from './shared-outliers.js';

/**
 * Outlier detection with listener workers (config `concurrency` > 1): two detectors of
 * one cluster over one shared table, as two workers hold them, each announcing its
 * decisions to the other (what worker-pool.ts relays). An endpoint's consecutive
 * failures and its ejection are the sidecar's, as Envoy's per-cluster detector is the
 * process's (outlier_detection_impl.cc: workers count in the host monitor's atomics, the
 * main thread ejects for all of them).
 */
const ok = classify({ type: 'response', status: 200 });
const e500 = classify({ type: 'response', status: 500 });

function workers(over: Partial<OutlierPolicy> = {}, hosts = ['a'], memory: OutlierMemory = outlierMemory(true, 64), onFull: () => void = () => undefined) {
  const clock = new FakeClock(0);
  const policy = { ...DEFAULT_POLICY.outlierDetection, ...over };
  const announced: string[] = [];
  const ds: OutlierDetector[] = [];
  const events: OutlierEvent[][] = [[], []];
  for (const w of [0, 1]) {
    const table = new SharedOutliers(memory, onFull, w);
    const d = new OutlierDetector(policy, clock, seededRandom(w + 1), {
      table, cluster: 'web.default:80',
      // The main thread relays it to the other worker.
      announce: (endpoint) => {
        announced.push(`${w}:${endpoint}`);
        ds[1 - w]!.sync(endpoint);
      },
    });
    d.setHosts(hosts);
    d.onEvent((e) => events[w]!.push(e));
    ds.push(d);
  }
  return { clock, ds: ds as [OutlierDetector, OutlierDetector], events, announced, close: () => ds.forEach((d) => d.close()) };
}

describe('shared outlier detection (two workers, one table)', () => {
  it('consecutive5xx counts failures over both workers: the 5th in all ejects, in both', () => {
    const { ds: [w0, w1], events, announced, close } = workers();
    for (const d of [w0, w1, w0, w1]) d.record('a', e500);
    expect(w0.isEjected('a') || w1.isEjected('a')).toBe(false);
    w0.record('a', e500); // the 5th for the sidecar: 3 seen by worker 0, 2 by worker 1
    expect(w0.isEjected('a')).toBe(true);
    expect(w1.isEjected('a')).toBe(true);
    // Decided once (one detection counted, one log line), followed by the other worker.
    expect(events[0]).toEqual([
      { type: 'detected', endpoint: 'a', reason: 'consecutive-5xx', action: 'ejected' },
      { type: 'ejected', endpoint: 'a', reason: 'consecutive-5xx', until: 30_000, timesEjected: 1 },
    ]);
    expect(events[1]).toEqual([{ type: 'ejected', endpoint: 'a', reason: 'consecutive-5xx', until: 30_000, timesEjected: 1, remote: true }]);
    expect(announced).toEqual(['0:a']);
    expect(w1.state('a')).toEqual(w0.state('a'));
    close();
  });

  it("a success in either worker ends the streak the other was counting", () => {
    const { ds: [w0, w1], close } = workers();
    for (let i = 0; i < 4; i++) w0.record('a', e500);
    w1.record('a', ok);
    for (let i = 0; i < 4; i++) w0.record('a', e500);
    expect(w0.isEjected('a')).toBe(false);
    w1.record('a', e500);
    expect(w0.isEjected('a') && w1.isEjected('a')).toBe(true);
    close();
  });

  it('maxEjectionPercent holds over the sidecar: an endpoint one worker ejected counts in the other', () => {
    const hosts = ['a', 'b', 'c', 'd', 'e'];
    const { ds: [w0, w1], events, close } = workers({ maxEjectionPercent: 20 }, hosts);
    for (let i = 0; i < 5; i++) w0.record('a', e500);
    for (let i = 0; i < 5; i++) w1.record('b', e500);
    expect(hosts.filter((h) => w0.isEjected(h))).toEqual(['a']);
    expect(hosts.filter((h) => w1.isEjected(h))).toEqual(['a']);
    expect(events[1]).toContainEqual({ type: 'detected', endpoint: 'b', reason: 'consecutive-5xx', action: 'overflow' });
    close();
  });

  it('the ejection ends once for the sidecar: one sweep unejects, the other worker follows; the backoff decays once per interval', () => {
    const { clock, ds: [w0, w1], events, announced, close } = workers();
    for (let i = 0; i < 5; i++) w1.record('a', e500); // 30 s
    clock.advance(30_000); // both sweep at 10, 20, 30 s: the first at 30 s unejects
    expect(w0.isEjected('a') || w1.isEjected('a')).toBe(false);
    expect(announced).toHaveLength(2);
    expect([...events[0]!, ...events[1]!].filter((e) => e.type === 'unejected')).toEqual([
      expect.objectContaining({ type: 'unejected', endpoint: 'a', cause: 'timeout' }),
      expect.objectContaining({ type: 'unejected', endpoint: 'a', cause: 'timeout', remote: true }),
    ]);
    for (let i = 0; i < 5; i++) w0.record('a', e500); // 60 s: the backoff is the sidecar's
    expect(w1.state('a')).toMatchObject({ ejected: true, ejectedUntil: 90_000, backoff: 2, timesEjected: 2 });
    clock.advance(60_000); // unejected at 90 s
    expect(w0.isEjected('a') || w1.isEjected('a')).toBe(false);
    expect(w0.state('a')!.backoff).toBe(2);
    // Two workers sweep every interval; the backoff drops by one per interval, not one per worker.
    clock.advance(10_000);
    expect(w0.state('a')!.backoff).toBe(1);
    expect(w1.state('a')!.backoff).toBe(1);
    clock.advance(10_000);
    expect(w0.state('a')!.backoff).toBe(0);
    close();
  });

  it("success rate is evaluated once per interval over both workers' requests: 60 + 60 per host reach a request volume of 100", () => {
    const hosts = ['a', 'b', 'c', 'd', 'e'];
    const { clock, ds: [w0, w1], events, close } = workers({}, hosts);
    for (const d of [w0, w1]) {
      for (const h of hosts) for (let i = 0; i < 60; i++) d.record(h, h === 'e' && i % 2 === 0 ? e500 : ok);
    }
    clock.advance(10_000); // both sweep; the first evaluates the interval for the sidecar
    // mean 90, σ 20: below 90 − 1.9 × 20 = 52 is e's 50 %.
    expect(hosts.filter((h) => w0.isEjected(h))).toEqual(['e']);
    expect(hosts.filter((h) => w1.isEjected(h))).toEqual(['e']);
    const detected = [...events[0]!, ...events[1]!].filter((e) => e.type === 'detected');
    expect(detected).toEqual([{ type: 'detected', endpoint: 'e', reason: 'success-rate', action: 'ejected' }]);
    close();
  });

  it('each interval is counted from nothing, in whichever worker', () => {
    const { clock, ds: [w0, w1], close } = workers({ enforcingFailurePercentage: 100, failurePercentageMinimumHosts: 1, failurePercentageRequestVolume: 50, consecutive5xx: 0 });
    for (let n = 0; n < 3; n++) {
      for (let i = 0; i < 30; i++) (i % 2 ? w0 : w1).record('a', e500); // 30 an interval: under the volume of 50, over it if a bucket kept the one before's
      clock.advance(10_000);
    }
    expect(w0.isEjected('a') || w1.isEjected('a')).toBe(false);
    for (let i = 0; i < 50; i++) (i % 2 ? w0 : w1).record('a', e500);
    clock.advance(10_000);
    expect(w0.isEjected('a') && w1.isEjected('a')).toBe(true);
    close();
  });

  it('an active health check passing in one worker unejects for both', () => {
    const { ds: [w0, w1], close } = workers();
    for (let i = 0; i < 5; i++) w0.record('a', e500);
    w1.healthCheckPassed('a');
    expect(w0.isEjected('a') || w1.isEjected('a')).toBe(false);
    close();
  });

  it('a missed announcement is caught by the next sweep; a worker that learns of an endpoint later finds it ejected', () => {
    const memory = outlierMemory(true, 64);
    const { clock, ds: [w0], close } = workers({}, ['a'], memory);
    const late = new OutlierDetector({ ...DEFAULT_POLICY.outlierDetection }, clock, seededRandom(3), { table: new SharedOutliers(memory, undefined, 2), cluster: 'web.default:80', announce: () => undefined });
    late.setHosts(['b']);
    const deaf = new OutlierDetector({ ...DEFAULT_POLICY.outlierDetection }, clock, seededRandom(4), { table: new SharedOutliers(memory, undefined, 3), cluster: 'web.default:80', announce: () => undefined });
    deaf.setHosts(['a']);
    const heard: OutlierEvent[] = [];
    deaf.onEvent((e) => heard.push(e));
    for (let i = 0; i < 5; i++) w0.record('a', e500); // neither `late` nor `deaf` is told
    expect(deaf.isEjected('a')).toBe(false);
    deaf.tick();
    expect(deaf.isEjected('a')).toBe(true);
    expect(heard).toEqual([{ type: 'ejected', endpoint: 'a', reason: 'consecutive-5xx', until: 30_000, timesEjected: 1, remote: true }]);
    deaf.close();
    expect(late.isEjected('a')).toBe(false); // it does not track a yet
    late.setHosts(['a', 'b']);
    expect(late.isEjected('a')).toBe(true);
    late.setHosts(['b']);
    late.setHosts(['b', 'a']);
    expect(late.isEjected('a')).toBe(true);
    late.close();
    close();
  });

  it('an endpoint every worker dropped starts healthy when it comes back (a new pod at a reused address), as with concurrency 1 and in Envoy (adv47)', () => {
    const { clock, ds: [w0, w1], events, close } = workers({}, ['a', 'b', 'c']);
    // Ejected three times (each after the last one ended):
    for (const ms of [30_000, 60_000]) {
      for (let i = 0; i < 5; i++) w0.record('a', e500);
      expect(w1.isEjected('a')).toBe(true);
      clock.advance(ms);
    }
    for (let i = 0; i < 5; i++) w0.record('a', e500);
    expect(w0.state('a')).toMatchObject({ ejected: true, timesEjected: 3, backoff: 3, lastReason: 'consecutive-5xx' });
    // Its pod is deleted: every worker's config drops it; a new pod gets its address before the ejection ends.
    for (const d of [w0, w1]) d.setHosts(['b', 'c']);
    clock.advance(1000);
    for (const d of [w0, w1]) d.setHosts(['a', 'b', 'c']);
    // Envoy removes a host's monitor with the host (outlier_detection_impl.cc, the member update
    // callback), and a detector of concurrency 1 makes a new one: the new endpoint is healthy.
    const single = new OutlierDetector({ ...DEFAULT_POLICY.outlierDetection }, clock, seededRandom(9));
    single.setHosts(['a']);
    for (const d of [w0, w1, single]) {
      expect(d.isEjected('a')).toBe(false);
      expect(d.state('a')).toEqual({ ejected: false, ejectedUntil: null, timesEjected: 0, backoff: 0, lastReason: null });
    }
    // And its streak starts from nothing: four failures do not eject it, the fifth does, for 30 s (backoff 1).
    events[0]!.length = 0;
    for (let i = 0; i < 4; i++) w1.record('a', e500);
    expect(w0.isEjected('a')).toBe(false);
    w1.record('a', e500);
    expect(w0.state('a')).toMatchObject({ ejected: true, timesEjected: 1, backoff: 1, ejectedUntil: clock.now() + 30_000 });
    // Dropped by one worker only (its config is a moment behind), it keeps the sidecar's state when it comes back.
    w1.setHosts(['b', 'c']);
    w1.setHosts(['a', 'b', 'c']);
    expect(w1.state('a')).toMatchObject({ ejected: true, timesEjected: 1 });
    single.close();
    close();
  });

  it('a worker that exits keeps an ejection the others track, and what it tracked is not held for ever by it (adv47)', () => {
    const memory = outlierMemory(true, 64);
    const { clock, ds: [w0, w1] } = workers({}, ['a', 'b', 'c'], memory);
    for (let i = 0; i < 5; i++) w0.record('a', e500);
    // Worker 0 exits without a word (no setHosts, no close); worker 1 still tracks a.
    const table = new SharedOutliers(memory, undefined, 0);
    table.forgetHolds();
    const w0b = new OutlierDetector({ ...DEFAULT_POLICY.outlierDetection }, clock, seededRandom(5), { table, cluster: 'web.default:80', announce: () => undefined });
    w0b.setHosts(['a', 'b', 'c']);
    expect(w0b.state('a')).toMatchObject({ ejected: true, timesEjected: 1 });
    // It exits too, and this time a's pod goes while worker 0 is away: its successor starts with a config without a.
    table.forgetHolds();
    const w0c = new OutlierDetector({ ...DEFAULT_POLICY.outlierDetection }, clock, seededRandom(6), { table, cluster: 'web.default:80', announce: () => undefined });
    w0c.setHosts(['b', 'c']);
    w1.setHosts(['b', 'c']);
    // A new pod comes at a's address: nobody tracked a, so it starts anew.
    for (const d of [w0c, w1]) d.setHosts(['a', 'b', 'c']);
    for (const d of [w0c, w1]) expect(d.state('a')).toMatchObject({ ejected: false, timesEjected: 0, backoff: 0 });
    for (const d of [w0, w0b, w0c, w1]) d.close();
  });

  it('a full table keeps an endpoint in its worker (counted); a slot whose lease ran out is taken over, zeroed', () => {
    const memory = outlierMemory(true, 2); // the cluster's slot and a's
    let full = 0;
    const { clock, ds: [w0, w1], close } = workers({}, ['a'], memory, () => full++);
    expect(full).toBe(0);
    // Endpoint b finds no room: per worker, counted once per worker.
    w0.setHosts(['a', 'b']);
    w1.setHosts(['a', 'b']);
    expect(full).toBe(2);
    for (const d of [w0, w1, w0, w1, w0]) d.record('b', e500);
    expect(w0.isEjected('b') || w1.isEjected('b')).toBe(false);
    for (let i = 0; i < 5; i++) w0.record('a', e500);
    expect(w1.isEjected('a')).toBe(true);
    close();
    // Nobody sweeps a's slot any more (its cluster is gone): after its lease (3 × 10 s + 60 s), c takes it over, healthy.
    clock.advance(91_000);
    const d = new OutlierDetector({ ...DEFAULT_POLICY.outlierDetection }, clock, seededRandom(3), { table: new SharedOutliers(memory, () => full++), cluster: 'api.default:80', announce: () => undefined });
    d.setHosts(['c']);
    expect(full).toBe(2);
    expect(d.state('c')).toMatchObject({ ejected: false, timesEjected: 0, backoff: 0 });
    for (let i = 0; i < 4; i++) d.record('c', e500);
    expect(d.isEjected('c')).toBe(false); // the counters were zeroed too
    d.record('c', e500);
    expect(d.isEjected('c')).toBe(true);
    d.close();
  });

  it('a change cut short (its worker terminated in the middle of it) is undone after a whole interval', () => {
    const memory = outlierMemory(true, 64);
    const { clock, ds: [w0, w1], close } = workers({}, ['a'], memory);
    const a = new SharedOutliers(memory).acquire('web.default:80', 'a', 0, 90).slot;
    Atomics.store(memory.states, a, BigInt(CHANGING));
    for (let i = 0; i < 5; i++) w0.record('a', e500);
    expect(w0.isEjected('a')).toBe(false);
    clock.advance(20_000); // seen CHANGING at 10 s, still at 20 s: restored
    for (let i = 0; i < 5; i++) w1.record('a', e500);
    expect(w0.isEjected('a') && w1.isEjected('a')).toBe(true);
    close();
  });

  /**
   * A table whose times array runs `hook.at` once, the first time the cell `hook.cell` is read
   * (get) or written (set): another worker's steps placed exactly between two of this one's
   * (a read and the exchange that acts on it, or a change's writes), where threads would race.
   */
  function hookedMemory() {
    const base = outlierMemory(true, 64);
    const hook: { cell: number; on: 'get' | 'set'; at: (() => void) | null } = { cell: -1, on: 'get', at: null };
    const fire = (on: 'get' | 'set', p: string | symbol) => {
      if (hook.at === null || hook.on !== on || p !== String(hook.cell)) return;
      const at = hook.at;
      hook.at = null;
      at();
    };
    const times = new Proxy(base.times, {
      get(t, p) {
        const v = Reflect.get(t, p, t) as unknown;
        fire('get', p);
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
      },
      set(t, p, v) {
        fire('set', p);
        return Reflect.set(t, p, v, t);
      },
    });
    const memory: OutlierMemory = { ...base, times };
    const slot = new SharedOutliers(memory).acquire('web.default:80', 'a', 0, 90).slot;
    return { memory, hook, slot, state: () => Number(Atomics.load(memory.states, slot) & STATE_MASK) };
  }

  it("a sweep's timeout uneject ends only the ejection whose times it read: one another worker ended and began anew in between runs its time (ABA; adv54)", () => {
    const { memory, hook, slot, state } = hookedMemory();
    const { clock, ds: [w0, w1], events, close } = workers({}, ['a'], memory);
    for (let i = 0; i < 5; i++) w0.record('a', e500); // ejected at 0 for 30 s
    clock.advance(25_000);
    // Worker 0's sweep at 30 s reads the ejection's times (run out); before its exchange,
    // worker 1's health check unejects the endpoint and 5 failures eject it again (for 60 s).
    hook.cell = slot * TIMES + EJECTION_MS; // read last
    hook.on = 'get';
    hook.at = () => {
      w1.healthCheckPassed('a');
      for (let i = 0; i < 5; i++) w1.record('a', e500);
      expect(w1.state('a')).toMatchObject({ ejected: true, ejectedUntil: 90_000, timesEjected: 2 });
    };
    clock.advance(5_000);
    expect(hook.at).toBeNull(); // the sweep ran into it
    // The new ejection stands, in both workers, until its own time is up.
    expect(state()).toBe(EJECTED);
    expect(w0.isEjected('a') && w1.isEjected('a')).toBe(true);
    expect([...events[0], ...events[1]].filter((e) => e.type === 'unejected' && e.cause === 'timeout')).toEqual([]);
    clock.advance(59_999);
    expect(w0.isEjected('a')).toBe(true);
    clock.advance(1);
    expect(w0.isEjected('a') || w1.isEjected('a')).toBe(false);
    close();
  });

  it("a word read before exactly 2^29 changes by others is not the word after them: the generation does not come round there (adv62)", () => {
    const { memory, hook, slot, state } = hookedMemory();
    const { clock, ds: [w0, w1], events, close } = workers({}, ['a'], memory);
    for (let i = 0; i < 5; i++) w0.record('a', e500); // ejected at 0 for 30 s
    clock.advance(25_000);
    // Worker 0's sweep at 30 s reads the ejection (run out); before its exchange, the other
    // workers make 2^29 changes (unejects and ejections), the last a new ejection for 60 s:
    // the same state, 2^29 generations on. In an int32 cell (29 bits of generation) that was
    // the very word worker 0 had read, so its exchange went through and ended the new
    // ejection at once.
    hook.cell = slot * TIMES + EJECTION_MS;
    hook.on = 'get';
    hook.at = () => {
      memory.times[slot * TIMES + EJECTED_AT] = 30_000;
      memory.times[slot * TIMES + EJECTION_MS] = 60_000;
      Atomics.add(memory.states, slot, GENERATION << 29n);
    };
    clock.advance(5_000);
    expect(hook.at).toBeNull(); // the sweep ran into it
    expect(state()).toBe(EJECTED);
    expect(w0.isEjected('a') && w1.isEjected('a')).toBe(true);
    expect([...events[0], ...events[1]].filter((e) => e.type === 'unejected')).toEqual([]);
    close();
  });

  it('the generation comes round at 2^61 changes: ejections, unejects and a change cut short work through it (adv62)', () => {
    const memory = outlierMemory(true, 64);
    const { clock, ds: [w0, w1], close } = workers({}, ['a'], memory);
    const a = new SharedOutliers(memory).acquire('web.default:80', 'a', 0, 90).slot;
    const word = () => Atomics.load(memory.states, a);
    const generation = () => BigInt.asUintN(61, word() >> 3n);
    const LAST = (1n << 61n) - 1n;
    // Healthy at the last generation but one.
    Atomics.store(memory.states, a, BigInt.asIntN(64, (LAST - 1n) << 3n));
    for (let i = 0; i < 5; i++) w0.record('a', e500); // an ejection: the last generation
    expect({ generation: generation(), state: Number(word() & STATE_MASK) }).toEqual({ generation: LAST, state: EJECTED });
    expect(w1.isEjected('a')).toBe(true);
    clock.advance(30_000); // its uneject: round to generation 0
    expect({ generation: generation(), state: Number(word() & STATE_MASK) }).toEqual({ generation: 0n, state: 0 });
    expect(w0.isEjected('a') || w1.isEjected('a')).toBe(false);
    for (let i = 0; i < 5; i++) w1.record('a', e500);
    expect({ generation: generation(), state: Number(word() & STATE_MASK) }).toEqual({ generation: 1n, state: EJECTED });
    // A change cut short at the last generation (an uneject begun, its worker gone) is undone
    // to the ejection at the second sweep that sees it, as anywhere else.
    Atomics.store(memory.states, a, BigInt.asIntN(64, (LAST << 3n) | FROM_EJECTED | BigInt(CHANGING)));
    w1.tick();
    expect(Number(word() & STATE_MASK)).toBe(CHANGING);
    w1.tick();
    expect({ generation: generation(), state: Number(word() & STATE_MASK) }).toEqual({ generation: LAST, state: EJECTED });
    expect(w0.isEjected('a') && w1.isEjected('a')).toBe(true);
    close();
  });

  it("a change under way at two sweeps in a row is two changes, not one cut short: the second is not undone over its worker (adv54)", () => {
    const { memory, hook, slot, state } = hookedMemory();
    const { clock, ds: [w0, w1], events, announced, close } = workers({ baseEjectionTimeMs: 10_000 }, ['a'], memory);
    // Worker 1 sweeps while worker 0 writes its ejection (at 0), and again while worker 0's
    // sweep at 10 s writes its uneject: the sweeps of all workers are at the same moments.
    const sweepDuringChange = () => {
      w1.tick();
      expect(state()).toBe(CHANGING); // worker 0's change is left alone
    };
    hook.cell = slot * TIMES + EJECTED_AT;
    hook.on = 'set';
    hook.at = sweepDuringChange;
    for (let i = 0; i < 5; i++) w0.record('a', e500);
    expect(hook.at).toBeNull();
    expect(w1.isEjected('a')).toBe(true);
    hook.cell = slot * TIMES + UNEJECTED_AT;
    hook.at = sweepDuringChange;
    clock.advance(10_000);
    expect(hook.at).toBeNull();
    // Unejected once, by worker 0; worker 1 followed it (restored over it, it had taken the
    // ejection for a stuck change and ended it again itself: two unejects, two log lines).
    expect(w0.isEjected('a') || w1.isEjected('a')).toBe(false);
    expect(announced).toEqual(['0:a', '0:a']);
    expect(events[1].filter((e) => e.type === 'unejected')).toEqual([{ type: 'unejected', endpoint: 'a', cause: 'timeout', remote: true }]);
    close();
  });

  it('a change cut short is undone to the state it began from, not to what the sweeping worker saw: one that took the endpoint up meanwhile restores the ejection (adv54)', () => {
    const memory = outlierMemory(true, 64);
    const { clock, ds: [w0, w1], close } = workers({}, ['a'], memory);
    for (let i = 0; i < 5; i++) w0.record('a', e500); // ejected at 0 for 30 s
    const cell = new SharedOutliers(memory).acquire('web.default:80', 'a', 0, 90).slot;
    // Worker 0 is terminated in the middle of an uneject (CHANGING, begun from EJECTED), and
    // the worker started in its place takes the endpoint up: it sees no ejection (healthy).
    w0.close();
    const word = Atomics.load(memory.states, cell);
    Atomics.store(memory.states, cell, ((word & ~(STATE_MASK | FROM_EJECTED)) + GENERATION) | FROM_EJECTED | BigInt(CHANGING));
    const w2 = new OutlierDetector({ ...DEFAULT_POLICY.outlierDetection }, clock, seededRandom(3), { table: new SharedOutliers(memory, undefined, 2), cluster: 'web.default:80', announce: (e) => w1.sync(e) });
    w2.setHosts(['a']);
    expect(w2.isEjected('a')).toBe(false);
    w2.tick();
    w2.tick(); // the same change at two sweeps: cut short
    expect(Number(Atomics.load(memory.states, cell) & STATE_MASK)).toBe(EJECTED);
    expect(w1.isEjected('a') && w2.isEjected('a')).toBe(true);
    // The ejection ends as any does: at its time, announced.
    clock.advance(30_000);
    expect(w1.isEjected('a') || w2.isEjected('a')).toBe(false);
    w2.close();
    close();
  });

  it('workers sweep at the interval boundaries, whenever each made its detector: every window evaluated is one interval of traffic (adv49)', () => {
    // Worker 0 made its detector at 9 s; worker 1 at 20.5 s (a restart, a config applied later).
    // Swept one interval after that, worker 0 evaluated at 19 s and 29 s and worker 1 at 30.5 s:
    // the window [29 s, 30.5 s) (15 requests), then [30.5 s, 40.5 s) (95): under the volume of
    // 100 both times, so an interval of failures was never evaluated whole.
    const memory = outlierMemory(true, 64);
    const clock = new FakeClock(0);
    const policy = { ...DEFAULT_POLICY.outlierDetection, consecutive5xx: 0, enforcingFailurePercentage: 100, failurePercentageMinimumHosts: 1, failurePercentageRequestVolume: 100, failurePercentageThreshold: 50 };
    const ds: OutlierDetector[] = [];
    const make = (w: number) => {
      const d = new OutlierDetector(policy, clock, seededRandom(w + 1), { table: new SharedOutliers(memory, undefined, w), cluster: 'web.default:80', announce: (e) => ds.filter((o) => o !== d).forEach((o) => o.sync(e)) });
      d.setHosts(['a']);
      ds.push(d);
      return d;
    };
    clock.advance(9_000);
    const w0 = make(0);
    clock.advance(11_500);
    const w1 = make(1);
    // 10 requests a second from 20.5 s: successes until 30 s, failures from 30 s to 40 s.
    for (let t = 20_550; t < 40_000; t += 100) {
      clock.advance(t - clock.now());
      (t % 200 < 100 ? w0 : w1).record('a', t < 30_000 ? ok : e500);
    }
    expect(w0.isEjected('a') || w1.isEjected('a')).toBe(false);
    clock.advance(40_001 - clock.now()); // the sweep at 40 s evaluates [30 s, 40 s): 100 failures
    expect(w0.isEjected('a') && w1.isEjected('a')).toBe(true);
    for (const d of ds) d.close();
  });

  it('a sweep that read the clock just before a boundary evaluates nothing once another worker took the new interval, and that one is not evaluated again (adv49)', () => {
    // Two workers' views of one clock: worker 0 read it a millisecond before worker 1.
    const memory = outlierMemory(true, 64);
    const [c0, c1] = [new FakeClock(0), new FakeClock(0)];
    const policy = { ...DEFAULT_POLICY.outlierDetection, consecutive5xx: 0, enforcingFailurePercentage: 100, failurePercentageMinimumHosts: 1, failurePercentageRequestVolume: 100, failurePercentageThreshold: 50 };
    const [w0, w1] = [c0, c1].map((clock, w) => {
      const d = new OutlierDetector(policy, clock, seededRandom(w + 1), { table: new SharedOutliers(memory, undefined, w), cluster: 'web.default:80', announce: () => undefined });
      d.setHosts(['a']);
      return d;
    }) as [OutlierDetector, OutlierDetector];
    c0.advance(19_999);
    c1.advance(20_000); // worker 1's sweep at 20 s evaluates [10 s, 20 s): nothing
    for (let i = 0; i < 100; i++) w1.record('a', e500); // in [20 s, 30 s)
    w0.tick(); // read 19.999 s: interval 1, evaluated at 10 s already
    w1.tick(); // 20 s again: interval 2, evaluated already
    expect(w0.isEjected('a') || w1.isEjected('a')).toBe(false);
    c0.advance(10_001);
    expect(w0.isEjected('a')).toBe(true); // at 30 s, over the whole interval
    for (const d of [w0, w1]) d.close();
  });

  describe('a live slot is never taken over, and a detector that is off holds none (adv49)', () => {
    const detector = (memory: OutlierMemory, clock: FakeClock, cluster: string, hosts: string[], over: Partial<OutlierPolicy> = {}, onFull: () => void = () => undefined, worker = 0) => {
      const d = new OutlierDetector({ ...DEFAULT_POLICY.outlierDetection, ...over }, clock, seededRandom(1), { table: new SharedOutliers(memory, onFull, worker), cluster, announce: () => undefined });
      d.setHosts(hosts);
      return d;
    };

    it('past 2^31 s of the clock (January 2038) a lease is still counted from its last renewal', () => {
      const memory = outlierMemory(true, 2); // web's slot and a's
      const clock = new FakeClock(2 ** 31 * 1000 + 5_000);
      const web = detector(memory, clock, 'web.default:80', ['a']);
      for (let i = 0; i < 5; i++) web.record('a', e500);
      clock.advance(1_000);
      let full = 0;
      const api = detector(memory, clock, 'api.default:80', ['c'], {}, () => full++);
      expect(full).toBe(2); // api's slot and c's: no room, a's lease is 89 s from its end
      expect(web.state('a')).toMatchObject({ ejected: true, timesEjected: 1 });
      for (const d of [web, api]) d.close();
    });

    it("a detector that is off takes no slot, and never shows another endpoint's state as its own", () => {
      const memory = outlierMemory(true, 2);
      const clock = new FakeClock(0);
      const off = detector(memory, clock, 'web.default:80', ['a'], { enabled: false });
      let full = 0;
      const api = detector(memory, clock, 'api.default:80', ['c'], {}, () => full++);
      expect(full).toBe(0); // the slots are api's and c's at once
      for (let i = 0; i < 5; i++) api.record('c', e500);
      clock.advance(100_000);
      expect(off.state('a')).toEqual({ ejected: false, ejectedUntil: null, timesEjected: 0, backoff: 0, lastReason: null });
      for (const d of [off, api]) d.close();
    });

    it('turned off, it follows no other worker; turned on again, its hosts take their shared slots up, as the other workers left them', () => {
      const memory = outlierMemory(true, 64);
      const clock = new FakeClock(0);
      const policy = { ...DEFAULT_POLICY.outlierDetection };
      const w0 = detector(memory, clock, 'web.default:80', ['a']);
      const w1 = detector(memory, clock, 'web.default:80', ['a'], {}, undefined, 1);
      const events: OutlierEvent[] = [];
      w0.onEvent((e) => events.push(e));
      w0.updatePolicy({ ...policy, enabled: false });
      for (let i = 0; i < 5; i++) w1.record('a', e500); // w1's config is still the old one
      w0.sync('a'); // w1's announcement, relayed: detection is off in w0, which keeps sending to a
      expect(w0.isEjected('a')).toBe(false);
      w0.updatePolicy(policy);
      expect(w0.state('a')).toMatchObject({ ejected: true, timesEjected: 1 });
      expect(events).toEqual([expect.objectContaining({ type: 'ejected', endpoint: 'a', remote: true })]);
      for (const d of [w0, w1]) d.close();
    });

    it('a longer interval renews the leases for it at once: an ejection is not taken over before the next sweep', () => {
      const memory = outlierMemory(true, 2);
      const clock = new FakeClock(0);
      const policy = { ...DEFAULT_POLICY.outlierDetection, baseEjectionTimeMs: 300_000 };
      const web = detector(memory, clock, 'web.default:80', ['a'], policy);
      for (let i = 0; i < 5; i++) web.record('a', e500);
      clock.advance(5_000);
      web.updatePolicy({ ...policy, intervalMs: 600_000 }); // next sweep at 600 s
      clock.advance(95_000); // 100 s: 90 s after the lease of the 10 s interval was last renewed
      let full = 0;
      const api = detector(memory, clock, 'api.default:80', ['c'], {}, () => full++);
      expect(full).toBe(2);
      expect(web.state('a')).toMatchObject({ ejected: true, timesEjected: 1 });
      for (const d of [web, api]) d.close();
    });
  });

  it('without a table (concurrency 1) each detector counts alone', () => {
    const clock = new FakeClock(0);
    const [a, b] = [1, 2].map((s) => new OutlierDetector({ ...DEFAULT_POLICY.outlierDetection }, clock, seededRandom(s)));
    a!.setHosts(['x']);
    b!.setHosts(['x']);
    for (let i = 0; i < 5; i++) a!.record('x', e500);
    expect(a!.isEjected('x')).toBe(true);
    expect(b!.isEjected('x')).toBe(false);
    a!.close();
    b!.close();
  });

  it('two worker threads sweeping the same interval at the same moment evaluate it once: one ejection, from every request counted once (adv49; runs dist/)', async () => {
    // Per round a new cluster (its own slots) of five hosts; each thread records 60 requests
    // per host (e fails half), then both threads sweep the interval's end together. Evaluated
    // twice, the second sweep zeroes the bucket the first reads (or reads an empty one).
    const ROUNDS = 200;
    const src = `
      const { parentPort, workerData } = require('node:worker_threads');
      Promise.all([import(workerData.detector), import(workerData.table), import(workerData.clock)]).then(([{ OutlierDetector }, { SharedOutliers }, { FakeClock, seededRandom }]) => {
        const { memory, go, w, rounds, policy } = workerData;
        const table = new SharedOutliers(memory, undefined, w);
        const hosts = ['a', 'b', 'c', 'd', 'e'];
        const meet = (n) => { Atomics.add(go, 0, 1); while (Atomics.load(go, 0) < n); };
        const detected = [];
        for (let r = 0; r < rounds; r++) {
          const clock = new FakeClock(0);
          const d = new OutlierDetector(policy, clock, seededRandom(w + 1), { table, cluster: 'c' + r, announce: () => undefined });
          d.onEvent((e) => { if (e.type === 'detected') detected.push(r + ':' + e.endpoint + ':' + e.action); });
          d.setHosts(hosts);
          for (const h of hosts) for (let i = 0; i < 60; i++) d.record(h, h === 'e' && i % 2 === 0 ? { kind: 'failure', origin: 'upstream', gateway: false } : { kind: 'success' });
          meet(4 * r + 2);
          clock.advance(10_000);
          meet(4 * r + 4);
          d.close();
        }
        parentPort.postMessage(detected);
      });`;
    const dist = (f: string) => new URL(`../../dist/${f}`, import.meta.url).href;
    const memory = outlierMemory(true);
    const go = new Int32Array(new SharedArrayBuffer(4));
    const policy = { ...DEFAULT_POLICY.outlierDetection };
    const run = (w: number) =>
      new Promise<string[]>((resolve, reject) => {
        const worker = new Worker(src, { eval: true, workerData: { detector: dist('proxy/resilience/outlier-detector.js'), table: dist('proxy/resilience/shared-outliers.js'), clock: dist('common/clock.js'), memory, go, w, rounds: ROUNDS, policy } });
        worker.once('message', (m: string[]) => void worker.terminate().then(() => resolve(m)));
        worker.once('error', reject);
      });
    const detected = (await Promise.all([run(0), run(1)])).flat().sort();
    expect(detected).toEqual(Array.from({ length: ROUNDS }, (_, r) => `${r}:e:ejected`).sort());
    // And every host's buckets were swapped once (a second swap makes the first bucket current again, zeroed).
    const table = new SharedOutliers(memory);
    const swapped = Array.from({ length: ROUNDS }, (_, r) => ['a', 'b', 'c', 'd', 'e'].map((h) => memory.cells[table.acquire(`c${r}`, h, 0, 90).slot * CELLS + BUCKET])).flat();
    expect(swapped).toEqual(swapped.map(() => 1));
  }, 60_000);

  it("two worker threads taking up a new endpoint at once both count from its start: the first one's zeroing never wipes what the second recorded (adv49; runs dist/)", async () => {
    // Per round a new cluster: both threads make its detector, take up endpoint x together
    // (one snapshot applied by both) and record 50 requests each. Zeroed by the first holder
    // after the second had taken it up and recorded, about one round in twenty lost counts.
    const ROUNDS = 1000;
    const N = 50;
    const src = `
      const { parentPort, workerData } = require('node:worker_threads');
      Promise.all([import(workerData.detector), import(workerData.table), import(workerData.clock)]).then(([{ OutlierDetector }, { SharedOutliers }, { FakeClock, seededRandom }]) => {
        const { memory, go, w, rounds, n, policy } = workerData;
        const table = new SharedOutliers(memory, undefined, w);
        const meet = (k) => { Atomics.add(go, 0, 1); while (Atomics.load(go, 0) < k); };
        const clock = new FakeClock(0);
        for (let r = 0; r < rounds; r++) {
          const d = new OutlierDetector(policy, clock, seededRandom(w + 1), { table, cluster: 'c' + r, announce: () => undefined });
          meet(4 * r + 2);
          d.setHosts(['x']);
          for (let i = 0; i < n; i++) d.record('x', { kind: 'success' });
          meet(4 * r + 4); // both recorded before either lets go (the last to let go leaves it to be zeroed)
          d.close();
        }
        parentPort.postMessage(0);
      });`;
    const dist = (f: string) => new URL(`../../dist/${f}`, import.meta.url).href;
    const memory = outlierMemory(true);
    const go = new Int32Array(new SharedArrayBuffer(4));
    const run = (w: number) =>
      new Promise<void>((resolve, reject) => {
        const worker = new Worker(src, { eval: true, workerData: { detector: dist('proxy/resilience/outlier-detector.js'), table: dist('proxy/resilience/shared-outliers.js'), clock: dist('common/clock.js'), memory, go, w, rounds: ROUNDS, n: N, policy: DEFAULT_POLICY.outlierDetection } });
        worker.once('message', () => void worker.terminate().then(() => resolve()));
        worker.once('error', reject);
      });
    await Promise.all([run(0), run(1)]);
    const table = new SharedOutliers(memory);
    const totals = Array.from({ length: ROUNDS }, (_, r) => memory.cells[table.acquire(`c${r}`, 'x', 0, 90).slot * CELLS + EXT_TOTAL]);
    expect(totals.filter((t) => t !== 2 * N)).toEqual([]);
  }, 60_000);

  it("the times in the table are on one time line in every thread: a worker started later (a restarted one) reads the main thread's clock (adv49; runs dist/)", async () => {
    // systemClock.now() is performance.timeOrigin + performance.now(). Node gives every
    // worker the process's time origin (nodejs/node#46588; the HTML spec would give a
    // worker its own, taken from the wall clock when it starts), so an ejection's start
    // written by one worker is read on the same monotonic line by the others and by a
    // worker started after a wall-clock step. Should Node follow the spec, this fails, and
    // the workers need the main thread's origin passed to them (WorkerData) instead.
    await new Promise((r) => setTimeout(r, 200));
    const src = `
      const { parentPort, workerData } = require('node:worker_threads');
      import(workerData.clock).then(({ systemClock }) => parentPort.postMessage({ origin: performance.timeOrigin, now: systemClock.now() }));`;
    const before = systemClock.now();
    const seen = await new Promise<{ origin: number; now: number }>((resolve, reject) => {
      const worker = new Worker(src, { eval: true, workerData: { clock: new URL('../../dist/common/clock.js', import.meta.url).href } });
      worker.once('message', (m: { origin: number; now: number }) => void worker.terminate().then(() => resolve(m)));
      worker.once('error', reject);
    });
    const after = systemClock.now();
    expect(seen.origin).toBe(performance.timeOrigin);
    expect(seen.now).toBeGreaterThanOrEqual(before);
    expect(seen.now).toBeLessThanOrEqual(after);
  });
});
