import { seededRandom } from '../../common/clock.js';
import { RandomBalancer } from './random.js';
import { countPicks, makeHosts } from './test-hosts.js';

describe('RandomBalancer', () => {
  it('spreads picks proportionally to weight (seeded, within 3 %)', () => {
    const hosts = makeHosts([1, 2, 7]);
    const picker = new RandomBalancer(seededRandom(42)).build(hosts);
    const n = 20_000;
    const counts = countPicks(() => picker.pick({}), n);
    [0.1, 0.2, 0.7].forEach((share, i) => expect(Math.abs(counts.get(hosts[i].key)! / n - share)).toBeLessThan(0.03));
  });

  it('draws only among allowed hosts on the retry path, still weighted', () => {
    const hosts = makeHosts([1, 1, 3]);
    const picker = new RandomBalancer(seededRandom(5)).build(hosts);
    const exclude = new Set([hosts[0].key]);
    const counts = countPicks(() => picker.pick({ exclude }), 8000);
    expect(counts.has(hosts[0].key)).toBe(false);
    expect(Math.abs(counts.get(hosts[2].key)! / 8000 - 0.75)).toBeLessThan(0.03);
    expect(picker.pick({ exclude: new Set(hosts.map((h) => h.key)) })).toBeNull();
  });
});
