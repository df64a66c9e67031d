/**
 * A table from positive integer ids (HTTP/2 stream ids: 1 to 2^31-1) to values, for a
 * long-lived owner whose entries come and go per request: the streams of a connection.
 *
 * Why not a Map: V8's Map (an OrderedHashTable) rehashes into a new table once deleted
 * entries fill the old one, and the old table keeps a pointer to its successor (for
 * iterators) and the entries it held. A Map that lives long is in the old generation, so
 * the first table of that chain is too, and a scavenge takes every table after it, and
 * every value any of them held, as live: with 16 streams open and requests coming and
 * going, every stream the connection ever carried survived the young generation's
 * collections and was promoted (3 KB a gRPC call through the pair, 1 KB of it the
 * frame-level client's streams alone), until a mark-compact freed them.
 * docs/benchmarks.md, "What a Map keeps for the scavenger". Here the slots are a plain
 * array that is cleared on delete and replaced only when it grows: nothing a deleted
 * value can be reached from.
 *
 * Open addressing with linear probing, home slot (id >>> 1) & mask: a connection's ids are
 * consecutive odd (or even) numbers, so they land in consecutive slots. Deletion shifts the
 * run after the slot back (no tombstones), so lookups stay short however long it lives.
 */
export class IdTable<T> {
  private keys = new Int32Array(16);
  private vals: (T | undefined)[] = new Array<T | undefined>(16).fill(undefined);
  private mask = 15;
  private count = 0;

  get size(): number {
    return this.count;
  }

  get(id: number): T | undefined {
    const keys = this.keys;
    for (let i = (id >>> 1) & this.mask; ; i = (i + 1) & this.mask) {
      const k = keys[i];
      if (k === id) return this.vals[i];
      if (k === 0) return undefined;
    }
  }

  set(id: number, value: T): void {
    if (!(id > 0 && id <= 0x7fffffff) || !Number.isInteger(id)) throw new RangeError(`id-table: id ${id} is not in 1..2^31-1`);
    if ((this.count + 1) * 2 > this.keys.length) this.grow();
    const keys = this.keys;
    let i = (id >>> 1) & this.mask;
    while (keys[i] !== 0 && keys[i] !== id) i = (i + 1) & this.mask;
    if (keys[i] === 0) this.count++;
    keys[i] = id;
    this.vals[i] = value;
  }

  delete(id: number): boolean {
    const keys = this.keys;
    const mask = this.mask;
    let i = (id >>> 1) & mask;
    for (; keys[i] !== id; i = (i + 1) & mask) if (keys[i] === 0) return false;
    this.count--;
    // Backward shift (Knuth 6.4, algorithm R): an entry after the hole moves into it unless
    // its home slot lies cyclically in (hole, entry], where a lookup would stop before it.
    for (let j = (i + 1) & mask; keys[j] !== 0; j = (j + 1) & mask) {
      const home = (keys[j] >>> 1) & mask;
      if (i <= j ? home > i && home <= j : home > i || home <= j) continue;
      keys[i] = keys[j];
      this.vals[i] = this.vals[j];
      i = j;
    }
    keys[i] = 0;
    this.vals[i] = undefined;
    return true;
  }

  /** The values now, in no particular order (a copy: the caller may delete while it iterates). */
  values(): T[] {
    const out: T[] = [];
    for (let i = 0; i < this.keys.length; i++) if (this.keys[i] !== 0) out.push(this.vals[i] as T);
    return out;
  }

  clear(): void {
    this.keys.fill(0);
    this.vals.fill(undefined);
    this.count = 0;
  }

  private grow(): void {
    const oldKeys = this.keys;
    const oldVals = this.vals;
    const n = oldKeys.length * 2;
    this.keys = new Int32Array(n);
    this.vals = new Array<T | undefined>(n).fill(undefined);
    this.mask = n - 1;
    this.count = 0;
    for (let i = 0; i < oldKeys.length; i++) if (oldKeys[i] !== 0) this.set(oldKeys[i], oldVals[i] as T);
    // The old array may be in the old generation: emptied, it keeps none of the values alive for a scavenge.
    oldVals.fill(undefined);
  }
}
