import { isQuantity, parseCidrList, parsePortList } from './annotations.js';

test('parsePortList accepts ports and ascending ranges, rejects the rest', () => {
  expect(parsePortList('22, 4191,8000-8010')).toEqual(['22', '4191', '8000:8010']);
  expect(parsePortList('7:9')).toEqual(['7:9']);
  expect(parsePortList('')).toEqual([]);
  for (const bad of ['0', '65536', 'http', '10-5', '1,,x', '-1']) expect(parsePortList(bad)).toBeUndefined();
});

test('parseCidrList accepts IPv4/IPv6 CIDRs and bare addresses', () => {
  expect(parseCidrList('10.0.0.0/8,169.254.169.254, fd00::/8, ::1')).toEqual(['10.0.0.0/8', '169.254.169.254/32', 'fd00::/8', '::1/128']);
  for (const bad of ['10.0.0.0/33', '256.1.1.1', 'example.com', '10.0.0.0/8/1', 'fd00::/129']) expect(parseCidrList(bad)).toBeUndefined();
});

test('isQuantity follows resource.Quantity syntax', () => {
  for (const ok of ['10m', '1', '0.5', '64Mi', '1Gi', '2e3', '100k']) expect(isQuantity(ok)).toBe(true);
  for (const bad of ['lots', '10 m', 'Mi', '1MB', '']) expect(isQuantity(bad)).toBe(false);
});
