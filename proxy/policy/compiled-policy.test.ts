import { DEFAULT_INBOUND_POLICY } from '../../contract/defaults.js';
import { parseInboundPolicy } from '../../contract/parse.js';
import { CompiledInboundPolicy } from './compiled-policy.js';
import { anyPattern, namespaceOf, normalizePath } from './match.js';

test('mode per port: the port-level override, else the workload mode', () => {
  const p = new CompiledInboundPolicy(parseInboundPolicy({ mtls: { mode: 'STRICT' }, portLevelMtls: { '9090': { mode: 'PERMISSIVE' } } }, 'policy'));
  expect([p.modeFor(9090), p.modeFor(8080), p.modeFor(undefined)]).toEqual(['PERMISSIVE', 'STRICT', 'STRICT']);
  const q = new CompiledInboundPolicy(parseInboundPolicy({ mtls: { mode: 'PERMISSIVE' }, portLevelMtls: { '8443': { mode: 'STRICT' } } }, 'policy'));
  expect([q.modeFor(8443), q.modeFor(8080)]).toEqual(['STRICT', 'PERMISSIVE']);
  expect(q.summary()).toBe('PERMISSIVE 8443=STRICT authz=0 jwt=0');
  expect(new CompiledInboundPolicy(DEFAULT_INBOUND_POLICY).modeFor(80)).toBe('STRICT');
});

test('pushed opaque ports: a set the inbound consults, shown in the log summary', () => {
  const p = new CompiledInboundPolicy({ ...DEFAULT_INBOUND_POLICY, opaquePorts: [3306, 6000] });
  expect([p.opaquePorts.has(6000), p.opaquePorts.has(80)]).toEqual([true, false]);
  expect(p.summary()).toBe('STRICT authz=0 jwt=0 opaque=3306,6000');
  expect(new CompiledInboundPolicy(DEFAULT_INBOUND_POLICY).opaquePorts.size).toBe(0);
});

test('patterns: exact, prefix, suffix, presence', () => {
  const m = anyPattern(['a', 'pre*', '*suf']);
  expect(['a', 'prefix', 'pre', 'the-suf', 'b', ''].map(m)).toEqual([true, true, true, true, false, false]);
  expect(['x', ''].map(anyPattern(['*']))).toEqual([true, false]);
  expect(anyPattern([])('a')).toBe(false);
});

test('namespace of a SPIFFE ID', () => {
  expect(namespaceOf('spiffe://cluster.local/ns/shop/sa/web')).toBe('shop');
  expect(namespaceOf('')).toBe('');
});

test.each([
  ['/a/b', '/a/b'],
  ['/a/b?x=1#f', '/a/b'],
  ['/a/./b', '/a/b'],
  ['/a/../b', '/b'],
  ['/../../b', '/b'],
  ['/a/b/..', '/a/'],
  ['/a/b/.', '/a/b/'],
  ['/v1.2/x', '/v1.2/x'],
  ['/a/..?q=/..', '/'],
])('normalizePath(%s) = %s', (raw, want) => {
  expect(normalizePath(raw)).toBe(want);
});
