import type { Endpoint, LoadBalancerKind } from '../../contract/model.js';
import type { Random } from '../../common/clock.js';
import type { EndpointLoad } from './endpoint-load.js';

/**
 * One load-balancing policy per file, all behind this interface. A Balancer turns a set
 * of hosts into an immutable Picker; the owner (proxy/resilience/cluster.ts) rebuilds
 * and swaps the picker when the endpoint set or their health changes, so the per-request
 * path (`pick`) allocates nothing and never re-filters the set. Health filtering is not a
 * balancer concern: proxy/resilience/ejecting-balancer.ts wraps any Balancer.
 */
export interface Host {
  /** endpointKey(endpoint): `ip:port`. */
  readonly key: string;
  readonly endpoint: Endpoint;
  /** Live counters (in-flight, EWMA) shared across picker rebuilds. */
  readonly load: EndpointLoad;
}

export interface PickContext {
  /** ring-hash: the request header value or the source address. */
  readonly hashKey?: string;
  /** Host keys not to pick (already tried by this request): a Set, or the request's TriedKeys. */
  readonly exclude?: { readonly size: number; has(key: string): boolean };
}

export interface Picker {
  /** Number of hosts the picker balances over. */
  readonly size: number;
  /** A host, or null when every host is excluded (or there are none). */
  pick(ctx: PickContext): Host | null;
}

export interface Balancer {
  readonly kind: LoadBalancerKind;
  build(hosts: readonly Host[]): Picker;
  /**
   * A picker over `usable`, a subset of `all` (the hosts left after health filtering), laid
   * out as if it were over `all`: for a balancer whose placement depends on the whole set
   * (ring-hash), so that a host leaving `usable` (ejected, failing checks) moves only the
   * requests it had. Absent: build(usable).
   */
  buildWithin?(all: readonly Host[], usable: readonly Host[]): Picker;
  /** The ring of the last picker built (ring-hash; null before the first or when it had no host): its gauges. */
  ring?(): RingStats | null;
}

/**
 * A hash ring's shape, Envoy's `cluster.<name>.ring_hash_lb.{size,min_hashes_per_host,
 * max_hashes_per_host}` gauges: its entries, and the fewest and most entries one host has.
 */
export interface RingStats {
  readonly size: number;
  readonly minHashesPerHost: number;
  readonly maxHashesPerHost: number;
}

export const EMPTY_PICKER: Picker = Object.freeze({ size: 0, pick: () => null });

/** Uniform integer in [0, n). Guards against a Random returning exactly 1. */
export function randomIndex(random: Random, n: number): number {
  const i = Math.floor(random() * n);
  return i >= n ? n - 1 : i;
}

export function isExcluded(h: Host, ctx: PickContext): boolean {
  return ctx.exclude !== undefined && ctx.exclude.size > 0 && ctx.exclude.has(h.key);
}

/**
 * A uniformly random host that is neither excluded nor `skip`, or null. Without
 * exclusions this is one random draw; with them (only on retries) it counts the allowed
 * hosts and takes the r-th, O(n) and allocation-free.
 */
export function randomAllowed(hosts: readonly Host[], ctx: PickContext, random: Random, skip?: Host): Host | null {
  const n = hosts.length;
  if (n === 0) return null;
  const ex = ctx.exclude;
  if ((!ex || ex.size === 0) && !skip) return hosts[randomIndex(random, n)];
  let allowed = 0;
  for (const h of hosts) if (h !== skip && !isExcluded(h, ctx)) allowed++;
  if (allowed === 0) return null;
  let r = randomIndex(random, allowed);
  for (const h of hosts) {
    if (h === skip || isExcluded(h, ctx)) continue;
    if (r-- === 0) return h;
  }
  return null;
}

/**
 * Power of two choices (Mitzenmacher; Envoy least_request `choice_count` 2, Linkerd P2C):
 * draw two distinct allowed hosts at random and keep the one `better` prefers.
 */
export function powerOfTwo(
  hosts: readonly Host[],
  ctx: PickContext,
  random: Random,
  better: (a: Host, b: Host) => boolean,
): Host | null {
  const n = hosts.length;
  if (n === 0) return null;
  const ex = ctx.exclude;
  if (!ex || ex.size === 0) {
    if (n === 1) return hosts[0];
    const i = randomIndex(random, n);
    let j = randomIndex(random, n - 1);
    if (j >= i) j++;
    const a = hosts[i];
    const b = hosts[j];
    return better(b, a) ? b : a;
  }
  const a = randomAllowed(hosts, ctx, random);
  if (!a) return null;
  const b = randomAllowed(hosts, ctx, random, a);
  if (!b) return a;
  return better(b, a) ? b : a;
}
