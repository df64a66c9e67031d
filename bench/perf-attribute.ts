/**
 * Where a sidecar's CPU goes, on the CPU: reads `perf script -F ip,sym` (a `perf record -g`
 * of a sidecar started with `--perf-basic-prof`) from stdin and charges every sample to the
 * nearest JavaScript frame on its stack, so a builtin or V8 runtime call counts for the
 * function that made it. Prints the split by kind of leaf (JS, builtins, V8 runtime, kernel,
 * GC, node C++) and by source file.
 *
 * Why not the V8 CPU profile (WREN_BENCH_PROFILE): its samples are wall-clock. A sidecar
 * descheduled inside `write()` while the load generator, the app or the other sidecar runs
 * is sampled there, so writes looked like 16-34 % of the time; on the CPU the whole kernel
 * is 10-14 % (docs/benchmarks.md, "Where a sidecar's CPU goes, on the CPU").
 *
 *   node --perf-basic-prof ... (WREN_BENCH_NODE_ARGS=--perf-basic-prof for the data-path bench)
 *   perf record -g -F 2000 -o out.data -p <pid> -- sleep 4
 *   perf script -i out.data -F ip,sym | node dist/bench/perf-attribute.js [top N files]
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface Attribution {
  readonly total: number;
  /** Samples by the kind of their leaf frame. */
  readonly kinds: ReadonlyMap<string, number>;
  /** Samples by the source file of their nearest JavaScript frame. */
  readonly files: ReadonlyMap<string, number>;
}

function kindOf(leaf: string, kernel: boolean): string {
  if (kernel) return 'kernel';
  if (leaf.startsWith('JS:')) return 'JavaScript (JIT code)';
  if (leaf.startsWith('Builtins_')) return 'V8 builtins';
  if (/Scaveng|Heap::|GC|Mark|Sweep/.test(leaf)) return 'GC';
  if (leaf.startsWith('v8::')) return 'V8 runtime';
  if (leaf.startsWith('node::')) return 'node C++';
  return 'other (libc, OpenSSL, ...)';
}

/** `perf script -F ip,sym` output: one stack per sample, leaf first, samples separated by blank lines. */
export function attribute(text: string): Attribution {
  const kinds = new Map<string, number>();
  const files = new Map<string, number>();
  const add = (m: Map<string, number>, k: string): void => void m.set(k, (m.get(k) ?? 0) + 1);
  let total = 0;
  let stack: string[] = [];
  const flush = (): void => {
    if (stack.length === 0) return;
    total++;
    const [leaf] = stack;
    add(kinds, kindOf(leaf.replace(/^k:/, ''), leaf.startsWith('k:')));
    const js = stack.find((s) => s.startsWith('JS:'));
    // "JS:*'name file:///.../x.js:12:3" -> x.js; node's own modules keep their node: name.
    const where = js?.split(' ').pop()?.replace(/:\d+:\d+$/, '');
    add(files, where === undefined ? `(no JS frame) ${leaf.slice(0, 60)}` : where.startsWith('file:') ? where.replace(/^.*\//, '') : where);
    stack = [];
  };
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (t === '') {
      flush();
      continue;
    }
    const sp = t.indexOf(' ');
    const ip = sp < 0 ? t : t.slice(0, sp);
    const sym = sp < 0 ? '?' : t.slice(sp + 1);
    stack.push(ip.startsWith('ffffffff') ? `k:${sym}` : sym);
  }
  flush();
  return { total, kinds, files };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { total, kinds, files } = attribute(readFileSync(0, 'utf8'));
  const top = Number(process.argv[2] ?? 30);
  const pct = (n: number): string => `${((100 * n) / Math.max(1, total)).toFixed(1).padStart(5)} %`;
  const sorted = (m: ReadonlyMap<string, number>): [string, number][] => [...m].sort((a, b) => b[1] - a[1]);
  console.log(`${total} samples\n\nby leaf:`);
  for (const [k, n] of sorted(kinds)) console.log(`${pct(n)}  ${k}`);
  console.log('\nby the nearest JavaScript frame (its own time and what it calls):');
  for (const [k, n] of sorted(files).slice(0, top)) console.log(`${pct(n)}  ${k}`);
}
