import { ConfigError } from '../common/schema.js';
import { appProbePath, NO_APP_PROBES, parseAppProbes } from './app-probes.js';

/** WREN_APP_PROBES as the proxy reads it: typed, frozen, defaults applied, every error naming its field. */
const parse = (raw: unknown) => parseAppProbes(raw, 'appProbes');
const problem = (raw: unknown): string => {
  try {
    parse(raw);
    return '';
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return e.message;
  }
};

test('the three kinds, with kubelet\'s defaults (path /, scheme HTTP, no headers, 1 s)', () => {
  const probes = parse({
    '/app-health/web/readyz': { kind: 'http', port: 8080 },
    '/app-health/web/livez': { kind: 'http', port: 8443, path: '/live?x=1', scheme: 'HTTPS', httpHeaders: [{ name: 'Authorization', value: 'Bearer t' }], timeoutSeconds: 5 },
    '/app-health/db/startupz': { kind: 'tcp', port: 5432 },
    '/app-health/rpc-1/readyz': { kind: 'grpc', port: 9090, service: 'shop.Cart', timeoutSeconds: 2 },
  });
  expect([...probes]).toEqual([
    ['/app-health/web/readyz', { kind: 'http', port: 8080, path: '/', scheme: 'HTTP', headers: [], timeoutMs: 1000 }],
    ['/app-health/web/livez', { kind: 'http', port: 8443, path: '/live?x=1', scheme: 'HTTPS', headers: [{ name: 'Authorization', value: 'Bearer t' }], timeoutMs: 5000 }],
    ['/app-health/db/startupz', { kind: 'tcp', port: 5432, timeoutMs: 1000 }],
    ['/app-health/rpc-1/readyz', { kind: 'grpc', port: 9090, service: 'shop.Cart', timeoutMs: 2000 }],
  ]);
  expect(Object.isFrozen(probes.get('/app-health/web/readyz'))).toBe(true);
  expect(appProbePath('rpc-1', 'readyz')).toBe('/app-health/rpc-1/readyz');
  expect(parse(undefined)).toBe(NO_APP_PROBES);
  expect(parse({}).size).toBe(0);
});

test('errors name the key and the field', () => {
  expect(problem([])).toMatch(/^appProbes: expected an object keyed by/);
  expect(problem({ '/app-health/Web/readyz': { kind: 'tcp', port: 1 } })).toBe('appProbes["/app-health/Web/readyz"]: expected a key of the form /app-health/<container>/<livez|readyz|startupz>');
  expect(problem({ '/app-health/web/ready': { kind: 'tcp', port: 1 } })).toMatch(/^appProbes\["\/app-health\/web\/ready"\]: expected a key/);
  expect(problem({ '/stats/prometheus': { kind: 'tcp', port: 1 } })).toMatch(/expected a key/);
  expect(problem({ '/app-health/web/readyz': { kind: 'exec', port: 1 } })).toBe('appProbes["/app-health/web/readyz"].kind: expected one of http, tcp, grpc, got "exec"');
  expect(problem({ '/app-health/web/readyz': 'tcp' })).toMatch(/^appProbes\["\/app-health\/web\/readyz"\]: expected an object/);
  expect(problem({ '/app-health/web/readyz': { kind: 'tcp', port: 'http' } })).toBe('appProbes["/app-health/web/readyz"].port: expected a number, got "http"');
  expect(problem({ '/app-health/web/readyz': { kind: 'tcp', port: 70000 } })).toMatch(/\.port: expected a number in 1\.\.65535/);
  expect(problem({ '/app-health/web/readyz': { kind: 'tcp', port: 80, timeoutSeconds: 0 } })).toMatch(/\.timeoutSeconds: expected a number in 1\.\.86400/);
  expect(problem({ '/app-health/web/readyz': { kind: 'tcp', port: 80, host: '10.0.0.1' } })).toMatch(/\.host: unknown field/);
  expect(problem({ '/app-health/web/readyz': { kind: 'http', port: 80, path: 'x' } })).toMatch(/\.path: expected to match/);
  expect(problem({ '/app-health/web/readyz': { kind: 'http', port: 80, path: '/a b' } })).toMatch(/\.path: expected to match/);
  expect(problem({ '/app-health/web/readyz': { kind: 'http', port: 80, scheme: 'FTP' } })).toMatch(/\.scheme: expected one of HTTP, HTTPS/);
  expect(problem({ '/app-health/web/readyz': { kind: 'http', port: 80, httpHeaders: [{ name: 'X A', value: 'v' }] } })).toMatch(/\.httpHeaders\[0\]\.name: expected to match/);
  expect(problem({ '/app-health/web/readyz': { kind: 'http', port: 80, httpHeaders: [{ name: 'X', value: 'a\nb' }] } })).toMatch(/\.httpHeaders\[0\]\.value: expected to match/);
});

test('a refused probe header value is not quoted: it may be a credential, and the refusal goes to the pod\'s log (adv32)', () => {
  const p = problem({ '/app-health/web/readyz': { kind: 'http', port: 80, httpHeaders: [{ name: 'Authorization', value: 'Bearer S3cr3t-token\n' }] } });
  expect(p).toMatch(/\.httpHeaders\[0\]\.value: expected to match .* with "\\n" at character 19$/);
  expect(p).not.toContain('S3cr3t');
});
