import { ConfigError } from '../common/schema.js';
import { RouteTable } from '../proxy/outbound/route-table.js';
import { parseServices } from './parse.js';

/** Addresses are kept in the kernel's spelling, so an IPv6 original destination finds its route. */
const svc = (clusterIP: string, address: string) => [{ name: 'db', namespace: 'shop', clusterIPs: [clusterIP], ports: [{ port: 5432, endpoints: [{ address, port: 5432 }] }] }];

test('IPv6 endpoint and ClusterIP addresses are canonicalised (RFC 5952) and match what SO_ORIGINAL_DST prints', () => {
  const [s] = parseServices(svc('FD00:0:0:100:0:0:0:0A', 'fd00:0000:0000:0000:0000:0000:0000:0003'), 'services');
  expect([s.clusterIPs, s.ports[0].endpoints[0].address]).toEqual([['fd00:0:0:100::a'], 'fd00::3']);
  const table = new RouteTable({ version: '1', source: 'test', services: [s] }, 'shop');
  expect(table.byAddress('fd00::3', 5432)?.service.name).toBe('db');
  expect(table.byAddress('fd00:0:0:100::a', 5432)?.service.name).toBe('db');
  // IPv4 is unchanged.
  expect(parseServices(svc('10.96.0.10', '10.1.2.3'), 'services')[0].ports[0].endpoints[0].address).toBe('10.1.2.3');
});

test('an address that is not an IP is refused with its field path', () => {
  expect(() => parseServices(svc('10.96.0.10', 'fd00::3::4'), 'services')).toThrow(ConfigError);
  expect(() => parseServices(svc('10.96.0.10', 'fd00::3::4'), 'services')).toThrow(/services\[0\]\.ports\[0\]\.endpoints\[0\]\.address: expected an IPv4 or IPv6 address/);
  expect(() => parseServices(svc('10.96.0', '10.1.2.3'), 'services')).toThrow(/clusterIPs\[0\]/);
});
