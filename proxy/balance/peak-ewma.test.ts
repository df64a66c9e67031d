import { FakeClock, seededRandom } from '../../common/clock.js';
import type { Host } from './balancer.js';
import { EndpointLoad } from './endpoint-load.js';
import { PeakEwmaBalancer } from './peak-ewma.js';
import { makeHosts } from './test-hosts.js';

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
