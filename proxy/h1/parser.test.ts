import { parse, Collector } from '../../test/helpers/h1-collector.js';
import { H1Parser } from './parser.js';
import { Body } from './head.js';
import type { H1Reason } from './h1-error.js';
import { DEFAULT_H1_LIMITS } from './limits.js';

const GET = 'GET / HTTP/1.1\r\nHost: a\r\n\r\n';
const post = (fields: string, body = '') => `POST /p HTTP/1.1\r\nHost: a\r\n${fields}\r\n${body}`;
const chunked = (chunks: string) => post('Transfer-Encoding: chunked\r\n', chunks);

/**
 * Requests the codec must refuse, each with the rule it breaks. Every one is also fed
 * one byte at a time, and followed by a valid request that must never be parsed (after
 * an error nothing more is read: whatever follows could be a smuggled request).
 */
const REFUSED: [string, string, H1Reason, number][] = [
  // RFC 9112 section 6.3 item 3 and section 11.2: both framings is the classic CL.TE / TE.CL smuggling.
  ['Content-Length and Transfer-Encoding (6.3 item 3, 11.2)', post('Content-Length: 3\r\nTransfer-Encoding: chunked\r\n', '0\r\n\r\n'), 'cl-and-te', 400],
  ['Transfer-Encoding then Content-Length (6.3 item 3, 11.2)', post('Transfer-Encoding: chunked\r\nContent-Length: 0\r\n', '0\r\n\r\n'), 'cl-and-te', 400],
  // RFC 9112 section 6.3 item 5, RFC 9110 section 8.6: differing or invalid Content-Length is unrecoverable.
  ['differing duplicate Content-Length lines (6.3 item 5)', post('Content-Length: 3\r\nContent-Length: 4\r\n', 'abcd'), 'content-length-mismatch', 400],
  ['differing Content-Length list (6.3 item 5)', post('Content-Length: 3, 4\r\n', 'abcd'), 'content-length-mismatch', 400],
  ['a signed Content-Length (6.3 item 5)', post('Content-Length: +3\r\n', 'abc'), 'bad-content-length', 400],
  ['a negative Content-Length (6.3 item 5)', post('Content-Length: -1\r\n'), 'bad-content-length', 400],
  ['a hex Content-Length (6.3 item 5)', post('Content-Length: 0x3\r\n', 'abc'), 'bad-content-length', 400],
  ['an empty Content-Length (6.3 item 5)', post('Content-Length: \r\n'), 'bad-content-length', 400],
  ['a Content-Length with inner space (6.3 item 5)', post('Content-Length: 1 2\r\n'), 'bad-content-length', 400],
  ['a 16-digit Content-Length (6.3 item 5)', post('Content-Length: 1000000000000000\r\n'), 'bad-content-length', 400],
  // RFC 9112 section 6.3 item 4: chunked must be the final (and here the only) coding.
  ['Transfer-Encoding gzip (6.3 item 4)', post('Transfer-Encoding: gzip\r\n', 'x'), 'te-not-chunked', 400],
  ['Transfer-Encoding chunked, gzip (6.3 item 4)', post('Transfer-Encoding: chunked, gzip\r\n', '0\r\n\r\n'), 'te-not-chunked', 400],
  ['Transfer-Encoding identity (6.3 item 4)', post('Transfer-Encoding: identity\r\n'), 'te-not-chunked', 400],
  ['Transfer-Encoding xchunked (6.3 item 4)', post('Transfer-Encoding: xchunked\r\n', '0\r\n\r\n'), 'te-not-chunked', 400],
  ['chunked applied twice, one line (6.1)', post('Transfer-Encoding: chunked, chunked\r\n', '0\r\n\r\n'), 'te-not-chunked', 400],
  ['chunked applied twice, two lines (6.1)', post('Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n', '0\r\n\r\n'), 'te-not-chunked', 400],
  ['an empty Transfer-Encoding (6.3 item 4)', post('Transfer-Encoding: \r\n'), 'te-not-chunked', 400],
  ['a coding before chunked the proxy cannot decode (6.1: 501)', post('Transfer-Encoding: gzip, chunked\r\n', '0\r\n\r\n'), 'te-not-implemented', 501],
  ['Transfer-Encoding in HTTP/1.0 (6.1)', 'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 'te-in-http10', 400],
  // RFC 9112 section 7.1 and 7.1.1: chunk framing.
  ['a non-hex chunk size (7.1)', chunked('zz\r\nab\r\n0\r\n\r\n'), 'bad-chunk-size', 400],
  ['a negative chunk size (7.1)', chunked('-1\r\n'), 'bad-chunk-size', 400],
  ['a 0x-prefixed chunk size (7.1)', chunked('0x2\r\nab\r\n0\r\n\r\n'), 'bad-chunk-ext', 400],
  ['an empty chunk-size line (7.1)', chunked('\r\nab\r\n'), 'bad-chunk-size', 400],
  ['a chunk size over 13 hex digits (7.1)', chunked('10000000000000\r\n'), 'bad-chunk-size', 400],
  ['a chunk-size line ended by a bare LF (7.1, 2.2)', chunked('2\nab\r\n0\r\n\r\n'), 'bad-chunk-size', 400],
  ['whitespace after the chunk size, no extension (7.1)', chunked('2 \r\nab\r\n0\r\n\r\n'), 'bad-chunk-ext', 400],
  ['an extension without a name (7.1.1)', chunked('2;\r\nab\r\n0\r\n\r\n'), 'bad-chunk-ext', 400],
  ['an extension with an unterminated quote (7.1.1)', chunked('2;a="b\r\nab\r\n0\r\n\r\n'), 'bad-chunk-ext', 400],
  ['a bare CR in an extension (7.1.1)', chunked('2;a=b\rc\r\nab\r\n0\r\n\r\n'), 'bad-chunk-ext', 400],
  ['a NUL in an extension (7.1.1)', chunked('2;a=\x00\r\nab\r\n0\r\n\r\n'), 'bad-chunk-ext', 400],
  ['extensions over the limit (7.1.1)', chunked(`2;a=${'b'.repeat(DEFAULT_H1_LIMITS.maxChunkExtBytes)}\r\nab\r\n0\r\n\r\n`), 'chunk-ext-too-long', 400],
  ['chunk data not followed by CRLF (7.1)', chunked('2\r\nabc\r\n0\r\n\r\n'), 'chunk-no-crlf', 400],
  ['chunk data followed by a bare LF (7.1)', chunked('2\r\nab\n0\r\n\r\n'), 'chunk-no-crlf', 400],
  // RFC 9112 section 5.2: obs-fold is refused in requests.
  ['obs-fold with spaces (5.2)', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  folded\r\n\r\n', 'obs-fold', 400],
  ['obs-fold with a tab (5.2)', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\tfolded\r\n\r\n', 'obs-fold', 400],
  ['whitespace before the first field (2.2, 5.2)', 'GET / HTTP/1.1\r\n Host: a\r\n\r\n', 'obs-fold', 400],
  // RFC 9112 section 2.2: only CRLF ends a line; a bare CR is invalid.
  ['a head line ended by a bare LF (2.2)', 'GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n', 'bare-lf', 400],
  ['a request line ended by a bare LF (2.2)', 'GET / HTTP/1.1\nHost: a\r\n\r\n', 'bare-lf', 400],
  // RFC 9112 section 2.2: empty lines (CRLF) before the request-line are skipped, a lone CR is not one.
  ['a lone CR before the request line (2.2)', '\rGET / HTTP/1.1\r\nHost: a\r\n\r\n', 'bare-cr', 400],
  ['CR CR LF before the request line (2.2)', '\r\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n', 'bare-cr', 400],
  ['CRLF then a lone CR before the request line (2.2)', '\r\n\rGET / HTTP/1.1\r\nHost: a\r\n\r\n', 'bare-cr', 400],
  ['LF CR before the request line (2.2)', '\n\rGET / HTTP/1.1\r\nHost: a\r\n\r\n', 'bare-lf', 400],
  ['a head ended by LF LF (2.2)', 'GET / HTTP/1.1\r\nHost: a\r\n\n', 'bare-lf', 400],
  ['a bare CR inside a value (2.2)', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r2\r\n\r\n', 'bare-cr', 400],
  ['a bare CR before CRLF (2.2)', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\r\n\r\n', 'bare-cr', 400],
  ['a bare CR inside a name (2.2)', 'GET / HTTP/1.1\r\nHost: a\r\nX\rA: 1\r\n\r\n', 'bare-cr', 400],
  ['a bare CR in the request line (2.2, 3)', 'GET /\r HTTP/1.1\r\nHost: a\r\n\r\n', 'bad-start-line', 400],
  // RFC 9110 section 5.5: NUL and other control characters in fields.
  ['a NUL in a value (RFC 9110 5.5)', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\x002\r\n\r\n', 'bad-field-value', 400],
  ['a control character in a value (RFC 9110 5.5)', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: \x01\r\n\r\n', 'bad-field-value', 400],
  ['a DEL in a value (RFC 9110 5.5)', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x7fb\r\n\r\n', 'bad-field-value', 400],
  ['a vertical tab before chunked (RFC 9110 5.5)', post('Transfer-Encoding: \x0bchunked\r\n', '0\r\n\r\n'), 'bad-field-value', 400],
  ['a NUL in a name (5.1)', 'GET / HTTP/1.1\r\nHost: a\r\nX\x00A: 1\r\n\r\n', 'bad-field-name', 400],
  ['an empty field name (5.1)', 'GET / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n', 'bad-field-name', 400],
  ['a field line without a colon (5.1)', 'GET / HTTP/1.1\r\nHost: a\r\nX-A\r\n\r\n', 'bad-field-name', 400],
  // RFC 9112 section 5.1: "MUST reject ... whitespace between a header field name and colon".
  ['a space between name and colon (5.1)', 'GET / HTTP/1.1\r\nHost : a\r\n\r\n', 'ws-before-colon', 400],
  ['a tab between Transfer-Encoding and colon (5.1, 11.2)', post('Transfer-Encoding\t: chunked\r\n', '0\r\n\r\n'), 'ws-before-colon', 400],
  ['a space between Content-Length and colon (5.1, 11.2)', post('Content-Length : 3\r\n', 'abc'), 'ws-before-colon', 400],
  // RFC 9112 section 3.2: exactly one valid Host in HTTP/1.1.
  ['HTTP/1.1 without Host (3.2)', 'GET / HTTP/1.1\r\n\r\n', 'missing-host', 400],
  ['two Host fields (3.2)', 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 'multiple-host', 400],
  ['a Host with userinfo (3.2)', 'GET / HTTP/1.1\r\nHost: u@a\r\n\r\n', 'bad-host', 400],
  ['a Host with a space (3.2)', 'GET / HTTP/1.1\r\nHost: a b\r\n\r\n', 'bad-host', 400],
  // RFC 9112 sections 2.3 and 3: request line.
  ['two spaces in the request line (3)', 'GET  / HTTP/1.1\r\nHost: a\r\n\r\n', 'bad-start-line', 400],
  ['a method that is not a token (3.1)', 'G(T / HTTP/1.1\r\nHost: a\r\n\r\n', 'bad-start-line', 400],
  // RFC 9110 section 9.1: methods are case-sensitive; a lower-case one is what an app that upper-cases would read as another method.
  ['a lower-case method (RFC 9110 9.1)', 'delete / HTTP/1.1\r\nHost: a\r\n\r\n', 'lowercase-method', 400],
  ['a mixed-case method (RFC 9110 9.1)', 'Get / HTTP/1.1\r\nHost: a\r\n\r\n', 'lowercase-method', 400],
  ['HTTP/1.2 (2.3)', 'GET / HTTP/1.2\r\nHost: a\r\n\r\n', 'bad-version', 400],
  ['HTTP/2.0 in text (2.3)', 'GET / HTTP/2.0\r\nHost: a\r\n\r\n', 'bad-version', 400],
  ['a lower-case version (2.3)', 'GET / http/1.1\r\nHost: a\r\n\r\n', 'bad-version', 400],
  ['a request line without a version: HTTP/0.9 (2.3, 3)', 'GET /\r\nHost: a\r\n\r\n', 'bad-version', 400],
  ['HTTP/0.9 ended by a bare LF (2.2)', 'GET /\nHost: a\r\n\r\n', 'bare-lf', 400],
];

describe('H1Parser requests: refused (RFC 9112 sections 6.3 and 11.2)', () => {
  it.each(REFUSED)('refuses %s', (_what, wire, reason, status) => {
    for (const step of [undefined, 1]) {
      const next = GET; // a request after the bad one: never parsed
      const c = parse(wire + next, { step });
      expect(c.error?.reason).toBe(reason);
      expect(c.error?.httpStatus).toBe(status);
      expect(c.error?.message).toMatch(/RFC 9112|RFC 9110|RFC 6585/);
      expect(c.messages).toHaveLength(0);
      expect(c.events.filter((e) => e === 'error')).toHaveLength(1);
    }
  });

  it('answers an oversized head with 431 naming the limit, before the head is complete (RFC 6585 section 5)', () => {
    const limits = { ...DEFAULT_H1_LIMITS, maxHeadBytes: 1024 };
    const big = `GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'a'.repeat(2000)}`; // no end yet
    for (const step of [undefined, 1, 100]) {
      const c = parse(big, { limits, step });
      expect(c.error?.reason).toBe('head-too-large');
      expect(c.error?.code).toBe('HEADERS_TOO_LARGE');
      expect(c.error?.httpStatus).toBe(431);
      expect(c.error?.message).toMatch(/over 1024 bytes/);
      expect(c.parser.retainedBytes).toBe(0);
    }
    // Exactly at the limit is fine.
    const head = 'GET / HTTP/1.1\r\nHost: a\r\nX: ';
    const exact = head + 'b'.repeat(1024 - head.length - 4) + '\r\n\r\n';
    expect(Buffer.byteLength(exact)).toBe(1024);
    expect(parse(exact, { limits, step: 7 }).messages).toHaveLength(1);
    expect(parse(exact.replace('X: b', 'X: bb'), { limits }).error?.httpStatus).toBe(431);
  });

  it('bounds the number of fields (431) and the trailer section', () => {
    const limits = { ...DEFAULT_H1_LIMITS, maxHeaderCount: 3 };
    expect(parse('GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n', { limits }).messages).toHaveLength(1);
    const many = parse('GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n', { limits });
    expect(many.error?.reason).toBe('too-many-fields');
    expect(many.error?.httpStatus).toBe(431);
    expect(many.error?.message).toMatch(/more than 3 fields/);
    const trailers = parse(chunked(`0\r\nT: ${'x'.repeat(300)}\r\n\r\n`), { limits: { ...DEFAULT_H1_LIMITS, maxHeadBytes: 256 } });
    expect(trailers.error?.reason).toBe('trailers-too-large');
  });

  it('gives the trailer section a budget of its own with maxTrailerBytes (the head keeps maxHeadBytes), on the next message too', () => {
    const limits = { ...DEFAULT_H1_LIMITS, maxHeadBytes: 256, maxTrailerBytes: 1024 };
    const big = (n: number) => chunked(`0\r\nT: ${'x'.repeat(n)}\r\n\r\n`);
    const ok = parse(big(900) + GET, { limits, step: 13 });
    expect(ok.error).toBeNull();
    expect(ok.messages).toHaveLength(2);
    const over = parse(big(1100), { limits, step: 13 });
    expect(over.error?.reason).toBe('trailers-too-large');
    expect(over.error?.message).toMatch(/over 1024 bytes/);
    // The head after a trailer section is held to maxHeadBytes again.
    expect(parse(big(10) + `GET / HTTP/1.1\r\nHost: a\r\nX: ${'b'.repeat(300)}\r\n\r\n`, { limits }).error?.reason).toBe('head-too-large');
  });

  it('fails a request cut short by the client closing, but not an idle connection', () => {
    const cut = parse(post('Content-Length: 5\r\n', 'ab'), { finish: true });
    expect(cut.error?.reason).toBe('truncated');
    expect(cut.error?.code).toBe('CLIENT_CANCELLED');
    expect(parse(GET, { finish: true }).error).toBeNull();
    expect(parse('', { finish: true }).error).toBeNull();
    expect(parse('GET / HT', { finish: true }).error?.reason).toBe('truncated');
  });
});

describe('H1Parser requests: accepted', () => {
  it('parses a head into method, target, version, lower-cased flat fields and framing facts', () => {
    const c = parse('GET /a?b=1 HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent:  curl/8 \r\nX-Empty:\r\nX-Obs: caf\xe9\r\nAccept: */*\r\n\r\n');
    const h = c.messages[0].head;
    expect(h).toMatchObject({ method: 'GET', target: '/a?b=1', minor: 1, host: 'example.com:8080', body: Body.None, contentLength: -1, keepAlive: true, upgrade: false, expectContinue: false });
    expect(h.fields).toEqual(['host', 'example.com:8080', 'user-agent', 'curl/8', 'x-empty', '', 'x-obs', 'caf\xe9', 'accept', '*/*']);
    expect(h.get('user-agent')).toBe('curl/8');
    expect(c.events).toEqual(['head', 'end']);
  });

  it('takes a head, its trailers and the next head whole from one buffer, and keeps them when the buffer is overwritten (a socket reuses its read buffer)', () => {
    const wire = Buffer.from(post('Transfer-Encoding: chunked\r\nX-A: first value\r\n', '3\r\nabc\r\n0\r\nGrpc-Status: 0\r\nGrpc-Message: all fine here\r\n\r\n') + 'GET /next?q=1 HTTP/1.1\r\nHost: b\r\nX-B: second\r\n\r\n', 'latin1');
    const c = new Collector();
    const p = new H1Parser(c, false);
    expect(p.execute(wire)).toBe(wire.length);
    wire.fill(0x7a);
    expect(c.messages.map((m) => [m.head.target, m.head.fields, m.trailers])).toEqual([
      ['/p', ['host', 'a', 'transfer-encoding', 'chunked', 'x-a', 'first value'], ['grpc-status', '0', 'grpc-message', 'all fine here']],
      ['/next?q=1', ['host', 'b', 'x-b', 'second'], []],
    ]);
  });

  it.each([1, 2, 3, 7, 1000])('reads Content-Length and chunked bodies fed %i bytes at a time', (step) => {
    const wire = post('Content-Length: 11\r\n', 'hello world') + chunked('6;ext=1;q="a \\"b\\""\r\npart1 \r\n5 ; x\r\npart2\r\n0\r\nX-Sum: abc\r\nX-Other: 1\r\n\r\n');
    const c = parse(wire, { step });
    expect(c.messages.map((m) => [m.head.body, m.head.contentLength, m.body])).toEqual([
      [Body.Length, 11, 'hello world'],
      [Body.Chunked, -1, 'part1 part2'],
    ]);
    expect(c.messages[1].trailers).toEqual(['x-sum', 'abc', 'x-other', '1']);
    expect(c.error).toBeNull();
  });

  it('hands body bytes as views of the socket buffer (no copy)', () => {
    const buf = Buffer.from(post('Content-Length: 5\r\n', 'hello'), 'latin1');
    const c = parse(buf);
    const v = c.messages[0].views[0];
    expect(v.buffer).toBe(buf.buffer);
    expect(v.byteOffset).toBe(buf.byteOffset + buf.length - 5);
  });

  it('accepts upper-case extension methods (RFC 9110 section 16.1: any token; none registered in lower case)', () => {
    for (const m of ['PROPFIND', 'MKCALENDAR', 'BASELINE-CONTROL', 'XX_IN', 'M2']) expect(parse(`${m} / HTTP/1.1\r\nHost: a\r\n\r\n`).messages[0].head.method).toBe(m);
  });

  it('accepts identical repeated Content-Length values (RFC 9110 section 8.6) and a case-insensitive chunked', () => {
    expect(parse(post('Content-Length: 2, 2\r\n', 'ok')).messages[0].body).toBe('ok');
    expect(parse(post('Content-Length: 2\r\nContent-Length: 2\r\n', 'ok')).messages[0].body).toBe('ok');
    expect(parse(post('Transfer-Encoding: Chunked \r\n', '2\r\nok\r\n0\r\n\r\n')).messages[0].body).toBe('ok');
  });

  it('parses pipelined requests in order, and ignores empty lines before a request line (RFC 9112 section 2.2)', () => {
    const wire = GET + post('Content-Length: 1\r\n', 'x') + '\r\n' + 'DELETE /d HTTP/1.1\r\nHost: b\r\n\r\n';
    for (const step of [1, 5, 1000]) {
      const c = parse(wire, { step });
      expect(c.messages.map((m) => `${m.head.method} ${m.head.target} ${m.body}`)).toEqual(['GET / ', 'POST /p x', 'DELETE /d ']);
      expect(c.parser.idle).toBe(true);
    }
  });

  it('decides keep-alive from the version and Connection, and reads nothing after a closing request (RFC 9112 sections 9.3, 9.6)', () => {
    const ka = (wire: string) => parse(wire).messages[0].head.keepAlive;
    expect(ka('GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n')).toBe(false);
    expect(ka('GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n')).toBe(false);
    expect(ka('GET / HTTP/1.0\r\n\r\n')).toBe(false);
    expect(ka('GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n')).toBe(true);
    const c = parse('GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n' + GET);
    expect(c.messages).toHaveLength(1);
    expect(c.parser.retainedBytes).toBe(0);
  });

  it('flags Expect: 100-continue on HTTP/1.1 only (RFC 9110 section 10.1.1)', () => {
    expect(parse(post('Expect: 100-Continue\r\nContent-Length: 1\r\n', 'x')).messages[0].head.expectContinue).toBe(true);
    expect(parse('POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx').messages[0].head.expectContinue).toBe(false);
  });

  it('switches to a tunnel after an upgrade request or CONNECT, handing over the bytes that follow', () => {
    const ws = 'GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n';
    for (const step of [1, 1000]) {
      const c = parse(ws + '\x81\x05hello' + GET, { step });
      expect(c.messages[0].head.upgrade).toBe(true);
      expect(c.upgrade).toBe('\x81\x05hello' + GET); // never parsed as HTTP
      expect(c.messages).toHaveLength(1);
      expect(c.events.slice(0, 3)).toEqual(['head', 'end', 'upgrade']);
    }
    const connect = parse('CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n');
    expect(connect.messages[0].head.upgrade).toBe(true);
    expect(connect.upgrade).toBe('');
    // Upgrade without Connection: upgrade is not an upgrade (RFC 9110 section 7.8).
    expect(parse('GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n').messages[0].head.upgrade).toBe(false);
  });

  it('pauses when the handler asks and resumes where it stopped', () => {
    const c = new Collector();
    const p = new H1Parser(c, false);
    c.onEndHook = () => p.pause();
    const buf = Buffer.from(GET + post('Content-Length: 2\r\n', 'ok'), 'latin1');
    const n = p.execute(buf);
    expect(n).toBe(GET.length);
    expect(c.messages).toHaveLength(1);
    expect(p.execute(buf.subarray(n))).toBe(0);
    p.resume();
    expect(p.execute(buf.subarray(n))).toBe(buf.length - n);
    expect(c.messages.map((m) => m.body)).toEqual(['', 'ok']);
  });
});
