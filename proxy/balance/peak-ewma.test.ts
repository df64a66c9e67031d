import { FakeClock, seededRandom } from '../../common/clock.js';
import type { Host } from './balancer.js';
import { EndpointLoad } from './endpoint-load.js';
import { PeakEwmaBalancer } from './peak-ewma.js';
import { countPicks, makeHosts } from './test-hosts.js';

describe('EndpointLoad (tower peak EWMA)', () => {
  it('starts at the default RTT, jumps to a peak, decays towards lower samples', () => {
    const l = new EndpointLoad(30, 10_000, 0);
    expect(l.peekMs(0)).toBe(30);
    l.observe(200, 0);
    expect(l.peekMs(0)).toBe(200); // above the estimate: replaces it at once
    l.observe(10, 10_000); // below: blends with weight 1 - e^-1
    expect(l.rttMs(10_000)).toBeCloseTo(200 * Math.exp(-1) + 10 * (1 - Math.exp(-1)), 6);
  });

  it('reading the load decays the estimate towards zero with time constant `decay`', () => {
    const l = new EndpointLoad(100, 10_000, 0);
    expect(l.rttMs(10_000)).toBeCloseTo(100 * Math.exp(-1), 6);
    expect(l.rttMs(20_000)).toBeCloseTo(100 * Math.exp(-2), 6);
    l.inflight = 3;
    expect(l.cost(20_000)).toBeCloseTo(4 * 100 * Math.exp(-2), 6);
  });

  it('is sampled once a sample has moved the estimate: a sample below it, or a peak-only one above it', () => {
    const l = new EndpointLoad(30, 10_000, 0);
    l.observePeak(5, 0); // a fast failure or cancellation: no information, stays the default
    expect(l.sampled).toBe(false);
    expect(l.peekMs(0)).toBe(30);
    l.observePeak(200, 0);
    expect(l.sampled).toBe(true);
    expect(l.peekMs(0)).toBe(200);
    const m = new EndpointLoad(30, 10_000, 0);
    m.observe(5, 1_000);
    expect(m.sampled).toBe(true);
  });
});

describe('PeakEwmaBalancer', () => {
  /** Simulate: pick, record the RTT the host "has", repeat. Returns pick share per host. */
  function run(clock: FakeClock, picker: { pick: (c: object) => Host | null }, rtt: Map<string, number>, n: number, stepMs = 10) {
    const counts = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      const h = picker.pick({})!;
      counts.set(h.key, (counts.get(h.key) ?? 0) + 1);
      clock.advance(stepMs);
      h.load.observe(rtt.get(h.key)!, clock.now());
    }
    return counts;
  }

  it('prefers the fast endpoint after latency feedback, and recovers after decay', () => {
    const clock = new FakeClock(0);
    const hosts = makeHosts([1, 1, 1], { now: 0 });
    const rtt = new Map(hosts.map((h) => [h.key, 10]));
    rtt.set(hosts[0].key, 500);
    const picker = new PeakEwmaBalancer(clock, seededRandom(11)).build(hosts);
    const counts = run(clock, picker, rtt, 3000);
    // The slow host only wins when both draws... cannot: it is picked once, then avoided.
    expect(counts.get(hosts[0].key) ?? 0).toBeLessThan(30);
    expect(counts.get(hosts[1].key)! + counts.get(hosts[2].key)!).toBeGreaterThan(2970);

    // The slow host is fixed. P2C keeps comparing it, its cost decays towards zero, and it
    // gets traffic again once the decayed estimate falls below the others' (~decay × ln 50).
    rtt.set(hosts[0].key, 10);
    const later = run(clock, picker, rtt, 6000, 10); // 60 s of traffic
    expect(later.get(hosts[0].key)! / 6000).toBeGreaterThan(0.2);
  });

  it('compares endpoints without samples as equal, whatever their age: P2C picks at random', () => {
    // Loads created 5 s apart: their decayed defaults differ by creation time only. Before
    // the fix the older endpoint won every pick (2000/2000).
    const clock = new FakeClock(10_000);
    const hosts = [...makeHosts([1], { now: 0 }), ...makeHosts([1, 1], { now: 5_000 }).slice(1)];
    expect(hosts.map((h) => h.key)).toEqual(['10.0.0.1:80', '10.0.0.2:80']);
    const picker = new PeakEwmaBalancer(clock, seededRandom(5)).build(hosts);
    const counts = countPicks(() => picker.pick({}), 2000);
    expect(counts.get(hosts[0].key)!).toBeGreaterThan(900);
    expect(counts.get(hosts[1].key)!).toBeGreaterThan(900);
    // Still unsampled, they compare on in-flight requests (and weight).
    hosts[0].load.inflight = 1;
    for (let i = 0; i < 20; i++) expect(picker.pick({})!.key).toBe(hosts[1].key);
    hosts[0].load.inflight = 0;
    // Once one has a sample the costs decide: a slow first sample loses.
    hosts[1].load.observe(80, clock.now());
    for (let i = 0; i < 20; i++) expect(picker.pick({})!.key).toBe(hosts[0].key);
  });

  it('weights bias the cost, they are not shares: at equal latency one request at a time, weight 3 of 3:1 gets every pick', () => {
    const clock = new FakeClock(0);
    const hosts = makeHosts([3, 1], { now: 0 });
    const picker = new PeakEwmaBalancer(clock, seededRandom(9)).build(hosts);
    const rtt = new Map(hosts.map((h) => [h.key, 5]));
    const counts = run(clock, picker, rtt, 1000, 5);
    expect(counts.get(hosts[0].key)).toBe(1000);
  });

  it('counts in-flight requests: cost = rtt × (inflight + 1)', () => {
    const clock = new FakeClock(0);
    const hosts = makeHosts([1, 1], { now: 0 });
    hosts[0].load.inflight = 4; // same RTT, more queued work
    const picker = new PeakEwmaBalancer(clock, seededRandom(3)).build(hosts);
    for (let i = 0; i < 20; i++) expect(picker.pick({})!.key).toBe(hosts[1].key);
    expect(picker.pick({ exclude: new Set([hosts[1].key]) })!.key).toBe(hosts[0].key);
    expect(picker.pick({ exclude: new Set([hosts[0].key, hosts[1].key]) })).toBeNull();
  });
});
