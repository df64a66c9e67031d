interface EndpointLike {
  readonly key?: string;
  readonly health?: string;
}

/**
 * GET /clusters and the HealthReport over N workers: each worker keeps its own cluster
 * state (balancer, EWMA, outlier detection, like Envoy's per-worker load balancers), so
 * the merged view takes the first worker's state of each cluster and, per endpoint, the
 * first state that is not `healthy`: an endpoint any worker keeps out of balancing is
 * reported as out, which is what the control plane's deregistration needs. A cluster's
 * `limits` and `retryBudget` are the sidecar's in every worker's state (shared-limits.ts),
 * so the first worker's are the whole sidecar's.
 */
export function mergeClusterStates(perWorker: readonly Record<string, unknown>[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const states of perWorker) {
    for (const [name, state] of Object.entries(states)) {
      const seen = out[name] as { endpoints?: EndpointLike[] } | undefined;
      if (!seen) {
        out[name] = state;
        continue;
      }
      const theirs = (state as { endpoints?: EndpointLike[] }).endpoints;
      if (!Array.isArray(seen.endpoints) || !Array.isArray(theirs)) continue;
      const worse = new Map(theirs.filter((e) => e.health !== undefined && e.health !== 'healthy').map((e) => [e.key, e]));
      if (worse.size === 0) continue;
      out[name] = { ...seen, endpoints: seen.endpoints.map((e) => (e.health === 'healthy' && worse.has(e.key) ? worse.get(e.key)! : e)) };
    }
  }
  return out;
}
