import { compileRouteRegex, re2ToJs } from './route-regex.js';

describe('re2ToJs: RE2 syntax keeps its RE2 meaning', () => {
  test.each([
    ['/items/[[:digit:]]+', '/items/42', '/items/4x'],
    ['[[:alpha:][:digit:]_]+', 'ab_9', 'a-b'],
    ['/v1/\\Qa.b\\E/.*', '/v1/a.b/x', '/v1/axb/x'],
    ['\\Q(x)', '(x)', 'x'],
    ['/x\\z', '/x', '/xz'],
    ['\\A/y', '/y', 'A/y'],
    ['(?P<id>[0-9]+)', '12', 'a'],
    ['\\x{41}+', 'AA', 'x{41}'],
    ['[]a]+', ']a]', 'b'],
    ['[^]a]+', 'bc', 'b]'],
  ])('%s matches %s, not %s', (re2, yes, no) => {
    const r = compileRouteRegex(re2);
    expect([re2, r.test(yes), r.test(no)]).toEqual([re2, true, false]);
  });

  test.each([
    ['/u/\\pL+', 'Unicode classes'],
    ['/u/\\p{Greek}', 'Unicode classes'],
    ['\\C', 'any byte'],
    ['(?i)abc', 'flag groups'],
    ['(?i:abc)', 'flag groups'],
    ['[[:^digit:]]', '[:^digit:]'],
    ['[[:nope:]]', '[:nope:]'],
    ['\\x{10FFFF}', 'FFFF'],
    ['[abc', 'missing ]'],
    ['abc\\', 'trailing backslash'],
  ])('%s is refused, naming %s', (re2, why) => {
    expect(() => compileRouteRegex(re2)).toThrow(why);
  });

  test('full match: anchored around the whole alternation', () => {
    const r = compileRouteRegex('/a|/b');
    expect([r.test('/a'), r.test('/b'), r.test('/ab'), r.test('x/a')]).toEqual([true, true, false, false]);
    expect(re2ToJs('/a|/b')).toBe('/a|/b');
  });
});

describe('compileRouteRegex: linear time', () => {
  test('a POSIX class name that is a property of every object ([:constructor:]) is refused as unknown, not compiled from Object.prototype', () => {
    expect(() => compileRouteRegex('/a[[:constructor:]]')).toThrow(/\[:constructor:\] is not supported/);
    expect(compileRouteRegex('/a[[:digit:]]').test('/a1')).toBe(true);
  });

  test('patterns the linear engine cannot run are refused with the reason', () => {
    for (const p of ['(?=a)a', '(a)\\1', '[a-z]{2,300}', 'a{17}']) expect(() => compileRouteRegex(p)).toThrow(/linear time/);
    expect(compileRouteRegex('[a-z]{2,16}').test('abc')).toBe(true);
  });

  test('a nested quantifier on a hostile input returns at once instead of backtracking exponentially', () => {
    const r = compileRouteRegex('/docs/([\\w-]+/?)*');
    expect(r.test('/docs/a/b-c/')).toBe(true);
    // 2^40 paths for a backtracking engine; V8 falls back to its linear engine after 50,000 backtracks.
    const hostile = '/docs/' + 'a'.repeat(40) + '!';
    const t = process.hrtime.bigint();
    expect(r.test(hostile)).toBe(false);
    // Not a timing assertion about speed, a bound on the impossible: without the fallback this takes hours.
    expect(Number(process.hrtime.bigint() - t) / 1e6).toBeLessThan(5_000);
  });
});

test('a regex is compiled once: the route parser checks it and the matcher gets the same RegExp', () => {
  const a = compileRouteRegex('/v[0-9]+/items/.*');
  expect(compileRouteRegex('/v[0-9]+/items/.*')).toBe(a);
  expect(a.test('/v2/items/x')).toBe(true);
  expect(a.test('/v2/items/x')).toBe(true); // no lastIndex state carried between matches
  expect(compileRouteRegex('/v[0-9]+/other')).not.toBe(a);
});
