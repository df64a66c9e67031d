import { RouteTable } from './route-table.js';
import { DEFAULT_POLICY } from '../../contract/defaults.js';
import type { Endpoint, Service } from '../../contract/model.js';

const svc = (name: string, namespace: string, ports: number[]): Service => ({
  name,
  namespace,
  clusterIPs: ['10.0.0.1'],
  policy: DEFAULT_POLICY,
  ports: ports.map((port) => ({ name: `p${port}`, port, protocol: 'http1', endpoints: [] })),
});

const table = () => new RouteTable({ version: '1', source: 'static', services: [svc('web', 'default', [80, 8080]), svc('api', 'other', [9000])] }, 'default');

test('authorities as Kubernetes DNS spells them resolve to the service port', () => {
  const t = table();
  const route = (a: string) => {
    const r = t.byAuthority(a);
    return r ? `${r.service.name}.${r.service.namespace}:${r.port.port}` : undefined;
  };
  expect(route('web')).toBe('web.default:80');
  expect(route('web:8080')).toBe('web.default:8080');
  expect(route('WEB.default.svc.cluster.local.')).toBe('web.default:80');
  expect(route('api.other:9000')).toBe('api.other:9000');
  expect(route('api.other')).toBe('api.other:9000'); // a single port needs no port in the authority
  expect(route('web:81')).toBeUndefined();
  expect(route('10.0.0.1:8080')).toBe('web.default:8080');
  expect(route('nope')).toBeUndefined();
});

test('lookups are memoised per table (same Route object) and the memo is bounded', () => {
  const t = table();
  const a = t.byAuthority('web.default');
  expect(a).toBeDefined();
  expect(t.byAuthority('web.default')).toBe(a);
  expect(t.byAuthority('missing')).toBeUndefined();
  expect(t.byAuthority('missing')).toBeUndefined();
  // Client-chosen authorities cannot grow the memo without bound.
  for (let i = 0; i < 5000; i++) t.byAuthority(`junk-${i}`);
  expect((t as unknown as { authorityCache: Map<string, unknown> }).authorityCache.size).toBeLessThanOrEqual(1024);
  expect(t.byAuthority('web:8080')?.port.port).toBe(8080);
});

const pod = (i: number, port = 5432): Endpoint => ({ address: `10.244.0.${i}`, port, proxyPort: 15006, identity: 'spiffe://cluster.local/ns/data/sa/db', weight: 1, zone: '', ready: true });

/** A headless Service (clusterIP None: no ClusterIPs) over three pods, and a ClusterIP Service over the same pods. */
const podTable = () => {
  const headless: Service = { name: 'db', namespace: 'data', clusterIPs: [], policy: DEFAULT_POLICY, ports: [{ name: 'pg', port: 5432, protocol: 'opaque', endpoints: [pod(1), pod(2), pod(3)] }] };
  const balanced: Service = { name: 'db-read', namespace: 'data', clusterIPs: ['10.96.0.9'], policy: DEFAULT_POLICY, ports: [{ name: 'pg', port: 5432, protocol: 'opaque', endpoints: [pod(1), pod(2), pod(3)] }] };
  return new RouteTable({ version: '1', source: 'static', services: [balanced, headless] }, 'default');
};

test('an endpoint address (pod IP:port) routes to that endpoint only; a ClusterIP or a name to the whole service', () => {
  const t = podTable();
  const r = t.byAddress('10.244.0.2', 5432)!;
  expect(r.endpoint).toMatchObject({ address: '10.244.0.2', port: 5432 });
  // The headless service is the one whose DNS hands out pod IPs, whatever the order.
  expect(`${r.service.name}:${r.port.port}`).toBe('db:5432');
  expect(t.byAddress('::ffff:10.244.0.3', 5432)?.endpoint?.address).toBe('10.244.0.3');
  expect(t.byAuthority('10.244.0.1:5432')?.endpoint?.address).toBe('10.244.0.1');
  expect(t.byAddress('10.244.0.2', 5433)).toBeUndefined();
  expect(t.byAddress('10.96.0.9', 5432)).toMatchObject({ service: { name: 'db-read' } });
  expect(t.byAddress('10.96.0.9', 5432)?.endpoint).toBeUndefined();
  expect(t.byAuthority('db.data:5432')?.endpoint).toBeUndefined();
});

test('forRequest: a pod-IP destination wins over the Host; a ClusterIP destination does not; an upstream destination always does', () => {
  const t = podTable();
  const name = (r: ReturnType<RouteTable['forRequest']>) => (r ? `${r.service.name}${r.endpoint ? '@' + r.endpoint.address : ''}` : undefined);
  // A client that resolved the headless name to a pod and connected to it.
  expect(name(t.forRequest('db.data.svc.cluster.local:5432', { address: '10.244.0.3', port: 5432 }))).toBe('db@10.244.0.3');
  expect(name(t.forRequest('db.data:5432', { address: '10.96.0.9', port: 5432 }))).toBe('db');
  expect(name(t.forRequest('unknown:1', { address: '10.96.0.9', port: 5432 }))).toBe('db-read');
  expect(name(t.forRequest('db.data:5432', undefined))).toBe('db');
  // An upstream listener is bound to its service, whatever the client puts in Host.
  expect(name(t.forRequest('localhost:16379', { address: '127.0.0.1', port: 5432, upstream: 'db-read.data:5432' }))).toBe('db-read');
  expect(name(t.forRequest('db.data:5432', { address: '127.0.0.1', port: 5432, upstream: 'missing.data:5432' }))).toBeUndefined();
  // Memoised per destination object: the second lookup answers the same.
  const dst = { address: '10.244.0.1', port: 5432 };
  t.byDestination(dst);
  expect(t.byDestination(dst)?.endpoint?.address).toBe('10.244.0.1');
});

test('a dual-stack pod is one endpoint; a connection to its other address is pinned to it at that address (adv21)', () => {
  const ep: Endpoint = {
    address: '10.244.0.7', port: 8080, proxyPort: 15006, identity: 'spiffe://cluster.local/ns/shop/sa/web', weight: 1, zone: '', ready: true, additionalAddresses: ['fd00::7'],
  };
  const web: Service = { ...svc('web', 'shop', []), ports: [{ name: 'http', port: 80, protocol: 'http1', endpoints: [ep] }] };
  const t = new RouteTable({ version: '1', source: 'static', services: [web] }, 'shop');
  expect(t.byAddress('10.244.0.7', 8080)?.endpoint).toBe(ep);
  const pinned = t.byAddress('fd00::7', 8080)!;
  expect(pinned.endpoint).toMatchObject({ address: 'fd00::7', port: 8080, proxyPort: 15006, identity: 'spiffe://cluster.local/ns/shop/sa/web' });
  expect(pinned.endpoint!.additionalAddresses).toBeUndefined();
  expect(`${pinned.service.name}:${pinned.port.port}`).toBe('web:80');
  // Balanced through the service: one endpoint.
  expect(t.byAuthority('web.shop')!.port.endpoints).toEqual([ep]);
});
