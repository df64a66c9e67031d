import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { constants, type PerformanceEntry } from 'node:perf_hooks';
import { applyHeapFlags, IdleReclaimer, LAUNCHER_NEW_SPACE_BYTES, NEW_SPACE_CAP_BYTES, SemiSpaceGovernor, SIDECAR_HEAP_FLAGS, SIDECAR_NODE_FLAGS, WORKERS_YOUNG_GENERATION, YOUNG_GENERATION_CAP } from './heap-flags.js';

function applied(execArgv: string[], nodeOptions?: string): { applied: string[]; set: string[]; governed: boolean } {
  const set: string[] = [];
  let governed = false;
  const a = applyHeapFlags(execArgv, nodeOptions, (f) => set.push(f), () => (governed = true));
  return { applied: a, set, governed };
}

test('a sidecar started without heap flags gets the heap-growing flag in one call and the young-generation cap', () => {
  const all = { applied: [...SIDECAR_HEAP_FLAGS, YOUNG_GENERATION_CAP], set: [SIDECAR_HEAP_FLAGS.join(' ')], governed: true };
  expect(applied([])).toEqual(all);
  expect(applied(['--enable-source-maps'], '--trace-warnings')).toEqual(all);
});

test("the operator's own young-generation, heap-growing or pretenuring flags win (command line or NODE_OPTIONS, - or _)", () => {
  const NO_PRETENURING = '--no-allocation-site-pretenuring';
  expect(applied(['--max-semi-space-size=16'])).toEqual({ applied: ['--heap-growing-percent=40', NO_PRETENURING], set: [`--heap-growing-percent=40 ${NO_PRETENURING}`], governed: false });
  expect(applied([], '--max_semi_space_size=8 --heap-growing-percent=100 --allocation-site-pretenuring')).toEqual({ applied: [], set: [], governed: false });
  expect(applied(['--heap_growing_percent=20', '--no_allocation_site_pretenuring'])).toEqual({ applied: [YOUNG_GENERATION_CAP], set: [], governed: true });
  expect(applied(['--heap_growing_percent=20'])).toEqual({ applied: [NO_PRETENURING, YOUNG_GENERATION_CAP], set: [NO_PRETENURING], governed: true });
  expect(applied(['--semi-space-growth-factor=2']).governed).toBe(false);
  expect(applied(['--min-semi-space-size=2']).governed).toBe(false);
});

test('with listener workers (concurrency > 1) the young generation keeps its start-up size in every isolate: one process-wide flag, no governor', () => {
  const set: string[] = [];
  let governed = false;
  const a = applyHeapFlags([], undefined, (f) => set.push(f), () => (governed = true), true);
  expect(a).toEqual([...SIDECAR_HEAP_FLAGS, WORKERS_YOUNG_GENERATION]);
  expect(set).toEqual([SIDECAR_HEAP_FLAGS.join(' '), '--semi-space-growth-factor=1']);
  expect(governed).toBe(false);
  expect(applyHeapFlags(['--max-semi-space-size=8'], undefined, () => undefined, () => undefined, true)).toEqual([...SIDECAR_HEAP_FLAGS]);
});

test('the governor keeps V8 growing the new space up to the cap, stops it there and lets it grow again after a shrink', () => {
  const set: string[] = [];
  let size = 1 << 20;
  const g = new SemiSpaceGovernor((f) => set.push(f), () => size);
  for (let mb = 1; mb << 20 < NEW_SPACE_CAP_BYTES; mb *= 2) {
    size = mb << 20;
    g.check();
  }
  expect(set).toEqual([]); // V8's own factor (2) while under the cap
  size = NEW_SPACE_CAP_BYTES;
  g.check();
  g.check();
  expect(set).toEqual(['--semi-space-growth-factor=1']);
  expect(g.growthFactor).toBe(1);
  size = 2 << 20; // V8 shrank it (idle)
  g.check();
  expect(set).toEqual(['--semi-space-growth-factor=1', '--semi-space-growth-factor=2']);
});

/**
 * What the settings do, in a process of their own: objects that survive a scavenge or two
 * (as closed HTTP/2 streams do) make V8 grow the young generation to its maximum; with the
 * proxy's settings applied at run time, as the proxy applies them, it stops at the
 * governor's cap (16 MB), and with the launchers' `--max-semi-space-size=4`
 * (SIDECAR_NODE_FLAGS) a step below, at 8 MB. The module is the built one (dist/), as the
 * proxy runs it.
 */
function newSpaceMbAfterLoad(mode: 'none' | 'apply' | 'launcher-flag'): number {
  const mod = pathToFileURL(join(import.meta.dirname, '..', 'dist', 'cli', 'heap-flags.js')).href;
  const script = `
    import v8 from 'node:v8';
    import { applyHeapFlags } from ${JSON.stringify(mod)};
    if (${mode === 'apply'}) applyHeapFlags(process.execArgv, undefined);
    // A ring of 20,000 live requests' worth of objects, each replaced after a while: every
    // scavenge finds many survivors, the pattern that makes V8 grow its young generation.
    // In turns of 2,000 (about 400 KB, a few of a proxy's reads), so the GC observer runs
    // between them as in the proxy. (Turns of 20,000, 4 MB each, let V8 grow the new space
    // twice within one turn on a loaded machine: 32 MB, the governor's known lag, which the
    // launcher flag, SIDECAR_NODE_FLAGS, does not have.)
    const ring = new Array(20000);
    let i = 0;
    const slice = () => {
      for (const end = i + 2000; i < end; i++) ring[i % ring.length] = { id: i, headers: { a: 'x' + i, b: [i, i + 1] }, body: Buffer.allocUnsafe(16) };
      if (i < 1200000) return void setImmediate(slice);
      const ns = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
      process.stdout.write(String(ns.space_size / 1048576));
    };
    slice();`;
  const args = [...(mode === 'launcher-flag' ? SIDECAR_NODE_FLAGS.filter((f) => f.startsWith('--max-semi-space-size=')) : []), '--input-type=module', '-e', script];
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' }, timeout: 60_000 });
  if (r.status !== 0) throw new Error(r.stderr);
  return Number(r.stdout);
}

test('applied at run time, the young generation stops at the governor\'s cap, one step above where the launchers\' --max-semi-space-size=4 stops it, under a load whose objects survive scavenges', () => {
  const without = newSpaceMbAfterLoad('none');
  const governed = newSpaceMbAfterLoad('apply');
  const launcher = newSpaceMbAfterLoad('launcher-flag');
  const capMb = NEW_SPACE_CAP_BYTES / 1048576;
  const launcherMb = LAUNCHER_NEW_SPACE_BYTES / 1048576;
  expect(without).toBeGreaterThanOrEqual(4 * capMb);
  expect(launcher).toBeGreaterThanOrEqual(launcherMb);
  expect(launcher).toBeLessThan(2 * launcherMb);
  // It grows to the cap (not kept at the start-up 1 MB, which costs CPU) and no further.
  expect(governed).toBeGreaterThanOrEqual(capMb);
  expect(governed).toBeLessThan(2 * capMb);
}, 90_000);

const gcEntry = (kind: number) => ({ detail: { kind } }) as unknown as PerformanceEntry;
const SCAVENGE = gcEntry(constants.NODE_PERFORMANCE_GC_MINOR);
const MARK_COMPACT = gcEntry(constants.NODE_PERFORMANCE_GC_MAJOR);

test('the idle reclaimer runs once when a check period without scavenges follows traffic, never while scavenges go on or without traffic', () => {
  let runs = 0;
  const r = new IdleReclaimer(() => runs++);
  r.tick();
  r.tick();
  expect(runs).toBe(0); // no traffic yet
  r.afterGc([SCAVENGE, SCAVENGE]);
  r.tick(); // scavenges in this period: busy
  r.afterGc([SCAVENGE]);
  r.tick(); // still busy
  expect(runs).toBe(0);
  r.tick(); // a quiet period after traffic
  expect(runs).toBe(1);
  r.afterGc([MARK_COMPACT, MARK_COMPACT]); // the reclaim's own full GCs are not traffic
  r.tick();
  r.tick();
  r.tick();
  expect(runs).toBe(1);
  r.afterGc([SCAVENGE]); // traffic again, then quiet
  r.tick();
  r.tick();
  expect(runs).toBe(2);
  expect(r.reclaims).toBe(2);
});

/** The reclaimer's check period in these processes (the proxy's, IDLE_CHECK_MS, is 60 s). */
const QUIET_CHECK_MS = 5000;

/**
 * RssAnon (MB) after a load and a quiet spell, in a process of its own with the proxy's
 * heap settings applied (or not): the load is the ring of surviving objects above, plus
 * 56 MB of malloc'd 16 KiB buffers of which every 8th stays (as TLS and HTTP/2 buffers
 * freed in the middle of the malloc heap: only malloc_trim gives those pages back).
 */
async function anonMbAfterQuietSpell(apply: boolean): Promise<number> {
  const mod = pathToFileURL(join(import.meta.dirname, '..', 'dist', 'cli', 'heap-flags.js')).href;
  const script = `
    import { readFileSync } from 'node:fs';
    import { applyHeapFlags } from ${JSON.stringify(mod)};
    if (${apply}) applyHeapFlags(process.execArgv, undefined, undefined, undefined, false, ${QUIET_CHECK_MS});
    const ring = new Array(20000);
    let all = [];
    for (let i = 0; i < 4000; i++) all.push(Buffer.allocUnsafeSlow(16 * 1024).fill(1));
    const kept = all.filter((_, i) => i % 8 === 0);
    all = null;
    let i = 0;
    const slice = () => {
      for (const end = i + 20000; i < end; i++) ring[i % ring.length] = { id: i, headers: { a: 'x' + i } };
      if (i < 600000) return void setImmediate(slice);
      setTimeout(() => process.stdout.write(String(Number(/RssAnon:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) / 1024 + kept.length * 0)), ${2 * QUIET_CHECK_MS + 2000});
    };
    slice();`;
  // execFile rejects (with the child's stderr) on a non-zero exit or past the timeout.
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' }, timeout: 60_000 });
  return Number(stdout);
}

test('a quiet spell after a load gives memory back: with the proxy\'s settings the process shrinks, without them it keeps it', async () => {
  // The two processes side by side: each spends ~12 s of its ~13 s waiting out its quiet
  // spell (two check periods and a margin), and each measures only itself. One after the
  // other they took 25 s of the 90 s in CI.
  const [governed, without] = await Promise.all([anonMbAfterQuietSpell(true), anonMbAfterQuietSpell(false)]);
  // Measured: ~24 MB with the settings, ~105 without, ~77 with the young-generation cap but no idle reclaim.
  expect(without - governed).toBeGreaterThan(50);
}, 90_000);

/** RssAnon (MB) of a process that leaves 56 MB of malloc'd buffers free in the middle of the heap, before and after the addon's trim. */
function anonMbAroundTrim(): { before: number; after: number } {
  const addon = join(import.meta.dirname, '..', 'dist', 'proxy', 'native', 'build', 'original-dst.node');
  const script = `
    import { createRequire } from 'node:module';
    import { readFileSync } from 'node:fs';
    const { mallocTrim } = createRequire(import.meta.url)(${JSON.stringify(addon)});
    const anon = () => Number(/RssAnon:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
    // 16 KiB buffers come from malloc's heap (under the mmap threshold); every 8th is kept,
    // so the freed ones cannot go back from the heap's top: only malloc_trim returns them.
    let all = [];
    for (let i = 0; i < 4000; i++) all.push(Buffer.allocUnsafeSlow(16 * 1024).fill(1));
    const kept = all.filter((_, i) => i % 8 === 0);
    all = null;
    gc();
    gc();
    const before = anon();
    mallocTrim((released) => process.stdout.write(JSON.stringify({ before, after: anon(), released, kept: kept.length })));`;
  const r = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' }, timeout: 60_000 });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout) as { before: number; after: number };
}

test('the addon\'s malloc trim gives the free pages in the middle of the malloc heap back (glibc)', () => {
  const { before, after } = anonMbAroundTrim();
  expect(before - after).toBeGreaterThan(30);
}, 60_000);

test('the launchers\' flags make V8 compile on the main thread, with TurboFan only; without them, and set at run time, it compiles concurrently', () => {
  // A function hot enough for Maglev and TurboFan; --trace-opt names each compile's mode.
  const hot = 'function f(a){let s=0;for(let i=0;i<a.length;i++)s+=a[i]*2;return s}const a=Array.from({length:1000},(_,i)=>i);let t=0;for(let i=0;i<100000;i++)t+=f(a);console.log(t>0)';
  const modes = (flags: string[], script = hot): { sync: number; concurrent: number; maglev: number } => {
    const r = spawnSync(process.execPath, [...flags, '--trace-opt', '-e', script], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    const compiles = r.stdout.split('\n').filter((l) => l.startsWith('[compiling method'));
    return {
      sync: compiles.filter((l) => l.includes('ConcurrencyMode::kSynchronous')).length,
      concurrent: compiles.filter((l) => l.includes('ConcurrencyMode::kConcurrent')).length,
      maglev: compiles.filter((l) => l.includes('(target MAGLEV)')).length,
    };
  };
  const launched = modes([...SIDECAR_NODE_FLAGS]);
  expect(launched.sync).toBeGreaterThan(0);
  expect(launched.maglev).toBe(0);
  expect(launched.concurrent).toBe(0);
  const bare = modes([]);
  expect(bare.concurrent).toBeGreaterThan(0);
  expect(bare.maglev).toBeGreaterThan(0);
  // Why it is a launcher flag only: V8 reads it when the isolate starts.
  const atRunTime = modes([], `require('node:v8').setFlagsFromString('--no-concurrent-recompilation');${hot}`);
  expect(atRunTime.concurrent).toBeGreaterThan(0);
});

test('the launchers\' flags turn node 24\'s async context frame off, and every one of them starts node', () => {
  // node's own reading of its options (--expose-internals): what the sidecar runs with.
  const frame = (flags: readonly string[]): string => {
    const r = spawnSync(process.execPath, [...flags, '--expose-internals', '-e', "console.log(require('internal/options').getOptionValue('--async-context-frame'))"], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    return r.stdout.trim();
  };
  expect(frame([])).toBe('true');
  expect(SIDECAR_NODE_FLAGS).toContain('--no-async-context-frame');
  expect(frame(SIDECAR_NODE_FLAGS)).toBe('false');
});

test('the launchers\' flags turn V8\'s memory reducer off: after a full GC that left the heap smaller, a process without them has it scheduled at its next 8 s tick, a launched one never', async () => {
  // A full GC after the old generation grew (from 0 at start-up) puts the memory reducer in
  // its waiting state; its timer then fires kLongDelayMs (8 s) later and, traced, says what it
  // decided ("Memory reducer: ...", deps/v8/src/heap/memory-reducer.cc). Without the reducer
  // (V8 makes none when the isolate starts with --no-memory-reducer) there is no timer and no line.
  const script = 'const live=[];for(let i=0;i<100;i++)live.push(new Array(20000).fill(i));let drop=[];for(let i=0;i<300;i++)drop.push(new Array(20000).fill(i));drop=null;globalThis.gc();setTimeout(()=>console.log(live.length),9500)';
  const traced = async (flags: readonly string[]): Promise<string[]> => {
    const { stdout } = await promisify(execFile)(process.execPath, [...flags, '--expose-gc', '--trace-memory-reducer', '-e', script], { encoding: 'utf8' });
    expect(stdout.trim().split('\n').at(-1)).toBe('100');
    return stdout.split('\n').filter((l) => l.includes('Memory reducer'));
  };
  const [bare, launched] = await Promise.all([traced([]), traced(SIDECAR_NODE_FLAGS)]);
  expect(bare.length).toBeGreaterThan(0);
  expect(SIDECAR_NODE_FLAGS).toContain('--no-memory-reducer');
  expect(launched).toEqual([]);
}, 30_000);
