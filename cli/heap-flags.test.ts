import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { applyHeapFlags, NEW_SPACE_CAP_BYTES, SemiSpaceGovernor, SIDECAR_HEAP_FLAGS, WORKERS_YOUNG_GENERATION, YOUNG_GENERATION_CAP } from './heap-flags.js';

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

test("the operator's own young-generation or heap-growing flags win (command line or NODE_OPTIONS, - or _)", () => {
  expect(applied(['--max-semi-space-size=16'])).toEqual({ applied: ['--heap-growing-percent=40'], set: ['--heap-growing-percent=40'], governed: false });
  expect(applied([], '--max_semi_space_size=8 --heap-growing-percent=100')).toEqual({ applied: [], set: [], governed: false });
  expect(applied(['--heap_growing_percent=20'])).toEqual({ applied: [YOUNG_GENERATION_CAP], set: [], governed: true });
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
  for (const mb of [1, 2, 4, 8]) {
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
 * proxy's settings applied at run time, as the proxy applies them, it stops where
 * `--max-semi-space-size=8` given to node stops it. The module is the built one (dist/), as
 * the proxy runs it.
 */
function newSpaceMbAfterLoad(mode: 'none' | 'apply' | 'launcher-flag'): number {
  const mod = pathToFileURL(join(import.meta.dirname, '..', 'dist', 'cli', 'heap-flags.js')).href;
  const script = `
    import v8 from 'node:v8';
    import { applyHeapFlags } from ${JSON.stringify(mod)};
    if (${mode === 'apply'}) applyHeapFlags(process.execArgv, undefined);
    // A ring of 20,000 live requests' worth of objects, each replaced after a while: every
    // scavenge finds many survivors, the pattern that makes V8 grow its young generation.
    // In slices, so the GC observer (as in the proxy, between event-loop turns) runs.
    const ring = new Array(20000);
    let i = 0;
    const slice = () => {
      for (const end = i + 20000; i < end; i++) ring[i % ring.length] = { id: i, headers: { a: 'x' + i, b: [i, i + 1] }, body: Buffer.allocUnsafe(16) };
      if (i < 1200000) return void setImmediate(slice);
      const ns = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
      process.stdout.write(String(ns.space_size / 1048576));
    };
    slice();`;
  const args = [...(mode === 'launcher-flag' ? ['--max-semi-space-size=8'] : []), '--input-type=module', '-e', script];
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' }, timeout: 60_000 });
  if (r.status !== 0) throw new Error(r.stderr);
  return Number(r.stdout);
}

test('applied at run time, the young generation stops where --max-semi-space-size=8 stops it, under a load whose objects survive scavenges', () => {
  const without = newSpaceMbAfterLoad('none');
  const governed = newSpaceMbAfterLoad('apply');
  const launcher = newSpaceMbAfterLoad('launcher-flag');
  const capMb = NEW_SPACE_CAP_BYTES / 1048576;
  expect(without).toBeGreaterThanOrEqual(4 * capMb);
  expect(launcher).toBeGreaterThanOrEqual(capMb);
  expect(launcher).toBeLessThan(2 * capMb);
  // It grows to the cap (not kept at the start-up 1 MB, which costs CPU) and no further.
  expect(governed).toBeGreaterThanOrEqual(capMb);
  expect(governed).toBeLessThan(2 * capMb);
}, 90_000);
