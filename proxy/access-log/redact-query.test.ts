import { redactAuthority, redactQuery } from './redact-query.js';

test('credential parameters lose their values, everything else is kept byte for byte', () => {
  expect(redactQuery('/a?x=1&access_token=abc&y=2')).toBe('/a?x=1&access_token=REDACTED&y=2');
  expect(redactQuery('/a?Signature=s&sig=t&AWSAccessKeyId=k')).toBe('/a?Signature=REDACTED&sig=REDACTED&AWSAccessKeyId=REDACTED');
  expect(redactQuery('/a?access%5Ftoken=abc')).toBe('/a?access%5Ftoken=REDACTED');
  expect(redactQuery('/a?token=abc&access_token')).toBe('/a?token=abc&access_token');
  expect(redactQuery('/plain')).toBe('/plain');
});

test('`;` separates parameters too, as servers that read it do: the token after it is redacted, the separators kept (adv17 lead)', () => {
  expect(redactQuery('/a?a=1;access_token=x')).toBe('/a?a=1;access_token=REDACTED');
  expect(redactQuery('/a?a=1;b=2&id_token=t;c=3')).toBe('/a?a=1;b=2&id_token=REDACTED;c=3');
});

test('names the inbound RequestAuthentication reads from the query are redacted too', () => {
  expect(redactQuery('/a?jwt=abc;x=1', new Set(['jwt']))).toBe('/a?jwt=REDACTED;x=1');
});

test('userinfo in an authority is replaced', () => {
  expect(redactAuthority('user:pw@host:80')).toBe('REDACTED:REDACTED@host:80');
  expect(redactAuthority('host')).toBe('host');
});
