import { printable } from './printable.js';

test('escapes what a terminal would act on (C0, DEL, C1, bidi controls) and leaves the rest, Unicode included', () => {
  expect(printable('0.1.0\x1b]0;pwned\x07\x1b[2J')).toBe('0.1.0\\x1b]0;pwned\\x07\\x1b[2J');
  expect(printable('a\tb\nc\rd\x7f\x9b')).toBe('a\\x09b\\x0ac\\x0dd\\x7f\\x9b');
  expect(printable('evil\u202etxt.exe \u2066x\u2069')).toBe('evil\\u202etxt.exe \\u2066x\\u2069');
  expect(printable('web-1.shop café ✓ spiffe://cluster.local/ns/a/sa/b')).toBe('web-1.shop café ✓ spiffe://cluster.local/ns/a/sa/b');
});
