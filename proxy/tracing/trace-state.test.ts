import { extract } from './propagation.js';
import { checkTraceState, MAX_TRACESTATE_CHARS } from './trace-state.js';

/**
 * W3C Trace Context Level 1, https://www.w3.org/TR/trace-context/#tracestate-header: what a
 * sidecar forwards of a request's tracestate (and hands its span). `null`: dropped.
 * The invalid cases are those the W3C conformance suite (w3c/trace-context test/test.py)
 * expects a participant to discard.
 */
const TP = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const members = (n: number, from = 1) => Array.from({ length: n }, (_, i) => `k${i + from}=${i + from}`);

const table: [string, string | string[], string | null][] = [
  ['3.3.1.1: a list of list-members', 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE', 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE'],
  ['3.3.1.1: "a maximum of 32 list-members": 32 pass', members(32).join(','), members(32).join(',')],
  ['3.3.1.1: 33 list-members are not a list (suite: test_tracestate_member_count_limit)', members(33).join(','), null],
  ['3.3.1.1: the 32 counted across several fields, combined', [members(16).join(','), members(17, 17).join(',')], null],
  ['3.3.1.1: several fields combine into one list, in order', ['foo=1,bar=2', 'rojo=1,congo=2', 'baz=3'], 'foo=1,bar=2,rojo=1,congo=2,baz=3'],
  ['3.3.1.1: empty and whitespace-only members are allowed, and not counted', `${members(32).join(', ,')},,\t,`, `${members(32).join(', ,')},,\t,`],
  ['3.3.1.1: spaces and tabs around members are ignored', 'foo=1 \t , \t bar=2, \t baz=3', 'foo=1 \t , \t bar=2, \t baz=3'],
  ['3.3.1.1: an empty header is accepted, but not sent on ("SHOULD avoid sending them")', '', null],
  ['3.3.1.1: a list of empty members only, likewise', ' , ,', null],
  ['3.3.1.4: "Only one entry per key is allowed" (suite: test_tracestate_duplicated_keys)', 'foo=1,foo=1', null],
  ['3.3.1.4: a key repeated with another value', 'foo=1,bar=2,foo=2', null],
  ['3.3.1.4: a key repeated in another field', ['foo=1', 'foo=2'], null],
  ['3.3.1.3.1: simple-key = lcalpha 0*255(keychar)', 'foo-_*/bar=1', 'foo-_*/bar=1'],
  ['3.3.1.3.1: a simple key of 256 characters', `${'k'.repeat(256)}=1`, `${'k'.repeat(256)}=1`],
  ['3.3.1.3.1: a simple key of 257 characters', `${'k'.repeat(257)}=1`, null],
  ['3.3.1.3.1: a simple key starts with a letter', '1foo=1', null],
  ['3.3.1.3.1: upper case is not a key character', 'Foo=1', null],
  ['3.3.1.3.1: multi-tenant-key = tenant-id "@" system-id', '1tenant@vendor=1,t@v=2', '1tenant@vendor=1,t@v=2'],
  ['3.3.1.3.1: tenant-id of 241, system-id of 14 characters', `${'t'.repeat(241)}@${'s'.repeat(14)}=1`, `${'t'.repeat(241)}@${'s'.repeat(14)}=1`],
  ['3.3.1.3.1: tenant-id of 242 characters', `${'t'.repeat(242)}@s=1`, null],
  ['3.3.1.3.1: system-id of 15 characters', `t@${'s'.repeat(15)}=1`, null],
  ['3.3.1.3.1: an empty tenant or system, or two "@" (suite: test_tracestate_key_illegal_characters)', 'foo@=1,bar=2', null],
  ['3.3.1.3.1: "@foo"', '@foo=1,bar=2', null],
  ['3.3.1.3.1: "foo@@bar"', 'foo@@bar=1,bar=2', null],
  ['3.3.1.3.1: "foo@bar@baz"', 'foo@bar@baz=1,bar=2', null],
  ['3.3.1.3.1: a system-id starts with a letter', 'foo@1bar=1', null],
  ['3.3.1.3.1: no space before "="', 'foo =1', null],
  ['3.3.1.3.2: value: printable ASCII but "," and "="; leading spaces are the value\'s', 'foo= !"#$%&\'()*+-./0123456789:;<>?@ABCXYZ[\\]^_`abcxyz{|}~', 'foo= !"#$%&\'()*+-./0123456789:;<>?@ABCXYZ[\\]^_`abcxyz{|}~'],
  ['3.3.1.3.2: a value of 256 characters', `foo=${'v'.repeat(256)}`, `foo=${'v'.repeat(256)}`],
  ['3.3.1.3.2: a value of 257 characters', `foo=${'v'.repeat(257)}`, null],
  ['3.3.1.3.2: an empty value', 'foo=', null],
  ['3.3.1.3.2: "=" in a value (suite: test_tracestate_value_illegal_characters)', 'foo=bar=baz', null],
  ['3.3.1.3.2: a control character in a value', 'foo=b\u0001r', null],
  ['3.3.1.3.2: a tab inside a value', 'foo=b\tr', null],
  ['3.3.1.3.2: a non-ASCII value', 'foo=bär', null],
  ['3.3.1: a member without "="', 'foo,bar=2', null],
];

describe('tracestate list rules (W3C Trace Context section 3.3.1)', () => {
  test.each(table)('%s', (_, tracestate, forwarded) => {
    expect(extract({ traceparent: TP, tracestate })?.traceState ?? null).toBe(forwarded);
    const checked = checkTraceState(tracestate);
    expect(checked === undefined ? null : typeof checked === 'string' ? checked : checked.join(',')).toBe(forwarded);
    // A valid list within the limits is forwarded as it came: the same field(s), nothing rebuilt (section 3.4).
    if (forwarded !== null) expect(checked).toBe(tracestate);
  });
});

describe('tracestate Limits (section 3.3.1.5): truncated by whole entries, those over 128 characters first, then from the end', () => {
  const entry = (k: string, len: number) => `${k}=${'v'.repeat(len - k.length - 1)}`;

  test('a list within the limit is not truncated', () => {
    const list = Array.from({ length: 32 }, (_, i) => entry(`k${i}`, 255)).join(',');
    expect(list.length).toBeLessThanOrEqual(MAX_TRACESTATE_CHARS);
    expect(checkTraceState(list)).toBe(list);
  });

  test('over the limit: the long entries go first, from the end, and short ones stay wherever they are', () => {
    // 31 entries of 513 characters (key 256, value 256) and one short entry in the middle.
    const long = Array.from({ length: 31 }, (_, i) => entry(`${'k'.repeat(250)}${String(i).padStart(6, '0')}`, 513));
    const list = [...long.slice(0, 10), 'short=1', ...long.slice(10)];
    const out = checkTraceState(list.join(',')) as string;
    expect(out.length).toBeLessThanOrEqual(MAX_TRACESTATE_CHARS);
    // 15 long entries fit with the short one (15 × 514 + 7 = 7717; a 16th makes 8231).
    expect(out).toBe([...long.slice(0, 10), 'short=1', ...long.slice(10, 15)].join(','));
  });

  test('optional whitespace that takes a list past the limit goes first, every entry kept', () => {
    const list = Array.from({ length: 32 }, (_, i) => entry(`k${String(i).padStart(2, '0')}`, 128));
    expect(checkTraceState(list.join(','))).toBe(list.join(','));
    const padded = list.join(`${' '.repeat(200)},`);
    expect(padded.length).toBeGreaterThan(MAX_TRACESTATE_CHARS);
    expect(checkTraceState(padded)).toBe(list.join(','));
  });

  test('every entry long: removed from the end until the list fits', () => {
    // 30 entries of 300 characters: 9029 with the commas; 27 make 8126, 28 would make 8427.
    const list = Array.from({ length: 30 }, (_, i) => entry(`${'k'.repeat(98)}${String(i).padStart(2, '0')}`, 300));
    const out = checkTraceState(list.join(',')) as string;
    expect(out.length).toBeLessThanOrEqual(MAX_TRACESTATE_CHARS);
    expect(out).toBe(list.slice(0, 27).join(','));
  });
});
