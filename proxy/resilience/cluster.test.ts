import http from 'node:http';
import type net from 'node:net';
import { Registry } from 'prom-client';
import { FakeClock, seededRandom, systemClock } from '../../common/clock.js';
import { DEFAULT_POLICY } from '../../contract/defaults.js';
import { endpointKey, type Endpoint, type TrafficPolicy } from '../../contract/model.js';
import { EndpointLoad } from '../balance/endpoint-load.js';
import { RingHashBalancer } from '../balance/ring-hash.js';
import { ProxyError } from '../errors/proxy-error.js';
import { classify } from './classify.js';
import { Cluster } from './cluster.js';
import { PromClusterMetrics } from './cluster-metrics.js';

const ok = classify({ type: 'response', status: 200 });
const e503 = classify({ type: 'response', status: 503 });

const ep = (i: number, over: Partial<Endpoint> = {}): Endpoint => ({
  address: `10.1.0.${i}`, port: 8080, proxyPort: 15006, identity: '', weight: 1, zone: 'z1', ready: true, ...over,
});

function policy(over: { [K in keyof TrafficPolicy]?: Partial<TrafficPolicy[K]> } = {}): TrafficPolicy {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(DEFAULT_POLICY) as (keyof TrafficPolicy)[]) {
    const base = DEFAULT_POLICY[k];
    out[k] = over[k] === undefined ? base : { ...(base as object), ...(over[k] as object) };
  }
  return out as unknown as TrafficPolicy;
}

function setup(p: TrafficPolicy = policy(), n = 3) {
  const clock = new FakeClock(1_700_000_000_000);
  const registry = new Registry();
  const cluster = new Cluster({ name: 'web.default:80', policy: p, clock, random: seededRandom(7), metrics: new PromClusterMetrics(registry) });
  const eps = Array.from({ length: n }, (_, i) => ep(i + 1));
  cluster.update(eps);
  /** One attempt on whatever pick() returns. */
  const attempt = (outcome = ok, latency = 5, ctx = {}) => {
    const picked = cluster.pick(ctx);
    if (picked instanceof ProxyError) throw picked;
    cluster.start(picked)(outcome, latency);
    return picked;
  };
  const pickKeys = (count: number) => {
    const seen = new Map<string, number>();
    for (let i = 0; i < count; i++) {
      const e = cluster.pick({}) as Endpoint;
      seen.set(e.address, (seen.get(e.address) ?? 0) + 1);
    }
    return seen;
  };
  return { clock, registry, cluster, eps, attempt, pickKeys };
}

const metric = async (registry: Registry, name: string) => (await registry.getSingleMetric(name)!.get()).values;

describe('Cluster', () => {
  it('picks only ready endpoints and reports NO_ENDPOINTS when none is', () => {
    const { cluster, pickKeys } = setup();
    cluster.update([ep(1), ep(2, { ready: false })]);
    expect([...pickKeys(50).keys()]).toEqual(['10.1.0.1']);
    cluster.update([ep(2, { ready: false })]);
    expect((cluster.pick({}) as ProxyError).code).toBe('NO_ENDPOINTS');
    cluster.update([]);
    expect((cluster.pick({}) as ProxyError).code).toBe('NO_ENDPOINTS');
    cluster.close();
  });

  it("reports a ring-hash cluster's ring as Envoy's ring_hash_lb gauges: its size, the fewest and most entries one endpoint has (adv49)", async () => {
    const registry = new Registry();
    const metrics = new PromClusterMetrics(registry);
    const ring = new Cluster({ name: 'web.default:80', policy: policy({ loadBalancer: { kind: 'ring-hash' } }), clock: new FakeClock(), random: seededRandom(7), metrics });
    const rr = new Cluster({ name: 'api.default:80', policy: policy(), clock: new FakeClock(), random: seededRandom(7), metrics });
    // Weights 1, 1, 2: 4 units, 1024 / 4 = 256 entries per unit (over libketama's 160).
    ring.update([ep(1), ep(2), ep(3, { weight: 2 })]);
    rr.update([ep(1), ep(2)]);
    const web = { cluster: 'web.default:80' };
    expect(await metric(registry, 'wren_ring_hash_lb_size')).toEqual([{ labels: web, value: 1024 }]);
    expect(await metric(registry, 'wren_ring_hash_lb_min_hashes_per_host')).toEqual([{ labels: web, value: 256 }]);
    expect(await metric(registry, 'wren_ring_hash_lb_max_hashes_per_host')).toEqual([{ labels: web, value: 512 }]);
    expect(ring.snapshot().ring).toEqual({ size: 1024, minHashesPerHost: 256, maxHashesPerHost: 512 });
    expect(rr.snapshot().ring).toBeNull();
    // An ejection keeps the ring (its keys walk past the endpoint); an endpoint more changes it: 5 units, 205 per unit.
    for (let i = 0; i < 5; i++) ring.start(ep(3, { weight: 2 }))(e503, 3);
    expect(ring.snapshot().ring).toEqual({ size: 1024, minHashesPerHost: 256, maxHashesPerHost: 512 });
    ring.update([ep(1), ep(2), ep(3, { weight: 2 }), ep(4)]);
    expect(await metric(registry, 'wren_ring_hash_lb_size')).toEqual([{ labels: web, value: 1025 }]);
    ring.update([]);
    expect(await metric(registry, 'wren_ring_hash_lb_size')).toEqual([]);
    for (const c of [ring, rr]) c.close();
  });

  it('skips excluded endpoints, but reuses one when all were tried', () => {
    const { cluster, eps } = setup(policy(), 2);
    const first = cluster.pick({}) as Endpoint;
    const other = cluster.pick({ exclude: new Set([`${first.address}:8080`]) }) as Endpoint;
    expect(other.address).not.toBe(first.address);
    const all = new Set(eps.map((e) => `${e.address}:8080`));
    expect(cluster.pick({ exclude: all })).not.toBeInstanceOf(ProxyError);
    cluster.close();
  });

  it('ejects an endpoint after 5 consecutive 5xx, keeps it out, brings it back after 30 s', async () => {
    const { clock, cluster, registry, pickKeys } = setup(policy(), 10);
    const bad = ep(4);
    for (let i = 0; i < 5; i++) cluster.start(bad)(e503, 3);
    expect(pickKeys(300).has(bad.address)).toBe(false);
    const snap = cluster.snapshot().endpoints.find((e) => e.address === bad.address)!;
    expect(snap).toMatchObject({ health: 'ejected', timesEjected: 1, failures: 5, lastEjectionReason: 'consecutive-5xx' });
    expect(snap.ejectedUntil).toBe(new Date(clock.now() + 30_000).toISOString());
    // Shown in wall-clock time: after the system clock stepped an hour forward, the same 30 s from the wall clock's now.
    const monotonic = clock.now();
    clock.wallNow = () => monotonic + 3_600_000;
    expect(cluster.snapshot().endpoints.find((e) => e.address === bad.address)!.ejectedUntil).toBe(new Date(monotonic + 3_600_000 + 30_000).toISOString());
    clock.wallNow = () => clock.now();
    expect(await metric(registry, 'wren_outlier_ejections_enforced_total')).toEqual([
      { labels: { cluster: 'web.default:80', reason: 'consecutive-5xx' }, value: 1 },
    ]);
    expect((await metric(registry, 'wren_outlier_ejected_endpoints'))[0].value).toBe(1);
    clock.advance(30_000);
    expect(pickKeys(300).has(bad.address)).toBe(true);
    cluster.close();
  });

  it('counts connect failures in a row per endpoint for the health report; any answer resets it, a cancellation does not', () => {
    let changes = 0;
    const cluster = new Cluster({ name: 'web.default:80', policy: policy(), clock: new FakeClock(), random: seededRandom(7), onHealthChange: () => void changes++ });
    cluster.update([ep(1), ep(2)]);
    const refused = classify({ type: 'error', error: new ProxyError('CONNECT_REFUSED') });
    const timedOut = classify({ type: 'error', error: new ProxyError('CONNECT_TIMEOUT') });
    const reset = classify({ type: 'error', error: new ProxyError('UPSTREAM_RESET'), bytesSent: true });
    const cancelled = classify({ type: 'error', error: new ProxyError('CLIENT_CANCELLED') });
    const count = () => cluster.snapshot().endpoints.map((e) => e.consecutiveConnectFailures);
    cluster.start(ep(1))(refused, 1);
    cluster.start(ep(1))(timedOut, 1000);
    cluster.start(ep(1))(cancelled, 1);
    expect(count()).toEqual([2, 0]);
    expect(changes).toBe(2); // each connect failure may cross the reporter's threshold
    cluster.start(ep(1))(reset, 1); // it connected
    expect(count()).toEqual([0, 0]);
    expect(changes).toBe(3);
    cluster.start(ep(2))(e503, 1);
    cluster.start(ep(2))(ok, 1);
    expect(changes).toBe(3); // answers with nothing to clear cost no report
    // A long run is announced for its first 16 failures only (a bounded cost for the reporter), then its end.
    for (let i = 0; i < 100; i++) cluster.start(ep(2))(refused, 1);
    expect(count()).toEqual([0, 100]);
    expect(changes).toBe(3 + 16 + 1); // + its outlier ejection at 5 in a row
    cluster.start(ep(2))(ok, 1);
    expect(changes).toBe(3 + 16 + 1 + 1);
    cluster.close();
  });

  it('keeps per-endpoint state across update() for endpoints that remain', () => {
    const { cluster } = setup(policy(), 10);
    for (let i = 0; i < 5; i++) cluster.start(ep(2))(e503, 400);
    cluster.update([ep(1), ep(2, { weight: 3 }), ep(3)]);
    const snap = cluster.snapshot().endpoints;
    expect(snap.map((e) => e.address)).toEqual(['10.1.0.1', '10.1.0.2', '10.1.0.3']);
    expect(snap[1]).toMatchObject({ health: 'ejected', weight: 3, failures: 5, timesEjected: 1 });
    expect(snap[1].ewmaMs).toBeCloseTo(400, 6);
    cluster.close();
  });

  it('enters panic mode when fewer than 50 % are healthy and balances over all', () => {
    const { cluster, pickKeys } = setup(policy({ outlierDetection: { maxEjectionPercent: 100 } }), 4);
    for (const i of [1, 2]) for (let k = 0; k < 5; k++) cluster.start(ep(i))(e503, 1);
    expect(cluster.snapshot().panic).toBe(false); // 2 of 4 healthy = 50 %
    expect(pickKeys(200).size).toBe(2);
    for (let k = 0; k < 5; k++) cluster.start(ep(3))(e503, 1);
    expect(cluster.snapshot().panic).toBe(true);
    expect(pickKeys(400).size).toBe(4);
    cluster.close();
  });

  it('failure accrual: open endpoints are not picked; one half-open probe; CIRCUIT_OPEN when all are open', () => {
    const { clock, cluster } = setup(policy({ circuitBreaker: { accrual: 'consecutive', consecutiveFailures: 3 }, outlierDetection: { enabled: false } }), 2);
    for (const i of [1, 2]) for (let k = 0; k < 3; k++) cluster.start(ep(i))(e503, 1);
    expect((cluster.pick({}) as ProxyError).code).toBe('CIRCUIT_OPEN');
    expect(cluster.snapshot().endpoints.map((e) => e.health)).toEqual(['breaker-open', 'breaker-open']);
    clock.advance(1_500); // both half-open (1 s + up to 0.5 s jitter)
    const probe = cluster.pick({}) as Endpoint;
    const done = cluster.start(probe);
    const other = cluster.pick({}) as Endpoint;
    expect(other.address).not.toBe(probe.address); // the probing endpoint takes no more
    const otherDone = cluster.start(other);
    expect((cluster.pick({}) as ProxyError).code).toBe('CIRCUIT_OPEN'); // both probing
    done(ok, 2);
    otherDone(e503, 2);
    const health = Object.fromEntries(cluster.snapshot().endpoints.map((e) => [e.address, e.health]));
    expect(health).toEqual({ [probe.address]: 'healthy', [other.address]: 'breaker-open' });
    cluster.close();
  });

  it('pinned (a pod IP addressed directly): the endpoint itself even when ejected or breaker-open, state still recorded; NO_ENDPOINTS once gone', () => {
    const { cluster, pickKeys } = setup(policy({ circuitBreaker: { accrual: 'consecutive', consecutiveFailures: 3 }, outlierDetection: { enabled: false } }), 3);
    const target = ep(2, { weight: 2 });
    cluster.update([ep(1), target, ep(3)]);
    // The caller's copy may be stale: the cluster's current entry comes back.
    expect(cluster.pinned(ep(2))).toBe(target);
    for (let k = 0; k < 3; k++) cluster.start(cluster.pinned(ep(2)) as Endpoint)(e503, 1);
    expect(cluster.snapshot().endpoints[1]).toMatchObject({ health: 'breaker-open', failures: 3 });
    expect(pickKeys(200).has(target.address)).toBe(false); // balanced traffic avoids it
    expect(cluster.pinned(ep(2))).toBe(target); // addressed traffic still goes there
    const unready = ep(2, { ready: false });
    cluster.update([ep(1), unready, ep(3)]);
    expect(cluster.pinned(ep(2))).toBe(unready); // not ready: still the client's choice
    cluster.update([ep(1), ep(3)]);
    const gone = cluster.pinned(ep(2)) as ProxyError;
    expect(gone.code).toBe('NO_ENDPOINTS');
    expect(gone.message).toMatch(/10\.1\.0\.2:8080/);
    cluster.close();
  });

  it('pinned at a dual-stack pod\'s other address (adv21): that address, counted as the pod\'s endpoint; NO_ENDPOINTS once the pod is gone', () => {
    const { cluster } = setup(policy({ circuitBreaker: { accrual: 'consecutive', consecutiveFailures: 3 }, outlierDetection: { enabled: false } }), 3);
    const pod = ep(2, { additionalAddresses: ['fd00::2'] });
    cluster.update([ep(1), pod, ep(3)]);
    const viaV6 = { ...pod, address: 'fd00::2', additionalAddresses: undefined };
    expect(cluster.pinned(viaV6)).toBe(viaV6);
    for (let k = 0; k < 3; k++) cluster.start(cluster.pinned(viaV6) as Endpoint)(e503, 1);
    expect(cluster.snapshot().endpoints.find((e) => e.address === pod.address)).toMatchObject({ health: 'breaker-open', failures: 3 });
    expect(cluster.snapshot().endpoints).toHaveLength(3);
    cluster.update([ep(1), ep(3)]);
    expect((cluster.pinned(viaV6) as ProxyError).code).toBe('NO_ENDPOINTS');
    cluster.close();
  });

  it('pinned to an ejected endpoint: still that endpoint', () => {
    const { cluster } = setup(policy({ outlierDetection: { maxEjectionPercent: 100 } }), 3);
    for (let k = 0; k < 5; k++) cluster.start(ep(3))(e503, 1);
    expect(cluster.snapshot().endpoints[2].health).toBe('ejected');
    expect((cluster.pinned(ep(3)) as Endpoint).address).toBe('10.1.0.3');
    cluster.close();
  });

  it('P2C peak-EWMA steers traffic to the faster endpoint from latency feedback', () => {
    const { cluster } = setup(policy(), 3);
    const rtt: Record<string, number> = { '10.1.0.1': 200, '10.1.0.2': 10, '10.1.0.3': 12 };
    const counts: Record<string, number> = {};
    for (let i = 0; i < 600; i++) {
      const e = cluster.pick({}) as Endpoint;
      counts[e.address] = (counts[e.address] ?? 0) + 1;
      cluster.start(e)(ok, rtt[e.address]);
    }
    expect(counts['10.1.0.1']).toBeLessThan(10);
    cluster.close();
  });

  it('a cancelled attempt (deadline, client gone) feeds the time it was outstanding to the EWMA, as tower records a dropped request; no failure', () => {
    const { cluster } = setup(policy(), 1);
    const deadline = classify({ type: 'error', error: new ProxyError('DEADLINE_EXCEEDED') });
    const gone = classify({ type: 'error', error: new ProxyError('CLIENT_CANCELLED') });
    const done = cluster.start(ep(1));
    // While outstanding it counts as load (tower's pending count): cost = estimate × (in-flight + 1).
    expect(cluster.snapshot().endpoints[0]).toMatchObject({ inflight: 1, ewmaMs: 30 });
    done(deadline, 200);
    expect(cluster.snapshot().endpoints[0]).toMatchObject({ inflight: 0, ewmaMs: 200, failures: 0, successes: 0, timesEjected: 0 });
    // Only a lower bound on the endpoint's latency: a quick cancellation never lowers the estimate.
    cluster.start(ep(1))(gone, 2);
    expect(cluster.snapshot().endpoints[0].ewmaMs).toBe(200);
    // Neutral for outlier detection: many in a row eject nothing.
    for (let i = 0; i < 10; i++) cluster.start(ep(1))(deadline, 200);
    expect(cluster.snapshot().endpoints[0]).toMatchObject({ health: 'healthy', failures: 0, timesEjected: 0 });
    cluster.close();
  });

  it.each([
    ['hung endpoint listed first', 1],
    ['healthy endpoint listed first', 2],
  ])('a hung endpoint whose callers time out loses the traffic after a timeout (%s)', (_name, hungIndex) => {
    // The integration test (test/resilience-hung-endpoint.test.ts) with a fake clock: every
    // attempt on the hung endpoint ends by the caller's 200 ms deadline; the healthy one
    // answers in 40 ms (above the 30 ms default, as a first call that opens a session does).
    // Before the fix the hung endpoint never got a sample and took all 40 calls.
    const { cluster, clock } = setup(policy(), 2);
    const deadline = classify({ type: 'error', error: new ProxyError('DEADLINE_EXCEEDED') });
    const hung = ep(hungIndex).address;
    let hungCalls = 0;
    for (let i = 0; i < 40; i++) {
      const e = cluster.pick({}) as Endpoint;
      const done = cluster.start(e);
      if (e.address === hung) {
        hungCalls++;
        clock.advance(200);
        done(deadline, 200);
      } else {
        clock.advance(40);
        done(ok, 40);
      }
    }
    expect(hungCalls).toBeGreaterThanOrEqual(1);
    expect(hungCalls).toBeLessThanOrEqual(2);
    cluster.close();
  });

  it('start() counts in-flight requests and records exactly once', () => {
    const { cluster } = setup(policy(), 1);
    const done = cluster.start(ep(1));
    expect(cluster.snapshot().endpoints[0].inflight).toBe(1);
    done(e503, 1);
    done(e503, 1);
    expect(cluster.snapshot().endpoints[0]).toMatchObject({ inflight: 0, failures: 1 });
    const gone = cluster.start(ep(1));
    cluster.update([]);
    gone(e503, 1); // endpoint removed meanwhile: harmless
    cluster.start(ep(9))(ok, 1); // unknown endpoint: no-op
    cluster.close();
  });

  it('an opaque TCP connection takes a connection slot and pays into the retry budget its connect retries draw on', () => {
    const p = policy({ circuitBreaker: { maxConnections: 2 }, retry: { budgetRatio: 0.5, budgetMinPerSecond: 0 } });
    const { cluster } = setup(p);
    const a = cluster.admit('tunnel');
    const b = cluster.admit('tunnel');
    expect((cluster.admit('tunnel') as ProxyError).code).toBe('OVERFLOW');
    expect(cluster.snapshot().retryBudget.balance).toBe(1); // 2 connections × 50 %
    const r = cluster.admit('retry');
    expect(r).not.toBeInstanceOf(ProxyError);
    for (const x of [a, b, r]) (x as { release(): void }).release();
    expect(cluster.snapshot().limits.connections.active).toBe(0);
    cluster.close();
  });

  it('admits against limits and the retry budget, with metrics', async () => {
    const p = policy({ circuitBreaker: { maxRequests: 2, maxRetries: 1 }, retry: { budgetRatio: 0.5, budgetMinPerSecond: 0 } });
    const { cluster, registry } = setup(p);
    const a = cluster.admit('request');
    const b = cluster.admit('request');
    const c = cluster.admit('request');
    expect((c as ProxyError).code).toBe('OVERFLOW');
    expect(cluster.snapshot().retryBudget.balance).toBe(1); // 2 requests × 50 %
    const r1 = cluster.admit('retry');
    expect(r1).not.toBeInstanceOf(ProxyError);
    expect((cluster.admit('retry') as ProxyError).code).toBe('OVERFLOW'); // max 1 active retry
    (r1 as { release(): void }).release();
    expect((cluster.admit('retry') as ProxyError).code).toBe('RETRY_BUDGET');
    for (const x of [a, b]) (x as { release(): void }).release();
    expect(cluster.snapshot().limits.requests).toEqual({ active: 0, max: 2 });
    expect(await metric(registry, 'wren_overflow_total')).toEqual([
      { labels: { cluster: 'web.default:80', limit: 'requests' }, value: 1 },
      { labels: { cluster: 'web.default:80', limit: 'retries' }, value: 1 },
    ]);
    expect((await metric(registry, 'wren_retries_total'))[0].value).toBe(1);
    expect((await metric(registry, 'wren_retry_budget_exhausted_total'))[0].value).toBe(1);
    cluster.close();
  });

  it('backoff is full jitter under the policy cap', () => {
    const { cluster } = setup();
    for (let i = 1; i < 50; i++) expect(cluster.backoff(i)).toBeLessThan(250);
    expect(cluster.backoff(1)).toBeLessThan(25);
    cluster.close();
  });

  it('updatePolicy switches the balancer without losing endpoint state', () => {
    const { cluster, pickKeys } = setup(policy(), 10);
    for (let k = 0; k < 5; k++) cluster.start(ep(1))(e503, 1);
    cluster.updatePolicy(policy({ loadBalancer: { kind: 'round-robin' } }));
    const counts = pickKeys(90);
    expect(counts.has('10.1.0.1')).toBe(false);
    expect([...counts.values()]).toEqual(Array(9).fill(10));
    expect(cluster.snapshot().balancer).toBe('round-robin');
    cluster.close();
  });

  it('ring hash keeps a key on one endpoint', () => {
    const { cluster } = setup(policy({ loadBalancer: { kind: 'ring-hash' } }), 5);
    const first = (cluster.pick({ hashKey: 'session-42' }) as Endpoint).address;
    for (let i = 0; i < 20; i++) expect((cluster.pick({ hashKey: 'session-42' }) as Endpoint).address).toBe(first);
    cluster.close();
  });

  describe('a large hash ring is built off the request path, the ring it replaces serving meanwhile (adv54)', () => {
    // 200 endpoints: 32,000 entries, over the 16,384 built at once.
    const eps = (from: number, n: number) => Array.from({ length: n }, (_, i) => ep(0, { address: `10.2.${(from + i) >> 8}.${(from + i) & 255}` }));
    const keys = Array.from({ length: 500 }, (_, i) => `user-${i}`);
    function hashed() {
      const turns: (() => void)[] = [];
      const cluster = new Cluster({ name: 'web.default:80', policy: policy({ loadBalancer: { kind: 'ring-hash' } }), clock: new FakeClock(), random: seededRandom(7), defer: (fn) => turns.push(fn) });
      const owner = (key: string) => {
        const e = cluster.pick({ hashKey: key });
        if (e instanceof ProxyError) throw e;
        return e.address;
      };
      /** Runs the queued turns; how many there were. */
      const drain = () => {
        let n = 0;
        for (let fn = turns.shift(); fn; fn = turns.shift()) {
          n++;
          fn();
        }
        return n;
      };
      return { cluster, turns, owner, drain };
    }
    /** Each key's endpoint on a ring built at once over `set` (a balancer without a background: the rings of before adv54). */
    function reference(set: Endpoint[]): Map<string, string> {
      const ring = new RingHashBalancer(seededRandom(7), 1024).build(set.map((e) => ({ key: endpointKey(e), endpoint: e, load: new EndpointLoad(30, 10_000, 0) })));
      return new Map(keys.map((k) => [k, ring.pick({ hashKey: k })!.endpoint.address]));
    }

    it('a pick during the build gets a current endpoint at once, a key whose endpoint stays keeps it, and the new ring takes over when built', () => {
      const before = eps(0, 200);
      // 20 endpoints leave, 10 come.
      const after = [...before.slice(20), ...eps(200, 10)];
      const { cluster, turns, owner, drain } = hashed();
      cluster.update(before);
      // The first ring: picks are random over the endpoints until it is built.
      const first = owner('user-1');
      expect(before.map((e) => e.address)).toContain(first);
      expect(turns.length).toBe(1);
      expect(drain()).toBeGreaterThanOrEqual(4); // built a few steps at a time, over several turns
      const old = new Map(keys.map((k) => [k, owner(k)]));
      expect(old).toEqual(reference(before));

      cluster.update(after);
      const current = new Set(after.map((e) => e.address));
      const gone = new Set(before.slice(0, 20).map((e) => e.address));
      const check = () => {
        for (const k of keys) {
          const o = owner(k);
          expect(current.has(o)).toBe(true);
          // The old ring: a key stays where it was unless its endpoint left.
          if (!gone.has(old.get(k)!)) expect(o).toBe(old.get(k));
        }
      };
      check(); // nothing was built in the pick: it is queued
      expect(turns.length).toBe(1);
      for (let i = 0; i < 3; i++) turns.shift()!();
      check();
      expect(turns.length).toBe(1);
      expect(drain()).toBeGreaterThan(0);
      // Built: the ring over the new set, as one built at once (the same keys move as before this change).
      expect(new Map(keys.map((k) => [k, owner(k)]))).toEqual(reference(after));
      cluster.close();
    });

    it('a policy change that remakes the balancer (EWMA decay, panic threshold) keeps the ring: no random picks while it is built again', () => {
      const { cluster, turns, owner, drain } = hashed();
      const set = eps(0, 200);
      cluster.update(set);
      cluster.pick({});
      drain();
      cluster.updatePolicy(policy({ loadBalancer: { kind: 'ring-hash', ewmaDecayMs: 20_000 }, outlierDetection: { panicThresholdPercent: 30 } }));
      expect(new Map(keys.map((k) => [k, owner(k)]))).toEqual(reference(set));
      expect(turns.length).toBe(0);
      cluster.close();
    });

    it('a build superseded by a newer endpoint change is abandoned: only the latest set is built', () => {
      const latest = eps(0, 210);
      const fresh = hashed();
      fresh.cluster.update(latest);
      fresh.cluster.pick({});
      const whole = fresh.drain(); // the turns of one build of the latest set
      fresh.cluster.close();
      const { cluster, turns, owner, drain } = hashed();
      cluster.update(eps(0, 200));
      cluster.pick({});
      drain();
      cluster.update(eps(0, 220));
      cluster.pick({});
      for (let i = 0; i < 3; i++) turns.shift()!();
      cluster.update(latest);
      cluster.pick({});
      // The first build's next turn stops (one turn); the second's are those of a whole build.
      expect(drain()).toBe(whole + 1);
      expect(new Map(keys.map((k) => [k, owner(k)]))).toEqual(reference(latest));
      expect(cluster.snapshot().ring).toEqual({ size: 210 * 160, minHashesPerHost: 160, maxHashesPerHost: 160 });
      cluster.close();
      // Closed: no turn is queued any more.
      const c2 = hashed();
      c2.cluster.update(eps(0, 200));
      c2.cluster.pick({});
      c2.cluster.close();
      c2.turns.shift()!();
      expect(c2.turns.length).toBe(0);
    });
  });

  it('exports EWMA and breaker gauges per endpoint; close() stops exporting and clears timers', async () => {
    const { clock, cluster, registry } = setup(policy({ circuitBreaker: { accrual: 'consecutive' } }), 2);
    cluster.start(ep(1))(ok, 80);
    const ewma = await metric(registry, 'wren_endpoint_ewma_ms');
    expect(ewma.find((v) => v.labels.endpoint === '10.1.0.1:8080')!.value).toBeCloseTo(80, 6);
    expect((await metric(registry, 'wren_endpoint_breaker_state')).map((v) => v.value)).toEqual([0, 0]);
    cluster.close();
    expect(clock.pending()).toBe(0);
    expect(await metric(registry, 'wren_endpoint_ewma_ms')).toEqual([]);
  });
});

describe('Cluster with active health checks (real HTTP)', () => {
  it('does not pick an endpoint failing checks and restores it when it passes', async () => {
    let healthy = true;
    const servers = await Promise.all(
      [0, 1].map(
        (i) =>
          new Promise<http.Server>((resolve) => {
            const s = http.createServer((_req, res) => res.writeHead(i === 0 && !healthy ? 503 : 200).end());
            s.listen(0, '127.0.0.1', () => resolve(s));
          }),
      ),
    );
    const eps = servers.map((s) => ep(0, { address: '127.0.0.1', port: (s.address() as net.AddressInfo).port }));
    // Round robin: with no traffic, peak-EWMA ties would be broken by microsecond clock noise.
    const p = policy({ loadBalancer: { kind: 'round-robin' } });
    const cluster = new Cluster({
      name: 'hc', clock: systemClock, random: seededRandom(1),
      policy: { ...p, healthCheck: { kind: 'http', path: '/ready', intervalMs: 20, timeoutMs: 500, healthyThreshold: 1, unhealthyThreshold: 2 } },
    });
    cluster.update(eps);
    const picked = () => new Set(Array.from({ length: 100 }, () => (cluster.pick({}) as Endpoint).port));
    const until = async (pred: () => boolean) => {
      for (let i = 0; i < 300 && !pred(); i++) await new Promise((r) => setTimeout(r, 10));
      expect(pred()).toBe(true);
    };
    try {
      expect(picked().size).toBe(2);
      healthy = false;
      await until(() => cluster.snapshot().endpoints[0].health === 'health-check-failed');
      // 1 of 2 healthy = 50 %: not panic, so the failing endpoint gets nothing.
      expect([...picked()]).toEqual([eps[1].port]);
      healthy = true;
      await until(() => cluster.snapshot().endpoints[0].health === 'healthy');
      expect(picked().size).toBe(2);
    } finally {
      cluster.close();
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    }
  });
});
