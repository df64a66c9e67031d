import { sharedKey } from '../workers/shared-key.js';

/**
 * The memory of the listener limits: connections open per listener
 * (`limits.maxConnectionsPerListener`) and requests each caller has open to the app
 * (`limits.maxStreamsPerCaller`). Plain buffers with `concurrency` 1; with listener
 * workers, SharedArrayBuffers the main thread makes once at start and posts to every
 * worker (shared-limits.ts), so the limits hold for the sidecar. Envoy's per-listener
 * connection limit (runtime `envoy.resource_limits.listener.<name>.connection_limit`)
 * counts a listener's connections over all its workers, not per worker (its FAQ "How
 * does Envoy prevent file descriptor exhaustion?": it "may accept more connections than
 * the configured value on the order of the number of worker threads"; this count never
 * goes over).
 *
 * Each counter has one column per thread that admits: a thread adds to its own column
 * and a check sums the columns (add, then check; take back what went over), so a
 * listener worker that exits takes what it held with it: the pool zeroes its column
 * (resetAdmissionColumn) before its replacement starts.
 */
export interface AdmissionMemory {
  /** Per listener (LISTENERS order): connections open × `columns`. */
  readonly connections: Int32Array;
  /** Per caller cell: requests open to the app × `columns`. */
  readonly callers: Int32Array;
  readonly columns: number;
}

/** Listeners with a connection count: the explicit upstream listeners hand theirs to the outbound one, which counts them. */
const LISTENERS = { outbound: 0, inbound: 1 } as const;
/**
 * Caller cells. A caller counts in two of them (picked by the two 32-bit lanes of its
 * identity's key) and is held to the smaller sum, as a count-min sketch: two callers that
 * share a cell share its count, so a collision can only make a caller's limit stricter,
 * never looser, and a caller is held by another busy caller only if both its cells are
 * shared (with a few dozen callers in 4096 cells, a few in 10^4). The table never fills:
 * any number of callers fit, at the cost of more collisions.
 */
const CALLER_CELLS = 4096;

export function admissionMemory(columns: number, shared: boolean): AdmissionMemory {
  const buf = (bytes: number) => (shared ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes));
  return { connections: new Int32Array(buf(Object.keys(LISTENERS).length * columns * 4)), callers: new Int32Array(buf(CALLER_CELLS * columns * 4)), columns };
}

/** Zeroes a column (a listener worker that exited: the connections and requests it held went with it). */
export function resetAdmissionColumn(memory: AdmissionMemory, column: number): void {
  const { connections, callers, columns } = memory;
  for (const cells of [connections, callers]) for (let i = column; i < cells.length; i += columns) Atomics.store(cells, i, 0);
}

/** The sidecar's count at `base`: every thread's column. */
function total(cells: Int32Array, base: number, columns: number): number {
  let n = 0;
  for (let i = 0; i < columns; i++) n += Atomics.load(cells, base + i);
  return n;
}

/**
 * One listener's open connections for the sidecar against its limit. `take` at accept,
 * `release` once when an admitted connection closes. Two threads that add at once may
 * both see the sum over the limit and both refuse: the limit is never exceeded, and at
 * worst a connection arriving at the same instant as another is refused one place early.
 */
export class ListenerConnections {
  private readonly base: number;
  private readonly own: number;

  constructor(
    private readonly memory: AdmissionMemory,
    listener: keyof typeof LISTENERS,
    column: number,
    private readonly limit: number,
  ) {
    this.base = LISTENERS[listener] * memory.columns;
    this.own = this.base + column;
  }

  /** Counts one more connection; false (nothing counted) when the listener already has `limit` open. */
  take(): boolean {
    const { connections, columns } = this.memory;
    Atomics.add(connections, this.own, 1);
    if (total(connections, this.base, columns) <= this.limit) return true;
    Atomics.sub(connections, this.own, 1);
    return false;
  }

  release(): void {
    Atomics.sub(this.memory.connections, this.own, 1);
  }
}

/** Where a caller counts: its two cells' column 0 (`CallerCounts.cellsOf`, once per caller). */
export interface CallerCells {
  readonly a: number;
  readonly b: number;
}

/** Requests each caller has open to the app, for the sidecar (deliver-to-app.ts). */
export class CallerCounts {
  constructor(
    private readonly memory: AdmissionMemory,
    private readonly column: number,
  ) {}

  cellsOf(identity: string): CallerCells {
    const key = sharedKey(identity);
    const cols = this.memory.columns;
    const a = Number(BigInt.asUintN(32, key) >> 1n) % CALLER_CELLS;
    let b = Number(BigInt.asUintN(32, key >> 32n)) % CALLER_CELLS;
    // Two distinct cells: one cell twice would count each request twice.
    if (b === a) b = (a + 1) % CALLER_CELLS;
    return { a: a * cols, b: b * cols };
  }

  /**
   * Counts one more request of the caller; false (nothing counted) when it has `limit`
   * open in the sidecar, or seems to: the smaller sum of its cells is an upper bound on its own.
   */
  take(c: CallerCells, limit: number): boolean {
    const { callers, columns } = this.memory;
    Atomics.add(callers, c.a + this.column, 1);
    Atomics.add(callers, c.b + this.column, 1);
    if (Math.min(total(callers, c.a, columns), total(callers, c.b, columns)) <= limit) return true;
    this.release(c);
    return false;
  }

  release(c: CallerCells): void {
    Atomics.sub(this.memory.callers, c.a + this.column, 1);
    Atomics.sub(this.memory.callers, c.b + this.column, 1);
  }
}
