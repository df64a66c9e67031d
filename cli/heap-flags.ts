import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
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
 * - The young generation is capped where `--max-semi-space-size=4` caps it (new space
 *   8 MB as v8.getHeapSpaceStatistics() reports it). That flag is read once, when the
 *   heap is set up, so a process cannot give it to itself; and every launcher (the image,
 *   the injector's container, `wren demo`, the tests and benchmarks) would have to pass
 *   it. `--semi-space-growth-factor` is read whenever V8 would grow the young generation,
 *   so the proxy keeps V8's factor 2 while the new space is below the cap and sets it to
 *   1 once it is there, checked after every GC (a `gc` PerformanceObserver: no timer, a
 *   few µs per GC); when V8 shrinks the new space (idle), factor 2 comes back. The
 *   governor's cap is one step above the launcher flag's, 16 MB (NEW_SPACE_CAP_BYTES says why).
 *   The first setting, factor 1 from the start (new space 1-4 MB), kept RSS lowest but
 *   cost 40-70 % more CPU per request when a request left far more objects than now:
 *   every scavenge of a 1 MB semi-space copied the live requests' objects again (the
 *   lead's 06:14 UTC run and that session's A/B in docs/benchmarks.md). The cap was 8
 *   (a 16 MB new space) until the fourteenth session of issue 12: on today's data path
 *   4 measured the same CPU per request and throughput in three same-run A/Bs, and 5-7 MB
 *   less RSS after load (docs/benchmarks.md, "Issue 12, 2026-12-05 fourteenth session").
 * - `--heap-growing-percent=40`: after a mark-compact the old generation may grow by 40 %
 *   of what is live before the next one, instead of V8's factor of up to 4. Read at every
 *   mark-compact.
 * - `--no-allocation-site-pretenuring` (also a launcher flag, below): V8 otherwise decides,
 *   at a scavenge that finds most objects of an object or array literal alive, to allocate
 *   that literal's objects in the old generation from then on, and never goes back. A
 *   per-request literal so tenured (node's own: a nextTick's tick object, an emitter's
 *   listener array) keeps everything young it points to alive until a mark-compact: in 5
 *   of 6 fresh sidecar pairs the gRPC case of test/scavenge-survivors.test.ts promoted
 *   ~900 B a call, 15 B without pretenuring. Set at run time too, for decisions after
 *   start-up, when the launcher did not give it.
 * - With the governor, once traffic stops, the memory the load took is given back
 *   (IdleReclaimer: two full GCs and a malloc_trim off the event loop).
 *
 * V8 flags are per process and the governor sees only its own isolate's new space, so with
 * listener workers (config `concurrency` > 1) the proxy keeps the earlier setting, growth
 * factor 1 from the start, which bounds every isolate's young generation (a Worker's
 * `resourceLimits.maxYoungGenerationSizeMb: 24` would cap each at 16 MB exactly, but broke
 * test/proxy-workers.test.ts's restart and drain cases: left for the next session). Flags
 * the operator gives node (its command line or NODE_OPTIONS) for the same settings win.
 */
export const SIDECAR_HEAP_FLAGS: readonly string[] = ['--heap-growing-percent=40', '--no-allocation-site-pretenuring'];

/** The launchers' young-generation cap, `--max-semi-space-size` in MB (SIDECAR_NODE_FLAGS). */
const LAUNCHER_SEMI_SPACE_MB = 4;

/**
 * Node flags every launcher of a sidecar gives node: the image's ENTRYPOINT (Dockerfile, so
 * the injected container has them), `wren demo`, the benchmarks and the tests' proxy
 * processes. The young generation's cap, which V8 reads once, at start-up; with it given,
 * the run-time governor below stands aside. No allocation-site pretenuring from the first
 * allocation (SIDECAR_HEAP_FLAGS says why). No concurrent recompilation: Maglev and
 * TurboFan compile on the main thread instead of V8's helper threads. Each helper thread
 * that ran a compile job keeps the zone memory it freed in the middle of its own malloc
 * arena (the 1-4 MB arenas of /proc/<pid>/smaps), 8-13 MB per sidecar after load; compiled
 * on the main thread, the same zones come from and go back to one arena. Same-run A/B
 * (docs/benchmarks.md, "Compiling on the main thread"): RSS after load 91-100 MB against
 * 105-111, CPU per request the same. The price is the tail: each TurboFan compile (up to
 * ~15 ms) stops the event loop, and those stops are most of the 1 % slowest requests at
 * 1000 requests/s; concurrent compiles measured added p99 +1.44 against +2.09 ms (HTTP/1.1)
 * and +2.46 against +2.86 (gRPC) with RSS 99-102 MB after gRPC load, over the RSS aim
 * (docs/benchmarks.md, "Issue 12, 2026-12-05 eighth session"). V8 reads it once, when the
 * isolate starts (a run-time setFlagsFromString leaves compiles concurrent: --trace-opt), so
 * it is a launcher flag only. The governor is the fallback for a sidecar started without
 * the cap (`node dist/cli/wren.js proxy` by hand): its check runs between event-loop
 * turns, so a turn that allocates several megabytes can let V8 grow the new space a step
 * or two past the cap before it stops it (32 MB seen on a loaded CI machine with the cap at 16 MB;
 * cli/heap-flags.test.ts measures it with turns of a few hundred KB, as a proxy's reads
 * are). No Maglev: V8's mid-tier compiler buys warm-up, not a proxy's steady state, whose
 * hot paths reach TurboFan; without it a sidecar touches less of node's binary and keeps
 * no Maglev code, 2-3 MB less resident memory after load at the same CPU per request
 * (docs/benchmarks.md, "Two memory experiments"). No async context frame: node 24 keeps
 * AsyncLocalStorage's context in V8's continuation-preserved data, which every callback
 * node makes into JavaScript (a socket's read, a write's completion, an immediate) saves and
 * restores, and every promise reaction carries; the proxy has no AsyncLocalStorage, so that
 * is work for nothing on each of a request's callbacks and promises. Without the frame,
 * AsyncLocalStorage (none in the proxy or its dependencies' paths it takes) would still
 * work, through async_hooks. Same-run A/Bs at HTTP/1.1 saturation: 0-2 µs less per request
 * per sidecar over four runs (24 / 24 against 25 / 26, 25 / 26 against 26 / 28, 23 / 23 both
 * in the last); at gRPC's and at 1000 requests/s within the noise (docs/benchmarks.md,
 * "Issue 12, 2026-12-05 twelfth session"): work removed rather than a measured gain. Given
 * only to a node that knows the flag (node 24; node 20 rejects it and would not start the
 * sidecar), as the launchers start their sidecars with their own node. No memory reducer:
 * V8's memory reducer starts a full GC when it judges the isolate idle (a low allocation
 * rate at one of its 8 s ticks) or 100 s after the last full GC whatever the load (its
 * watchdog), and runs it to reduce the footprint, which is the one kind of GC that does not
 * keep recently used maps alive (V8's map retention: `--retain-maps-for-n-gc`). The maps of
 * a request's objects die with the last of them, and V8 throws away every optimised
 * function that embeds one ("embedded weak objects cleared"): 25-28 functions per such GC in
 * a benchmark run, recompiled on the main thread as traffic reaches them, tens of ms during
 * which no request moves; the GCs the load itself triggers threw away none (10 in the
 * inbound of the same run). The idle reclaimer below gives memory back when traffic stops
 * (docs/benchmarks.md, "Issue 12, 2026-12-06 nineteenth session"). V8 reads it when the
 * isolate starts, so it is a launcher flag only.
 */
export const SIDECAR_NODE_FLAGS: readonly string[] = [
  `--max-semi-space-size=${LAUNCHER_SEMI_SPACE_MB}`,
  '--no-allocation-site-pretenuring',
  '--no-concurrent-recompilation',
  '--no-maglev',
  '--no-memory-reducer',
  ...(process.allowedNodeEnvironmentFlags.has('--no-async-context-frame') ? ['--no-async-context-frame'] : []),
  // SIGUSR1 does not open node's inspector: with it, any process allowed to signal the
  // sidecar (the same UID, `kubectl debug`, a root app in a pod that shares its process
  // namespace) could attach on 127.0.0.1:9229 and read the workload's private key from the
  // heap, and the control plane's CA key likewise (the image's ENTRYPOINT serves both).
  // Keys never leave the process (docs/security.md); Envoy and linkerd2-proxy have no
  // signal-started debugger either. node 22.14 / 23.7 and later; the signal is then ignored.
  ...(process.allowedNodeEnvironmentFlags.has('--disable-sigusr1') ? ['--disable-sigusr1'] : []),
];

/** The new space's size (both semi-spaces, as getHeapSpaceStatistics reports it) that the launchers' `--max-semi-space-size=4` stops at. */
export const LAUNCHER_NEW_SPACE_BYTES = 2 * LAUNCHER_SEMI_SPACE_MB * 1024 * 1024;

/**
 * Where the run-time governor (a sidecar started without the launcher flag) stops the new
 * space: one step above the launchers' cap, the cap they had until the fourteenth session of
 * issue 12. The governor checks after V8's GCs, not within them, and at a cap of 8 MB V8
 * made two steps between two checks (4 to 16 MB in cli/heap-flags.test.ts's load), and
 * a check that waits for a deeper shrink before letting it grow again kept it at 4 MB under
 * load, below the launchers' size: 16 MB is what the governor reliably holds.
 */
export const NEW_SPACE_CAP_BYTES = 2 * LAUNCHER_NEW_SPACE_BYTES;

/** What applyHeapFlags reports for the young-generation cap it governs. */
export const YOUNG_GENERATION_CAP = `young generation capped at a ${NEW_SPACE_CAP_BYTES / (1024 * 1024)} MB new space (run time)`;

/** With listener workers: every isolate's young generation kept at its start-up size (one process-wide flag). */
export const WORKERS_YOUNG_GENERATION = '--semi-space-growth-factor=1';

/** Flags the operator's own heap settings override: if any of a setting's names is given, ours is not set. */
const YOUNG_GENERATION_FLAGS: readonly string[] = ['--semi-space-growth-factor', '--max-semi-space-size', '--min-semi-space-size'];
const OVERRIDDEN_BY: Readonly<Record<string, readonly string[]>> = {
  '--heap-growing-percent': ['--heap-growing-percent'],
  '--no-allocation-site-pretenuring': ['--allocation-site-pretenuring', '--no-allocation-site-pretenuring'],
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


/** Starts a malloc_trim off the event loop; `done` when it has finished. */
export type Trim = (done: () => void) => void;

const isMinor = (e: PerformanceEntry): boolean => (e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR;

/**
 * How often the idle reclaimer looks whether traffic has stopped: it acts 60-120 s after
 * the last scavenge (Go's runtime, for comparison, forces a GC after 2 min without one).
 * Not sooner: each reclaim makes the next burst start with a small heap that V8 grows
 * again (more scavenges and mark-compacts); with a 5 s and then a 15 s period it ran
 * between the benchmark's interleaved loads and the same-run A/B showed up to +7-24 % CPU
 * per request at gRPC 1000 req/s (docs/benchmarks.md, "Resident memory").
 */
const IDLE_CHECK_MS = 60_000;

/**
 * When traffic stops, give its memory back once. V8 sizes the heap for the load (the new
 * space at its cap, the old generation grown by promoted garbage) and keeps it: it shrinks
 * only at a GC, and an idle process makes none (V8's memory reducer did not fire in minutes
 * of idleness after a load). glibc keeps what V8's helper threads (compiler zones, GC
 * tasks) freed in the middle of their malloc arenas (~13 MB after load, under 1 MB of it
 * in use: malloc_stats; the compiler's part only for a sidecar launched without
 * `--no-concurrent-recompilation`, SIDECAR_NODE_FLAGS). Traffic shows as scavenges; a
 * check period with none after one that had some runs `reclaim` (proxyReclaim: two full GCs, the first empties the old
 * generation, the second, at a low allocation rate, lets V8 shrink the new space; then
 * malloc_trim(0) on a thread-pool thread). Once per quiet spell: the reclaim's own GCs are
 * mark-compacts, not scavenges. Under load it never runs (a trim after every mark-compact
 * under load saved ~5 MB but cost up to 7-27 % more CPU per request in the A/B,
 * docs/benchmarks.md "Resident memory"); at a trickle of requests, at most once per scavenge.
 */
export class IdleReclaimer {
  private scavenges = 0;
  private seen = 0;
  /** Reclaims run (tests, and the docs' figures). */
  reclaims = 0;

  constructor(private readonly reclaim: () => void) {}

  afterGc(entries: readonly PerformanceEntry[]): void {
    for (const e of entries) if (isMinor(e)) this.scavenges++;
  }

  /** Every check period (IDLE_CHECK_MS). */
  tick(): void {
    if (this.scavenges === 0) return; // no traffic since the last reclaim
    if (this.scavenges !== this.seen) {
      this.seen = this.scavenges; // scavenges in the last period: busy
      return;
    }
    this.scavenges = this.seen = 0;
    this.reclaims++;
    this.reclaim();
  }
}

/**
 * The reclaim: two full GCs with V8's gc() (the flag exposes it to contexts made after it
 * is set), then `trim` (when the addon is built).
 */
function proxyReclaim(trim: Trim | null): () => void {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  return () => {
    gc();
    gc();
    trim?.(() => undefined);
  };
}

/** The addon's malloc_trim, or null when the addon is not built. */
function addonTrim(): Trim | null {
  const a = loadAddon();
  return a ? (done) => a.mallocTrim(done) : null;
}

/**
 * Runs the governor and the idle reclaimer's count after every GC of this isolate, and the
 * idle check every IDLE_CHECK_MS (an unref'd timer), for the life of the process.
 */
function governYoungGeneration(set: (flags: string) => void, idleCheckMs = IDLE_CHECK_MS): void {
  const g = new SemiSpaceGovernor(set, newSpaceBytes);
  const idle = new IdleReclaimer(proxyReclaim(addonTrim()));
  new PerformanceObserver((list) => {
    g.check();
    idle.afterGc(list.getEntries());
  }).observe({ type: 'gc' });
  setInterval(() => idle.tick(), idleCheckMs).unref();
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
  govern: (set: (flags: string) => void, idleCheckMs: number) => void = governYoungGeneration,
  workers = false,
  /** The idle reclaimer's check period (tests: shorter). */
  idleCheckMs = IDLE_CHECK_MS,
): string[] {
  const given = new Set([...execArgv, ...(nodeOptions ?? '').split(/\s+/)].filter((f) => f.startsWith('--')).map(norm));
  const applied = SIDECAR_HEAP_FLAGS.filter((f) => !OVERRIDDEN_BY[norm(f)].some((n) => given.has(n)));
  if (applied.length > 0) set(applied.join(' '));
  if (YOUNG_GENERATION_FLAGS.some((n) => given.has(n))) return applied;
  if (workers) {
    set(WORKERS_YOUNG_GENERATION);
    applied.push(WORKERS_YOUNG_GENERATION);
  } else {
    govern(set, idleCheckMs);
    applied.push(YOUNG_GENERATION_CAP);
  }
  return applied;
}
