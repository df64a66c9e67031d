import type { LoadBalancerKind } from '../../contract/model.js';
import type { RingStats } from '../balance/balancer.js';
import type { LimitName } from './concurrency-limits.js';
import type { BreakerState } from './endpoint-breaker.js';
import type { EjectionReason } from './outlier-detector.js';

/** What GET /clusters on the admin port shows for one cluster (Cluster.snapshot()). */
export type EndpointHealth = 'healthy' | 'ejected' | 'breaker-open' | 'half-open' | 'health-check-failed';

export interface EndpointState {
  readonly key: string;
  readonly address: string;
  readonly port: number;
  readonly zone: string;
  readonly weight: number;
  readonly ready: boolean;
  /** The most restrictive of: breaker-open, half-open, ejected, health-check-failed, healthy. */
  readonly health: EndpointHealth;
  readonly ewmaMs: number;
  readonly inflight: number;
  readonly timesEjected: number;
  /** ISO time; null unless ejected. */
  readonly ejectedUntil: string | null;
  readonly lastEjectionReason: EjectionReason | null;
  readonly breaker: { readonly state: BreakerState; readonly until: string | null } | null;
  readonly activeHealthy: boolean;
  readonly successes: number;
  readonly failures: number;
  /** Attempts in a row that could not connect (refused, timed out; reset by any answer). */
  readonly consecutiveConnectFailures: number;
}

export interface ClusterState {
  readonly name: string;
  readonly balancer: LoadBalancerKind;
  /** Envoy panic mode: fewer than panicThresholdPercent of ready endpoints are healthy. */
  readonly panic: boolean;
  readonly endpoints: readonly EndpointState[];
  readonly limits: Readonly<Record<LimitName, { readonly active: number; readonly max: number }>>;
  readonly retryBudget: { readonly balance: number };
  /** The hash ring (balancer ring-hash; null for the others, or before it has an endpoint): Envoy's ring_hash_lb gauges. */
  readonly ring: RingStats | null;
}
