import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { applyHeapFlags, SIDECAR_HEAP_FLAGS } from './heap-flags.js';

function applied(execArgv: string[], nodeOptions?: string): { applied: string[]; set: string[] } {
  const set: string[] = [];
  return { applied: applyHeapFlags(execArgv, nodeOptions, (f) => set.push(f)), set };
}

test('a sidecar started without heap flags gets both, in one call', () => {
  expect(applied([])).toEqual({ applied: [...SIDECAR_HEAP_FLAGS], set: [SIDECAR_HEAP_FLAGS.join(' ')] });
  expect(applied(['--enable-source-maps'], '--trace-warnings')).toEqual({ applied: [...SIDECAR_HEAP_FLAGS], set: [SIDECAR_HEAP_FLAGS.join(' ')] });
});

test("the operator's own young-generation or heap-growing flags win (command line or NODE_OPTIONS, - or _)", () => {
  expect(applied(['--max-semi-space-size=16']).applied).toEqual(['--heap-growing-percent=40']);
  expect(applied([], '--max_semi_space_size=8 --heap-growing-percent=100')).toEqual({ applied: [], set: [] });
  expect(applied(['--heap_growing_percent=20']).applied).toEqual(['--semi-space-growth-factor=1']);
  expect(applied(['--semi-space-growth-factor=2']).applied).toEqual(['--heap-growing-percent=40']);
});

/**
 * What the flags do, in a process of their own: objects that survive a scavenge or two
 * (as closed HTTP/2 streams do) make V8 grow the young generation to its 2 × 32 MB
 * maximum; with the flags applied at run time, as the proxy applies them, it keeps its
 * start-up size. The module is the built one (dist/), as the proxy runs it.
 */
function newSpaceMbAfterLoad(apply: boolean): number {
  const mod = pathToFileURL(join(import.meta.dirname, '..', 'dist', 'cli', 'heap-flags.js')).href;
  const script = `
    import v8 from 'node:v8';
    import { applyHeapFlags } from ${JSON.stringify(mod)};
    if (${apply}) applyHeapFlags(process.execArgv, undefined);
    // A ring of 20,000 live requests' worth of objects, each replaced after a while: every
    // scavenge finds many survivors, the pattern that makes V8 grow its young generation.
    const ring = new Array(20000);
    for (let i = 0; i < 400000; i++) ring[i % ring.length] = { id: i, headers: { a: 'x' + i, b: [i, i + 1] }, body: Buffer.allocUnsafe(16) };
    const ns = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
    process.stdout.write(String(ns.space_size / 1048576));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } });
  if (r.status !== 0) throw new Error(r.stderr);
  return Number(r.stdout);
}

test('applied at run time, the young generation stays at its start-up size under a load whose objects survive scavenges', () => {
  const without = newSpaceMbAfterLoad(false);
  const withFlags = newSpaceMbAfterLoad(true);
  expect(without).toBeGreaterThanOrEqual(16);
  expect(withFlags).toBeLessThanOrEqual(4);
});
