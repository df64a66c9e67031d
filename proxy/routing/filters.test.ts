import { hostOf, modifyHeaders, modifyPath, redirectLocation } from './filters.js';
import type { Redirect } from './port-routing.js';

describe('route filters', () => {
  test('HTTPHeaderFilter: remove, then set (replaces), then add (appends, comma-joined)', () => {
    const h: Record<string, string | string[]> = { 'x-keep': 'k', 'x-set': 'old', 'x-add': 'a', 'x-multi': ['1', '2'], 'x-remove': 'r' };
    modifyHeaders(h, { set: [{ name: 'X-Set', value: 'new' }, { name: 'x-new', value: 'n' }], add: [{ name: 'x-add', value: 'b' }, { name: 'x-multi', value: '3' }, { name: 'x-fresh', value: 'f' }], remove: ['x-remove'] });
    expect(h).toEqual({ 'x-keep': 'k', 'x-set': 'new', 'x-new': 'n', 'x-add': 'a,b', 'x-multi': '1,2,3', 'x-fresh': 'f' });
  });

  // adv9 D6: `add` read h[name] and found Object.prototype's `constructor` (TypeError: old.join), `set` of `__proto__` hit the prototype setter.
  test('HTTPHeaderFilter: constructor and __proto__ are header names like any other', () => {
    const h: Record<string, string | string[]> = { 'x-keep': 'k' };
    modifyHeaders(h, { set: [{ name: '__proto__', value: 's' }], add: [{ name: 'constructor', value: 'a' }, { name: 'constructor', value: 'b' }, { name: '__proto__', value: 't' }], remove: [] });
    expect(Object.getPrototypeOf(h)).toBe(Object.prototype);
    expect({ ...h }).toEqual({ 'x-keep': 'k', ['__proto__']: 's,t', constructor: 'a,b' });
    expect(Object.hasOwn(h, '__proto__')).toBe(true);
    modifyHeaders(h, { set: [], add: [], remove: ['constructor', '__proto__'] });
    expect(Object.keys(h)).toEqual(['x-keep']);
  });

  // The spec's table (HTTPPathModifier.replacePrefixMatch): request path, prefix match, replacement, result.
  test.each([
    ['/foo/bar', '/foo', '/xyz', '/xyz/bar'],
    ['/foo/bar', '/foo', '/xyz/', '/xyz/bar'],
    ['/foo/bar', '/foo/', '/xyz', '/xyz/bar'],
    ['/foo/bar', '/foo/', '/xyz/', '/xyz/bar'],
    ['/foo', '/foo', '/xyz', '/xyz'],
    ['/foo/', '/foo', '/xyz', '/xyz/'],
    ['/foo/bar', '/foo', '', '/bar'],
    ['/foo/', '/foo', '', '/'],
    ['/foo', '/foo', '', '/'],
    ['/foo/', '/foo', '/', '/'],
    ['/foo', '/foo', '/', '/'],
    ['/foo/bar?q=1', '/foo', '/xyz', '/xyz/bar?q=1'],
  ])('ReplacePrefixMatch %s (prefix %s, %j) -> %s', (path, prefix, value, out) => {
    expect(modifyPath(path, { type: 'ReplacePrefixMatch', value }, prefix.replace(/\/+$/, ''))).toBe(out);
  });

  test('ReplaceFullPath keeps the query', () => {
    expect(modifyPath('/a/b?x=1', { type: 'ReplaceFullPath', value: '/one' }, '')).toBe('/one?x=1');
    expect(modifyPath('/a/b', { type: 'ReplaceFullPath', value: '/one' }, '')).toBe('/one');
  });

  const redirect = (r: Partial<Redirect>): Redirect => ({ scheme: undefined, hostname: undefined, port: undefined, path: undefined, statusCode: 302, ...r });
  const req = { scheme: 'http', authority: 'web:80', path: '/a/b?q=1' };

  test.each([
    ['host only: the service port 80 on http is left out', redirect({ hostname: 'example.org' }), 80, 'http://example.org/a/b?q=1'],
    ['no scheme, no port: the port the request was addressed to', redirect({ hostname: 'example.org' }), 8080, 'http://example.org:8080/a/b?q=1'],
    ['scheme https: its well-known port, left out', redirect({ scheme: 'https' }), 8080, 'https://web/a/b?q=1'],
    ['scheme http: port 80, left out', redirect({ scheme: 'http' }), 8080, 'http://web/a/b?q=1'],
    ['explicit port', redirect({ port: 8083 }), 80, 'http://web:8083/a/b?q=1'],
    ['https on an explicit 443 is left out', redirect({ scheme: 'https', port: 443 }), 80, 'https://web/a/b?q=1'],
    ['https on 8443 is kept', redirect({ scheme: 'https', port: 8443 }), 80, 'https://web:8443/a/b?q=1'],
    ['full path', redirect({ path: { type: 'ReplaceFullPath', value: '/new' } }), 80, 'http://web/new?q=1'],
    ['prefix', redirect({ path: { type: 'ReplacePrefixMatch', value: '/z' } }), 80, 'http://web/z/b?q=1'],
  ])('RequestRedirect Location: %s', (_what, r, servicePort, location) => {
    expect(redirectLocation(r, req, servicePort, '/a')).toBe(location);
  });

  test('hostOf strips the port, IPv6 brackets included', () => {
    expect(hostOf('web')).toBe('web');
    expect(hostOf('web:8080')).toBe('web');
    expect(hostOf('[fd00::1]:80')).toBe('fd00::1');
  });

  test('add Set-Cookie keeps one field line per cookie; add Cookie joins pairs with "; " (RFC 6265), never "," (ADV5-15)', () => {
    const res: Record<string, string | string[]> = { 'set-cookie': ['session=abc; Path=/; HttpOnly', 'theme=dark'] };
    modifyHeaders(res, { set: [], add: [{ name: 'Set-Cookie', value: 'canary=v2; Path=/' }], remove: [] });
    expect(res['set-cookie']).toEqual(['session=abc; Path=/; HttpOnly', 'theme=dark', 'canary=v2; Path=/']);
    const one: Record<string, string | string[]> = { 'set-cookie': 'a=1' };
    modifyHeaders(one, { set: [], add: [{ name: 'set-cookie', value: 'b=2' }, { name: 'set-cookie', value: 'c=3' }], remove: [] });
    expect(one['set-cookie']).toEqual(['a=1', 'b=2', 'c=3']);
    const req: Record<string, string | string[]> = { cookie: 'session=abc' };
    modifyHeaders(req, { set: [], add: [{ name: 'Cookie', value: 'canary=v2' }], remove: [] });
    expect(req['cookie']).toBe('session=abc; canary=v2');
  });
});
