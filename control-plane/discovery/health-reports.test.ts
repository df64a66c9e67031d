import { DEFAULT_POLICY } from '../../contract/defaults.js';
import type { Ejection } from '../../contract/discovery.js';
import type { Endpoint, Service } from '../../contract/model.js';
import { validateHealthReport } from './health-reports.js';

/**
 * A report's entries are checked against the endpoints the reporter was sent. That check
 * must not scan a port's endpoint list per entry: against a large service a full report was
 * 10^8 comparisons, seconds of the control plane's only thread (no push to any proxy
 * meanwhile, health-based withdrawal included). Counted in reads of the endpoint list, not
 * timed: each endpoint is read once to index the list, and not again by later reports
 * against the same list (the store never changes one; a commit makes new ones).
 */
test('a report costs one read of each endpoint of the port it names, however many entries it has, and none for the next report', () => {
  const list: Endpoint[] = Array.from({ length: 2_000 }, (_, i) => ({
    address: `10.1.${i >> 8}.${i & 255}`, port: 8080, proxyPort: 15006, identity: 'spiffe://cluster.local/ns/shop/sa/web', weight: 1, zone: 'a', ready: true,
  }));
  let reads = 0;
  const counted = new Proxy(list, {
    get(target, key, receiver) {
      if (typeof key === 'string' && /^\d+$/.test(key)) reads++;
      return Reflect.get(target, key, receiver) as unknown;
    },
  });
  const web: Service = { name: 'web', namespace: 'shop', clusterIPs: ['10.96.0.1'], policy: DEFAULT_POLICY, ports: [{ name: 'http', port: 80, protocol: 'http1', endpoints: counted }] };
  const view = new Map([['web.shop', web]]);
  const entry = (address: string): Ejection => ({ service: 'web.shop', servicePort: 80, address, port: 8080, kind: 'connect-failure', reason: '', ejectedForMs: 0 });
  // 1,000 endpoints it was never sent, and one it was.
  const report = [...Array.from({ length: 1_000 }, (_, i) => entry(`10.9.${i >> 8}.${i & 255}`)), entry(list[1_999].address)];

  const first = validateHealthReport(report, [view]);
  expect(first.accepted.map((e) => e.address)).toEqual([list[1_999].address]);
  expect(first.rejected).toBe(1_000);
  expect(reads).toBe(list.length);

  const second = validateHealthReport(report, [view]);
  expect(second.accepted.map((e) => e.address)).toEqual([list[1_999].address]);
  expect(reads).toBe(list.length);
});
