import type { Service } from '../contract/model.js';
import { formatView, parsePod } from './proxy-config.js';

test('POD as NAME.NAMESPACE, NAMESPACE/NAME or NAME', () => {
  expect(parsePod('web-0.shop')).toEqual({ namespace: 'shop', name: 'web-0' });
  expect(parsePod('shop/web-0')).toEqual({ namespace: 'shop', name: 'web-0' });
  expect(parsePod('web-0')).toEqual({ namespace: 'default', name: 'web-0' });
  expect(() => parsePod('web 0')).toThrow(/is not a pod/);
});

test('routes: one row per route in force per service', () => {
  const svc = {
    name: 'web', namespace: 'shop', clusterIPs: [], ports: [], policy: {} as Service['policy'],
    routes: [{ kind: 'HTTPRoute', name: 'canary', namespace: 'shop', ports: [80], rules: [{}, {}] }],
  } as unknown as Service;
  const out = formatView({ from: 'x', version: 'v1', services: [svc], policy: null, telemetry: null, cert: null }, 'routes', 0);
  expect(out).toMatch(/^SERVICE\s+ROUTE\s+KIND\s+PORTS\s+RULES$/m);
  expect(out).toMatch(/^web\.shop\s+shop\/canary\s+HTTPRoute\s+80\s+2$/m);
  expect(formatView({ from: 'x', version: 'v1', services: [svc], policy: null, telemetry: null, cert: null }, 'certs', 0)).toContain('no certificate reported');
});
