/**
 * What survives scavenges, by allocation site. Preloaded into a sidecar with
 * `WREN_BENCH_OUTBOUND_NODE_ARGS="--import=.../dist/bench/heap-sampler.js"`: the first
 * SIGUSR2 starts V8's sampling heap profiler with the samples of objects that die in a
 * scavenge dropped (`includeObjectsCollectedByMinorGC: false`) and those that die in a
 * mark-compact kept (`includeObjectsCollectedByMajorGC: true`), so the profile holds only
 * objects that lived through at least one scavenge: the ones V8 copies and promotes. The
 * second SIGUSR2 writes the profile (`promoted-PID-N.heapprofile`, loadable in Chrome's
 * DevTools Memory tab) to WREN_HEAP_SAMPLER_DIR (default the working directory) and prints
 * the top allocation sites to stderr. WREN_HEAP_SAMPLER_ALL=1 keeps every sample (all
 * allocations, for comparison). A heap snapshot cannot show these: it runs a full
 * GC first, and the promoted objects are garbage by then.
 */
import { Session } from 'node:inspector/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

interface Node {
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
  readonly selfSize: number;
  readonly children: readonly Node[];
}

const session = new Session();
session.connect();
let sampling = false;
let n = 0;

/** Self size per allocation site, with the caller chain that leads to it (three frames). */
function top(root: Node, limit: number): string[] {
  const sites = new Map<string, number>();
  let total = 0;
  const name = (n: Node) => `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/^.*\/(node_modules|dist)\//, '$1/').replace(/^node:/, '')}:${n.callFrame.lineNumber + 1}`;
  const walk = (n: Node, stack: string[]) => {
    const here = [name(n), ...stack].slice(0, 3);
    if (n.selfSize) {
      const key = here.join(' < ');
      sites.set(key, (sites.get(key) ?? 0) + n.selfSize);
      total += n.selfSize;
    }
    for (const c of n.children) walk(c, here);
  };
  walk(root, []);
  return [`total sampled ${(total / 1048576).toFixed(1)} MB`, ...[...sites].sort((a, b) => b[1] - a[1]).slice(0, limit).map(([k, v]) => `${((100 * v) / total).toFixed(1).padStart(5)} %  ${k}`)];
}

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as (o: { type: 'minor'; execution: 'sync' }) => void;
const minorGc = (): void => gc({ type: 'minor', execution: 'sync' });

process.on('SIGUSR2', () => {
  void (async () => {
    if (!sampling) {
      await session.post('HeapProfiler.enable');
      await session.post('HeapProfiler.startSampling', { samplingInterval: 1024, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: process.env.WREN_HEAP_SAMPLER_ALL === '1' });
      sampling = true;
      process.stderr.write(`[heap-sampler ${process.pid}] sampling objects that survive scavenges\n`);
      return;
    }
    // What the young generation holds now has not met a scavenge yet: two scavenges first
    // (the second takes what the first only copied), or a profile taken right after a quiet
    // spell lists a whole new space of garbage allocated since the last one as survivors.
    if (process.env.WREN_HEAP_SAMPLER_ALL !== '1') {
      minorGc();
      minorGc();
    }
    const { profile } = await session.post('HeapProfiler.stopSampling');
    sampling = false;
    const file = join(process.env.WREN_HEAP_SAMPLER_DIR ?? '.', `promoted-${process.pid}-${n++}.heapprofile`);
    writeFileSync(file, JSON.stringify(profile));
    process.stderr.write(`[heap-sampler ${process.pid}] wrote ${file}\n${top(profile.head as unknown as Node, 40).join('\n')}\n`);
  })();
});
