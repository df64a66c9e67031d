import type { Endpoint } from '../../contract/model.js';
import { endpointKey } from '../../contract/model.js';
import type { Host } from './balancer.js';
import { EndpointLoad } from './endpoint-load.js';

/** Test helper: hosts 10.0.0.1:80 ... with the given weights (shared by the balancer tests). */
export function makeHosts(weights: readonly number[], opts: { now?: number; defaultRttMs?: number; decayMs?: number } = {}): Host[] {
  return weights.map((weight, i) => {
    const endpoint: Endpoint = { address: `10.0.0.${i + 1}`, port: 80, proxyPort: null, identity: '', weight, zone: '', ready: true };
    return { key: endpointKey(endpoint), endpoint, load: new EndpointLoad(opts.defaultRttMs ?? 30, opts.decayMs ?? 10_000, opts.now ?? 0) };
  });
}

export function countPicks(pick: () => Host | null, n: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const h = pick();
    if (!h) throw new Error('picker returned null');
    counts.set(h.key, (counts.get(h.key) ?? 0) + 1);
  }
  return counts;
}
