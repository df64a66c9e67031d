import { parse } from '../../test/helpers/h1-collector.js';
import { FieldCache } from './field-cache.js';

const bytes = (s: string) => Buffer.from(s, 'latin1');
/** Keeps `line` as the parser would (value after ": ", no trailing whitespace). */
function kept(line: string): FieldCache {
  const c = new FieldCache();
  const colon = line.indexOf(':');
  let vs = colon + 1;
  while (line[vs] === ' ' || line[vs] === '\t') vs++;
  c.keep(bytes(line), 0, line.length, vs, line.slice(0, colon).toLowerCase(), line.slice(vs).trimEnd());
  return c;
}
const finds = (c: FieldCache, line: string) => c.find(bytes(line), 0, line.length);

describe('FieldCache', () => {
  it('finds a kept line, its name in any case, and gives its strings', () => {
    const c = kept('content-type: application/grpc');
    expect(finds(c, 'content-type: application/grpc')).toBe(true);
    expect([c.name(), c.value()]).toEqual(['content-type', 'application/grpc']);
    expect(finds(c, 'Content-Type: application/grpc')).toBe(true);
    expect(c.name()).toBe('content-type');
    // Other whitespace after the colon (the slot depends on the first, middle and last bytes only).
    expect(finds(c, 'content-type:\tapplication/grpc')).toBe(true);
  });

  it('misses a line that differs in any byte of its value, or in a name byte beyond letter case', () => {
    const line = 'x-a: abcdefghijklmnop';
    const c = kept(line);
    for (let i = 0; i < line.length; i++) {
      if (line[i] === ':' || line[i] === ' ') continue;
      for (const sub of ['\x01', '\r', '\x7f', line[i] === 'z' ? 'y' : 'z']) {
        const other = line.slice(0, i) + sub + line.slice(i + 1);
        expect(finds(c, other)).toBe(false);
      }
    }
    // `^` | 0x20 is `~`: only letters fold.
    expect(finds(kept('x~a: v'), 'x^a: v')).toBe(false);
    expect(finds(c, `${line} `.slice(0, line.length))).toBe(true);
    expect(finds(c, `${line.slice(0, -1)} `)).toBe(false);
  });

  it('keeps trailing whitespace as whitespace only', () => {
    const c = new FieldCache();
    c.keep(bytes('a: v  '), 0, 6, 3, 'a', 'v');
    expect(finds(c, 'a: v  ')).toBe(true);
    expect(finds(c, 'a: vx ')).toBe(false);
    expect(finds(c, 'a: v \x01')).toBe(false);
  });

  it('never keeps credentials or long lines', () => {
    for (const line of ['authorization: Bearer abc', 'Cookie: a=b', 'proxy-authorization: Basic eA==', 'set-cookie: a=b', `x-long: ${'v'.repeat(600)}`]) {
      expect(finds(kept(line), line)).toBe(false);
    }
  });

  it('never keeps request ids and trace context, new on every message (they would only evict lines that repeat)', () => {
    for (const line of ['x-request-id: 6f1c2a2e-5b7d-4a8e-9c3f-1e2d3c4b5a69', 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', 'tracestate: a=b', 'X-B3-SpanId: 00f067aa0ba902b7']) {
      expect(finds(kept(line), line)).toBe(false);
    }
    expect(finds(kept('x-seen: 1'), 'x-seen: 1')).toBe(true);
  });
});

describe('H1Parser with lines it has seen', () => {
  const req = (field: string) => `GET / HTTP/1.1\r\nHost: a\r\n${field}\r\n\r\n`;

  it('refuses a line that differs from a kept one only in a byte the grammar forbids', () => {
    const good = 'x-seen: abcdefghijklmnopqrstuvwxyz';
    expect(parse(req(good)).messages[0].head.fields).toContain('abcdefghijklmnopqrstuvwxyz');
    const cases: [string, string][] = [
      [good.replace('k', '\x01'), 'bad-field-value'],
      [good.replace('k', '\x7f'), 'bad-field-value'],
      [good.replace('k', '\r'), 'bare-cr'],
      [good.replace('s', ' '), 'bad-field-name'],
      [good.replace('-', '\x00'), 'bad-field-name'],
    ];
    for (const [bad, reason] of cases) {
      parse(req(good));
      expect(parse(req(bad)).error?.reason).toBe(reason);
    }
  });

  it('gives a repeated line the same strings, the name in lower case whatever its case on the wire', () => {
    const a = parse(req('X-Repeat: one two')).messages[0].head.fields;
    const b = parse(req('x-REPEAT: one two')).messages[0].head.fields;
    expect(a.slice(2)).toEqual(['x-repeat', 'one two']);
    expect(b.slice(2)).toEqual(['x-repeat', 'one two']);
    // x^a and x~a are both valid names, and different.
    expect(parse(req('x~a: v')).messages[0].head.fields.slice(2)).toEqual(['x~a', 'v']);
    expect(parse(req('x^a: v')).messages[0].head.fields.slice(2)).toEqual(['x^a', 'v']);
  });

  it('still applies the framing rules and limits to a repeated line', () => {
    const post = (fields: string) => `POST / HTTP/1.1\r\nHost: a\r\n${fields}\r\n\r\nabc`;
    expect(parse(post('Content-Length: 3')).messages[0].body).toBe('abc');
    expect(parse(post('Content-Length: 3\r\nContent-Length: 4')).error?.reason).toBe('content-length-mismatch');
    expect(parse(post('Content-Length: 3\r\nTransfer-Encoding: chunked')).error?.reason).toBe('cl-and-te');
    expect(parse(`GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n`).error?.reason).toBe('multiple-host');
    const limits = { maxHeadBytes: 8192, maxHeaderCount: 2, maxChunkExtBytes: 1024, maxTrailerBytes: 8192 };
    parse(req('x-one: 1'));
    expect(parse('GET / HTTP/1.1\r\nHost: a\r\nx-one: 1\r\nx-one: 1\r\n\r\n', { limits }).error?.reason).toBe('too-many-fields');
  });
});
