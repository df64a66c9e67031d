import { atOtherAddresses, endpointKey, type Endpoint } from './model.js';

describe('atOtherAddresses', () => {
  const ep: Endpoint = {
    address: '10.1.0.5', port: 8080, proxyPort: 15006, identity: 'spiffe://cluster.local/ns/shop/sa/web', weight: 1, zone: 'a', ready: true,
    workload: { name: 'web', namespace: 'shop', app: 'web', version: 'v1' }, additionalAddresses: ['fd00::5', '10.2.0.5'],
  };

  test('the same endpoint at each other address: pod, port, identity and proxy port kept, no addresses of its own', () => {
    const alts = atOtherAddresses(ep);
    expect(alts.map((a) => a.address)).toEqual(['fd00::5', '10.2.0.5']);
    for (const a of alts) {
      expect({ ...a, address: ep.address }).toEqual({ ...ep, additionalAddresses: undefined });
      expect(a.additionalAddresses).toBeUndefined();
      expect(Object.isFrozen(a)).toBe(true);
    }
    expect(alts.map(endpointKey)).toEqual(['[fd00::5]:8080', '10.2.0.5:8080']);
    // The endpoint itself is left as it is.
    expect(ep.additionalAddresses).toEqual(['fd00::5', '10.2.0.5']);
  });

  test('one address: none, the same empty list every time (no allocation per endpoint)', () => {
    const single: Endpoint = { ...ep, additionalAddresses: undefined };
    expect(atOtherAddresses(single)).toEqual([]);
    expect(atOtherAddresses(single)).toBe(atOtherAddresses({ ...ep, additionalAddresses: [] }));
  });
});
