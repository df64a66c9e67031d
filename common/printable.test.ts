import { printable, printableJson } from './printable.js';

test('escapes what a terminal would act on (C0, DEL, C1, bidi controls) and leaves the rest, Unicode included', () => {
  expect(printable('0.1.0\x1b]0;pwned\x07\x1b[2J')).toBe('0.1.0\\x1b]0;pwned\\x07\\x1b[2J');
  expect(printable('a\tb\nc\rd\x7f\x9b')).toBe('a\\x09b\\x0ac\\x0dd\\x7f\\x9b');
  expect(printable('evil\u202etxt.exe \u2066x\u2069')).toBe('evil\\u202etxt.exe \\u2066x\\u2069');
  expect(printable('web-1.shop café ✓ spiffe://cluster.local/ns/a/sa/b')).toBe('web-1.shop café ✓ spiffe://cluster.local/ns/a/sa/b');
});

test('printableJson: the same JSON to a parser, with DEL, C1 and bidi controls (which JSON.stringify leaves raw) as \\u escapes', () => {
  const v = { name: 'web\x9b31mred\u202etxt\x7f\u2066', esc: '\x1b[2J', ok: 'café ✓' };
  const text = printableJson(v, 2);
  // eslint-disable-next-line no-control-regex
  expect(text).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/);
  expect(text).toContain('web\\u009b31mred\\u202etxt\\u007f\\u2066');
  expect(JSON.parse(text)).toEqual(v);
  expect(printableJson([1, 'a'])).toBe('[1,"a"]');
});
