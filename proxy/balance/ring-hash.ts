import type { Random } from '../../common/clock.js';
import { EMPTY_PICKER, isExcluded, type Balancer, type Host, type PickContext, type Picker, type RingStats } from './balancer.js';
import { splitMix64Fill, xxHash64 } from './hash.js';
import { RandomBalancer } from './random.js';

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
 * Without a hash key the pick is at a random point on the ring (Envoy does the same), so in
 * proportion to the hosts' weights.
 */
export class RingHashBalancer implements Balancer {
  readonly kind = 'ring-hash' as const;
  /** The last layout built, the (key, weight) list and the hosts it was built for; ejections reuse it. */
  private last: { readonly ids: readonly string[]; readonly hosts: readonly Host[]; readonly layout: RingLayout } | null = null;
  /** The ring of the last picker built; null while it had no host. */
  private current: RingStats | null = null;
  /** The layout being built in the background for `ids`; null when none is. */
  private job: { readonly ids: readonly string[] } | null = null;
  /** The newest endpoint set, built once `job` (which carries on: startBuild) is done; null when `job` is the newest. */
  private queued: RingSet | null = null;
  /** Builds abandoned for a newer set since a ring was last finished (startBuild). */
  private abandoned = 0;
  /** Clock ms since which the ring served has been behind the endpoints: the first wanted set not built. */
  private behindSince = 0;
  /** Weighted random picks while a cluster's first ring is built (meanwhile()). */
  private readonly standIn: RandomBalancer;

  constructor(
    private readonly random: Random,
    private readonly minRingSize: number,
    private readonly maxRingSize: number = MAX_RING_SIZE,
    /** Where a large ring is built off the request path (RingBackground); without, every ring is built at once. */
    private readonly background?: RingBackground,
  ) {
    this.standIn = new RandomBalancer(random);
  }

  build(hosts: readonly Host[]): Picker {
    if (hosts.length === 0) {
      this.current = null;
      this.job = null;
      this.queued = null;
      return EMPTY_PICKER;
    }
    const frozen = Object.freeze([...hosts]);
    const layout = this.layout(frozen);
    return layout !== null ? new RingPicker(frozen, layout, this.random) : this.meanwhile(frozen);
  }

  ring(): RingStats | null {
    return this.current;
  }

  /**
   * This balancer replaces `previous` (a policy change remade it: another hash header, EWMA
   * decay or panic threshold): it keeps the ring laid out, which depends only on the
   * endpoints and the ring sizes, so the keys stay where they were and no request is placed
   * at random while a ring of the same endpoints is built again.
   */
  takeOver(previous: RingHashBalancer): void {
    if (previous.minRingSize !== this.minRingSize || previous.maxRingSize !== this.maxRingSize) return;
    this.last = previous.last;
    this.current = previous.current;
    // A build under way there stops; this one builds the ring it is asked for (meanwhile over `last`).
    previous.job = null;
    previous.queued = null;
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
    const chosen = Object.freeze([...usable]);
    const layout = this.layout(frozen);
    return layout !== null ? new RingPicker(frozen, layout, this.random, chosen) : this.meanwhile(chosen);
  }

  /** The layout over `hosts`, or null while it is being built in the background (started here if it is not yet). */
  private layout(hosts: readonly Host[]): RingLayout | null {
    const ids = hosts.map((h) => `${h.key} ${h.endpoint.weight}`);
    const last = this.last;
    if (last !== null && sameIds(last.ids, ids)) {
      this.current = last.layout.stats;
      this.job = null;
      this.queued = null;
      return last.layout;
    }
    const counts = entriesPerHost(hosts.map((h) => h.endpoint.weight), this.minRingSize, this.maxRingSize);
    const stats = ringStats(counts);
    const bg = this.background;
    if (bg === undefined || stats.size <= SYNC_RING_ENTRIES) {
      this.job = null;
      this.queued = null;
      const layout = finish(layoutSteps(hosts, counts, stats));
      this.last = { ids, hosts, layout };
      this.current = stats;
      return layout;
    }
    const job = this.job;
    if (job === null) {
      this.abandoned = 0;
      this.behindSince = bg.now();
      this.startBuild(bg, { ids, hosts, counts, stats, since: this.behindSince });
    } else if (sameIds(job.ids, ids)) {
      this.queued = null;
    } else if (this.queued === null || !sameIds(this.queued.ids, ids)) {
      const set = { ids, hosts, counts, stats, since: bg.now() };
      if (this.abandoned < MAX_ABANDONED_BUILDS && bg.now() - this.behindSince < MAX_BEHIND_MS) {
        this.abandoned++;
        this.queued = null;
        this.startBuild(bg, set);
      } else if (this.queued === null) this.queued = set;
      else this.queued = { ...set, since: this.queued.since };
    }
    return null;
  }

  /**
   * Builds the layout a few steps per turn of the event loop (bg.defer), then tells the
   * owner (bg.ready), whose next pick takes it up (layout() finds it). A newer endpoint set
   * replaces `job`, and the turns of the one it replaced stop, while builds are seldom
   * superseded: fewer than MAX_ABANDONED_BUILDS abandoned since a ring was last finished,
   * and the ring served behind the endpoints for less than MAX_BEHIND_MS. Past either, the
   * build under way carries on, the newest set waits in `queued`, and its build starts as
   * soon as that one is done. Endpoints that change faster than a ring is built (a rollout
   * of a large Deployment) restarted the build at every change before, so no ring was ever
   * finished: the old one (or the stand-in's random picks) was served for as long as the
   * changes went on, the endpoints added meanwhile got no hashed key at all. Now the ring
   * served is at most a few builds behind, as Envoy's, which is built anew at each host set
   * change (RingHashLoadBalancer, ThreadAwareLoadBalancerBase::refresh), never skipped.
   */
  private startBuild(bg: RingBackground, set: RingSet): void {
    const { ids, hosts } = set;
    const job = { ids };
    this.job = job;
    const steps = layoutSteps(hosts, set.counts, set.stats);
    const turn = (): void => {
      if (this.job !== job) return;
      const start = bg.now();
      for (let n = 0; n < MAX_STEPS_PER_TURN && (n === 0 || bg.now() - start < TURN_MS); n++) {
        const r = steps.next();
        if (r.done === true) {
          this.job = null;
          this.last = { ids, hosts, layout: r.value };
          const next = this.queued;
          this.queued = null;
          if (next !== null) {
            // The newest set has been waiting since it came: the served ring is behind since then.
            this.abandoned = 0;
            this.behindSince = next.since;
            this.startBuild(bg, next);
          }
          bg.ready();
          return;
        }
      }
      bg.defer(turn);
    };
    bg.defer(turn);
  }

  /**
   * The picker while the ring over `usable`'s set is being built: the last ring built, with
   * each of its hosts that is still usable (the current Host for its key) picked as before and
   * the others (gone, or not usable) walked past, as an ejected host is; a host new to the set
   * gets hashed keys once the new ring takes over. This is Envoy's behaviour on a membership
   * change: the worker keeps the ring it has until the new one, built off the request path,
   * replaces it (ThreadAwareLoadBalancerBase). With no ring yet, or none of its hosts usable,
   * picks are random over `usable` for those milliseconds, in proportion to the hosts'
   * weights as the ring's own shares are (RandomBalancer's weighted picker; an unweighted
   * stand-in gave a host of weight 9 the share of a host of weight 1 until the ring was built).
   */
  private meanwhile(usable: readonly Host[]): Picker {
    const last = this.last;
    if (last !== null) {
      const byKey = new Map(usable.map((h) => [h.key, h]));
      let kept = 0;
      const hosts = last.hosts.map((h) => {
        const now = byKey.get(h.key);
        if (now === undefined) return h;
        kept++;
        return now;
      });
      if (kept > 0) {
        this.current = last.layout.stats;
        return new RingPicker(Object.freeze(hosts), last.layout, this.random, usable);
      }
    }
    this.current = null;
    return this.standIn.build(usable);
  }
}

/**
 * How a RingHashBalancer builds a large ring off the request path (proxy/resilience/cluster.ts):
 * `defer` runs a function on a later turn of the event loop (setImmediate; a fake queue in
 * tests), `now` is the clock (ms) that bounds a turn's work, `ready` tells the owner a new
 * ring is built (its next pick rebuilds the picker).
 */
export interface RingBackground {
  defer(fn: () => void): void;
  now(): number;
  ready(): void;
}

/** An endpoint set to build a ring over, and since when (clock ms) it has been wanted. */
interface RingSet {
  readonly ids: readonly string[];
  readonly hosts: readonly Host[];
  readonly counts: readonly number[];
  readonly stats: RingStats;
  readonly since: number;
}

/**
 * A background build is abandoned for a newer endpoint set at most this many times in a row
 * (since a ring was last finished); the next one carries on to the end (startBuild).
 */
const MAX_ABANDONED_BUILDS = 2;
/**
 * Nor once the ring served has been behind the endpoints this long (ms): a build of a
 * 1,024-endpoint ring takes some 20 turns, tens of ms on a busy event loop; a larger ring
 * (or a slower loop) takes longer than two changes may be apart.
 */
const MAX_BEHIND_MS = 250;

/**
 * Rings up to this many entries (about 100 equal hosts) are built at once, in about a
 * millisecond; larger ones in the background. At 1,024 hosts (163,840 entries) a build
 * took 5 to 25 ms, and 80 ms the first time in a process, on the event loop, in the first
 * pick (or metrics scrape) after the endpoint change: every request on the sidecar waited.
 */
const SYNC_RING_ENTRIES = 16_384;
/**
 * Entries of work per step of layoutSteps: about 30 µs once V8 has optimized the code, a few
 * ms the first time in a process (interpreted until on-stack replacement).
 */
const STEP_ENTRIES = 4096;
/** A turn of the event loop takes steps until it has worked this long (ms)... */
const TURN_MS = 1;
/** ...or this many steps (64k entries: about half a millisecond warm; and the bound under a fake clock). */
const MAX_STEPS_PER_TURN = 16;

function sameIds(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((id, i) => id === b[i]);
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

/** Runs layoutSteps to the end. */
function finish(steps: Generator<void, RingLayout>): RingLayout {
  for (;;) {
    const r = steps.next();
    if (r.done === true) return r.value;
  }
}

/**
 * The layout of the ring over `hosts` (`counts` entries each), yielding after each step of
 * about STEP_ENTRIES entries of work, so that it can be built over several turns of the event
 * loop (RingHashBalancer.startBuild); run to the end at once (finish) it is the same ring.
 */
function* layoutSteps(hosts: readonly Host[], counts: readonly number[], stats: RingStats): Generator<void, RingLayout> {
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
  // The entries, a range of hosts at a time.
  for (let o = 0, at = 0; o < hosts.length; ) {
    let end = o;
    let n = 0;
    while (end < hosts.length && n < STEP_ENTRIES) n += counts[end++];
    splitMix64Fill(seeds.subarray(2 * o, 2 * end), counts.slice(o, end), hi.subarray(at, at + n), lo.subarray(at, at + n), owners.subarray(at, at + n), o);
    at += n;
    o = end;
    yield;
  }
  // LSD radix sort by the high 32 bits, in three stable passes of 11 bits (2,048 counters
  // stay in the L1 cache, where 65,536 for two 16-bit passes did not): O(n), where a
  // comparison sort of an index array took most of the build at 1,024 hosts.
  const hi2 = new Uint32Array(total);
  const lo2 = new Uint32Array(total);
  const owners2 = new Int32Array(total);
  const bucket = new Uint32Array(RADIX);
  yield* radixPass(hi, lo, owners, hi2, lo2, owners2, 0, bucket);
  yield* radixPass(hi2, lo2, owners2, hi, lo, owners, 11, bucket);
  yield* radixPass(hi, lo, owners, hi2, lo2, owners2, 22, bucket);
  for (let j = 1; j < total; j += STEP_ENTRIES) {
    orderTies(hi2, lo2, owners2, j, Math.min(total, j + STEP_ENTRIES));
    yield;
  }
  const index = new Uint32Array((1 << INDEX_BITS) + 1);
  let k = 0;
  for (let p = 0; p <= 1 << INDEX_BITS; p++) {
    while (k < total && hi2[k] >>> (32 - INDEX_BITS) < p) k++;
    index[p] = k;
  }
  return { hi: hi2, lo: lo2, owners: owners2, index, stats };
}

const RADIX = 1 << 11;

/** One stable counting-sort pass from src to dst on the 11 bits of `hi` at `shift`, a step of STEP_ENTRIES at a time. */
function* radixPass(
  hi: Uint32Array,
  lo: Uint32Array,
  owners: Int32Array,
  toHi: Uint32Array,
  toLo: Uint32Array,
  toOwners: Int32Array,
  shift: number,
  bucket: Uint32Array,
): Generator<void, void> {
  const n = hi.length;
  bucket.fill(0);
  for (let from = 0; from < n; from += STEP_ENTRIES) {
    radixCount(hi, shift, bucket, from, Math.min(n, from + STEP_ENTRIES));
    yield;
  }
  let sum = 0;
  for (let b = 0; b < RADIX; b++) {
    const c = bucket[b];
    bucket[b] = sum;
    sum += c;
  }
  for (let from = 0; from < n; from += STEP_ENTRIES) {
    radixScatter(hi, lo, owners, toHi, toLo, toOwners, shift, bucket, from, Math.min(n, from + STEP_ENTRIES));
    yield;
  }
}

function radixCount(hi: Uint32Array, shift: number, bucket: Uint32Array, from: number, to: number): void {
  for (let j = from; j < to; j++) bucket[(hi[j] >>> shift) & (RADIX - 1)]++;
}

function radixScatter(
  hi: Uint32Array,
  lo: Uint32Array,
  owners: Int32Array,
  toHi: Uint32Array,
  toLo: Uint32Array,
  toOwners: Int32Array,
  shift: number,
  bucket: Uint32Array,
  from: number,
  to: number,
): void {
  for (let j = from; j < to; j++) {
    const d = bucket[(hi[j] >>> shift) & (RADIX - 1)]++;
    toHi[d] = hi[j];
    toLo[d] = lo[j];
    toOwners[d] = owners[j];
  }
}

/**
 * Orders entries with equal high halves (a few per 100,000) by the low half: an insertion
 * sort over runs that are almost always one or two long. Entries equal in all 64 bits (the
 * same address twice) keep the hosts' order. Entries [from, to), those before `from` done (from ≥ 1).
 */
function orderTies(hi: Uint32Array, lo: Uint32Array, owners: Int32Array, from: number, to: number): void {
  for (let j = from; j < to; j++) {
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
const TWO_32 = 4_294_967_296;

export class RingPicker implements Picker {
  readonly size: number;
  /** Per ring host (by index): whether it may be picked; null: all may. */
  private readonly allowed: Uint8Array | null;

  constructor(
    private readonly hosts: readonly Host[],
    private readonly layout: RingLayout,
    private readonly random: Random,
    /** The hosts that may be picked, a subset of `hosts` (buildWithin); absent: all of them. */
    usable: readonly Host[] = hosts,
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
    const owners = this.layout.owners;
    const n = owners.length;
    const allowed = this.allowed;
    let i: number;
    if (ctx.hashKey === undefined) {
      // No key: a random point on the ring, as Envoy takes a random 64-bit hash then
      // (ThreadAwareLoadBalancerBase::LoadBalancerImpl::chooseHost: `hash ? *hash :
      // random_.random()`), so a host is picked in proportion to its entries, its weight.
      // A uniform pick over the hosts gave a host of weight 9 the share of one of weight 1.
      i = this.lowerBound((this.random() * TWO_32) >>> 0, (this.random() * TWO_32) >>> 0);
    } else {
      xxHash64(ctx.hashKey, keyHash);
      i = this.lowerBound(keyHash[0], keyHash[1]);
    }
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
