import { FakeClock, seededRandom } from '../../common/clock.js';
import { parseTrafficPolicy } from '../../contract/parse.js';
import { createBalancer } from './create-balancer.js';
import type { Host, Picker } from './balancer.js';
import { splitMix64Fill, xxHash64 } from './hash.js';
import { entriesPerHost, RingHashBalancer, type RingPicker } from './ring-hash.js';
import { countPicks, makeHosts } from './test-hosts.js';

const keys = Array.from({ length: 5000 }, (_, i) => `user-${i}`);
/** Enough keys to see 1/N of them move at N = 1,024 (about 50). */
const manyKeys = Array.from({ length: 50_000 }, (_, i) => `k${i}`);

const ring = (hosts: readonly Host[], minRingSize = 1024, maxRingSize?: number): RingPicker =>
  new RingHashBalancer(seededRandom(1), minRingSize, maxRingSize).build(hosts) as RingPicker;

/** Share of `keyList` each host gets, by host key. */
function shares(picker: Picker, keyList: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const k of keyList) {
    const h = picker.pick({ hashKey: k })!;
    counts.set(h.key, (counts.get(h.key) ?? 0) + 1);
  }
  for (const [k, c] of counts) counts.set(k, c / keyList.length);
  return counts;
}

/** The keys whose host differs between two pickers, as [key, before, after]. */
function moves(before: Picker, after: Picker, keyList: readonly string[]): [string, string, string][] {
  const out: [string, string, string][] = [];
  for (const k of keyList) {
    const was = before.pick({ hashKey: k })!.key;
    const now = after.pick({ hashKey: k })!.key;
    if (was !== now) out.push([k, was, now]);
  }
  return out;
}

describe('RingHashBalancer', () => {
  it('maps the same key to the same host, across rebuilds too', () => {
    const hosts = makeHosts([1, 1, 1, 1, 1]);
    const a = new RingHashBalancer(seededRandom(1), 1024).build(hosts);
    const b = new RingHashBalancer(seededRandom(99), 1024).build([...hosts].reverse());
    for (const k of keys.slice(0, 500)) {
      const h = a.pick({ hashKey: k })!;
      expect(a.pick({ hashKey: k })!.key).toBe(h.key);
      expect(b.pick({ hashKey: k })!.key).toBe(h.key);
    }
  });

  it('builds at least minRingSize points, proportional to weight', () => {
    const picker = ring(makeHosts([1, 3]));
    expect(picker.ringSize).toBeGreaterThanOrEqual(1024);
    expect(picker.ringSize).toBeLessThan(2048);
  });

  it('spreads keys evenly and by weight', () => {
    const hosts = makeHosts([1, 1, 2]);
    const counts = shares(ring(hosts), keys);
    [0.25, 0.25, 0.5].forEach((share, i) => expect(Math.abs(counts.get(hosts[i].key)! - share)).toBeLessThan(0.06));
  });

  it('removing one of N hosts moves only the keys it owned (~1/N)', () => {
    const hosts = makeHosts(Array(10).fill(1));
    const before = ring(hosts);
    const removed = hosts[3];
    const after = ring(hosts.filter((h) => h !== removed));
    const moved = moves(before, after, keys);
    for (const [, was] of moved) expect(was).toBe(removed.key); // nothing else moves
    expect(moved.length / keys.length).toBeGreaterThan(0.05);
    expect(moved.length / keys.length).toBeLessThan(0.15);
  });

  // The counts where a ring scaled to the host count changes every host's entries: a ring
  // rounded to powers of two halved them between 7 and 8, 63 and 64, 1023 and 1024 hosts
  // (about half of all keys moved); Envoy's exact scaling changes them at every count
  // (about 2/N), and goes from 2 entries per host to 1 between 1023 and 1024.
  const boundaries = [7, 8, 63, 64, 1023];

  it('adding one host at counts around powers of two moves only keys to it, about 1/N', () => {
    const failures: string[] = [];
    for (const n of boundaries) {
      const hosts = makeHosts(Array(n + 1).fill(1));
      const before = ring(hosts.slice(0, n));
      const after = ring(hosts);
      const moved = moves(before, after, manyKeys);
      const fraction = moved.length / manyKeys.length;
      const elsewhere = moved.filter(([, , now]) => now !== hosts[n].key).length;
      if (fraction >= 2.5 / (n + 1) || fraction < 0.3 / (n + 1) || elsewhere > 0) {
        failures.push(`${n} -> ${n + 1}: ${(fraction * 100).toFixed(2)} % moved (1/N = ${(100 / (n + 1)).toFixed(2)} %), ${elsewhere} not to the new host`);
      }
    }
    expect(failures).toEqual([]);
  });

  it('removing one host at counts around powers of two moves only its keys, about 1/N', () => {
    const failures: string[] = [];
    for (const n of boundaries.map((b) => b + 1)) {
      const hosts = makeHosts(Array(n).fill(1));
      const removed = hosts[n >> 1];
      const before = ring(hosts);
      const after = ring(hosts.filter((h) => h !== removed));
      const moved = moves(before, after, manyKeys);
      const fraction = moved.length / manyKeys.length;
      const elsewhere = moved.filter(([, was]) => was !== removed.key).length;
      if (fraction >= 2.5 / n || fraction < 0.3 / n || elsewhere > 0) {
        failures.push(`${n} -> ${n - 1}: ${(fraction * 100).toFixed(2)} % moved (1/N = ${(100 / n).toFixed(2)} %), ${elsewhere} not from the removed host`);
      }
    }
    expect(failures).toEqual([]);
  });

  it('changing one host weight moves only keys to that host', () => {
    // 7 hosts of weight 1, then one of them at weight 2: 7 -> 8 weight units.
    const hosts = makeHosts(Array(7).fill(1));
    const heavier = makeHosts([1, 1, 1, 2, 1, 1, 1]);
    const moved = moves(ring(hosts), ring(heavier), manyKeys);
    expect(moved.filter(([, , now]) => now !== heavier[3].key)).toEqual([]);
    expect(moved.length / manyKeys.length).toBeLessThan(2.5 / 8);
  });

  it('gives equal-weight hosts equal shares of the keys, within 35 %', () => {
    // 160 entries a host spread its share by about ±8 %; 50,000 keys over 256 hosts add ±7 % of sampling.
    for (const n of [64, 256]) {
      const hosts = makeHosts(Array(n).fill(1));
      const got = shares(ring(hosts), manyKeys);
      const off = hosts.filter((h) => Math.abs((got.get(h.key) ?? 0) * n - 1) > 0.35).length;
      expect({ n, off }).toEqual({ n, off: 0 });
    }
  });

  it('gives hosts shares in proportion to their weights', () => {
    const weights = Array.from({ length: 32 }, (_, i) => 1 + (i % 4)); // 1, 2, 3, 4, 1, 2 ...
    const hosts = makeHosts(weights);
    const total = weights.reduce((a, b) => a + b, 0);
    const got = shares(ring(hosts), manyKeys);
    const off = hosts.filter((h, i) => Math.abs((got.get(h.key) ?? 0) / (weights[i] / total) - 1) > 0.3);
    expect(off.map((h) => h.key)).toEqual([]);
    // Entries exactly in proportion: 160 per unit of the lightest weight.
    expect(entriesPerHost([1, 2, 3, 4], 1024)).toEqual([160, 320, 480, 640]);
    expect(entriesPerHost([2, 4, 6, 8], 1024)).toEqual([160, 320, 480, 640]);
  });

  it('keeps the ring at least minRingSize and at most max(minRingSize + N, 160 N) entries', () => {
    for (const n of [1, 2, 5, 7, 64, 1024, 3000]) {
      const size = ring(makeHosts(Array(n).fill(1))).ringSize;
      expect({ n, atLeastMin: size >= 1024, bounded: size <= Math.max(1024 + n, 160 * n) }).toEqual({ n, atLeastMin: true, bounded: true });
    }
    // A larger minimum scales a few hosts up as Envoy does (ceil(min / N) entries each).
    expect(ring(makeHosts([1, 1, 1]), 10_000).ringSize).toBe(3 * 3334);
  });

  it('caps the ring at maxRingSize, one entry per host at least (Envoy maximum_ring_size)', () => {
    expect(ring(makeHosts(Array(100).fill(1)), 1024, 4096).ringSize).toBe(100 * 40);
    expect(entriesPerHost([1, 1_000_000], 1024)).toEqual([8, 8_388_599]);
    expect(entriesPerHost([1, 1, 1], 1024, 2)).toEqual([1, 1, 1]);
    // minRingSize above maxRingSize: the maximum wins.
    expect(entriesPerHost([1, 1], 8192, 4096)).toEqual([2048, 2048]);
  });

  it('takes minRingSize and maxRingSize from the policy, and refuses a minimum above the maximum', () => {
    const policy = (loadBalancer: object) => parseTrafficPolicy({ loadBalancer: { kind: 'ring-hash', ...loadBalancer } }, 'spec.policy').loadBalancer;
    expect(policy({})).toMatchObject({ minRingSize: 1024, maxRingSize: 8_388_608 });
    const deps = { clock: new FakeClock(0), random: seededRandom(1) };
    const capped = createBalancer(policy({ maxRingSize: 4096 }), deps).build(makeHosts(Array(100).fill(1))) as RingPicker;
    expect(capped.ringSize).toBe(4000);
    const raised = createBalancer(policy({ minRingSize: 10_000 }), deps).build(makeHosts([1, 1, 1])) as RingPicker;
    expect(raised.ringSize).toBe(3 * 3334);
    expect(() => policy({ minRingSize: 4096, maxRingSize: 1024 })).toThrow(/spec\.policy\.loadBalancer\.minRingSize: must not exceed maxRingSize \(1024\), got 4096/);
  });

  it('sends a key to the owner of the first entry at or after its xxHash64, wrapping past the last (brute force)', () => {
    const hosts = makeHosts([1, 2, 1, 3, 1]);
    const counts = entriesPerHost(hosts.map((h) => h.endpoint.weight), 1024);
    const total = counts.reduce((a, b) => a + b, 0);
    const out = new Uint32Array(2);
    const seeds = new Uint32Array(2 * hosts.length);
    hosts.forEach((h, o) => {
      xxHash64(h.key, out);
      seeds.set(out, 2 * o);
    });
    const [hi, lo, owners] = [new Uint32Array(total), new Uint32Array(total), new Int32Array(total)];
    splitMix64Fill(seeds, counts, hi, lo, owners);
    const entries = Array.from(owners, (owner, k) => ({ at: (BigInt(hi[k]) << 32n) | BigInt(lo[k]), owner })).sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
    const picker = ring(hosts);
    let wrapped = 0;
    for (const key of keys) {
      xxHash64(key, out);
      const at = (BigInt(out[0]) << 32n) | BigInt(out[1]);
      const next = entries.find((e) => e.at >= at);
      if (!next) wrapped++;
      expect(picker.pick({ hashKey: key })!.key).toBe(hosts[(next ?? entries[0]).owner].key);
    }
    expect(wrapped).toBeGreaterThan(0);
  });

  it('walks to the next host on the ring for excluded hosts; random without a key', () => {
    const hosts = makeHosts([1, 1, 1]);
    const picker = ring(hosts);
    const first = picker.pick({ hashKey: 'k' })!;
    const second = picker.pick({ hashKey: 'k', exclude: new Set([first.key]) })!;
    expect(second.key).not.toBe(first.key);
    expect(picker.pick({ hashKey: 'k', exclude: new Set([first.key]) })!.key).toBe(second.key);
    expect(picker.pick({ hashKey: 'k', exclude: new Set(hosts.map((h) => h.key)) })).toBeNull();
    const seen = new Set(Array.from({ length: 200 }, () => picker.pick({})!.key));
    expect(seen.size).toBe(3);
  });

  it('lays the ring over every counted host; an unusable one only hands its keys to the next', () => {
    const hosts = makeHosts(Array(8).fill(1));
    const balancer = new RingHashBalancer(seededRandom(1), 1024);
    const full = balancer.build(hosts) as RingPicker;
    const ejected = hosts[2];
    const within = balancer.buildWithin(hosts, hosts.filter((h) => h !== ejected)) as RingPicker;
    expect(within.size).toBe(7);
    expect(within.ringSize).toBe(full.ringSize);
    const moved = moves(full, within, manyKeys.slice(0, 20_000));
    expect(moved.filter(([, was]) => was !== ejected.key)).toEqual([]);
    expect(moved.length).toBeGreaterThan(0);
    expect(moves(full, balancer.build(hosts), manyKeys.slice(0, 20_000))).toEqual([]);
  });

  it('a ring built in the background, a step at a time, is the ring built at once: uneven weights, scaled to a cap (adv54)', () => {
    const random = seededRandom(5);
    const hosts = makeHosts(Array.from({ length: 300 }, () => 1 + Math.floor(random() * 5)));
    const clock = new FakeClock();
    for (const max of [undefined, 20_000]) {
      const turns: (() => void)[] = [];
      let ready = 0;
      const bg = new RingHashBalancer(seededRandom(1), 1024, max, { defer: (fn) => turns.push(fn), now: () => clock.now(), ready: () => ready++ });
      const during = bg.build(hosts);
      expect(turns.length).toBe(1); // nothing built yet: picks are random meanwhile
      expect(bg.ring()).toBeNull();
      expect(during.pick({ hashKey: 'user-1' })).not.toBeNull();
      let n = 0;
      for (let fn = turns.shift(); fn; fn = turns.shift()) {
        n++;
        fn();
      }
      expect(n).toBeGreaterThan(1);
      expect(ready).toBe(1);
      const built = bg.build(hosts) as RingPicker;
      const sync = new RingHashBalancer(seededRandom(1), 1024, max);
      const once = sync.build(hosts) as RingPicker;
      expect(built.ringSize).toBe(once.ringSize);
      expect(bg.ring()).toEqual(sync.ring());
      expect(moves(once, built, keys)).toEqual([]);
    }
  });
});

describe('RingHashBalancer while a ring is built in the background', () => {
  /** A balancer whose background turns are run by hand (`turns`), on a fake clock. */
  function background(minRingSize = 1024, max?: number) {
    const clock = new FakeClock();
    const turns: (() => void)[] = [];
    let ready = 0;
    const balancer = new RingHashBalancer(seededRandom(1), minRingSize, max, { defer: (fn) => turns.push(fn), now: () => clock.now(), ready: () => ready++ });
    return { clock, turns, balancer, ready: () => ready };
  }

  /**
   * Endpoint sets that change one endpoint at a time: set i is endpoints i .. i+size-1 of a
   * list (each change adds one and removes the oldest), of weight 1.
   */
  function churn(size: number, changes: number): Host[][] {
    const list = Array.from({ length: size + changes }, (_, i) => {
      const [h] = makeHosts([1]);
      return { ...h, key: `10.1.${i >> 8}.${i & 255}:80` };
    });
    return Array.from({ length: changes + 1 }, (_, i) => list.slice(i, i + size));
  }

  /**
   * The newest of `sets[from..to]` whose ring `picker` serves (null: none): the picks of a
   * ring built at once over that set, with the endpoints that left since walked past.
   */
  const rings = new Map<readonly Host[], RingHashBalancer>();
  function served(picker: Picker, sets: readonly Host[][], from: number, to: number): number | null {
    const now = new Set(sets[to].map((h) => h.key));
    const sample = keys.slice(0, 300);
    for (let j = to; j >= Math.max(0, from); j--) {
      // One balancer per set: its layout is built once, and reused by buildWithin.
      let balancer = rings.get(sets[j]);
      if (balancer === undefined) rings.set(sets[j], (balancer = new RingHashBalancer(seededRandom(1), 1024)));
      const ring = balancer.buildWithin(sets[j], sets[j].filter((h) => now.has(h.key)));
      if (sample.every((k) => ring.pick({ hashKey: k })?.key === picker.pick({ hashKey: k })?.key)) return j;
    }
    return null;
  }

  it('endpoints changing faster than a ring is built: builds still finish, and the ring served is never more than a few changes behind (adv62)', () => {
    // 130 endpoints (20,800 entries, built in the background): 3 turns per build, and a
    // change at every turn, on a clock that never moves (so the count bound alone is at
    // work). Before: each change abandoned the build under way, no ring was ever finished,
    // and every pick was the stand-in's (random) for as long as the changes went on.
    const sets = churn(130, 40);
    const { turns, balancer, ready } = background();
    const lags: number[] = [];
    for (let i = 0; i < sets.length; i++) {
      balancer.build(sets[i]);
      turns.shift()?.();
      if (i < 12) continue;
      const picker = balancer.build(sets[i]);
      const j = served(picker, sets, i - 12, i);
      lags.push(j === null ? Infinity : i - j);
    }
    expect(ready()).toBeGreaterThan(5);
    // At most two builds abandoned in a row (2 changes), then one finishes (3) and the
    // newest set is built next (3): at most 8 changes behind, whatever the churn lasts.
    expect(Math.max(...lags)).toBeLessThanOrEqual(8);
    // Once the changes stop, the newest set's ring is served, exactly as one built at once.
    for (let fn = turns.shift(); fn; fn = turns.shift()) fn();
    const last = sets[sets.length - 1];
    expect(moves(new RingHashBalancer(seededRandom(1), 1024).build(last), balancer.build(last), keys)).toEqual([]);
  });

  it('a build under way for longer than the bound is not abandoned for a newer set: it finishes, then the newer one is built (adv62)', () => {
    const sets = churn(130, 2);
    const { clock, turns, balancer, ready } = background();
    balancer.build(sets[0]);
    turns.shift()!();
    // One change early on abandons the build (the first of a run)...
    balancer.build(sets[1]);
    turns.shift()!();
    turns.shift()!(); // the abandoned build's turn ends there
    // ...but when set 2 comes, the ring served has been behind for 300 ms: set 1's build carries on.
    clock.advance(300);
    balancer.build(sets[2]);
    while (ready() === 0) turns.shift()!();
    expect(ready()).toBe(1);
    expect(served(balancer.build(sets[2]), sets, 0, 2)).toBe(1);
    for (let fn = turns.shift(); fn; fn = turns.shift()) fn();
    expect(ready()).toBe(2);
    expect(served(balancer.build(sets[2]), sets, 0, 2)).toBe(2);
  });

  it("a cluster's first ring, until it is built: picks in proportion to the endpoints' weights, as the ring's (adv62)", () => {
    // 60 endpoints of weight 1 and 60 of weight 3: 38,400 entries, built in the background.
    const hosts = makeHosts([...Array(60).fill(1), ...Array(60).fill(3)]);
    const heavy = new Set(hosts.slice(60).map((h) => h.key));
    const { turns, balancer } = background();
    const standIn = balancer.build(hosts);
    expect(balancer.ring()).toBeNull();
    expect(turns.length).toBe(1); // not built yet
    let heavyPicks = 0;
    for (const k of keys) if (heavy.has(standIn.pick({ hashKey: k })!.key)) heavyPicks++;
    // 3/4 of the weight: 0.75 ± 0.02 over 5,000 picks (an unweighted stand-in gave 0.5).
    expect(Math.abs(heavyPicks / keys.length - 0.75)).toBeLessThan(0.03);
    // Retries still walk past the endpoints tried.
    const tried = new Set(hosts.slice(1).map((h) => h.key));
    expect(standIn.pick({ hashKey: 'k', exclude: tried })!.key).toBe(hosts[0].key);
  });
});

describe('RingPicker without a hash key', () => {
  it('picks a random point on the ring (Envoy), so in proportion to the weights; ejected hosts are walked past (adv62)', () => {
    const hosts = makeHosts([1, 3, 1, 3]);
    const balancer = new RingHashBalancer(seededRandom(7), 1024);
    const got = countPicks(() => balancer.build(hosts).pick({}), 20_000);
    // Weights 1:3:1:3 over 8 units; 160 entries per unit, each share within about ±8 %.
    hosts.forEach((h, i) => expect({ host: i, share: Math.abs(got.get(h.key)! / 20_000 / (h.endpoint.weight / 8) - 1) < 0.15 }).toEqual({ host: i, share: true }));
    const within = balancer.buildWithin(hosts, [hosts[0], hosts[1], hosts[2]]);
    const ejected = countPicks(() => within.pick({ exclude: new Set([hosts[0].key]) }), 2000);
    expect([...ejected.keys()].sort()).toEqual([hosts[1].key, hosts[2].key].sort());
  });
});
