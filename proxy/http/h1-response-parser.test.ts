import { H1ResponseParser, type H1ResponseHead } from './h1-response-parser.js';
import { ProxyError } from '../errors/proxy-error.js';
import type { Headers } from './headers.js';

interface Parsed {
  heads: H1ResponseHead[];
  body: string;
  ended: number;
  trailers: Headers | undefined;
  parser: H1ResponseParser;
}

function parser(maxHeaderBytes?: number, upgrade = false): Parsed {
  const out: Parsed = { heads: [], body: '', ended: 0, trailers: undefined, parser: undefined as unknown as H1ResponseParser };
  out.parser = new H1ResponseParser(
    {
      onHead: (h) => out.heads.push(h),
      onData: (c) => (out.body += c.toString('latin1')),
      onEnd: (t) => {
        out.ended++;
        out.trailers = t;
      },
    },
    maxHeaderBytes,
    upgrade,
  );
  return out;
}

/** Parse `wire` fed in pieces of `step` bytes (1 = every byte boundary). */
function feed(wire: string, step: number, opts: { isHead?: boolean; finish?: boolean } = {}): Parsed {
  const p = parser();
  const buf = Buffer.from(wire, 'latin1');
  for (let i = 0; i < buf.length; i += step) p.parser.execute(buf.subarray(i, i + step), opts.isHead ?? false);
  if (opts.finish) p.parser.finish();
  return p;
}

function protocolError(fn: () => void): ProxyError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ProxyError);
    return e as ProxyError;
  }
  throw new Error('expected an error');
}

describe('H1ResponseParser', () => {
  const cl = 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nX-App: a\r\n\r\nhello world';
  const chunked =
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n' +
    '6;ext=1\r\npart1 \r\n5\r\npart2\r\n0\r\nX-Checksum: abc123\r\nX-Other: 1\r\n\r\n';

  it.each([1, 2, 3, 7, 1000])('reads a content-length response fed %i bytes at a time', (step) => {
    const p = feed(cl, step);
    expect(p.heads).toHaveLength(1);
    expect(p.heads[0]).toMatchObject({ status: 200, keepAlive: true, hasBody: true });
    expect(p.heads[0].headers).toEqual({ 'content-type': 'text/plain', 'content-length': '11', 'x-app': 'a' });
    expect(p.body).toBe('hello world');
    expect(p.ended).toBe(1);
    expect(p.parser.done).toBe(true);
  });

  it.each([1, 2, 5, 1000])('reads a chunked response with extensions and trailers fed %i bytes at a time', (step) => {
    const p = feed(chunked, step);
    expect(p.body).toBe('part1 part2');
    expect(p.trailers).toEqual({ 'x-checksum': 'abc123', 'x-other': '1' });
    expect(p.heads[0].headers).toEqual({ trailer: 'x-checksum' });
    expect(p.heads[0].keepAlive).toBe(true);
    expect(p.ended).toBe(1);
  });

  it('reads a body delimited by the connection closing, and never reuses that connection', () => {
    const p = feed('HTTP/1.1 200 OK\r\n\r\nuntil the end', 4);
    expect(p.heads[0].keepAlive).toBe(false);
    expect(p.ended).toBe(0);
    p.parser.finish();
    expect(p.body).toBe('until the end');
    expect(p.ended).toBe(1);
  });

  it('expects no body after HEAD, 204 and 304, whatever the framing headers say', () => {
    const head = feed('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n', 3, { isHead: true });
    expect(head.heads[0]).toMatchObject({ hasBody: false, keepAlive: true });
    expect(head.ended).toBe(1);
    for (const status of [204, 304]) {
      const p = feed(`HTTP/1.1 ${status} X\r\nTransfer-Encoding: chunked\r\n\r\n`, 1000);
      expect(p.heads[0]).toMatchObject({ status, hasBody: false, keepAlive: true });
      expect(p.ended).toBe(1);
    }
    const empty = feed('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', 1000);
    expect(empty.heads[0].hasBody).toBe(false);
  });

  it('skips interim 1xx responses, also when they share a read with the final one', () => {
    const p = feed('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n' + cl, 1000);
    expect(p.heads.map((h) => h.status)).toEqual([200]);
    expect(p.body).toBe('hello world');
  });

  it('decides keep-alive from the version, the Connection header and the framing', () => {
    const ka = (wire: string) => feed(wire, 1000).heads[0].keepAlive;
    expect(ka('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')).toBe(false);
    expect(ka('HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n')).toBe(false);
    expect(ka('HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n')).toBe(true);
    // Both framings: Transfer-Encoding wins and the connection is not reused (RFC 9112 section 6.3).
    const both = feed('HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n', 1000);
    expect(both.body).toBe('abc');
    expect(both.heads[0].keepAlive).toBe(false);
  });

  it('drops hop-by-hop fields and those the Connection header names; repeated fields follow node', () => {
    const p = feed(
      'HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\nX-Hop: 1\r\nHost: h\r\nUpgrade: x\r\n' +
        'Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Type: text/a\r\nContent-Type: text/b\r\nVia: 1\r\nVia: 2\r\nContent-Length: 0\r\n\r\n',
      1000,
    );
    expect(p.heads[0].headers).toEqual({ 'set-cookie': ['a=1', 'b=2'], 'content-type': 'text/a', via: '1, 2', 'content-length': '0' });
    expect(p.heads[0].keepAliveTimeoutMs).toBe(5000);
  });

  it('flags bytes that arrive after the response as extra (the connection is then unusable)', () => {
    const p = feed(cl + 'HTTP/1.1 200', 1000);
    expect(p.ended).toBe(1);
    expect(p.parser.extraData).toBe(true);
    p.parser.reset();
    expect(p.parser.extraData).toBe(false);
    expect(p.parser.started).toBe(false);
  });

  it.each([
    ['a bad status line', 'HTTP/2 200 OK\r\n\r\n'],
    ['101 (upgrades are never forwarded here)', 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: ws\r\n\r\n'],
    ['obsolete line folding', 'HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\n\r\n'],
    ['a bad header name', 'HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n'],
    ['a control character in a value', 'HTTP/1.1 200 OK\r\nX-A: a\x01b\r\n\r\n'],
    ['differing content-length values', 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n'],
    ['a malformed content-length', 'HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n'],
    ['a malformed chunk size', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'],
    ['chunk data without its CRLF', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\naXX'],
  ])('refuses %s as UPSTREAM_PROTOCOL', (_what, wire) => {
    expect(protocolError(() => feed(wire, 1000)).code).toBe('UPSTREAM_PROTOCOL');
  });

  it('for an upgrade request, a 101 is final: it keeps its Upgrade field, and every later byte is the new protocol', () => {
    for (const step of [1, 7, 1000]) {
      const p = parser(undefined, true);
      const wire = Buffer.from('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: abc\r\n\r\n\x81\x02hiHTTP/1.1 200', 'latin1');
      for (let i = 0; i < wire.length; i += step) p.parser.execute(wire.subarray(i, i + step), false);
      expect(p.heads).toEqual([{ status: 101, headers: { upgrade: 'websocket', 'sec-websocket-accept': 'abc' }, keepAlive: false, hasBody: true }]);
      expect(p.body).toBe('\x81\x02hiHTTP/1.1 200');
      expect(p.ended).toBe(0);
    }
  });

  it('accepts a repeated identical content-length, folded or not', () => {
    expect(feed('HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok', 1000).body).toBe('ok');
    expect(feed('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok', 1000).body).toBe('ok');
  });

  it('bounds the response head and the trailers', () => {
    const big = `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(300)}\r\n\r\n`;
    const p = parser(256);
    expect(protocolError(() => p.parser.execute(Buffer.from(big, 'latin1'), false)).code).toBe('UPSTREAM_PROTOCOL');
    // Incomplete but already over the limit: refused without waiting for the rest.
    const q = parser(256);
    expect(protocolError(() => q.parser.execute(Buffer.from(big.slice(0, 280), 'latin1'), false)).message).toMatch(/over 256 bytes/);
    const t = parser(64);
    const wire = `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: ${'b'.repeat(80)}\r\n\r\n`;
    expect(protocolError(() => t.parser.execute(Buffer.from(wire, 'latin1'), false)).message).toMatch(/trailers over 64/);
  });

  it('fails a response cut by the connection closing', () => {
    const mid = feed(cl.slice(0, -3), 1000);
    expect(protocolError(() => mid.parser.finish()).code).toBe('UPSTREAM_RESET');
    const none = parser();
    expect(protocolError(() => none.parser.finish()).message).toMatch(/before a response/);
  });
});
