import type { Random } from '../../common/clock.js';
import { EMPTY_PICKER, isExcluded, randomAllowed, type Balancer, type Host, type PickContext, type Picker, type RingStats } from './balancer.js';
import { splitMix64Fill, xxHash64 } from './hash.js';

/** Envoy's ring-hash upper bound (RingHash maximum_ring_size: default 8M entries, also its limit). */
export const MAX_RING_SIZE = 8_388_608;

/**
 * Ring entries per weight unit (the lightest host's weight) while the ring is above
 * `minRingSize`: libketama's 160 points per server (40 MD5 digests × 4 points each). With
 * 160 entries a host's share of the key space is within about ±8 % (1/√160) of its weight.
 */
const KETAMA_ENTRIES = 160;

/**
 * Consistent hashing on a ketama ring (Karger et al. 1997; libketama; Envoy RING_HASH,
 * envoy.extensions.load_balancing_policies.ring_hash.v3.RingHash): every host owns entries
 * at 64-bit ring positions; a request hashes its key (a header value or the source address)
 * with xxHash64, as Envoy's hash policies do, and takes the first entry at or after that
 * position, wrapping around (Envoy's Ring::chooseHost, ketama_get_server).
 *
 * Entries per host: proportional to the host's weight over the lightest host's weight
 * (Envoy's normalized weights), `perUnit` entries per unit where
 *
 *   perUnit = max(160, ceil(minRingSize / totalUnits))
 *
 * and a host gets ceil(perUnit × weight / minWeight). Envoy's own scale is the second term
 * alone, ceil(minRingSize × minNormalizedWeight), which changes every host's entry count
 * whenever the host count changes: its entries `_0 … _{c-1}` shrink or grow at the tail,
 * and each such change moves another ~1/N of the keys besides the host's own, up to half
 * of them where c halves (1023 -> 1024 hosts at the default minimum goes from 2 entries
 * each to 1). Wren keeps Envoy's floor (at least `minRingSize` entries, at least one per
 * host) but fixes the count at libketama's 160 per unit once that floor is met, so adding
 * or removing one host moves only the keys it gains or had (about 1/N). Below the floor
 * (few hosts: fewer than 7 equal ones at the default 1024) the ring is scaled up exactly as
 * Envoy's is. Over `maxRingSize` it is scaled down to fit (Envoy's cap), at least one entry
 * per host.
 *
 * Entry positions: a host's address (`ip:port`, Envoy's host hash key) is hashed once with
 * xxHash64, and its i-th entry is the i-th output of SplitMix64 seeded with it (a 64-bit
 * mix, independent per i); Envoy hashes the string `<address>_<i>` per entry, which here
 * would cost a string and a full xxHash64 (about 0.2 µs) for each of 163,840 entries at
 * 1,024 hosts, several times the whole build.
 *
 * Without a hash key the pick is random (Envoy does the same).
 */
export class RingHashBalancer implements Balancer {
  readonly kind = 'ring-hash' as const;
  /** The last layout built and the (key, weight) list it was built for; ejections reuse it. */
  private last: { readonly ids: readonly string[]; readonly layout: RingLayout } | null = null;
  /** The ring of the last picker built; null while it had no host. */
  private current: RingStats | null = null;

  constructor(
    private readonly random: Random,
    private readonly minRingSize: number,
    private readonly maxRingSize: number = MAX_RING_SIZE,
  ) {}

  build(hosts: readonly Host[]): Picker {
    if (hosts.length === 0) {
      this.current = null;
      return EMPTY_PICKER;
    }
    const frozen = Object.freeze([...hosts]);
    return new RingPicker(frozen, this.layout(frozen), this.random);
  }

  ring(): RingStats | null {
    return this.current;
  }

  /**
   * The ring of every counted host, on which the hosts that are not `usable` (ejected,
   * failing health checks, breaker open) are walked past, as a retry walks past the hosts
   * it tried. A ring of the usable hosts alone would be laid out anew at each ejection (as
   * Envoy's is); here only the keys of the host that left move, each to the next usable
   * host clockwise (about 1/N), and come back with it. The layout depends on `all` alone,
   * so an ejection or an unejection reuses it and only changes which hosts may be picked.
   */
  buildWithin(all: readonly Host[], usable: readonly Host[]): Picker {
    if (usable.length === 0) {
      // No host may be picked, but the ring (laid out when one may again) is the same.
      this.current = all.length === 0 ? null : ringStats(entriesPerHost(all.map((h) => h.endpoint.weight), this.minRingSize, this.maxRingSize));
      return EMPTY_PICKER;
    }
    if (usable.length === all.length) return this.build(usable);
    const frozen = Object.freeze([...all]);
    return new RingPicker(frozen, this.layout(frozen), this.random, Object.freeze([...usable]));
  }

  private layout(hosts: readonly Host[]): RingLayout {
    const ids = hosts.map((h) => `${h.key} ${h.endpoint.weight}`);
    const last = this.last;
    if (last !== null && last.ids.length === ids.length && last.ids.every((id, i) => id === ids[i])) {
      this.current = last.layout.stats;
      return last.layout;
    }
    const layout = buildLayout(hosts, this.minRingSize, this.maxRingSize);
    this.last = { ids, layout };
    this.current = layout.stats;
    return layout;
  }
}

/**
 * A sorted ring: entry k is at position hi[k]:lo[k] (64 bits) and belongs to
 * hosts[owners[k]]. `index[p]` is the first entry whose top INDEX_BITS bits are p or more
 * (index[2^INDEX_BITS] = the entry count), so a pick searches only its own slice: about 40
 * entries at 1,024 hosts instead of 163,840, whose 18 probes were mostly cache misses.
 */
interface RingLayout {
  readonly hi: Uint32Array;
  readonly lo: Uint32Array;
  readonly owners: Int32Array;
  readonly index: Uint32Array;
  readonly stats: RingStats;
}

const INDEX_BITS = 12;

/** Entries per host (see RingHashBalancer): Envoy's floors, libketama's 160 per unit above them, Envoy's cap. */
export function entriesPerHost(weights: readonly number[], minRingSize: number, maxRingSize: number = MAX_RING_SIZE): number[] {
  let minWeight = Infinity;
  let totalWeight = 0;
  for (const w of weights) {
    minWeight = Math.min(minWeight, w);
    totalWeight += w;
  }
  const totalUnits = totalWeight / minWeight;
  const min = Math.max(1, Math.min(minRingSize, maxRingSize));
  const perUnit = Math.max(KETAMA_ENTRIES, Math.ceil(min / totalUnits));
  // (perUnit × w) / minWeight: integers divided once, exact whenever the quotient is whole.
  if (perUnit * totalUnits <= maxRingSize) return weights.map((w) => Math.ceil((perUnit * w) / minWeight));
  const scaled = maxRingSize / totalUnits;
  return weights.map((w) => Math.max(1, Math.floor((scaled * w) / minWeight)));
}

/** A ring's entries and the fewest and most one host has, from its entries per host. */
function ringStats(counts: readonly number[]): RingStats {
  let size = 0;
  let fewest = Infinity;
  let most = 0;
  for (const c of counts) {
    size += c;
    if (c < fewest) fewest = c;
    if (c > most) most = c;
  }
  return Object.freeze({ size, minHashesPerHost: fewest, maxHashesPerHost: most });
}

const seed = new Uint32Array(2);

function buildLayout(hosts: readonly Host[], minRingSize: number, maxRingSize: number): RingLayout {
  const counts = entriesPerHost(
    hosts.map((h) => h.endpoint.weight),
    minRingSize,
    maxRingSize,
  );
  const stats = ringStats(counts);
  const total = stats.size;
  const hi = new Uint32Array(total);
  const lo = new Uint32Array(total);
  const owners = new Int32Array(total);
  const seeds = new Uint32Array(2 * hosts.length);
  for (let o = 0; o < hosts.length; o++) {
    xxHash64(hosts[o].key, seed);
    seeds[2 * o] = seed[0];
    seeds[2 * o + 1] = seed[1];
  }
  splitMix64Fill(seeds, counts, hi, lo, owners);
  // LSD radix sort by the high 32 bits, in three stable passes of 11 bits (2,048 counters
  // stay in the L1 cache, where 65,536 for two 16-bit passes did not): O(n), where a
  // comparison sort of an index array took most of the build at 1,024 hosts.
  const hi2 = new Uint32Array(total);
  const lo2 = new Uint32Array(total);
  const owners2 = new Int32Array(total);
  const bucket = new Uint32Array(RADIX);
  radixPass(hi, lo, owners, hi2, lo2, owners2, 0, bucket);
  radixPass(hi2, lo2, owners2, hi, lo, owners, 11, bucket);
  radixPass(hi, lo, owners, hi2, lo2, owners2, 22, bucket);
  orderTies(hi2, lo2, owners2);
  const index = new Uint32Array((1 << INDEX_BITS) + 1);
  let k = 0;
  for (let p = 0; p <= 1 << INDEX_BITS; p++) {
    while (k < total && hi2[k] >>> (32 - INDEX_BITS) < p) k++;
    index[p] = k;
  }
  return { hi: hi2, lo: lo2, owners: owners2, index, stats };
}

const RADIX = 1 << 11;

/** One stable counting-sort pass from src to dst on the 11 bits of `hi` at `shift`. */
function radixPass(
  hi: Uint32Array,
  lo: Uint32Array,
  owners: Int32Array,
  toHi: Uint32Array,
  toLo: Uint32Array,
  toOwners: Int32Array,
  shift: number,
  bucket: Uint32Array,
): void {
  const n = hi.length;
  bucket.fill(0);
  for (let j = 0; j < n; j++) bucket[(hi[j] >>> shift) & (RADIX - 1)]++;
  let sum = 0;
  for (let b = 0; b < RADIX; b++) {
    const c = bucket[b];
    bucket[b] = sum;
    sum += c;
  }
  for (let j = 0; j < n; j++) {
    const d = bucket[(hi[j] >>> shift) & (RADIX - 1)]++;
    toHi[d] = hi[j];
    toLo[d] = lo[j];
    toOwners[d] = owners[j];
  }
}

/**
 * Orders entries with equal high halves (a few per 100,000) by the low half: an insertion
 * sort over runs that are almost always one or two long. Entries equal in all 64 bits (the
 * same address twice) keep the hosts' order.
 */
function orderTies(hi: Uint32Array, lo: Uint32Array, owners: Int32Array): void {
  for (let j = 1; j < hi.length; j++) {
    if (hi[j] !== hi[j - 1] || lo[j] >= lo[j - 1]) continue;
    const h = hi[j];
    const l = lo[j];
    const o = owners[j];
    let m = j;
    for (; m > 0 && hi[m - 1] === h && lo[m - 1] > l; m--) {
      lo[m] = lo[m - 1];
      owners[m] = owners[m - 1];
    }
    lo[m] = l;
    owners[m] = o;
  }
}

/** The request key's ring position (hashed per pick into this buffer: no allocation). */
const keyHash = new Uint32Array(2);

export class RingPicker implements Picker {
  readonly size: number;
  /** Per ring host (by index): whether it may be picked; null: all may. */
  private readonly allowed: Uint8Array | null;

  constructor(
    private readonly hosts: readonly Host[],
    private readonly layout: RingLayout,
    private readonly random: Random,
    /** The hosts that may be picked, a subset of `hosts` (buildWithin); absent: all of them. */
    private readonly usable: readonly Host[] = hosts,
  ) {
    this.size = usable.length;
    if (usable === hosts) this.allowed = null;
    else {
      const set = new Set(usable);
      this.allowed = Uint8Array.from(hosts, (h) => (set.has(h) ? 1 : 0));
    }
  }

  /** Number of entries on the ring (Envoy's ring_hash_lb.size gauge; for tests and /clusters). */
  get ringSize(): number {
    return this.layout.hi.length;
  }

  pick(ctx: PickContext): Host | null {
    if (ctx.hashKey === undefined) return randomAllowed(this.usable, ctx, this.random);
    const owners = this.layout.owners;
    const n = owners.length;
    const allowed = this.allowed;
    xxHash64(ctx.hashKey, keyHash);
    let i = this.lowerBound(keyHash[0], keyHash[1]);
    // Walk clockwise past excluded hosts (a retry goes to the next host on the ring) and
    // past those that may not be picked (buildWithin).
    for (let step = 0; step < n; step++, i++) {
      if (i === n) i = 0;
      const o = owners[i];
      if (allowed !== null && allowed[o] === 0) continue;
      const h = this.hosts[o];
      if (!isExcluded(h, ctx)) return h;
    }
    return null;
  }

  /** The first entry at or after position h:l, wrapping to 0 (Envoy's chooseHost). */
  private lowerBound(h: number, l: number): number {
    const { hi, lo, index } = this.layout;
    // Entries before index[p] are below h's slice and those from index[p + 1] on above it,
    // so the answer is in [index[p], index[p + 1]].
    const p = h >>> (32 - INDEX_BITS);
    let a = index[p];
    let b = index[p + 1];
    while (a < b) {
      const mid = (a + b) >>> 1;
      if (hi[mid] < h || (hi[mid] === h && lo[mid] < l)) a = mid + 1;
      else b = mid;
    }
    return a === hi.length ? 0 : a;
  }
}
