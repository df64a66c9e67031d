import type { Clock, Random } from '../../common/clock.js';
import { EMPTY_PICKER, powerOfTwo, type Balancer, type Host, type PickContext, type Picker } from './balancer.js';

/**
 * Linkerd's default balancer: power of two choices over peak-EWMA cost
 * (linkerd2-proxy linkerd/proxy/balance/src/lib.rs: `p2c` over tower's `PeakEwma`;
 * defaults default_rtt 30 ms, decay 10 s from linkerd2 policy-controller outbound.rs).
 * Cost = RTT estimate × (in-flight + 1) (tower-load peak_ewma.rs); the estimator lives in
 * endpoint-load.ts. Endpoint weights divide the cost (our extension: equal weights give
 * exactly Linkerd's behaviour, a weight-2 endpoint looks half as loaded). Weights bias the
 * comparison, they are not traffic shares: at equal latency and load the heavier endpoint
 * wins every comparison it is in (docs/resilience.md, "Load balancing").
 */
export class PeakEwmaBalancer implements Balancer {
  readonly kind = 'peak-ewma' as const;

  constructor(
    private readonly clock: Clock,
    private readonly random: Random,
  ) {}

  build(hosts: readonly Host[]): Picker {
    if (hosts.length === 0) return EMPTY_PICKER;
    return new PeakEwmaPicker(Object.freeze([...hosts]), this.clock, this.random);
  }
}

class PeakEwmaPicker implements Picker {
  readonly size: number;
  private now = 0;
  private readonly better = (a: Host, b: Host): boolean => {
    const la = a.load;
    const lb = b.load;
    // Read both (tower's load() decays the estimate on every read, sampled or not).
    const ca = la.cost(this.now);
    const cb = lb.cost(this.now);
    // Two endpoints without a sample both hold the default RTT (tower `PeakEwma::new`,
    // Linkerd's 30 ms): they compare on in-flight requests and weight only, so an idle pair
    // ties and powerOfTwo keeps its first random draw. Their decayed defaults would differ
    // by creation time alone, and with one `now` per pick the oldest endpoint would win
    // every comparison, however slow it turns out to be.
    if (!la.sampled && !lb.sampled) return (la.inflight + 1) / a.endpoint.weight < (lb.inflight + 1) / b.endpoint.weight;
    return ca / a.endpoint.weight < cb / b.endpoint.weight;
  };

  constructor(
    private readonly hosts: readonly Host[],
    private readonly clock: Clock,
    private readonly random: Random,
  ) {
    this.size = hosts.length;
  }

  pick(ctx: PickContext): Host | null {
    this.now = this.clock.approxNow();
    return powerOfTwo(this.hosts, ctx, this.random, this.better);
  }
}
