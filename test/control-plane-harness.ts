import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger, type Logger } from '../common/logger.js';
import type { MeshSnapshot } from '../contract/model.js';
import { DiscoveryClient } from '../proxy/discovery/discovery-client.js';

/** Shared helpers for the control-plane integration tests (real gRPC on loopback). */

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
  opts: { pod?: string; services?: string[]; logger?: Logger; seed?: number; backoff?: { initialMs?: number; maxMs?: number }; onHealthReportClipped?: (dropped: number) => void } = {},
): TestProxy {
  const p: TestProxy = {
    applied: [],
    appliedAt: [],
    reject: null,
    client: undefined as unknown as DiscoveryClient,
  };
  const client = new DiscoveryClient({
    address,
    identity: { spiffeId: `spiffe://cluster.local/ns/default/sa/${opts.pod ?? 'client'}`, namespace: 'default', pod: opts.pod ?? 'client-0' },
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
