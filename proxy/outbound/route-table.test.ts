import { RouteTable } from './route-table.js';
import { DEFAULT_POLICY } from '../../contract/defaults.js';
import type { Service } from '../../contract/model.js';

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
