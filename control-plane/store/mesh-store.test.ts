import { FakeClock, seededRandom } from '../../common/clock.js';
import { DEFAULT_POLICY } from '../../contract/defaults.js';
import type { Service } from '../../contract/model.js';
import { MeshStore } from './mesh-store.js';

const svc = (name: string, ips: string[]): Service => ({
  name, namespace: 'ns', clusterIPs: [], policy: DEFAULT_POLICY,
  ports: [{ name: '', port: 80, protocol: 'detect', endpoints: ips.map((address) => ({ address, port: 80, proxyPort: null, identity: '', weight: 1, zone: '', ready: true })) }],
});

describe('MeshStore', () => {
  test('commits make new immutable views and log changed keys; no-op updates do not bump the version', () => {
    const clock = new FakeClock();
    const store = new MeshStore(clock, seededRandom(1), 3);
    const seen: string[][] = [];
    store.onChange((_v, keys) => seen.push([...keys]));
    store.apply([svc('a', ['1.1.1.1'])], []);
    store.markReady();
    const v1 = store.view;
    expect(store.apply([svc('a', ['1.1.1.1'])], [])).toEqual([]);
    expect(store.view).toBe(v1);
    clock.advance(5);
    store.apply([svc('b', ['2.2.2.2'])], []);
    expect(v1.services.has('b.ns')).toBe(false);
    expect(store.view.committedAt).toBe(v1.committedAt + 5);
    expect(store.view.version).toBe(`${store.epoch}-2`);
    expect(store.changedSince(1)).toEqual(new Set(['b.ns']));
    store.apply([], ['a.ns', 'missing.ns']);
    store.replaceAll([svc('c', [])]);
    expect([...store.view.services.keys()]).toEqual(['c.ns']);
    expect(store.changedSince(2)).toEqual(new Set(['a.ns', 'b.ns', 'c.ns']));
    // history limit 3: seq 1 is forgotten -> a subscriber that far behind needs a full snapshot
    expect(store.changedSince(0)).toBeNull();
    expect(seen).toEqual([[], ['b.ns'], ['a.ns'], ['c.ns', 'b.ns']]);
  });
});
