import { parseEgressSettings } from '../../contract/egress.js';
import { EgressPolicy } from './egress-policy.js';

const settings = (raw: unknown) => parseEgressSettings(raw, 'egress');
const policy = new EgressPolicy(
  settings({
    externalServices: [
      { name: 'a/exact', hosts: ['api.example.com'], ports: [{ number: 80, protocol: 'HTTP' }] },
      { name: 'a/wild', hosts: ['*.example.com'], ports: [{ number: 80, protocol: 'HTTP' }, { number: 443, protocol: 'TLS' }] },
      { name: 'a/deeper', hosts: ['*.eu.example.com'], ports: [{ number: 80, protocol: 'HTTP' }] },
      { name: 'a/db', hosts: ['db.corp'], addresses: ['10.20.0.0/16', '2001:db8::/32'], ports: [{ number: 5432, protocol: 'TCP' }] },
    ],
  }),
  settings({ mode: 'REGISTRY_ONLY', externalServices: [{ name: 'b/pushed', hosts: ['pushed.example.org'], ports: [{ number: 8443, protocol: 'HTTPS' }] }] }),
);

test('the mode: the local one, else the pushed one, else ALLOW_ANY', () => {
  expect([policy.mode, policy.modeSource]).toEqual(['REGISTRY_ONLY', 'control-plane']);
  expect(new EgressPolicy(settings({ mode: 'ALLOW_ANY' }), settings({ mode: 'REGISTRY_ONLY' }))).toMatchObject({ mode: 'ALLOW_ANY', modeSource: 'config' });
  expect(new EgressPolicy(settings({}), undefined)).toMatchObject({ mode: 'ALLOW_ANY', modeSource: 'default' });
});

test('HTTP by host and port: exact over wildcard, the longest wildcard first, never the bare domain', () => {
  expect(policy.httpTarget('api.example.com', 80)?.service.name).toBe('a/exact');
  expect(policy.httpTarget('x.example.com', 80)?.service.name).toBe('a/wild');
  expect(policy.httpTarget('x.eu.example.com', 80)?.service.name).toBe('a/deeper');
  expect(policy.httpTarget('example.com', 80)).toBeUndefined();
  expect(policy.httpTarget('api.example.com', 8080)).toBeUndefined();
  expect(policy.httpTarget('badexample.com', 80)).toBeUndefined();
});

test('TLS by SNI on HTTPS and TLS ports (case-insensitive); HTTP ports do not match SNI', () => {
  expect(policy.bySni('API.example.com', 443)?.service.name).toBe('a/wild');
  expect(policy.bySni('pushed.example.org', 8443)?.service.name).toBe('b/pushed');
  expect(policy.bySni('api.example.com', 80)).toBeUndefined();
  expect(policy.bySni('evil.org', 443)).toBeUndefined();
});

test('an SNI with a trailing dot (a fully qualified name) matches as the same name without it, as a Host does; two dots match nothing', () => {
  expect(policy.bySni('pushed.example.org.', 8443)?.service.name).toBe('b/pushed');
  expect(policy.bySni('API.example.com.', 443)?.service.name).toBe('a/wild');
  expect(policy.bySni('pushed.example.org..', 8443)).toBeUndefined();
  expect(policy.bySni('.', 443)).toBeUndefined();
});

test('TCP by address (IPs, CIDRs, IPv4-mapped IPv6) and port', () => {
  expect(policy.byAddress('10.20.3.4', 5432)?.service.name).toBe('a/db');
  expect(policy.byAddress('::ffff:10.20.3.4', 5432)?.service.name).toBe('a/db');
  expect(policy.byAddress('2001:db8::7', 5432)?.service.name).toBe('a/db');
  expect(policy.byAddress('10.21.0.1', 5432)).toBeUndefined();
  expect(policy.byAddress('10.20.3.4', 5433)).toBeUndefined();
});

test('what a connection to an unknown destination must be looked into for', () => {
  expect(policy.inspects(12345)).toBe(true); // REGISTRY_ONLY: everything
  const open = new EgressPolicy(settings({ externalServices: [{ name: 'x', hosts: ['a.b'], ports: [{ number: 80, protocol: 'HTTP' }, { number: 443, protocol: 'TLS' }] }] }), undefined);
  expect([open.inspects(80), open.inspects(443), open.inspects(5432)]).toEqual([true, false, false]);
});
