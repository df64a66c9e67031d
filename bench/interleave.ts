/**
 * Rounds and medians: every path under one load runs `rounds` times with the paths
 * interleaved (direct, wren, naive, haproxy, then wren, naive, haproxy, direct, ...), so a stall of the machine
 * (10-50 ms a few times a minute on a shared VM) lands in one round of one path rather
 * than deciding a row. Each row is the median round, field by field, so every figure is
 * one some round measured.
 */

/** The middle value (the lower of the two middle ones for an even count). */
export const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];

/** The median of each field over the rounds (a field is a figure, or one figure per process, e.g. [outbound, inbound]) (counts like `done` and `failed` are summed). */
export function medianOf<T extends { readonly [K in keyof T]: number | readonly number[] }>(rounds: readonly T[], summed: readonly (keyof T & string)[] = []): T {
  const out: Record<string, number | number[]> = {};
  for (const key of Object.keys(rounds[0]) as (keyof T & string)[]) {
    const values = rounds.map((r) => r[key] as number | readonly number[]);
    if (Array.isArray(values[0])) out[key] = (values[0] as number[]).map((_, i) => median(values.map((v) => (v as number[])[i])));
    else out[key] = summed.includes(key) ? (values as number[]).reduce((a, b) => a + b, 0) : median(values as number[]);
  }
  return out as T;
}

/**
 * Runs each path `rounds` times, interleaved, and returns each path's rounds in order.
 * Round r starts at path r (mod the number of paths), so each path runs first, in the
 * middle and last across the rounds: two identical Wren pairs measured in a fixed order
 * (direct, pair, pair) differed by 13 % at HTTP/1.1 saturation in favour of the second
 * (docs/benchmarks.md, "The order of the paths").
 *
 * `warmUp`, when given, runs once for each path before the first round and its result is
 * dropped: a Node path's first run of a load compiles the code for that load's shapes
 * (bench/data-path.ts, WREN_BENCH_WARM_UP_SECONDS).
 */
export async function interleave<T>(rounds: number, paths: readonly (readonly [string, () => Promise<T>, (() => Promise<unknown>)?])[]): Promise<Map<string, T[]>> {
  for (const [, , warmUp] of paths) if (warmUp) await warmUp();
  const runs = new Map<string, T[]>(paths.map(([name]) => [name, []]));
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < paths.length; i++) {
      const [name, run] = paths[(round + i) % paths.length];
      runs.get(name)!.push(await run());
    }
  }
  return runs;
}
