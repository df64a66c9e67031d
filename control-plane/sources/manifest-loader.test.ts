import { loadManifestFile } from './manifest-loader.js';

const web = (address: string, extra = '') => `kind: MeshService
metadata: { name: web, namespace: shop }
spec:
  ports: [{ name: http, port: 80, protocol: http1 }]
  endpoints:
    - { address: ${address}, port: &p 8080 }
${extra}`;

/** 101 aliases: one more than yaml's maxAliasCount, its guard against alias bombs. */
const manyAliases = Array.from({ length: 101 }, (_, i) => `    - { address: 10.0.1.${i + 1}, port: *p }`).join('\n') + '\n';

const endpointsOfWeb = (f: ReturnType<typeof loadManifestFile>) =>
  (f.objects.get('MeshService/shop/web')?.value as { ports: { endpoints: { address: string }[] }[] } | undefined)?.ports[0].endpoints.map((e) => e.address);

describe('YAML that parses but cannot become data is rejected like a syntax error, naming file and document', () => {
  const good = loadManifestFile('mesh/web.yaml', web('10.0.0.1'), undefined);

  test.each([
    ['more than 100 aliases', web('10.0.0.2', manyAliases), /^YAML: document 2: Excessive alias count/],
    ['a merge key to an undefined anchor', web('10.0.0.2').replace('spec:\n', 'spec:\n  <<: *defaults\n'), /^YAML: document 2: Unresolved alias .*defaults/],
  ])('%s: the file keeps its last good objects', (_, bad, reason) => {
    // The bad document is the second one: the first, valid, is not read either (the file keeps all it had, as for a syntax error).
    const f = loadManifestFile('mesh/web.yaml', web('10.0.0.3') + '---\n' + bad, good);
    expect(f.errors).toEqual([expect.stringMatching(new RegExp(`^mesh/web\\.yaml: ${reason.source.slice(1)}`))]);
    expect(f.rejected).toEqual([{ kind: '', namespace: '', name: '', path: '', reason: expect.stringMatching(reason), file: 'mesh/web.yaml' }]);
    expect(endpointsOfWeb(f)).toEqual(['10.0.0.1']);
  });

  test('a new file with such a document holds nothing and says why', () => {
    const f = loadManifestFile('mesh/other.yaml', web('10.0.0.2', manyAliases), undefined);
    expect(f.objects.size).toBe(0);
    expect(f.errors).toEqual([expect.stringMatching(/^mesh\/other\.yaml: YAML: document 1: Excessive alias count/)]);
  });

  test('fewer aliases are read as usual', () => {
    const f = loadManifestFile('mesh/web.yaml', web('10.0.0.2', manyAliases.split('\n').slice(0, 50).join('\n')), undefined);
    expect(f.errors).toEqual([]);
    expect(endpointsOfWeb(f)).toHaveLength(51);
  });
});
