import { seededRandom } from '../../common/clock.js';
import { LeastRequestBalancer } from './least-request.js';
import { countPicks, makeHosts } from './test-hosts.js';

describe('LeastRequestBalancer', () => {
  it('P2C avoids the busiest host when weights are equal', () => {
    const hosts = makeHosts([1, 1, 1, 1]);
    hosts[0].load.inflight = 50;
    const picker = new LeastRequestBalancer(seededRandom(9)).build(hosts);
    const counts = countPicks(() => picker.pick({}), 4000);
    // With 2 choices the busiest host wins only when drawn twice, which P2C never does.
    expect(counts.get(hosts[0].key) ?? 0).toBe(0);
    for (const h of hosts.slice(1)) expect(counts.get(h.key)! / 4000).toBeGreaterThan(0.25);
  });

  it('keeps the weight share when idle (EDF on weight/(active+1))', () => {
    const hosts = makeHosts([1, 3]);
    const picker = new LeastRequestBalancer(seededRandom(1)).build(hosts);
    const counts = countPicks(() => picker.pick({}), 4000);
    expect(counts.get(hosts[0].key)).toBe(1000);
    expect(counts.get(hosts[1].key)).toBe(3000);
  });

  it('shifts load away from a weighted host with many active requests', () => {
    const hosts = makeHosts([1, 3]);
    hosts[1].load.inflight = 5; // effective weight 3/6 = 0.5 < 1
    const picker = new LeastRequestBalancer(seededRandom(1)).build(hosts);
    const counts = countPicks(() => picker.pick({}), 3000);
    expect(counts.get(hosts[0].key)!).toBeGreaterThan(counts.get(hosts[1].key)!);
  });

  it('honours exclusions in both modes', () => {
    for (const weights of [
      [1, 1, 1],
      [1, 2, 3],
    ]) {
      const hosts = makeHosts(weights);
      const picker = new LeastRequestBalancer(seededRandom(2)).build(hosts);
      const exclude = new Set([hosts[2].key, hosts[1].key]);
      for (let i = 0; i < 10; i++) expect(picker.pick({ exclude })!.key).toBe(hosts[0].key);
      expect(picker.pick({ exclude: new Set(hosts.map((h) => h.key)) })).toBeNull();
      // After exclusions the schedule still serves every host.
      const counts = countPicks(() => picker.pick({}), 600);
      expect(counts.size).toBe(3);
    }
  });
});
