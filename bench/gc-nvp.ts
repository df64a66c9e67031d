/**
 * Sums of what a process's scavenges did, from its `--trace-gc-nvp` output: one line per
 * GC, `name=value` pairs, `gc=s` for a scavenge. Fed the output as it arrives (a line may
 * be split across chunks). Used by bench/h2-retention.ts and test/scavenge-survivors.test.ts.
 */
export class ScavengeSums {
  scavenges = 0;
  /** Bytes promoted to the old generation. */
  promoted = 0;
  /** Bytes that survived in the new space. */
  survived = 0;
  /** Pause time, ms. */
  pause = 0;
  /** Bytes allocated since the previous GC. */
  allocated = 0;
  /** While false, lines are read but not added (a run's warm-up). */
  counting = true;
  private rest = '';

  /** A chunk of the process's stdout; an arrow function, so it can be a 'data' listener as is. */
  readonly feed = (text: string): void => {
    const lines = (this.rest + text).split('\n');
    this.rest = lines.pop()!;
    if (!this.counting) return;
    for (const l of lines) {
      if (!l.includes(' gc=s ')) continue;
      const kv = Object.fromEntries(l.split(' ').filter((x) => x.includes('=')).map((x) => x.split('=')));
      this.scavenges++;
      this.promoted += Number(kv['promoted']);
      this.survived += Number(kv['new_space_survived']);
      this.pause += Number(kv['pause']);
      this.allocated += Number(kv['allocated']);
    }
  };
}
