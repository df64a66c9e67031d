import { isQuantity, parseCidrList, parsePortList, quantityValue } from './annotations.js';
import { injectPod } from './inject-pod.js';

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

/**
 * An item that is not an IPv4/IPv6 address by node:net (RFC 4291 section 2.2 text forms)
 * would make ip6tables-restore fail the init container, and the pod never start (found
 * by adversary4): it is malformed, so the annotation is ignored with a warning.
 */
test.each(['fd00:::1/64', '1:2:3:4:5:6:7:8:9/128', ':/0', 'fffff::/16', '::1::2', 'fe80::1%eth0/64', '01.2.3.4'])('%s is malformed: ignored with a warning, not handed to ip6tables', (cidr) => {
  expect(parseCidrList(cidr)).toBeUndefined();
  const res = injectPod(
    { metadata: { name: 'p', namespace: 'shop', annotations: { 'wren.io/skip-outbound-cidrs': `10.0.0.0/8,${cidr}` } }, spec: { containers: [{ name: 'app', image: 'a' }] } },
    { namespaceLabels: { 'wren.io/inject': 'enabled' } },
  );
  expect(res.warnings).toEqual([`wren.io/skip-outbound-cidrs: ignoring malformed value ${JSON.stringify(`10.0.0.0/8,${cidr}`)}`]);
  expect(JSON.stringify(res.patch)).not.toContain('--skip-outbound-cidrs');
});

test('parseCidrList keeps IPv4-mapped and compressed IPv6 forms', () => {
  expect(parseCidrList('::ffff:10.0.0.1/128,fd00:0:0::3/64,::/0')).toEqual(['::ffff:10.0.0.1/128', 'fd00:0:0::3/64', '::/0']);
});

test('isQuantity follows resource.Quantity syntax', () => {
  for (const ok of ['10m', '1', '0.5', '64Mi', '1Gi', '2e3', '100k']) expect(isQuantity(ok)).toBe(true);
  for (const bad of ['lots', '10 m', 'Mi', '1MB', '']) expect(isQuantity(bad)).toBe(false);
});

test('quantityValue reads the exa suffixes as exa, not as an exponent: 1E is 1e18, 1Ei 2^60', () => {
  expect(quantityValue('1E')).toBe(1e18);
  expect(quantityValue('2Ei')).toBe(2 * 2 ** 60);
  expect(quantityValue('2e3')).toBe(2000);
  expect(quantityValue('5E-1')).toBe(0.5);
  // Read as 1 and NaN, they were compared wrongly: a 1Ei memory limit was "negative" and ignored, a 1E CPU limit sat below a 2-CPU request.
  const res = injectPod({ metadata: { annotations: { 'wren.io/proxy-memory-limit': '1Ei', 'wren.io/proxy-cpu-request': '2', 'wren.io/proxy-cpu-limit': '1E' } }, spec: { containers: [{ name: 'app', image: 'a' }] } });
  expect(res.warnings).toEqual([]);
});
