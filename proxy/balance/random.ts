import type { Random } from '../../common/clock.js';
import { EMPTY_PICKER, isExcluded, type Balancer, type Host, type PickContext, type Picker } from './balancer.js';

/**
 * Weighted random (Envoy RANDOM; weights as in its weighted host selection): a draw in
 * [0, total weight) located by binary search over prefix sums built once per picker.
 */
export class RandomBalancer implements Balancer {
  readonly kind = 'random' as const;

  constructor(private readonly random: Random) {}

  build(hosts: readonly Host[]): Picker {
    if (hosts.length === 0) return EMPTY_PICKER;
    return new WeightedRandomPicker(Object.freeze([...hosts]), this.random);
  }
}

class WeightedRandomPicker implements Picker {
  readonly size: number;
  /** prefix[i] = sum of weights of hosts[0..i]. */
  private readonly prefix: Float64Array;
  private readonly total: number;

  constructor(
    private readonly hosts: readonly Host[],
    private readonly random: Random,
  ) {
    this.size = hosts.length;
    this.prefix = new Float64Array(hosts.length);
    let sum = 0;
    hosts.forEach((h, i) => (this.prefix[i] = sum += h.endpoint.weight));
    this.total = sum;
  }

  pick(ctx: PickContext): Host | null {
    const ex = ctx.exclude;
    if (!ex || ex.size === 0) return this.hosts[this.locate(this.random() * this.total)];
    // Retry path: weighted draw over the hosts that are still allowed.
    let allowed = 0;
    for (const h of this.hosts) if (!isExcluded(h, ctx)) allowed += h.endpoint.weight;
    if (allowed === 0) return null;
    let r = this.random() * allowed;
    let last: Host | null = null;
    for (const h of this.hosts) {
      if (isExcluded(h, ctx)) continue;
      last = h;
      r -= h.endpoint.weight;
      if (r < 0) return h;
    }
    return last;
  }

  /** First index whose prefix sum exceeds x. */
  private locate(x: number): number {
    let lo = 0;
    let hi = this.size - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.prefix[mid] > x) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }
}
