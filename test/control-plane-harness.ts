import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger, type Logger } from '../common/logger.js';
import { DEFAULT_POLICY } from '../contract/defaults.js';
import type { Endpoint, MeshSnapshot, Service } from '../contract/model.js';
import type { Issuer } from '../control-plane/identity/issuer.js';
import type { MeshSource, SourceContext } from '../control-plane/sources/source.js';
import { DiscoveryClient } from '../proxy/discovery/discovery-client.js';

/** Shared helpers for the control-plane integration tests (real gRPC on loopback). */

/** An issuer the test swaps, as issuer-reloader.ts does on a file change. */
export function swappableIssuer(first: Issuer): { issuer: Issuer; swap(next: Issuer): void } {
  let cur = first;
  const subs = new Set<() => void>();
  const issuer: Issuer = {
    get ca() { return cur.ca; },
    get trustBundlePem() { return cur.trustBundlePem; },
    get source() { return cur.source; },
    snapshot: () => cur,
    onChange: (fn) => (subs.add(fn), () => void subs.delete(fn)),
  };
  return { issuer, swap: (next) => { cur = next; for (const f of subs) f(); } };
}

/** A source the test drives by hand: it writes straight into the store. */
export class ManualSource implements MeshSource {
  readonly name = 'manual';
  constructor(readonly ctx: SourceContext, private readonly initial: Service[]) {}
  async start(): Promise<void> {
    this.ctx.store.apply(this.initial, []);
    this.ctx.store.markReady();
  }
  async stop(): Promise<void> {}
}

/** web.shop:80 with `count` ready endpoints (10.x.y.z:8080), for tests of what a large service costs. */
export function largeService(count: number): Service {
  const endpoints: Endpoint[] = Array.from({ length: count }, (_, i) => ({
    address: `10.${1 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, port: 8080, proxyPort: 15006, identity: 'spiffe://cluster.local/ns/shop/sa/web', weight: 1, zone: 'a', ready: true,
  }));
  return { name: 'web', namespace: 'shop', clusterIPs: ['10.96.0.1'], policy: DEFAULT_POLICY, ports: [{ name: 'http', port: 80, protocol: 'http1', endpoints }] };
}

export async function waitFor<T>(fn: () => T | undefined | null | false | Promise<T | undefined | null | false>, what: string, timeoutMs = 8000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export interface TestProxy {
  readonly client: DiscoveryClient;
  /** Every snapshot apply() accepted, in order. */
  readonly applied: MeshSnapshot[];
  /** Set to make apply() throw (the client then NACKs). */
  reject: ((s: MeshSnapshot) => string | null) | null;
  /** performance.now() of each apply. */
  readonly appliedAt: number[];
}

export function startProxy(
  address: string,
  opts: { pod?: string; serviceAccount?: string; services?: string[]; logger?: Logger; seed?: number; backoff?: { initialMs?: number; maxMs?: number }; onHealthReportClipped?: (dropped: number) => void } = {},
): TestProxy {
  const p: TestProxy = {
    applied: [],
    appliedAt: [],
    reject: null,
    client: undefined as unknown as DiscoveryClient,
  };
  const client = new DiscoveryClient({
    address,
    identity: { spiffeId: `spiffe://cluster.local/ns/default/sa/${opts.serviceAccount ?? opts.pod ?? 'client'}`, namespace: 'default', pod: opts.pod ?? 'client-0' },
    services: opts.services,
    clock: systemClock,
    random: seededRandom(opts.seed ?? 1),
    logger: opts.logger ?? silentLogger,
    backoff: opts.backoff ?? { initialMs: 50, maxMs: 500 },
    ...(opts.onHealthReportClipped ? { onHealthReportClipped: opts.onHealthReportClipped } : {}),
    apply: (s) => {
      const why = p.reject?.(s);
      if (why) throw new Error(why);
      p.applied.push(s);
      p.appliedAt.push(performance.now());
    },
  });
  (p as { client: DiscoveryClient }).client = client;
  client.start();
  return p;
}

/** Sorted "ip:port" of a service port's endpoints in a snapshot ([] if absent). */
export function endpointsOf(s: MeshSnapshot | null | undefined, key: string, port?: number): string[] {
  const svc = s?.services.find((x) => `${x.name}.${x.namespace}` === key);
  if (!svc) return [];
  const ports = port === undefined ? svc.ports : svc.ports.filter((p) => p.port === port);
  return ports.flatMap((p) => p.endpoints.map((e) => `${e.address}:${e.port}`)).sort();
}

export function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}
