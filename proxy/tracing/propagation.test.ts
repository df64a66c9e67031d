import { seededRandom } from '../../common/clock.js';
import type { Headers } from '../http/headers.js';
import { B3_MULTI, B3_SINGLE, W3C, extract, hasContext, inject, parseB3Single, parseTraceparent } from './propagation.js';

const TID = '4bf92f3577b34da6a3ce929d0e0e4736';
const SID = '00f067aa0ba902b7';

describe('W3C traceparent (W3C Trace Context section 3.2)', () => {
  test('valid: ids and the sampled flag', () => {
    expect(parseTraceparent(`00-${TID}-${SID}-01`)).toEqual({ traceId: TID, spanId: SID, sampled: true });
    expect(parseTraceparent(`00-${TID}-${SID}-00`)?.sampled).toBe(false);
    // Other flag bits do not make it sampled; bit 0 does.
    expect(parseTraceparent(`00-${TID}-${SID}-03`)?.sampled).toBe(true);
    // A later version may append fields after a '-'.
    expect(parseTraceparent(`01-${TID}-${SID}-01-whatever`)?.traceId).toBe(TID);
  });

  test.each([
    ['version ff', `ff-${TID}-${SID}-01`],
    ['version 00 with a trailing field', `00-${TID}-${SID}-01-x`],
    ['all-zero trace id', `00-${'0'.repeat(32)}-${SID}-01`],
    ['all-zero span id', `00-${TID}-${'0'.repeat(16)}-01`],
    ['upper-case hex', `00-${TID.toUpperCase()}-${SID}-01`],
    ['short trace id', `00-${TID.slice(1)}-${SID}-01`],
    ['bad flags', `00-${TID}-${SID}-0g`],
    ['empty', ''],
  ])('invalid (%s) is ignored', (_, v) => {
    expect(parseTraceparent(v)).toBeUndefined();
  });
});

describe('B3', () => {
  test('single header: ids with a decision, a 64-bit trace id padded, a decision alone, debug', () => {
    expect(parseB3Single(`${TID}-${SID}-1`)).toEqual({ traceId: TID, spanId: SID, sampled: true });
    expect(parseB3Single(`a3ce929d0e0e4736-${SID}`)).toEqual({ traceId: '0000000000000000a3ce929d0e0e4736', spanId: SID, sampled: undefined });
    expect(parseB3Single(`${TID}-${SID}-d-${SID}`)?.sampled).toBe(true);
    expect(parseB3Single('0')).toEqual({ traceId: '', spanId: '', sampled: false });
    expect(parseB3Single(`${TID}-${SID}-x`)).toBeUndefined();
    expect(parseB3Single(`${TID}-${SID}-1-nothex`)).toBeUndefined();
  });

  test('multi header: ids and x-b3-sampled, x-b3-flags debug, a decision without ids', () => {
    expect(extract({ 'x-b3-traceid': TID, 'x-b3-spanid': SID, 'x-b3-sampled': '1' })).toMatchObject({ traceId: TID, spanId: SID, sampled: true, formats: B3_MULTI });
    expect(extract({ 'x-b3-traceid': TID, 'x-b3-spanid': SID, 'x-b3-flags': '1' })?.sampled).toBe(true);
    expect(extract({ 'x-b3-sampled': '0' })).toMatchObject({ traceId: '', sampled: false });
    // Broken ids keep a valid decision.
    expect(extract({ 'x-b3-traceid': 'zz', 'x-b3-spanid': SID, 'x-b3-sampled': '0' })).toMatchObject({ traceId: '', sampled: false });
    expect(extract({ 'x-b3-traceid': 'zz', 'x-b3-spanid': SID })).toBeUndefined();
  });
});

describe('extract', () => {
  test('W3C wins the ids; every format present is remembered', () => {
    const c = extract({ traceparent: `00-${TID}-${SID}-01`, b3: `${'1'.repeat(32)}-${'2'.repeat(16)}-0`, tracestate: 'a=b' });
    expect(c).toEqual({ traceId: TID, spanId: SID, sampled: true, traceState: 'a=b', formats: W3C | B3_SINGLE });
  });

  test('a malformed traceparent falls back to a valid B3 header', () => {
    expect(extract({ traceparent: 'garbage', b3: `${TID}-${SID}-1` })).toMatchObject({ traceId: TID, formats: B3_SINGLE });
  });

  test('several tracestate fields combine; duplicated traceparent fields are ignored', () => {
    expect(extract({ traceparent: `00-${TID}-${SID}-01`, tracestate: ['a=1', 'b=2'] })?.traceState).toBe('a=1,b=2');
    expect(extract({ traceparent: [`00-${TID}-${SID}-01`, `00-${TID}-${SID}-01`] })).toBeUndefined();
  });

  test('never throws on mutated headers (seeded fuzz): either undefined or well-formed ids', () => {
    const random = seededRandom(1313);
    const alphabet = '0123456789abcdefABCDEF-xz ';
    const valid = [`00-${TID}-${SID}-01`, `${TID}-${SID}-1-${SID}`, TID, SID, '1', 'true'];
    const mutate = (s: string) => {
      const a = s.split('');
      const n = 1 + Math.floor(random() * 4);
      for (let i = 0; i < n; i++) {
        const at = Math.floor(random() * (a.length + 1));
        const op = random();
        const ch = alphabet[Math.floor(random() * alphabet.length)];
        if (op < 0.33) a.splice(at, 1);
        else if (op < 0.66) a.splice(at, 0, ch);
        else a[at] = ch;
      }
      return a.join('');
    };
    const names = ['traceparent', 'tracestate', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-sampled', 'x-b3-flags'];
    for (let i = 0; i < 5000; i++) {
      const h: Headers = {};
      for (const n of names) if (random() < 0.5) h[n] = mutate(valid[Math.floor(random() * valid.length)]);
      const c = extract(h);
      if (c === undefined) continue;
      expect(hasContext(h)).toBe(true);
      if (c.traceId !== '') {
        expect(c.traceId).toMatch(/^[0-9a-f]{32}$/);
        expect(c.spanId).toMatch(/^[0-9a-f]{16}$/);
        expect(c.traceId).not.toBe('0'.repeat(32));
      } else expect(typeof c.sampled).toBe('boolean');
    }
  });
});

describe('inject', () => {
  test('traceparent always; B3 formats only as they arrived', () => {
    const h: Headers = { 'x-b3-parentspanid': 'old', 'x-b3-flags': '1' };
    inject(h, TID, SID, true, W3C | B3_MULTI);
    expect(h).toEqual({ traceparent: `00-${TID}-${SID}-01`, 'x-b3-traceid': TID, 'x-b3-spanid': SID, 'x-b3-sampled': '1' });
    const s: Headers = {};
    inject(s, TID, SID, false, W3C | B3_SINGLE);
    expect(s).toEqual({ traceparent: `00-${TID}-${SID}-00`, b3: `${TID}-${SID}-0` });
  });

  test('x-b3-parentspanid names the parent of a new span, stays with the caller\'s own span, goes for a root span (B3 spec)', () => {
    const PARENT = '0020000000000001';
    const child: Headers = { 'x-b3-traceid': TID, 'x-b3-spanid': PARENT, 'x-b3-parentspanid': '0010000000000001', 'x-b3-sampled': '1' };
    inject(child, TID, SID, true, W3C | B3_MULTI, PARENT);
    expect(child).toEqual({ traceparent: `00-${TID}-${SID}-01`, 'x-b3-traceid': TID, 'x-b3-spanid': SID, 'x-b3-parentspanid': PARENT, 'x-b3-sampled': '1' });
    // The caller's span kept (a deferred decision made): its parent stays, whatever is passed.
    const own: Headers = { 'x-b3-traceid': TID, 'x-b3-spanid': SID, 'x-b3-parentspanid': PARENT };
    inject(own, TID, SID, false, W3C | B3_MULTI);
    expect(own['x-b3-parentspanid']).toBe(PARENT);
    const root: Headers = { 'x-b3-sampled': '1', 'x-b3-parentspanid': PARENT };
    inject(root, TID, SID, true, W3C | B3_MULTI);
    expect(root['x-b3-parentspanid']).toBeUndefined();
  });
});
