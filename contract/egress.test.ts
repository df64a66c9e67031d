import { ConfigError } from '../common/schema.js';
import { egressFromJson, egressToJson, parseEgressSettings, parseExternalService } from './egress.js';

const es = (over: Record<string, unknown> = {}) => ({ name: 'demo/api', hosts: ['api.example.com'], ports: [{ number: 80, protocol: 'HTTP' }], ...over });
const problem = (raw: unknown): string => {
  try {
    parseEgressSettings(raw, 'egress');
  } catch (e) {
    if (e instanceof ConfigError) return `${e.path}: ${e.problem}`;
    throw e;
  }
  throw new Error('accepted');
};

test('a valid ExternalService: defaults filled (port name, TLS sni and CA unset, TLS port 443)', () => {
  const s = parseExternalService(es({ ports: [{ number: 80, protocol: 'HTTP', tls: { mode: 'SIMPLE' } }] }), '');
  expect(s).toEqual({ name: 'demo/api', hosts: ['api.example.com'], addresses: [], ports: [{ number: 80, protocol: 'HTTP', name: '', tls: { mode: 'SIMPLE', sni: '', caCertificates: '', port: 443 } }] });
});

test.each([
  [{ externalServices: [es({ hosts: [] })] }, 'egress.externalServices[0].hosts: expected at least 1 item(s)'],
  [{ externalServices: [es({ hosts: ['API.example.com'] })] }, 'egress.externalServices[0].hosts[0]: expected a lower-case DNS name or a wildcard *.domain, got "API.example.com"'],
  [{ externalServices: [es({ hosts: ['a.*.example.com'] })] }, 'egress.externalServices[0].hosts[0]: expected a lower-case DNS name or a wildcard *.domain, got "a.*.example.com"'],
  [{ externalServices: [es({ addresses: ['10.0.0.0/33'] })] }, 'egress.externalServices[0].addresses[0]: expected an IP address or a CIDR (10.0.0.0/8, 2001:db8::/32), got "10.0.0.0/33"'],
  [{ externalServices: [es({ addresses: ['example.com'] })] }, 'egress.externalServices[0].addresses[0]: expected an IP address or a CIDR (10.0.0.0/8, 2001:db8::/32), got "example.com"'],
  [{ externalServices: [es({ ports: [{ number: 0, protocol: 'HTTP' }] })] }, 'egress.externalServices[0].ports[0].number: expected a number in 1..65535, got 0'],
  [{ externalServices: [es({ ports: [{ number: 443, protocol: 'GRPC' }] })] }, 'egress.externalServices[0].ports[0].protocol: expected one of HTTP, HTTPS, TLS, TCP, got "GRPC"'],
  [{ externalServices: [es({ ports: [{ number: 443, protocol: 'TLS', tls: { mode: 'SIMPLE' } }] })] }, 'egress.externalServices[0].ports[0].tls: TLS origination needs protocol HTTP (the app speaks plain HTTP), got TLS'],
  [{ externalServices: [es({ ports: [{ number: 80, protocol: 'HTTP', tls: { mode: 'MUTUAL' } }] })] }, 'egress.externalServices[0].ports[0].tls.mode: expected one of SIMPLE, got "MUTUAL"'],
  [{ externalServices: [es({ ports: [{ number: 80, protocol: 'HTTP', tls: { mode: 'SIMPLE', caCertificates: 'nope' } }] })] }, 'egress.externalServices[0].ports[0].tls.caCertificates: expected PEM certificates'],
  [{ externalServices: [es({ ports: [{ number: 80, protocol: 'HTTP' }, { number: 80, protocol: 'TLS' }] })] }, 'egress.externalServices[0].ports[1].number: port 80 is declared twice'],
  [{ externalServices: [es({ ports: [{ number: 5432, protocol: 'TCP' }] })] }, 'egress.externalServices[0].addresses: required with a TCP port (ports[0]): TCP carries no host name, only the destination address is matched'],
  [{ externalServices: [es({ exportTo: ['.'] })] }, 'egress.externalServices[0].exportTo: unknown field (expected one of hosts, addresses, ports)'],
  [{ mode: 'DENY' }, 'egress.mode: expected one of ALLOW_ANY, REGISTRY_ONLY, got "DENY"'],
])('%j is rejected: %s', (raw, want) => {
  expect(problem(raw)).toContain(want);
});

test('the wire JSON round-trips; nothing set is ""', () => {
  const e = parseEgressSettings({ mode: 'REGISTRY_ONLY', externalServices: [es({ addresses: ['10.1.0.0/16', '2001:db8::1'], ports: [{ number: 5432, protocol: 'TCP' }] })] }, '');
  expect(egressFromJson(egressToJson(e), 'egress')).toEqual(e);
  expect(egressToJson({ mode: undefined, externalServices: [] })).toBe('');
  expect(egressFromJson('', 'egress')).toEqual({ mode: undefined, externalServices: [] });
  expect(() => egressFromJson('{"mode":"OPEN"}', 'egress')).toThrow('egress.mode: expected one of ALLOW_ANY, REGISTRY_ONLY, got "OPEN"');
});
