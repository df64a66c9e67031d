import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { constants, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import { loadAddon } from '../proxy/net/original-dst.js';

/**
 * The V8 heap settings a sidecar runs with (docs/benchmarks.md, "The young generation: a
 * run-time equivalent of --max-semi-space-size=8"). Each request through the proxy leaves
 * a few KB of objects that survive a scavenge or two; with V8's defaults the young
 * generation then grows to 2 × 64 MB (Node 24) and the old generation fills with promoted
 * garbage up to ~4× its live size before a mark-compact: 200-270 MB resident per sidecar
 * under gRPC load, for ~14 MB of live data.
 *
 * - The young generation is capped where `--max-semi-space-size=8` caps it (new space
 *   16 MB as v8.getHeapSpaceStatistics() reports it). That flag is read once, when the
 *   heap is set up, so a process cannot give it to itself; and every launcher (the image,
 *   the injector's container, `wren demo`, the tests and benchmarks) would have to pass
 *   it. `--semi-space-growth-factor` is read whenever V8 would grow the young generation,
 *   so the proxy keeps V8's factor 2 while the new space is below the cap and sets it to
 *   1 once it is there, checked after every GC (a `gc` PerformanceObserver: no timer, a
 *   few µs per GC); when V8 shrinks the new space (idle), factor 2 comes back. The sizes
 *   V8 steps through (1, 2, 4, 8, 16 MB) are the ones the launcher flag gives.
 *   The earlier setting, factor 1 from the start (new space 1-4 MB), kept RSS lowest but
 *   cost 40-70 % more CPU per request: every scavenge of a 1 MB semi-space copies the
 *   live requests' objects again (the lead's 06:14 UTC run and this session's A/B in
 *   docs/benchmarks.md).
 * - `--heap-growing-percent=40`: after a mark-compact the old generation may grow by 40 %
 *   of what is live before the next one, instead of V8's factor of up to 4. Read at every
 *   mark-compact.
 *
 * V8 flags are per process and the governor sees only its own isolate's new space, so with
 * listener workers (config `concurrency` > 1) the proxy keeps the earlier setting, growth
 * factor 1 from the start, which bounds every isolate's young generation (a Worker's
 * `resourceLimits.maxYoungGenerationSizeMb: 24` would cap each at 16 MB exactly, but broke
 * test/proxy-workers.test.ts's restart and drain cases: left for the next session). Flags
 * the operator gives node (its command line or NODE_OPTIONS) for the same settings win.
 */
export const SIDECAR_HEAP_FLAGS: readonly string[] = ['--heap-growing-percent=40'];

/** The new space's size (both semi-spaces, as getHeapSpaceStatistics reports it) that `--max-semi-space-size=8` stops at. */
export const NEW_SPACE_CAP_BYTES = 16 * 1024 * 1024;

/** What applyHeapFlags reports for the young-generation cap it governs. */
export const YOUNG_GENERATION_CAP = 'young generation capped at --max-semi-space-size=8 (run time)';

/** With listener workers: every isolate's young generation kept at its start-up size (one process-wide flag). */
export const WORKERS_YOUNG_GENERATION = '--semi-space-growth-factor=1';

/** Flags the operator's own heap settings override: if any of a setting's names is given, ours is not set. */
const YOUNG_GENERATION_FLAGS: readonly string[] = ['--semi-space-growth-factor', '--max-semi-space-size', '--min-semi-space-size'];
const OVERRIDDEN_BY: Readonly<Record<string, readonly string[]>> = {
  '--heap-growing-percent': ['--heap-growing-percent'],
};

/** V8 accepts `_` for `-` in flag names. */
const norm = (f: string): string => f.split('=')[0].replace(/_/g, '-');

/**
 * Keeps V8's growth factor while the new space is under the cap, 1 once it has reached it.
 * `check` is called after every GC; it sets a flag only when the answer changes.
 */
export class SemiSpaceGovernor {
  private factor = 2;

  constructor(
    private readonly set: (flags: string) => void,
    private readonly newSpaceBytes: () => number,
    readonly capBytes = NEW_SPACE_CAP_BYTES,
  ) {}

  /** The growth factor in force (2: V8's default). */
  get growthFactor(): number {
    return this.factor;
  }

  check(): void {
    const want = this.newSpaceBytes() >= this.capBytes ? 1 : 2;
    if (want === this.factor) return;
    this.factor = want;
    this.set(`--semi-space-growth-factor=${want}`);
  }
}

function newSpaceBytes(): number {
  for (const s of getHeapSpaceStatistics()) if (s.space_name === 'new_space') return s.space_size;
  return 0;
}

/** True for a mark-compact (a `gc` PerformanceEntry of kind major). */
const isMajor = (e: PerformanceEntry): boolean => (e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR;

/**
 * After every mark-compact, `trim` (glibc malloc_trim(0), proxy/native): the free pages
 * inside the malloc arenas go back to the kernel. glibc returns only an arena's top by
 * itself, so what V8's compiler threads, TLS and nghttp2 freed in the middle stays resident
 * (~10 MB per sidecar after load, docs/benchmarks.md "Resident memory"). A mark-compact
 * comes every few seconds under load and the trim costs well under a millisecond then.
 */
export function trimAfterMarkCompact(entries: readonly PerformanceEntry[], trim: () => unknown): void {
  if (entries.some(isMajor)) trim();
}

/** The addon's malloc_trim, or a no-op when the addon is not built. */
function mallocTrim(): () => unknown {
  const a = loadAddon();
  return a ? () => a.mallocTrim() : () => false;
}

/** Runs the governor (and the trim after a mark-compact) after every GC of this isolate, for the life of the process. */
function governYoungGeneration(set: (flags: string) => void): void {
  const g = new SemiSpaceGovernor(set, newSpaceBytes);
  const trim = mallocTrim();
  new PerformanceObserver((list) => {
    g.check();
    trimAfterMarkCompact(list.getEntries(), trim);
  }).observe({ type: 'gc' });
  g.check();
}

/**
 * Applies SIDECAR_HEAP_FLAGS and the young-generation cap (`workers`: listener workers
 * will run, WORKERS_YOUNG_GENERATION instead), except those the operator's node flags
 * (`execArgv`, then NODE_OPTIONS) already settle; returns what it applied.
 */
export function applyHeapFlags(
  execArgv: readonly string[],
  nodeOptions: string | undefined,
  set: (flags: string) => void = setFlagsFromString,
  govern: (set: (flags: string) => void) => void = governYoungGeneration,
  workers = false,
): string[] {
  const given = new Set([...execArgv, ...(nodeOptions ?? '').split(/\s+/)].filter((f) => f.startsWith('--')).map(norm));
  const applied = SIDECAR_HEAP_FLAGS.filter((f) => !OVERRIDDEN_BY[norm(f)].some((n) => given.has(n)));
  if (applied.length > 0) set(applied.join(' '));
  if (YOUNG_GENERATION_FLAGS.some((n) => given.has(n))) return applied;
  if (workers) {
    set(WORKERS_YOUNG_GENERATION);
    applied.push(WORKERS_YOUNG_GENERATION);
  } else {
    govern(set);
    applied.push(YOUNG_GENERATION_CAP);
  }
  return applied;
}
