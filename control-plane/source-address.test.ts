import { sourceAddress } from './source-address.js';

describe('sourceAddress', () => {
  test('IPv4: the address; loopback: null', () => {
    expect(sourceAddress('10.0.0.7:40000')).toBe('10.0.0.7');
    expect(sourceAddress('127.0.0.1:40000')).toBeNull();
    expect(sourceAddress('not an address')).toBeNull();
  });

  test('IPv6: the /64, so one host\'s 2^64 addresses are one source (adv59)', () => {
    const a = sourceAddress('[2001:db8:1:2::1]:40000');
    expect(a).toBe('2001:db8:1:2::/64');
    // Other interface identifiers of the same /64 (privacy addresses, any of a host's 2^64): the same source.
    for (const p of ['[2001:db8:1:2:ffff:ffff:ffff:ffff]:1', '[2001:0db8:0001:0002:abcd::9]:2', '[2001:DB8:1:2:0:0:0:3]:3', '2001:db8:1:2::4:5000', '[2001:db8:1:2::1.2.3.4]:4'])
      expect(sourceAddress(p)).toBe(a);
    // The next /64: another source.
    expect(sourceAddress('[2001:db8:1:3::1]:40000')).toBe('2001:db8:1:3::/64');
    expect(sourceAddress('[fd00::2]:40000')).toBe('fd00::/64');
    expect(sourceAddress('[fd00:0:0:1::2]:40000')).toBe('fd00:0:0:1::/64');
    expect(sourceAddress('[fe80::fc:ff:fe00:1%eth0]:40000')).toBe('fe80::/64');
  });

  test('IPv4-mapped IPv6 stays per IPv4 address; IPv6 and IPv4 loopback: null', () => {
    expect(sourceAddress('[::ffff:10.0.0.7]:40000')).toBe('10.0.0.7');
    expect(sourceAddress('::ffff:10.0.0.8:40000')).toBe('10.0.0.8');
    expect(sourceAddress('[::ffff:a00:9]:40000')).toBe('10.0.0.9');
    expect(sourceAddress('[::ffff:127.0.0.1]:40000')).toBeNull();
    expect(sourceAddress('[::1]:40000')).toBeNull();
    expect(sourceAddress('[0:0:0:0:0:0:0:1]:40000')).toBeNull();
  });
});
