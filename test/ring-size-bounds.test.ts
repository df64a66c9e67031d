import { trafficPolicyRefusals } from './helpers/traffic-policy-refusals.js';

/**
 * ring-hash sizes: `minRingSize` and `maxRingSize` are Envoy RingHash's minimum_ring_size and
 * maximum_ring_size, and Envoy refuses a minimum above the maximum (ring_hash_lb.cc). The CRD
 * (a CEL rule, either side defaulted: 1024 and 8388608) and the control plane's parser refuse
 * it alike, at loadBalancer.minRingSize, rather than one of them quietly winning.
 */
test('a minRingSize above maxRingSize is refused by the CRD and the parser; in order, admitted', () => {
  for (const lb of [{ minRingSize: 4096, maxRingSize: 1024 }, { maxRingSize: 1000 }]) {
    const { crd, parser } = trafficPolicyRefusals({ loadBalancer: { kind: 'ring-hash', ...lb } });
    expect(crd).toEqual([expect.objectContaining({ path: 'spec.policy.loadBalancer.minRingSize' })]);
    expect(parser).toMatch(/spec\.policy\.loadBalancer\.minRingSize: must not exceed maxRingSize/);
  }
  for (const lb of [{ minRingSize: 1024, maxRingSize: 1024 }, { minRingSize: 100, maxRingSize: 1000 }, { maxRingSize: 1024 }, { minRingSize: 8388608 }]) {
    expect(trafficPolicyRefusals({ loadBalancer: { kind: 'ring-hash', ...lb } })).toEqual({ crd: 'admitted', parser: 'admitted' });
  }
});
