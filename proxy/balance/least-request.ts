import type { Random } from '../../common/clock.js';
import { EMPTY_PICKER, isExcluded, powerOfTwo, type Balancer, type Host, type PickContext, type Picker } from './balancer.js';

/**
 * Envoy's LEAST_REQUEST (docs arch_overview/upstream/load_balancing/load_balancers.rst):
 * - all weights equal: power of two choices on active (in-flight) requests;
 * - weights differ: an earliest-deadline-first schedule whose weights are recomputed
 *   when a host is re-queued as `weight / (active + 1) ^ active_request_bias`
 *   (bias 1.0 by default), so the weight share holds when idle and busy hosts shed load.
 */
export class LeastRequestBalancer implements Balancer {
  readonly kind = 'least-request' as const;

  constructor(
    private readonly random: Random,
    private readonly activeRequestBias = 1.0,
  ) {}

  build(hosts: readonly Host[]): Picker {
    if (hosts.length === 0) return EMPTY_PICKER;
    const frozen = Object.freeze([...hosts]);
    const w0 = hosts[0].endpoint.weight;
    if (hosts.every((h) => h.endpoint.weight === w0)) return new P2cPicker(frozen, this.random);
    return new EdfPicker(frozen, this.activeRequestBias);
  }
}

const fewerActive = (a: Host, b: Host): boolean => a.load.inflight < b.load.inflight;

class P2cPicker implements Picker {
  readonly size: number;
  constructor(
    private readonly hosts: readonly Host[],
    private readonly random: Random,
  ) {
    this.size = hosts.length;
  }
  pick(ctx: PickContext): Host | null {
    return powerOfTwo(this.hosts, ctx, this.random, fewerActive);
  }
}

/**
 * EDF scheduler (Envoy EdfScheduler): each host has a virtual deadline; pick the smallest,
 * then re-queue it at `deadline + 1 / effectiveWeight`. Binary min-heap over indices;
 * ties break on index so the order is deterministic.
 */
class EdfPicker implements Picker {
  readonly size: number;
  private readonly deadline: Float64Array;
  private readonly heap: Int32Array;
  private current = 0;

  constructor(
    private readonly hosts: readonly Host[],
    private readonly bias: number,
  ) {
    this.size = hosts.length;
    this.deadline = new Float64Array(hosts.length);
    this.heap = new Int32Array(hosts.length);
    for (let i = 0; i < hosts.length; i++) {
      this.deadline[i] = 1 / hosts[i].endpoint.weight;
      this.heap[i] = i;
    }
    for (let i = (hosts.length >> 1) - 1; i >= 0; i--) this.down(i);
  }

  pick(ctx: PickContext): Host | null {
    // Skipped (excluded) hosts keep their deadline and are re-queued untouched.
    let skipped: number[] | undefined;
    let chosen = -1;
    for (let tries = 0; tries < this.size; tries++) {
      const i = this.heap[0];
      if (!isExcluded(this.hosts[i], ctx)) {
        chosen = i;
        break;
      }
      (skipped ??= []).push(i, this.deadline[i]);
      this.deadline[i] = Infinity;
      this.down(0);
    }
    if (skipped) {
      for (let k = 0; k < skipped.length; k += 2) this.deadline[skipped[k]] = skipped[k + 1];
      for (let i = (this.size >> 1) - 1; i >= 0; i--) this.down(i);
    }
    if (chosen < 0) return null;
    const h = this.hosts[chosen];
    this.current = this.deadline[chosen];
    const w = h.endpoint.weight / Math.pow(h.load.inflight + 1, this.bias);
    this.deadline[chosen] = this.current + 1 / w;
    this.down(this.heapPos(chosen));
    return h;
  }

  private heapPos(i: number): number {
    // The picked host is at the root unless exclusions reordered the heap.
    if (this.heap[0] === i) return 0;
    return this.heap.indexOf(i);
  }

  private less(a: number, b: number): boolean {
    const da = this.deadline[a];
    const db = this.deadline[b];
    return da < db || (da === db && a < b);
  }

  private down(pos: number): void {
    const heap = this.heap;
    const n = heap.length;
    for (;;) {
      const l = 2 * pos + 1;
      if (l >= n) return;
      const r = l + 1;
      const m = r < n && this.less(heap[r], heap[l]) ? r : l;
      if (!this.less(heap[m], heap[pos])) return;
      const t = heap[m];
      heap[m] = heap[pos];
      heap[pos] = t;
      pos = m;
    }
  }
}
