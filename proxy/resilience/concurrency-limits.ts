import type { CircuitBreakerPolicy } from '../../contract/model.js';
import { ProxyError } from '../errors/proxy-error.js';
import { privateCells, type CounterCells } from './shared-counters.js';

/**
 * Per-cluster concurrency limits with Envoy's circuit-breaker thresholds
 * (envoy/config/cluster/v3/circuit_breaker.proto: max_connections, max_pending_requests,
 * max_requests, max_retries; defaults 1024/1024/1024/3). Limits are literal as in Envoy:
 * 0 admits nothing (use a large number for "unlimited", as Istio does with 2^32-1).
 * Exceeding one is an immediate ProxyError('OVERFLOW'), never a queue.
 *
 * The counts live in CounterCells (shared-counters.ts): with listener workers, one set per
 * cluster for the whole sidecar, as Envoy's limits hold across its workers. Admission is
 * add-then-check: a thread adds 1 to its own column, sums every column and takes the 1
 * back if the sum is over the maximum. Sequentially consistent atomics order the adds, so
 * of two threads racing for the last slot at least one sees both adds: never more than
 * the maximum admitted (a race may refuse both, never admit both).
 */
export type LimitName = 'connections' | 'pending' | 'requests' | 'retries';

export interface Admission {
  /** Idempotent: only the first call gives the slot back. A method: call it on the admission, never detached. */
  release(): void;
}

/** Column offset of each limit within a cluster's cells. */
const INDEX: Record<LimitName, number> = { connections: 0, pending: 1, requests: 2, retries: 3 };

const MAX_FIELD: Record<LimitName, keyof CircuitBreakerPolicy> = {
  connections: 'maxConnections',
  pending: 'maxPendingRequests',
  requests: 'maxRequests',
  retries: 'maxRetries',
};

export class ConcurrencyLimits {
  constructor(
    private policy: CircuitBreakerPolicy,
    private readonly onOverflow?: (limit: LimitName) => void,
    private readonly counters: CounterCells = privateCells(),
  ) {}

  /** New maxima apply to new admissions; slots already held stay valid. */
  updatePolicy(policy: CircuitBreakerPolicy): void {
    this.policy = policy;
  }

  acquire(limit: LimitName): Admission | ProxyError {
    const max = this.policy[MAX_FIELD[limit]] as number;
    const { cells, columns } = this.counters;
    const first = this.counters.base + INDEX[limit] * columns;
    const own = first + this.counters.column;
    Atomics.add(cells, own, 1);
    if (this.sum(first) > max) {
      Atomics.sub(cells, own, 1);
      this.onOverflow?.(limit);
      return new ProxyError('OVERFLOW', `${limit} limit ${max} reached`);
    }
    return new Slot(cells, own);
  }

  snapshot(): Record<LimitName, { active: number; max: number }> {
    const out = {} as Record<LimitName, { active: number; max: number }>;
    for (const k of Object.keys(MAX_FIELD) as LimitName[]) {
      out[k] = { active: this.sum(this.counters.base + INDEX[k] * this.counters.columns), max: this.policy[MAX_FIELD[k]] as number };
    }
    return out;
  }

  /** Every thread's count of one limit. */
  private sum(first: number): number {
    let n = 0;
    for (let c = 0; c < this.counters.columns; c++) n += Atomics.load(this.counters.cells, first + c);
    return n;
  }
}

/** One admitted slot: an object per admission, not a closure and the object holding it. */
class Slot implements Admission {
  private released = false;

  constructor(
    private readonly cells: Int32Array,
    private readonly own: number,
  ) {}

  release(): void {
    if (this.released) return;
    this.released = true;
    Atomics.sub(this.cells, this.own, 1);
  }
}
