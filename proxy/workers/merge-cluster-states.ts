interface EndpointLike {
  readonly key?: string;
  readonly health?: string;
  readonly [field: string]: unknown;
}

interface ClusterLike {
  readonly panic?: boolean;
  readonly endpoints?: EndpointLike[];
}

/** Per-endpoint counts each worker keeps of its own traffic: the sidecar's are their sum. */
const SUMMED = ['inflight', 'successes', 'failures'] as const;
/**
 * Per-endpoint estimates each worker makes alone: the worst (highest) is shown. And
 * `timesEjected`, the sidecar's in every worker (shared-outliers.ts): the highest is that
 * count (or, for an endpoint beyond the shared table, the worker that ejected it most).
 */
const WORST = ['ewmaMs', 'consecutiveConnectFailures', 'timesEjected'] as const;

const num = (v: unknown): number => (typeof v === 'number' ? v : 0);

/** One endpoint over the workers that know it: the first out-of-balancing state, counts summed. */
function mergeEndpoint(views: EndpointLike[]): EndpointLike {
  const base = views.find((e) => e.health !== undefined && e.health !== 'healthy') ?? views[0];
  if (views.length === 1) return base;
  const out: Record<string, unknown> = { ...base };
  for (const f of SUMMED) if (f in base) out[f] = views.reduce((n, e) => n + num(e[f]), 0);
  for (const f of WORST) if (f in base) out[f] = Math.max(...views.map((e) => num(e[f])));
  if ('activeHealthy' in base) out['activeHealthy'] = views.every((e) => e['activeHealthy'] !== false);
  return out;
}

/**
 * GET /clusters and the HealthReport over N workers: each worker keeps its own cluster
 * state (balancer, EWMA, breakers, like Envoy's per-worker load balancers; outlier
 * ejections are the sidecar's and the same in every worker, shared-outliers.ts), so
 * the merged view of a cluster is the first worker's, with `panic` if any worker is in
 * panic, and per endpoint:
 * - `health` (and `ejectedUntil`, `lastEjectionReason`, `breaker` with it): the first
 *   state that is not `healthy`, so an endpoint any worker keeps out of balancing is
 *   reported as out (the union of the workers' ejections), which is what the control
 *   plane's deregistration needs; `activeHealthy` only if every worker's checks pass;
 * - `inflight`, `successes`, `failures`: summed (each worker counts its own);
 * - `ewmaMs`, `consecutiveConnectFailures`: the highest (each worker estimates alone);
 *   `timesEjected`: the highest (the sidecar's count, which every worker shows).
 * A cluster's `limits` and `retryBudget` are the sidecar's in every worker's state
 * (shared-limits.ts), so the first worker's are the whole sidecar's.
 */
export function mergeClusterStates(perWorker: readonly Record<string, unknown>[]): Record<string, unknown> {
  const byName = new Map<string, ClusterLike[]>();
  for (const states of perWorker) for (const [name, state] of Object.entries(states)) byName.set(name, [...(byName.get(name) ?? []), state as ClusterLike]);
  const out: Record<string, unknown> = {};
  for (const [name, views] of byName) {
    const first = views[0];
    if (views.length === 1 || !Array.isArray(first.endpoints)) {
      out[name] = first;
      continue;
    }
    const byKey = new Map<unknown, EndpointLike[]>();
    for (const v of views) for (const e of Array.isArray(v.endpoints) ? v.endpoints : []) byKey.set(e.key, [...(byKey.get(e.key) ?? []), e]);
    const merged: Record<string, unknown> = { ...first, endpoints: first.endpoints.map((e) => mergeEndpoint(byKey.get(e.key) ?? [e])) };
    if ('panic' in first) merged['panic'] = views.some((v) => v.panic === true);
    out[name] = merged;
  }
  return out;
}
