import { badField, connectionField, validFieldName, validFieldValue } from './field-check.js';

test('names: lowercase tokens only (RFC 9113 section 8.2.1, RFC 9110 section 5.1)', () => {
  for (const n of ['x-a', 'content-type', "a!#$%&'*+-.^_`|~0"]) expect(validFieldName(n)).toBe(true);
  for (const n of ['', 'X-A', 'bad name', 'a:b', ':path', 'a\x00', 'caf\xe9', 'a"b']) expect(validFieldName(n)).toBe(false);
});

test('values: no leading or trailing whitespace, no NUL, CR, LF (RFC 9113 section 8.2.1); strict: no control character but HTAB, no DEL (RFC 9110 section 5.5)', () => {
  for (const strict of [false, true]) {
    for (const v of ['', 'a', 'a b', 'a\tb', 'caf\xe9', '√']) expect(validFieldValue(v, strict)).toBe(true);
    for (const v of [' a', 'a ', '\ta', 'a\x00b', 'a\r\nx-injected: 1', 'a\nb']) expect(validFieldValue(v, strict)).toBe(false);
  }
  // node:http2 serves requests with these (h2-server-adversary.test.ts's differential); no writer of the proxy sends them.
  for (const v of ['a\x01b', 'a\x7fb', 'a\x1bb']) {
    expect(validFieldValue(v)).toBe(true);
    expect(validFieldValue(v, true)).toBe(false);
  }
});

test('badField names the first bad field from an index on', () => {
  expect(badField([':status', '200', 'x-a', '1'], 2, true)).toBeNull();
  expect(badField([':status', '200', 'x-a', 'a\x01b'], 2, true)).toBe('invalid value of x-a');
  expect(badField([':status', '200', 'x-a', 'a\x01b'], 2, false)).toBeNull();
  expect(badField(['bad name', 'v'], 0, false)).toBe('invalid field name "bad name"');
  expect(badField([':path', '/'], 0, false)).toBe('pseudo-header ":path"');
});

test('connectionField names the first connection-specific field from an index on (RFC 9113 section 8.2.2)', () => {
  for (const n of ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']) expect(connectionField([':status', '200', 'x-a', '1', n, 'v'], 2)).toBe(n);
  expect(connectionField([':status', '200', 'te', 'trailers', 'te', 'Trailers'], 2)).toBeNull();
  expect(connectionField([':status', '200', 'te', 'gzip'], 2)).toBe('te');
  expect(connectionField(['connection', 'close', 'x-a', '1'], 2)).toBeNull();
});
