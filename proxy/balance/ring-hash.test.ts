import { seededRandom } from '../../common/clock.js';
import { RingHashBalancer, type RingPicker } from './ring-hash.js';
import { makeHosts } from './test-hosts.js';

const keys = Array.from({ length: 5000 }, (_, i) => `user-${i}`);

describe('RingHashBalancer', () => {
  it('maps the same key to the same host, across rebuilds too', () => {
    const hosts = makeHosts([1, 1, 1, 1, 1]);
    const a = new RingHashBalancer(seededRandom(1), 1024).build(hosts);
    const b = new RingHashBalancer(seededRandom(99), 1024).build([...hosts].reverse());
    for (const k of keys.slice(0, 500)) {
      const h = a.pick({ hashKey: k })!;
      expect(a.pick({ hashKey: k })!.key).toBe(h.key);
      expect(b.pick({ hashKey: k })!.key).toBe(h.key);
    }
  });

  it('builds at least minRingSize points, proportional to weight', () => {
    const picker = new RingHashBalancer(seededRandom(1), 1024).build(makeHosts([1, 3])) as RingPicker;
    expect(picker.ringSize).toBeGreaterThanOrEqual(1024);
    expect(picker.ringSize).toBeLessThan(2048);
  });

  it('spreads keys evenly and by weight', () => {
    const hosts = makeHosts([1, 1, 2]);
    const picker = new RingHashBalancer(seededRandom(1), 1024).build(hosts);
    const counts = new Map<string, number>();
    for (const k of keys) {
      const h = picker.pick({ hashKey: k })!;
      counts.set(h.key, (counts.get(h.key) ?? 0) + 1);
    }
    [0.25, 0.25, 0.5].forEach((share, i) => expect(Math.abs(counts.get(hosts[i].key)! / keys.length - share)).toBeLessThan(0.06));
  });

  it('removing one of N hosts moves only the keys it owned (~1/N)', () => {
    const hosts = makeHosts(Array(10).fill(1));
    const before = new RingHashBalancer(seededRandom(1), 1024).build(hosts);
    const removed = hosts[3];
    const after = new RingHashBalancer(seededRandom(1), 1024).build(hosts.filter((h) => h !== removed));
    let moved = 0;
    for (const k of keys) {
      const was = before.pick({ hashKey: k })!.key;
      const now = after.pick({ hashKey: k })!.key;
      if (was !== now) {
        moved++;
        expect(was).toBe(removed.key); // nothing else moves
      }
    }
    expect(moved / keys.length).toBeGreaterThan(0.05);
    expect(moved / keys.length).toBeLessThan(0.15);
  });

  it('walks to the next host on the ring for excluded hosts; random without a key', () => {
    const hosts = makeHosts([1, 1, 1]);
    const picker = new RingHashBalancer(seededRandom(1), 1024).build(hosts);
    const first = picker.pick({ hashKey: 'k' })!;
    const second = picker.pick({ hashKey: 'k', exclude: new Set([first.key]) })!;
    expect(second.key).not.toBe(first.key);
    expect(picker.pick({ hashKey: 'k', exclude: new Set([first.key]) })!.key).toBe(second.key);
    expect(picker.pick({ hashKey: 'k', exclude: new Set(hosts.map((h) => h.key)) })).toBeNull();
    const seen = new Set(Array.from({ length: 200 }, () => picker.pick({})!.key));
    expect(seen.size).toBe(3);
  });
});
