import type { Endpoint } from '../../contract/model.js';
import { sameEndpoint } from './delta.js';

test('an endpoint whose workload changed is an update (its metrics labels travel in the delta)', () => {
  const a: Endpoint = { address: '10.0.0.1', port: 80, proxyPort: 15006, identity: '', weight: 1, zone: '', ready: true, workload: { name: 'web-v1', namespace: 'shop', app: 'web', version: 'v1' } };
  expect(sameEndpoint(a, { ...a, workload: { ...a.workload! } })).toBe(true);
  expect(sameEndpoint(a, { ...a, workload: { ...a.workload!, version: 'v2' } })).toBe(false);
  expect(sameEndpoint(a, { ...a, workload: undefined })).toBe(false);
  const { workload: _w, ...bare } = a;
  expect(sameEndpoint(bare, { ...bare })).toBe(true);
});

test('an endpoint whose other addresses change (a dual-stack pod\'s, adv21) is not the same endpoint: the change is pushed', () => {
  const e = { address: '10.0.0.1', port: 8080, proxyPort: 15006, identity: '', weight: 1, zone: '', ready: true };
  expect(sameEndpoint(e, { ...e })).toBe(true);
  expect(sameEndpoint(e, { ...e, additionalAddresses: [] })).toBe(true);
  expect(sameEndpoint({ ...e, additionalAddresses: ['fd00::1'] }, { ...e, additionalAddresses: ['fd00::1'] })).toBe(true);
  expect(sameEndpoint(e, { ...e, additionalAddresses: ['fd00::1'] })).toBe(false);
  expect(sameEndpoint({ ...e, additionalAddresses: ['fd00::1'] }, { ...e, additionalAddresses: ['fd00::2'] })).toBe(false);
});
