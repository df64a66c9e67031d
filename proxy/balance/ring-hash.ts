import type { Random } from '../../common/clock.js';
import { EMPTY_PICKER, isExcluded, randomAllowed, type Balancer, type Host, type PickContext, type Picker } from './balancer.js';
import { hash32 } from './hash.js';

/** Envoy's ring-hash upper bound (RingHashLbConfig maximum_ring_size default 8M). */
export const MAX_RING_SIZE = 8_388_608;

/**
 * Consistent hashing on a ketama-style ring (Karger et al.; libketama; Envoy RING_HASH):
 * each host owns several points `hash("ip:port_i")`; a request hashes its key (a header
 * value or the source address) and takes the first point clockwise.
 *
 * Points per host are proportional to weight. The number of points per weight unit is
 * the ring size needed for `minRingSize`, rounded UP to a power of two (ring size ends
 * between min and 2 × min). Envoy scales the ring exactly to the minimum instead, which
 * changes every host's point count whenever the host count changes; with the power-of-two
 * step, adding or removing one host leaves all other hosts' points in place, so only
 * about 1/N of the keys move. Points are hashed with hash.ts (32 bit, no BigInt).
 * Without a hash key the pick is random (Envoy does the same).
 */
export class RingHashBalancer implements Balancer {
  readonly kind = 'ring-hash' as const;

  constructor(
    private readonly random: Random,
    private readonly minRingSize: number,
  ) {}

  build(hosts: readonly Host[]): Picker {
    if (hosts.length === 0) return EMPTY_PICKER;
    return new RingPicker(Object.freeze([...hosts]), this.random, this.ringSize());
  }

  /**
   * The ring of every counted host, on which the hosts that are not `usable` (ejected,
   * failing health checks, breaker open) are walked past, as a retry walks past the hosts
   * it tried. A ring of the usable hosts alone would have its points per weight unit set by
   * their count: at a power-of-two boundary (8 hosts -> 7 at the default 1024 points) every
   * host's points halve or double, and one ejection moved about half of all keys, then
   * again when the host came back. Here only the keys of the host that left move, each to
   * the next usable host clockwise (about 1/N), and come back with it.
   */
  buildWithin(all: readonly Host[], usable: readonly Host[]): Picker {
    if (usable.length === 0) return EMPTY_PICKER;
    if (usable.length === all.length) return this.build(usable);
    return new RingPicker(Object.freeze([...all]), this.random, this.ringSize(), Object.freeze([...usable]));
  }

  private ringSize(): number {
    return Math.min(Math.max(1, this.minRingSize), MAX_RING_SIZE);
  }
}

export class RingPicker implements Picker {
  readonly size: number;
  private readonly hashes: Uint32Array;
  private readonly owners: Int32Array;
  /** Per ring host (by index): whether it may be picked; null: all may. */
  private readonly allowed: Uint8Array | null;

  constructor(
    private readonly hosts: readonly Host[],
    private readonly random: Random,
    minRingSize: number,
    /** The hosts that may be picked, a subset of `hosts` (buildWithin); absent: all of them. */
    private readonly usable: readonly Host[] = hosts,
  ) {
    this.size = usable.length;
    if (usable === hosts) this.allowed = null;
    else {
      const set = new Set(usable);
      this.allowed = Uint8Array.from(hosts, (h) => (set.has(h) ? 1 : 0));
    }
    const minWeight = Math.min(...hosts.map((h) => h.endpoint.weight));
    const units = hosts.map((h) => h.endpoint.weight / minWeight);
    const totalUnits = units.reduce((a, b) => a + b, 0);
    let perUnit = nextPowerOfTwo(Math.ceil(minRingSize / totalUnits));
    const count = (pu: number): number[] => units.map((u) => Math.max(1, Math.round(u * pu)));
    let counts = count(perUnit);
    while (perUnit > 1 && counts.reduce((a, b) => a + b, 0) > MAX_RING_SIZE) counts = count((perUnit /= 2));

    const total = counts.reduce((a, b) => a + b, 0);
    const rawHash = new Uint32Array(total);
    const rawOwner = new Int32Array(total);
    let k = 0;
    hosts.forEach((h, i) => {
      for (let j = 0; j < counts[i]; j++, k++) {
        rawHash[k] = hash32(`${h.key}_${j}`);
        rawOwner[k] = i;
      }
    });
    // Sort points by hash; ties (rare 32-bit collisions) by owner so the ring is stable.
    const order = Array.from({ length: total }, (_, i) => i).sort((a, b) => rawHash[a] - rawHash[b] || rawOwner[a] - rawOwner[b]);
    this.hashes = new Uint32Array(total);
    this.owners = new Int32Array(total);
    order.forEach((src, dst) => {
      this.hashes[dst] = rawHash[src];
      this.owners[dst] = rawOwner[src];
    });
  }

  /** Number of points on the ring (for tests and /clusters). */
  get ringSize(): number {
    return this.hashes.length;
  }

  pick(ctx: PickContext): Host | null {
    if (ctx.hashKey === undefined) return randomAllowed(this.usable, ctx, this.random);
    const n = this.hashes.length;
    const allowed = this.allowed;
    let i = this.lowerBound(hash32(ctx.hashKey));
    // Walk clockwise past excluded hosts (a retry goes to the next host on the ring) and
    // past those that may not be picked (buildWithin).
    for (let step = 0; step < n; step++, i++) {
      if (i === n) i = 0;
      const o = this.owners[i];
      if (allowed !== null && allowed[o] === 0) continue;
      const h = this.hosts[o];
      if (!isExcluded(h, ctx)) return h;
    }
    return null;
  }

  private lowerBound(h: number): number {
    let lo = 0;
    let hi = this.hashes.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.hashes[mid] < h) lo = mid + 1;
      else hi = mid;
    }
    return lo === this.hashes.length ? 0 : lo;
  }
}

function nextPowerOfTwo(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}
