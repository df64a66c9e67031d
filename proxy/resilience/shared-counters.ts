import { sharedKey } from '../workers/shared-key.js';
import { RING_CELLS, type BudgetRing } from './retry-budget.js';

/**
 * The memory of the clusters' concurrency counters (ConcurrencyLimits): plain buffers
 * with `concurrency` 1, SharedArrayBuffers the main thread makes and posts to every
 * listener worker otherwise, so that `maxRequests: 10` means ten in flight for the
 * sidecar, as Envoy's circuit-breaker thresholds hold per cluster across all its workers
 * (the cluster's ResourceManager: one set of atomic counters per cluster and priority).
 * Each cluster's retry budget ring is beside its counters, shared the same way.
 */
export interface CounterMemory {
  /** Per cluster slot: the key of its name (shared-key.ts), 0n while free. */
  readonly keys: BigInt64Array;
  /** Per cluster slot: LIMITS counters × `columns` (one column per thread that admits). */
  readonly cells: Int32Array;
  readonly columns: number;
  /** Per cluster slot: its retry budget's ring (retry-budget.ts), RING_CELLS cells. */
  readonly budgets: BigInt64Array;
}

/** Counters per cluster: connections, pending, requests, retries (concurrency-limits.ts LimitName order). */
const LIMITS = 4;
/** Cluster slots (service ports) the shared counters hold; a cluster beyond them counts in its own thread. */
const CLUSTER_SLOTS = 4096;
/** Slots looked at per name (linear probing). */
const WINDOW = 64;

export function counterMemory(columns: number, shared: boolean, slots = CLUSTER_SLOTS): CounterMemory {
  const buf = (bytes: number) => (shared ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes));
  return { keys: new BigInt64Array(buf(slots * 8)), cells: new Int32Array(buf(slots * LIMITS * columns * 4)), columns, budgets: new BigInt64Array(buf(slots * RING_CELLS * 8)) };
}

/**
 * Where a cluster's counters are, and which column this thread adds to. Each thread
 * counts what it holds in its own column and a check sums the columns: a listener worker
 * that crashes takes its admissions with it, so the main thread zeroes its column
 * (resetColumn) before the replacement starts, and nothing it held stays counted.
 */
export interface CounterCells {
  readonly cells: Int32Array;
  /** Index of this cluster's first counter's column 0. */
  readonly base: number;
  readonly columns: number;
  readonly column: number;
  /** The cluster's retry budget ring: the sidecar's one, shared like the counters; null: each budget its own. */
  readonly budget: BudgetRing | null;
}

export class SharedCounters {
  private readonly mask: number;

  constructor(
    private readonly memory: CounterMemory,
    private readonly column: number,
    /** Every slot is taken: a cluster's counters stay in its thread (wren_limit_exceeded_total{limit="shared-cluster-slots"}). */
    private readonly onFull: () => void = () => undefined,
  ) {
    this.mask = memory.keys.length - 1;
  }

  /**
   * The counters of the cluster `name`: its slot, kept for the sidecar's life (a snapshot
   * that changes or drops the cluster leaves its in-flight count in place, and a cluster
   * that comes back finds it), or private counters if the table has no room.
   */
  cellsFor(name: string): CounterCells {
    const key = sharedKey(name);
    const start = Number(BigInt.asUintN(32, key)) & this.mask;
    const { keys, cells, columns } = this.memory;
    for (let n = 0; n < WINDOW && n <= this.mask; n++) {
      const j = (start + n) & this.mask;
      const k = Atomics.load(keys, j);
      if (k === key || (k === 0n && (Atomics.compareExchange(keys, j, 0n, key) === 0n || Atomics.load(keys, j) === key))) {
        return { cells, base: j * LIMITS * columns, columns, column: this.column, budget: { cells: this.memory.budgets, base: j * RING_CELLS } };
      }
    }
    this.onFull();
    return privateCells();
  }
}

/** Zeroes a column (a listener worker that exited: what it held went with it). */
export function resetColumn(memory: CounterMemory, column: number): void {
  const { cells, columns } = memory;
  for (let i = column; i < cells.length; i += columns) Atomics.store(cells, i, 0);
}

/** One thread's own counters for one cluster (no table, or no room in it). */
export function privateCells(): CounterCells {
  return { cells: new Int32Array(LIMITS), base: 0, columns: 1, column: 0, budget: null };
}
