import { seededRandom } from '../../common/clock.js';
import { RoundRobinBalancer } from './round-robin.js';
import { countPicks, makeHosts } from './test-hosts.js';

describe('RoundRobinBalancer', () => {
  it('cycles through equal-weight hosts in order from a random start', () => {
    const hosts = makeHosts([1, 1, 1, 1]);
    const picker = new RoundRobinBalancer(seededRandom(7)).build(hosts);
    const seq = Array.from({ length: 8 }, () => picker.pick({})!.key);
    const start = hosts.findIndex((h) => h.key === seq[0]);
    const expected = Array.from({ length: 8 }, (_, i) => hosts[(start + i) % 4].key);
    expect(seq).toEqual(expected);
  });

  it('interleaves weights 5/1/1 exactly as nginx smooth WRR: a a b a c a a', () => {
    const hosts = makeHosts([5, 1, 1]);
    const picker = new RoundRobinBalancer(seededRandom(1)).build(hosts);
    const names = new Map(hosts.map((h, i) => [h.key, 'abc'[i]]));
    const seq = Array.from({ length: 14 }, () => names.get(picker.pick({})!.key)).join('');
    expect(seq).toBe('aabacaa'.repeat(2));
  });

  it('respects weights exactly over whole cycles', () => {
    const hosts = makeHosts([3, 2, 1]);
    const picker = new RoundRobinBalancer(seededRandom(1)).build(hosts);
    const counts = countPicks(() => picker.pick({}), 600);
    expect(hosts.map((h) => counts.get(h.key))).toEqual([300, 200, 100]);
  });

  it('skips excluded hosts and returns null when all are excluded', () => {
    const hosts = makeHosts([1, 1, 1]);
    const picker = new RoundRobinBalancer(seededRandom(3)).build(hosts);
    const exclude = new Set([hosts[0].key, hosts[1].key]);
    for (let i = 0; i < 5; i++) expect(picker.pick({ exclude })!.key).toBe(hosts[2].key);
    expect(picker.pick({ exclude: new Set(hosts.map((h) => h.key)) })).toBeNull();
    const weighted = new RoundRobinBalancer(seededRandom(3)).build(makeHosts([2, 1]));
    expect(weighted.pick({ exclude: new Set(['10.0.0.1:80']) })!.key).toBe('10.0.0.2:80');
  });

  it('an empty set yields an empty picker', () => {
    expect(new RoundRobinBalancer(seededRandom(1)).build([]).pick({})).toBeNull();
  });
});
