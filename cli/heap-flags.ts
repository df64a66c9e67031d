import { setFlagsFromString } from 'node:v8';

/**
 * The V8 heap settings a sidecar runs with (docs/benchmarks.md, "HTTP/2 and gRPC path
 * (lean-grpc)"). Each request through the proxy leaves a few KB of node:http2 objects
 * that survive the scavenges after it ends and are promoted; with V8's defaults the
 * young generation then grows to 2 × 32 MB and the old generation fills with promoted
 * garbage up to ~4× its live size before a mark-compact: 200-270 MB resident per sidecar
 * under gRPC load, for ~14 MB of live data.
 *
 * - `--semi-space-growth-factor=1`: the young generation keeps the size it has at start
 *   (a 1 MB semi-space) instead of doubling up to 32 MB. V8 reads it whenever it would
 *   grow the young generation, so setting it at run time works (`--max-semi-space-size`
 *   is read once, when the heap is set up, so it cannot be set from inside).
 * - `--heap-growing-percent=40`: after a mark-compact the old generation may grow by 40 %
 *   of what is live before the next one, instead of V8's factor of up to 4. Read at every
 *   mark-compact.
 *
 * Set at run time by the proxy itself, so every launcher (the image, the injector's
 * container, `wren demo`, the tests and benchmarks) gets the same heap; flags the
 * operator gives node (its command line or NODE_OPTIONS) for the same settings win.
 */
export const SIDECAR_HEAP_FLAGS: readonly string[] = ['--semi-space-growth-factor=1', '--heap-growing-percent=40'];

/** Flags the operator's own heap settings override: if any of a flag's names is given, ours is not set. */
const OVERRIDDEN_BY: Readonly<Record<string, readonly string[]>> = {
  '--semi-space-growth-factor': ['--semi-space-growth-factor', '--max-semi-space-size', '--min-semi-space-size'],
  '--heap-growing-percent': ['--heap-growing-percent'],
};

/** V8 accepts `_` for `-` in flag names. */
const norm = (f: string): string => f.split('=')[0].replace(/_/g, '-');

/**
 * Applies SIDECAR_HEAP_FLAGS except those the operator's node flags (`execArgv`, then
 * NODE_OPTIONS) already settle; returns the ones applied (the proxy logs them).
 */
export function applyHeapFlags(execArgv: readonly string[], nodeOptions: string | undefined, set: (flags: string) => void = setFlagsFromString): string[] {
  const given = new Set([...execArgv, ...(nodeOptions ?? '').split(/\s+/)].filter((f) => f.startsWith('--')).map(norm));
  const applied = SIDECAR_HEAP_FLAGS.filter((f) => !OVERRIDDEN_BY[norm(f)].some((n) => given.has(n)));
  if (applied.length > 0) set(applied.join(' '));
  return applied;
}
