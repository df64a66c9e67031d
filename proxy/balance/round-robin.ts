import type { Random } from '../../common/clock.js';
import { EMPTY_PICKER, isExcluded, randomIndex, type Balancer, type Host, type PickContext, type Picker } from './balancer.js';

/**
 * Weighted round robin, nginx's "smooth weighted round robin"
 * (nginx src/http/ngx_http_upstream_round_robin.c, ngx_http_upstream_get_peer): every
 * pick adds each host's weight to its running score, takes the highest score and
 * subtracts the total weight from it. Weights 5/1/1 give a a b a c a a, interleaved
 * rather than bursty. Equal weights take a plain cursor, started at a random offset so
 * that many proxies rebuilding at once do not all hit the first host (as Envoy does).
 */
export class RoundRobinBalancer implements Balancer {
  readonly kind = 'round-robin' as const;

  constructor(private readonly random: Random) {}

  build(hosts: readonly Host[]): Picker {
    if (hosts.length === 0) return EMPTY_PICKER;
    const frozen = Object.freeze([...hosts]);
    const w0 = hosts[0].endpoint.weight;
    if (hosts.every((h) => h.endpoint.weight === w0)) return new CursorPicker(frozen, randomIndex(this.random, hosts.length));
    return new SmoothWeightedPicker(frozen);
  }
}

class CursorPicker implements Picker {
  readonly size: number;
  constructor(
    private readonly hosts: readonly Host[],
    private next: number,
  ) {
    this.size = hosts.length;
  }
  pick(ctx: PickContext): Host | null {
    for (let i = 0; i < this.size; i++) {
      const h = this.hosts[this.next];
      this.next = (this.next + 1) % this.size;
      if (!isExcluded(h, ctx)) return h;
    }
    return null;
  }
}

class SmoothWeightedPicker implements Picker {
  readonly size: number;
  private readonly score: Float64Array;

  constructor(private readonly hosts: readonly Host[]) {
    this.size = hosts.length;
    this.score = new Float64Array(hosts.length);
  }

  pick(ctx: PickContext): Host | null {
    let best = -1;
    let total = 0;
    for (let i = 0; i < this.size; i++) {
      const h = this.hosts[i];
      if (isExcluded(h, ctx)) continue;
      const w = h.endpoint.weight;
      this.score[i] += w;
      total += w;
      if (best < 0 || this.score[i] > this.score[best]) best = i;
    }
    if (best < 0) return null;
    this.score[best] -= total;
    return this.hosts[best];
  }
}
