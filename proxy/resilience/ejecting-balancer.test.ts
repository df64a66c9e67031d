import { seededRandom } from '../../common/clock.js';
import type { Host } from '../balance/balancer.js';
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
});
