import { normalizeRequestTarget } from './normalize-path.js';

describe('normalizeRequestTarget: what the inbound authorizes is what the app gets (Istio pathNormalization BASE)', () => {
  test.each([
    // unchanged, and the same string (no allocation on the common path)
    ['/', '/'],
    ['/index.html', '/index.html'],
    ['/a/b?x=/../y', '/a/b?x=/../y'],
    ['/a/%2F/b', '/a/%2F/b'],
    ['/.well-known/x', '/.well-known/x'],
    // dot segments (RFC 3986 section 5.2.4)
    ['/public/../admin', '/admin'],
    ['/a/./b', '/a/b'],
    ['/a/b/..', '/a/'],
    ['/a/.', '/a/'],
    ['/..', '/'],
    ['/../../admin', '/admin'],
    // percent-encoded unreserved characters are decoded first (section 6.2.2.2)
    ['/public/%2e%2e/admin', '/admin'],
    ['/public/.%2E/admin', '/admin'],
    ['/public/%2E./admin?q=1', '/admin?q=1'],
    ['/%61dmin', '/admin'],
    ['/%7euser/%41', '/~user/A'],
    ['/a%20b/%2f', '/a%20b/%2f'],
    ['/bad%zz/%4', '/bad%zz/%4'],
    // backslashes are separators (WHATWG URL, http(s))
    ['/public\\..\\admin', '/admin'],
    ['\\admin', null],
    // absolute-form: its path
    ['http://web.shop:80/public/../admin?x', '/admin?x'],
    ['HTTPS://web', '/'],
    ['http://web?x=1', '/?x=1'],
    // none of RFC 9112's forms, or a fragment: refused
    ['*/../admin', null],
    ['admin', null],
    ['/admin#frag', null],
    ['', null],
  ])('%s -> %s', (raw, want) => {
    const got = normalizeRequestTarget('GET', raw);
    expect(got).toBe(want);
    // Idempotent: normalizing again changes nothing.
    if (got !== null) expect(normalizeRequestTarget('GET', got)).toBe(got);
  });

  test('asterisk-form only for OPTIONS (RFC 9112 section 3.2.4)', () => {
    expect(normalizeRequestTarget('OPTIONS', '*')).toBe('*');
    expect(normalizeRequestTarget('GET', '*')).toBeNull();
  });

  test('the common path returns the very string it was given', () => {
    const s = ['/api', 'v1', 'items?id=7'].join('/');
    expect(normalizeRequestTarget('GET', s)).toBe(s);
  });
});
