import { encodePeerMetadata, MAX_PEER_HEADER_LENGTH, parsePeerMetadata } from './peer-metadata.js';

test('what the outbound side sends, the inbound side reads back', () => {
  const v = encodePeerMetadata({ name: 'reviews-v1', namespace: 'shop', app: 'reviews', version: 'v1' }, { name: 'ratings', namespace: 'shop' });
  expect(v).toBe('reviews-v1;shop;reviews;v1;ratings.shop');
  expect(parsePeerMetadata(v)).toEqual({ workload: 'reviews-v1', namespace: 'shop', app: 'reviews', version: 'v1', serviceName: 'ratings', serviceNamespace: 'shop' });
  expect(parsePeerMetadata(';shop;;;')).toEqual({ workload: '', namespace: 'shop', app: '', version: '', serviceName: '', serviceNamespace: '' });
});

test.each([
  ['a path as the workload', '/api/users/123;shop;;;'],
  ['spaces', 'web v1;shop;;;'],
  ['label syntax injection', 'web",x="1;shop;;;'],
  ['upper-case name', 'Web;shop;;;'],
  ['a namespace with dots', 'web;a.b;;;'],
  ['a service without namespace', 'web;shop;;;ratings'],
  ['a service with a port', 'web;shop;;;ratings.shop:80'],
  ['four fields', 'web;shop;app;v1'],
  ['six fields', 'web;shop;app;v1;s.shop;x'],
  ['a version too long for a label value', `web;shop;app;${'v'.repeat(64)};`],
  ['longer than the cap', `${'a'.repeat(MAX_PEER_HEADER_LENGTH)};shop;;;`],
])('rejected whole: %s', (_what, v) => {
  expect(parsePeerMetadata(v)).toBeNull();
});
