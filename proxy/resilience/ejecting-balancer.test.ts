import { seededRandom } from '../../common/clock.js';
import type { Host } from '../balance/balancer.js';
import { RingHashBalancer } from '../balance/ring-hash.js';
import { RoundRobinBalancer } from '../balance/round-robin.js';
import { makeHosts } from '../balance/test-hosts.js';
import { EjectingBalancer, type Eligibility } from './ejecting-balancer.js';

function setup(states: Eligibility[], panic = 50) {
  const hosts = makeHosts(states.map(() => 1));
  const health = new Map<Host, Eligibility>(hosts.map((h, i) => [h, states[i]]));
  const b = new EjectingBalancer(new RoundRobinBalancer(seededRandom(1)), { eligibility: (h) => health.get(h)! }, panic);
  const picker = b.build(hosts);
  const picked = new Set(Array.from({ length: 40 }, () => picker.pick({})?.key));
  return { hosts, picker, picked };
}

describe('EjectingBalancer', () => {
  it('balances over healthy hosts only while enough are healthy', () => {
    const { hosts, picker, picked } = setup(['healthy', 'healthy', 'degraded', 'excluded']);
    expect(picker.panic).toBe(false); // 2 of 3 counted hosts healthy ≥ 50 %
    expect(picked).toEqual(new Set([hosts[0].key, hosts[1].key]));
    expect(picker.counts).toEqual({ total: 3, healthy: 2, degraded: 1, blocked: 0 });
  });

  it('panics below the threshold and uses degraded hosts too, never blocked ones', () => {
    const { hosts, picker, picked } = setup(['healthy', 'degraded', 'degraded', 'blocked']);
    expect(picker.panic).toBe(true); // 1 of 4 healthy < 50 %
    expect(picked).toEqual(new Set([hosts[0].key, hosts[1].key, hosts[2].key]));
  });

  it('all hosts ejected: panic uses all of them; panic threshold 0 disables it', () => {
    const all = setup(['degraded', 'degraded']);
    expect(all.picker.panic).toBe(true);
    expect(all.picked.size).toBe(2);
    const none = setup(['degraded', 'degraded'], 0);
    expect(none.picker.panic).toBe(false);
    expect(none.picker.size).toBe(0);
    expect(none.picked).toEqual(new Set([undefined]));
  });

  it('only blocked hosts: an empty picker that says so', () => {
    const { picker } = setup(['blocked', 'blocked', 'excluded']);
    expect(picker.size).toBe(0);
    expect(picker.counts.blocked).toBe(2);
    expect(picker.pick({})).toBeNull();
  });

  it('ring hash: ejecting one of 8 hosts moves only its keys, to their next host on the ring, and they come back when it returns', () => {
    // Built over the healthy hosts alone, the ring halved every host's points at 8 -> 7
    // (the points per weight unit are a power of two: 128 for 8 hosts, 256 for 7), and
    // about half of all keys changed host on one ejection, and again on its return.
    const hosts = makeHosts(Array(8).fill(1));
    const health = new Map<Host, Eligibility>(hosts.map((h) => [h, 'healthy']));
    const b = new EjectingBalancer(new RingHashBalancer(seededRandom(1), 1024), { eligibility: (h) => health.get(h)! }, 50);
    const keys = Array.from({ length: 4000 }, (_, i) => `user-${i}`);
    const owner = (p: ReturnType<typeof b.build>) => keys.map((k) => p.pick({ hashKey: k })!.key);
    const full = b.build(hosts);
    const before = owner(full);
    health.set(hosts[5], 'degraded');
    const ejected = b.build(hosts);
    expect(ejected.panic).toBe(false);
    expect(ejected.size).toBe(7);
    const during = owner(ejected);
    let moved = 0;
    keys.forEach((_, i) => {
      if (before[i] === hosts[5].key) {
        moved++;
        expect(during[i]).not.toBe(hosts[5].key);
        // Where a retry that excluded the ejected host would have gone: the next host clockwise.
        expect(during[i]).toBe(full.pick({ hashKey: keys[i], exclude: new Set([hosts[5].key]) })!.key);
      } else expect(during[i]).toBe(before[i]);
    });
    expect(moved / keys.length).toBeGreaterThan(0.06);
    expect(moved / keys.length).toBeLessThan(0.2);
    // Without a hash key: a random usable host, never the ejected one.
    expect(Array.from({ length: 200 }, () => ejected.pick({})!.key)).not.toContain(hosts[5].key);
    health.set(hosts[5], 'healthy');
    expect(owner(b.build(hosts))).toEqual(before);
  });
});
