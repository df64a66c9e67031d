import { PkiError } from './errors.js';
import { formatSpiffeId, isSpiffeId, parseSpiffeId, parseSpiffeUri, toSpiffeId, trustDomainId } from './spiffe.js';

const codeOf = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (e) {
    return (e as PkiError).code;
  }
  return undefined;
};

describe('SPIFFE IDs', () => {
  test('format and parse round-trip', () => {
    const id = { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'web' };
    expect(formatSpiffeId(id)).toBe('spiffe://cluster.local/ns/default/sa/web');
    expect(parseSpiffeId('spiffe://cluster.local/ns/default/sa/web')).toEqual(id);
    expect(parseSpiffeId('spiffe://my_td-1.example/ns/Team.A/sa/api_v2')).toEqual({
      trustDomain: 'my_td-1.example',
      namespace: 'Team.A',
      serviceAccount: 'api_v2',
    });
    expect(toSpiffeId(id).uri).toBe('spiffe://cluster.local/ns/default/sa/web');
    expect(toSpiffeId('spiffe://cluster.local/ns/a/sa/b').id).toEqual({ trustDomain: 'cluster.local', namespace: 'a', serviceAccount: 'b' });
    expect(trustDomainId('cluster.local')).toBe('spiffe://cluster.local');
  });

  test.each([
    ['', 'must start with "spiffe://"'],
    ['SPIFFE://cluster.local/ns/a/sa/b', 'must start with "spiffe://"'],
    ['https://cluster.local/ns/a/sa/b', 'must start with "spiffe://"'],
    ['spiffe://Cluster.local/ns/a/sa/b', 'lower-case'],
    ['spiffe:///ns/a/sa/b', 'trust domain is empty'],
    ['spiffe://cluster.local:8080/ns/a/sa/b', 'port'],
    ['spiffe://user@cluster.local/ns/a/sa/b', 'userinfo'],
    ['spiffe://cluster.local/ns/a/sa/b?x=1', 'query'],
    ['spiffe://cluster.local/ns/a/sa/b#frag', 'fragment'],
    ['spiffe://cluster.local/ns/a/sa/b/', 'trailing'],
    ['spiffe://cluster.local/ns//sa/b', 'empty'],
    ['spiffe://cluster.local/ns/./sa/b', '"." or ".."'],
    ['spiffe://cluster.local/ns/../sa/b', '"." or ".."'],
    ['spiffe://cluster.local/ns/a%20b/sa/b', 'may only contain'],
    ['spiffe://cluster.local/ns/a/sa/b/extra', 'expected a workload ID'],
    ['spiffe://cluster.local/sa/b/ns/a', 'expected a workload ID'],
    ['spiffe://cluster.local', 'expected a workload ID'],
    [`spiffe://cluster.local/ns/${'a'.repeat(2048)}/sa/b`, 'longer than 2048'],
  ])('rejects %j', (uri, why) => {
    expect(() => parseSpiffeId(uri)).toThrow(why);
    expect(codeOf(() => parseSpiffeId(uri))).toBe('INVALID_SPIFFE_ID');
    expect(isSpiffeId(uri)).toBe(false);
  });

  test('format refuses parts that would change the shape of the ID', () => {
    expect(() => formatSpiffeId({ trustDomain: 'cluster.local', namespace: 'a/sa/b', serviceAccount: 'c' })).toThrow('may not contain "/"');
    expect(() => formatSpiffeId({ trustDomain: 'cluster.local', namespace: '', serviceAccount: 'c' })).toThrow('empty');
    expect(() => formatSpiffeId({ trustDomain: 'Cluster', namespace: 'a', serviceAccount: 'c' })).toThrow('lower-case');
  });

  test('generic parse keeps trust-domain-only IDs', () => {
    expect(parseSpiffeUri('spiffe://cluster.local')).toEqual({ trustDomain: 'cluster.local', segments: [] });
    expect(parseSpiffeUri('spiffe://td/a/b/c').segments).toEqual(['a', 'b', 'c']);
  });
});
