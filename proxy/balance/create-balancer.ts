import type { Clock, Random } from '../../common/clock.js';
import type { LoadBalancerPolicy } from '../../contract/model.js';
import type { Balancer } from './balancer.js';
import { LeastRequestBalancer } from './least-request.js';
import { PeakEwmaBalancer } from './peak-ewma.js';
import { RandomBalancer } from './random.js';
import { RingHashBalancer, type RingBackground } from './ring-hash.js';
import { RoundRobinBalancer } from './round-robin.js';

/** The Balancer for a policy (`loadBalancer.kind`); `background`: where a ring-hash balancer builds a large ring off the request path. */
export function createBalancer(policy: LoadBalancerPolicy, deps: { clock: Clock; random: Random; background?: RingBackground }): Balancer {
  switch (policy.kind) {
    case 'peak-ewma':
      return new PeakEwmaBalancer(deps.clock, deps.random);
    case 'least-request':
      return new LeastRequestBalancer(deps.random);
    case 'round-robin':
      return new RoundRobinBalancer(deps.random);
    case 'random':
      return new RandomBalancer(deps.random);
    case 'ring-hash':
      return new RingHashBalancer(deps.random, policy.minRingSize, policy.maxRingSize, deps.background);
  }
}
