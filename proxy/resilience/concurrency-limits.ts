import type { CircuitBreakerPolicy } from '../../contract/model.js';
import { ProxyError } from '../errors/proxy-error.js';

/**
 * Per-cluster concurrency limits with Envoy's circuit-breaker thresholds
 * (envoy/config/cluster/v3/circuit_breaker.proto: max_connections, max_pending_requests,
 * max_requests, max_retries; defaults 1024/1024/1024/3). Limits are literal as in Envoy:
 * 0 admits nothing (use a large number for "unlimited", as Istio does with 2^32-1).
 * Exceeding one is an immediate ProxyError('OVERFLOW'), never a queue.
 */
export type LimitName = 'connections' | 'pending' | 'requests' | 'retries';

export interface Admission {
  /** Idempotent: only the first call gives the slot back. */
  release(): void;
}

const MAX_FIELD: Record<LimitName, keyof CircuitBreakerPolicy> = {
  connections: 'maxConnections',
  pending: 'maxPendingRequests',
  requests: 'maxRequests',
  retries: 'maxRetries',
};

export class ConcurrencyLimits {
  private readonly active: Record<LimitName, number> = { connections: 0, pending: 0, requests: 0, retries: 0 };

  constructor(
    private policy: CircuitBreakerPolicy,
    private readonly onOverflow?: (limit: LimitName) => void,
  ) {}

  /** New maxima apply to new admissions; slots already held stay valid. */
  updatePolicy(policy: CircuitBreakerPolicy): void {
    this.policy = policy;
  }

  acquire(limit: LimitName): Admission | ProxyError {
    const max = this.policy[MAX_FIELD[limit]] as number;
    if (this.active[limit] >= max) {
      this.onOverflow?.(limit);
      return new ProxyError('OVERFLOW', `${limit} limit ${max} reached`);
    }
    this.active[limit]++;
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.active[limit]--;
      },
    };
  }

  snapshot(): Record<LimitName, { active: number; max: number }> {
    const out = {} as Record<LimitName, { active: number; max: number }>;
    for (const k of Object.keys(MAX_FIELD) as LimitName[]) out[k] = { active: this.active[k], max: this.policy[MAX_FIELD[k]] as number };
    return out;
  }
}
