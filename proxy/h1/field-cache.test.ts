import { jest } from '@jest/globals';
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

  it('keeps two lines of one set (these two hash alike); a third of the set replaces the one not used last', () => {
    const c = new FieldCache();
    const keep = (line: string) => {
      const colon = line.indexOf(':');
      c.keep(bytes(line), 0, line.length, colon + 2, line.slice(0, colon).toLowerCase(), line.slice(colon + 2));
    };
    const a = 'Host: a';
    const b = 'x-forwarded-for: 10.0.0.1';
    keep(a);
    keep(b);
    expect(finds(c, a)).toBe(true);
    expect(finds(c, b)).toBe(true);
    // A third line of the same set (found by trying): it takes the way of `a`, used before `b`.
    let third = '';
    for (let i = 0; i < 10_000 && third === ''; i++) {
      const line = `${String.fromCharCode(97 + (i % 26))}${i.toString(36)}: ${i % 97}`;
      const probe = new FieldCache();
      probe.keep(bytes(a), 0, a.length, 6, 'host', 'a');
      probe.keep(bytes(line), 0, line.length, line.indexOf(':') + 2, line.slice(0, line.indexOf(':')), String(i % 97));
      probe.keep(bytes(b), 0, b.length, 17, 'x-forwarded-for', '10.0.0.1');
      // Same set as a and b: keeping it and b left a out.
      if (!finds(probe, a) && finds(probe, b)) third = line;
    }
    expect(third).not.toBe('');
    keep(third);
    expect(finds(c, third)).toBe(true);
    expect(finds(c, b)).toBe(true);
    expect(finds(c, a)).toBe(false);
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

describe("H1Parser's guess of a connection's next line (the line in the same place of its last message)", () => {
  const head = (target: string, fields: string) => `GET ${target} HTTP/1.1\r\nHost: a\r\n${fields}\r\n\r\n`;
  const lines = 'x-peer: ;default;;;web.default\r\nx-forwarded-for: 10.0.0.1\r\nwren-target-port: 8080';

  it('takes repeated lines in place, and refuses a line that differs from the guess in a byte the grammar forbids', () => {
    const good = head('/', lines);
    const cases: [string, string][] = [
      [lines.replace('web', 'w\x01b'), 'bad-field-value'],
      [lines.replace('8080', '80\r0'), 'bare-cr'],
      [lines.replace('x-forwarded-for', 'x-forwarded for'), 'bad-field-name'],
      [lines.replace('8080\r\n', '8080\n').replace('10.0.0.1\r\n', '10.0.0.1\n'), 'bare-lf'],
    ];
    for (const [bad, reason] of cases) {
      for (const step of [undefined, 7]) {
        const c = parse(good + good + good + head('/', bad), { step });
        expect(c.messages.map((m) => m.head.fields.slice(2))).toEqual(Array(3).fill(['x-peer', ';default;;;web.default', 'x-forwarded-for', '10.0.0.1', 'wren-target-port', '8080']));
        expect(c.error?.reason).toBe(reason);
      }
    }
  });

  it("finds every line of a repeated message in place: the second and third messages' four field lines each", () => {
    const at = jest.spyOn(FieldCache.prototype, 'at');
    try {
      const c = parse(head('/', lines).repeat(3));
      expect(c.messages).toHaveLength(3);
      expect(at.mock.results.filter((r) => (r.value as number) >= 0)).toHaveLength(8);
    } finally {
      at.mockRestore();
    }
  });

  it('applies the head limit and the framing rules to guessed lines', () => {
    const limits = { maxHeadBytes: head('/', lines).length + 4, maxHeaderCount: 100, maxChunkExtBytes: 1024, maxTrailerBytes: 8192 };
    const c = parse(head('/', lines) + head('/a-longer-target', lines), { limits });
    expect(c.messages).toHaveLength(1);
    expect(c.error?.reason).toBe('head-too-large');
    const post = (fields: string) => `POST / HTTP/1.1\r\nHost: a\r\n${fields}\r\n\r\n`;
    const twice = post('Content-Length: 3') + 'abc' + post('Content-Length: 3') + 'abc';
    expect(parse(twice).messages.map((m) => m.body)).toEqual(['abc', 'abc']);
    expect(parse(twice + post('Content-Length: 3\r\nTransfer-Encoding: chunked')).error?.reason).toBe('cl-and-te');
    expect(parse(`${post('Host: a')}${post('Host: a')}`).error?.reason).toBe('multiple-host');
  });

  it('guesses trailer lines too', () => {
    const chunked = (trailer: string) => `POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n${trailer}\r\n\r\n`;
    const c = parse(chunked('grpc-status: 0') + chunked('grpc-status: 0') + chunked('grpc-status: 0'), { step: 5 });
    expect(c.messages.map((m) => [m.body, m.trailers])).toEqual(Array(3).fill(['abc', ['grpc-status', '0']]));
    expect(parse(chunked('grpc-status: 0') + chunked('grpc-status: 0') + chunked('grpc-status: \x000')).error?.reason).toBe('bad-field-value');
  });
});
