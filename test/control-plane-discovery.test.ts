import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { loadDiscoveryProto, serviceToWire, type DiscoveryResponse } from '../contract/discovery.js';
import { DEFAULT_POLICY } from '../contract/defaults.js';
import type { Endpoint, Service } from '../contract/model.js';
import { diffViews } from '../control-plane/discovery/delta.js';
import type { PushRecord } from '../control-plane/discovery/discovery-server.js';
import { ControlPlane } from '../control-plane/server.js';
import type { MeshStore } from '../control-plane/store/mesh-store.js';
import { applyResponse } from '../proxy/discovery/apply-response.js';
import { endpointsOf, startProxy, waitFor, type TestProxy, ManualSource } from './control-plane-harness.js';

const ep = (i: number, extra: Partial<Endpoint> = {}): Endpoint => ({
  address: `10.1.${Math.floor(i / 250)}.${(i % 250) + 1}`, port: 8080, proxyPort: 15006,
  identity: 'spiffe://cluster.local/ns/shop/sa/web', weight: 1, zone: 'a', ready: true, ...extra,
});
const svc = (name: string, endpoints: Endpoint[], policy = DEFAULT_POLICY): Service => ({
  name, namespace: 'shop', clusterIPs: ['10.96.0.1'], policy, ports: [{ name: 'http', port: 80, protocol: 'http1', endpoints }],
});

describe('discovery protocol over real gRPC', () => {
  let cp: ControlPlane;
  let store: MeshStore;
  const proxies: TestProxy[] = [];
  const pushes: PushRecord[] = [];

  const startCp = async (initial: Service[], listen = '127.0.0.1:0'): Promise<ControlPlane> => {
    const c = await ControlPlane.start({
      listen, admin: '127.0.0.1:0', trustDomain: 'cluster.local', clock: systemClock, random: seededRandom(3), logger: silentLogger,
      source: (ctx) => new ManualSource(ctx, initial),
    });
    await c.whenReady();
    c.discovery.onPush((p) => pushes.push(p));
    return c;
  };

  beforeEach(async () => {
    pushes.length = 0;
    cp = await startCp([svc('web', [ep(0), ep(1), ep(2)]), svc('db', [ep(10)])]);
    store = cp.store;
  });

  afterEach(async () => {
    await Promise.all(proxies.splice(0).map((p) => p.client.stop()));
    await cp.close(100);
  });

  const proxy = (services?: string[]): TestProxy => {
    const p = startProxy(`127.0.0.1:${cp.grpcPort}`, { services });
    proxies.push(p);
    return p;
  };

  test('an invalid update is NACKed, the last good config stays, and the next delta is relative to the last ACK', async () => {
    const p = proxy();
    const first = await p.client.onFirstSnapshot();
    // The proxy validates what arrives: an endpoint with a malformed identity must not get in.
    store.apply([svc('web', [ep(0), ep(1), ep(2, { identity: 'not-a-spiffe-id' })])], []);
    await waitFor(() => p.client.stats.rejected === 1, 'NACK');
    expect(p.client.current()).toBe(first);
    expect(p.applied).toHaveLength(1);
    // The proxy counts its NACK when it sends it; the control plane when it has read it.
    await waitFor(async () => ((await cp.metrics.nacks.get()).values[0]?.value ?? 0) >= 1, 'NACK counted by the control plane');
    expect((await cp.metrics.nacks.get()).values[0].value).toBe(1);
    const dbg = (await (await fetch(`http://127.0.0.1:${cp.adminPort}/debug/proxies`)).json()) as { proxies: { ackedVersion: string; lastNack: { detail: string } }[] };
    expect(dbg.proxies[0].ackedVersion).toBe(first.version);
    expect(dbg.proxies[0].lastNack.detail).toMatch(/endpointDeltas\[0\]\.updated\[0\]\.identity/);
    // The next change: the delta is computed from the last ACKed view, so it carries the fix and the new endpoint.
    store.apply([svc('web', [ep(0), ep(1), ep(2), ep(3)])], []);
    await waitFor(() => p.applied.length === 2, 'next version accepted');
    expect(endpointsOf(p.client.current(), 'web.shop')).toEqual([ep(0), ep(1), ep(2), ep(3)].map((e) => `${e.address}:8080`).sort());
    const last = pushes[pushes.length - 1].response;
    expect(last.baseVersion).toBe(first.version);
    expect(last.endpointDeltas[0].added.map((e) => e.address)).toEqual([ep(3).address]);
  });

  test('apply() throwing NACKs too, and nothing is half-applied', async () => {
    const p = proxy();
    await p.client.onFirstSnapshot();
    p.reject = (s) => (s.services.some((x) => x.name === 'cache') ? 'no cache allowed' : null);
    store.apply([svc('cache', [ep(20)])], []);
    await waitFor(() => p.client.stats.rejected === 1, 'NACK');
    expect(p.client.current()!.services.map((s) => s.name).sort()).toEqual(['db', 'web']);
    p.reject = null;
    store.apply([svc('db', [ep(11)])], []);
    await waitFor(() => endpointsOf(p.client.current(), 'db.shop').join() === `${ep(11).address}:8080`, 'later version');
    expect(p.client.current()!.services.map((s) => s.name).sort()).toEqual(['cache', 'db', 'web']);
  });

  test('incremental updates carry only the changed endpoints', async () => {
    const many = Array.from({ length: 200 }, (_, i) => ep(i));
    store.apply([svc('web', many)], []);
    const p = proxy(['web.shop']);
    await p.client.onFirstSnapshot();
    const full = pushes.find((x) => x.full)!;
    // one endpoint turns unready -> it is removed
    store.apply([svc('web', many.filter((_, i) => i !== 17))], []);
    await waitFor(() => p.applied.length === 2, 'delta applied');
    const delta = pushes[pushes.length - 1];
    expect(delta.full).toBe(false);
    expect(delta.response.services).toEqual([]);
    expect(delta.response.removedServices).toEqual([]);
    expect(delta.response.endpointDeltas).toEqual([{ service: 'web.shop', port: 80, added: [], updated: [], removed: [{ address: ep(17).address, port: 8080 }] }]);
    expect(delta.bytes).toBeLessThan(100);
    expect(full.bytes).toBeGreaterThan(delta.bytes * 50);
    // the bytes on the wire decode to exactly that
    const decoded = loadDiscoveryProto().decodeResponse(loadDiscoveryProto().encodeResponse(delta.response));
    expect(decoded.endpointDeltas[0].removed).toEqual([{ address: ep(17).address, port: 8080 }]);
    expect(endpointsOf(p.client.current(), 'web.shop')).toHaveLength(199);
    // an endpoint attribute change is an `updated`, a policy change resends the service whole
    store.apply([svc('web', many.filter((_, i) => i !== 17).map((e, i) => (i === 0 ? { ...e, zone: 'b' } : e)))], []);
    await waitFor(() => p.applied.length === 3, 'update applied');
    expect(pushes[pushes.length - 1].response.endpointDeltas[0]).toMatchObject({ added: [], removed: [], updated: [{ address: ep(0).address, zone: 'b' }] });
    const rr = { ...DEFAULT_POLICY, loadBalancer: { ...DEFAULT_POLICY.loadBalancer, kind: 'round-robin' as const } };
    store.apply([svc('web', many, rr)], []);
    await waitFor(() => p.applied.length === 4, 'policy applied');
    const whole = pushes[pushes.length - 1].response;
    expect(whole.services).toHaveLength(1);
    expect(JSON.parse(whole.services[0].policyJson)).toEqual({ loadBalancer: { kind: 'round-robin' } });
    expect(p.client.current()!.services[0].policy.loadBalancer.kind).toBe('round-robin');
  });

  test('the client keeps its snapshot while the control plane is down, then reconnects and converges', async () => {
    const p = proxy();
    const first = await p.client.onFirstSnapshot();
    const port = cp.grpcPort;
    await cp.kill();
    await waitFor(() => !p.client.connected, 'disconnect noticed');
    await new Promise((r) => setTimeout(r, 300)); // several failed reconnect attempts
    expect(p.client.current()).toBe(first);
    expect(p.applied).toHaveLength(1);
    expect(p.client.stats.reconnects).toBeGreaterThanOrEqual(2);
    // a new replica on the same address, with a different view
    cp = await startCp([svc('web', [ep(5)])], `127.0.0.1:${port}`);
    await waitFor(() => p.client.connected && endpointsOf(p.client.current(), 'web.shop').join() === `${ep(5).address}:8080`, 'converged');
    expect(p.client.current()!.services.map((s) => s.name)).toEqual(['web']);
    // and increments flow again on the new stream
    cp.store.apply([svc('web', [ep(5), ep(6)])], []);
    await waitFor(() => endpointsOf(p.client.current(), 'web.shop').length === 2, 'delta after reconnect');
  });

  test('graceful close ends streams with UNAVAILABLE and proxies keep their config', async () => {
    const p = proxy();
    const first = await p.client.onFirstSnapshot();
    await cp.close(100);
    await waitFor(() => !p.client.connected, 'disconnected');
    expect(p.client.stats.lastError).toMatch(/shutting down|UNAVAILABLE/i);
    expect(p.client.current()).toBe(first);
    cp = await startCp([]);
  });

  test('diff then apply reproduces the target view (property over random edits)', () => {
    const rnd = seededRandom(42);
    let from = new Map<string, Service>();
    let version = 'v0';
    for (let round = 0; round < 200; round++) {
      const to = new Map(from);
      const name = `s${Math.floor(rnd() * 5)}`;
      if (rnd() < 0.15) to.delete(`${name}.shop`);
      else {
        const n = Math.floor(rnd() * 6);
        const eps = Array.from({ length: n }, () => ep(Math.floor(rnd() * 10), { zone: rnd() < 0.5 ? 'a' : 'b' }));
        const uniq = [...new Map(eps.map((e) => [e.address, e])).values()];
        to.set(`${name}.shop`, svc(name, uniq, rnd() < 0.1 ? { ...DEFAULT_POLICY, timeouts: { ...DEFAULT_POLICY.timeouts, connectMs: 5 } } : DEFAULT_POLICY));
      }
      const keys = new Set([...from.keys(), ...to.keys()]);
      const d = diffViews(from, to, keys);
      const r: DiscoveryResponse = { version: `v${round + 1}`, nonce: 'n', full: false, baseVersion: version, ...d };
      const got = applyResponse(from, version, r);
      const norm = (m: Map<string, Service>) =>
        [...m.values()].map((s) => ({ ...serviceToWire(s), ports: serviceToWire(s).ports.map((p) => ({ ...p, endpoints: [...p.endpoints].sort((a, b) => (a.address < b.address ? -1 : 1)) })) })).sort((a, b) => (a.name < b.name ? -1 : 1));
      expect(norm(got)).toEqual(norm(to));
      from = to;
      version = r.version;
    }
  });
});
