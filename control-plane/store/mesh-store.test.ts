import { FakeClock, seededRandom } from '../../common/clock.js';
import { DEFAULT_POLICY } from '../../contract/defaults.js';
import type { Service } from '../../contract/model.js';
import { compileRoutes } from '../translate/route-compile.js';
import { parseHttpRoute } from '../translate/route-objects.js';
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

  test('a route change marks the Services whose routes changed (a recompile with the same result commits nothing)', () => {
    const store = new MeshStore(new FakeClock(), seededRandom(1));
    store.apply([svc('a', []), svc('b', [])], []);
    store.markReady();
    const route = (ns: string, weight: number) =>
      parseHttpRoute({ kind: 'HTTPRoute', metadata: { name: 'r', namespace: ns }, spec: { parentRefs: [{ group: '', kind: 'Service', name: 'a', namespace: 'ns' }], rules: [{ backendRefs: [{ name: 'b', namespace: 'ns', port: 80, weight }] }] } }, '');
    const lookup = (ns: string, name: string) => store.view.services.get(`${name}.${ns}`);
    expect(store.apply([], [], undefined, compileRoutes([route('ns', 1)], [], lookup).view)).toEqual(['a.ns']);
    const v = store.view;
    expect(store.apply([], [], undefined, compileRoutes([route('ns', 1)], [], lookup).view)).toEqual([]);
    expect(store.view).toBe(v);
    expect(store.apply([], [], undefined, compileRoutes([route('ns', 2)], [], lookup).view)).toEqual(['a.ns']);
    // A consumer route in another namespace changes a.ns's routes too (for callers there).
    const both = compileRoutes([route('ns', 2), route('other', 1)], [], lookup).view;
    expect(store.apply([], [], undefined, both)).toEqual(['a.ns']);
    expect([...store.view.routes.consumerNamespaces]).toEqual(['other']);
    expect(store.changedSince(v.seq)).toEqual(new Set(['a.ns']));
  });
});
