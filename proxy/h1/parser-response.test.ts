// The cases of proxy/http/h1-response-parser.test.ts, ported to the codec's response mode
// (which is to replace that parser): same inputs, same expectations, read through
// H1Head + fieldsToHeaders instead of H1ResponseHead.
import { parse } from '../../test/helpers/h1-collector.js';
import { Body, fieldsToHeaders } from './head.js';
import { DEFAULT_H1_LIMITS } from './limits.js';

const res = (wire: string, step?: number, opts: { method?: string; finish?: boolean; maxHeadBytes?: number } = {}) =>
  parse(wire, { responses: true, step, method: opts.method, finish: opts.finish, limits: { ...DEFAULT_H1_LIMITS, maxHeadBytes: opts.maxHeadBytes ?? 16 * 1024 } });
const hasBody = (b: Body) => b !== Body.None;

describe('H1Parser responses (the cases of H1ResponseParser)', () => {
  const cl = 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nX-App: a\r\n\r\nhello world';
  const chunked =
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n' +
    '6;ext=1\r\npart1 \r\n5\r\npart2\r\n0\r\nX-Checksum: abc123\r\nX-Other: 1\r\n\r\n';

  it.each([1, 2, 3, 7, 1000])('reads a content-length response fed %i bytes at a time', (step) => {
    const p = res(cl, step);
    expect(p.messages).toHaveLength(1);
    const h = p.messages[0].head;
    expect(h).toMatchObject({ status: 200, reason: 'OK', keepAlive: true, body: Body.Length, contentLength: 11 });
    expect(fieldsToHeaders(h.fields)).toEqual({ 'content-type': 'text/plain', 'content-length': '11', 'x-app': 'a' });
    expect(p.messages[0].body).toBe('hello world');
    expect(p.parser.idle).toBe(true);
  });

  it.each([1, 2, 5, 1000])('reads a chunked response with extensions and trailers fed %i bytes at a time', (step) => {
    const p = res(chunked, step);
    const m = p.messages[0];
    expect(m.body).toBe('part1 part2');
    expect(fieldsToHeaders(m.trailers, true)).toEqual({ 'x-checksum': 'abc123', 'x-other': '1' });
    expect(fieldsToHeaders(m.head.fields)).toEqual({ trailer: 'x-checksum' });
    expect(m.head.keepAlive).toBe(true);
    expect(p.messages).toHaveLength(1);
  });

  it('reads a body delimited by the connection closing, and never reuses that connection', () => {
    const p = res('HTTP/1.1 200 OK\r\n\r\nuntil the end', 4);
    expect(p.current?.head.keepAlive).toBe(false);
    expect(p.current?.head.body).toBe(Body.UntilClose);
    expect(p.messages).toHaveLength(0);
    p.parser.finish();
    expect(p.messages[0].body).toBe('until the end');
  });

  it('expects no body after HEAD, 204 and 304, whatever the framing headers say', () => {
    const head = res('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n', 3, { method: 'HEAD' });
    expect(head.messages[0].head).toMatchObject({ body: Body.None, keepAlive: true });
    for (const status of [204, 304]) {
      const p = res(`HTTP/1.1 ${status} X\r\nTransfer-Encoding: chunked\r\n\r\n`, 1000);
      expect(p.messages[0].head).toMatchObject({ status, body: Body.None, keepAlive: true });
    }
    const empty = res('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', 1000);
    expect(hasBody(empty.messages[0].head.body)).toBe(false);
  });

  it('reports interim 1xx responses apart, also when they share a read with the final one', () => {
    const p = res('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n' + cl, 1000);
    expect(p.interim.map((h) => h.status)).toEqual([100, 103]);
    expect(p.interim[1].fields).toEqual(['link', '</a.css>']);
    expect(p.messages.map((m) => m.head.status)).toEqual([200]);
    expect(p.messages[0].body).toBe('hello world');
  });

  it('decides keep-alive from the version, the Connection header and the framing', () => {
    const ka = (wire: string) => res(wire, 1000).messages[0].head.keepAlive;
    expect(ka('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')).toBe(false);
    expect(ka('HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n')).toBe(false);
    expect(ka('HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n')).toBe(true);
    // Both framings: Transfer-Encoding wins and the connection is not reused (RFC 9112 section 6.3).
    const both = res('HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n', 1000);
    expect(both.messages[0].body).toBe('abc');
    expect(both.messages[0].head.keepAlive).toBe(false);
  });

  it('drops hop-by-hop fields and those the Connection header names; repeated fields follow node', () => {
    const p = res(
      'HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\nX-Hop: 1\r\nHost: h\r\nUpgrade: x\r\n' +
        'Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Type: text/a\r\nContent-Type: text/b\r\nVia: 1\r\nVia: 2\r\nContent-Length: 0\r\n\r\n',
      1000,
    );
    const h = p.messages[0].head;
    expect(fieldsToHeaders(h.fields)).toEqual({ 'set-cookie': ['a=1', 'b=2'], 'content-type': 'text/a', via: '1, 2', 'content-length': '0' });
    expect(h.keepAliveTimeoutMs).toBe(5000);
  });

  it("reads each Keep-Alive value's timeout, the same value again as the last one (read once) or another", () => {
    const ka = (v: string) => res(`HTTP/1.1 204 No Content\r\nKeep-Alive: ${v}\r\n\r\n`, 1000).messages[0].head.keepAliveTimeoutMs;
    expect([ka('timeout=5'), ka('timeout=5'), ka('max=3'), ka('max=3'), ka('max=3, timeout=7'), ka('timeout=5')]).toEqual([5000, 5000, -1, -1, 7000, 5000]);
  });

  it('parses bytes after a response as the next response (pipelining); after a closing one, ignores them', () => {
    const p = res(cl + 'HTTP/1.1 204 No Content\r\n\r\n', 1000);
    expect(p.messages.map((m) => m.head.status)).toEqual([200, 204]);
    const q = res('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 200 OK\r\n\r\n', 1000);
    expect(q.messages).toHaveLength(1);
    expect(q.parser.retainedBytes).toBe(0);
  });

  it('switches to a tunnel on 101 and on a 2xx to CONNECT', () => {
    const up = res('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x00', 1);
    expect(up.messages[0].head).toMatchObject({ status: 101, upgrade: true, body: Body.None });
    expect(up.upgrade).toBe('\x81\x00');
    const connect = res('HTTP/1.1 200 Connection Established\r\n\r\nraw', 1000, { method: 'CONNECT' });
    expect(connect.messages[0].head.upgrade).toBe(true);
    expect(connect.upgrade).toBe('raw');
  });

  it.each([
    ['a bad status line', 'HTTP/2 200 OK\r\n\r\n', 'bad-start-line'],
    ['a status under 100', 'HTTP/1.1 099 X\r\n\r\n', 'bad-start-line'],
    ['obsolete line folding', 'HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\n\r\n', 'obs-fold'],
    ['a bad header name', 'HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n', 'bad-field-name'],
    ['whitespace before the colon', 'HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\n', 'ws-before-colon'],
    ['a control character in a value', 'HTTP/1.1 200 OK\r\nX-A: a\x01b\r\n\r\n', 'bad-field-value'],
    ['differing content-length values', 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n', 'content-length-mismatch'],
    ['a malformed content-length', 'HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n', 'bad-content-length'],
    ['a malformed chunk size', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', 'bad-chunk-size'],
    ['chunk data without its CRLF', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\naXX', 'chunk-no-crlf'],
  ])('refuses %s as UPSTREAM_PROTOCOL', (_what, wire, reason) => {
    const p = res(wire, 1000);
    expect(p.error?.reason).toBe(reason);
    expect(p.error?.code).toBe('UPSTREAM_PROTOCOL');
    expect(p.error?.httpStatus).toBe(502);
  });

  it('accepts a repeated identical content-length, folded or not', () => {
    expect(res('HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok', 1000).messages[0].body).toBe('ok');
    expect(res('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok', 1000).messages[0].body).toBe('ok');
  });

  it('bounds the response head and the trailers', () => {
    const big = `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(300)}\r\n\r\n`;
    expect(res(big, undefined, { maxHeadBytes: 256 }).error?.code).toBe('UPSTREAM_PROTOCOL');
    // Incomplete but already over the limit: refused without waiting for the rest.
    expect(res(big.slice(0, 280), undefined, { maxHeadBytes: 256 }).error?.message).toMatch(/over 256 bytes/);
    const wire = `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: ${'b'.repeat(80)}\r\n\r\n`;
    expect(res(wire, undefined, { maxHeadBytes: 64 }).error?.message).toMatch(/trailer section over 64/);
  });

  it('fails a response cut by the connection closing', () => {
    const mid = res(cl.slice(0, -3), 1000, { finish: true });
    expect(mid.error?.code).toBe('UPSTREAM_RESET');
    expect(mid.error?.message).toMatch(/mid-response/);
    const head = res('HTTP/1.1 200 OK\r\nContent-', 1000, { finish: true });
    expect(head.error?.code).toBe('UPSTREAM_RESET');
    // Nothing at all: the parser has nothing to fail; the client knows a response was due.
    expect(res('', 1000, { finish: true }).error).toBeNull();
  });
});
