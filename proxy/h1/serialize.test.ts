import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { createServer, request, type IncomingMessage } from 'node:http';
import { once } from 'node:events';
import { request as undiciRequest } from 'undici';
import { parse } from '../../test/helpers/h1-collector.js';
import { CLOSE, HTTP10_PEER, NO_BODY, lastChunk, requestHead, responseHead, writeChunk, writeMessage, type H1Sink } from './serialize.js';
import { H1Error } from './h1-error.js';
import { Body } from './head.js';

/** Records writes, and which of them happened under one cork (one writev on a socket). */
class Sink implements H1Sink {
  readonly writes: Buffer[] = [];
  readonly batches: number[] = [];
  private corked = 0;
  write(data: Buffer | string, encoding?: BufferEncoding): boolean {
    this.writes.push(typeof data === 'string' ? Buffer.from(data, encoding) : data);
    if (this.corked === 0) this.batches.push(1);
    else this.batches[this.batches.length - 1]++;
    return true;
  }
  cork(): void {
    if (this.corked++ === 0) this.batches.push(0);
  }
  uncork(): void {
    this.corked--;
  }
  get text(): string {
    return Buffer.concat(this.writes).toString('latin1');
  }
}

const refused = (fn: () => unknown): H1Error => {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(H1Error);
    return e as H1Error;
  }
  throw new Error('expected an H1Error');
};

describe('requestHead', () => {
  it('writes the framing itself: relayed Content-Length / Transfer-Encoding never pass (RFC 9112 section 11.2)', () => {
    const relayed = ['content-length', '99', 'Transfer-Encoding', 'gzip', 'x-a', '1', 'Host', 'evil'];
    expect(requestHead('POST', '/p', 'a', relayed, 5)).toBe('POST /p HTTP/1.1\r\nhost: a\r\nx-a: 1\r\ncontent-length: 5\r\n\r\n');
    expect(requestHead('POST', '/p', 'a', relayed, -1)).toBe('POST /p HTTP/1.1\r\nhost: a\r\nx-a: 1\r\ntransfer-encoding: chunked\r\n\r\n');
    expect(requestHead('GET', '/', 'a', {}, 0)).toBe('GET / HTTP/1.1\r\nhost: a\r\n\r\n');
    expect(requestHead('PUT', '/', 'a', {}, 0)).toBe('PUT / HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n');
    expect(requestHead('GET', '/', 'a', { 'set-cookie': ['a', 'b'] }, 0)).toBe('GET / HTTP/1.1\r\nhost: a\r\nset-cookie: a\r\nset-cookie: b\r\n\r\n');
  });

  it('checks a request line again whenever method, target or host change, and never keeps one it refused', () => {
    expect(requestHead('GET', '/ok', 'a', {}, 0)).toBe('GET /ok HTTP/1.1\r\nhost: a\r\n\r\n');
    for (let i = 0; i < 2; i++) {
      expect(() => requestHead('GET', '/o k', 'a', {}, 0)).toThrow(H1Error);
      expect(() => requestHead('GET', '/ok', 'a\r\nx: 1', {}, 0)).toThrow(H1Error);
      expect(() => requestHead('G T', '/ok', 'a', {}, 0)).toThrow(H1Error);
    }
    expect(requestHead('GET', '/ok', 'a', {}, 0)).toBe('GET /ok HTTP/1.1\r\nhost: a\r\n\r\n');
    // Nothing matches a line never made: an empty method, target and host are refused whatever came before.
    expect(() => requestHead('', '', '', {}, 0)).toThrow(H1Error);
    expect(() => responseHead(0, {}, 0, 0)).toThrow(H1Error);
    expect(() => responseHead(0, {}, 0, 0)).toThrow(H1Error);
    expect(responseHead(200, {}, 0, 0)).toBe('HTTP/1.1 200 \r\ncontent-length: 0\r\n\r\n');
    // The caller's extra lines go after the framing field, before the empty line.
    expect(requestHead('POST', '/ok', 'a', {}, -1, 'wren-x: 1\r\n')).toBe('POST /ok HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\nwren-x: 1\r\n\r\n');
  });

  it.each([
    ['a method that is not a token', () => requestHead('G T', '/', 'a', {}, 0), 'bad-start-line'],
    ['a target with a space', () => requestHead('GET', '/a b', 'a', {}, 0), 'bad-start-line'],
    ['a target with CRLF', () => requestHead('GET', '/\r\nX: 1', 'a', {}, 0), 'bad-start-line'],
    ['an empty target', () => requestHead('GET', '', 'a', {}, 0), 'bad-start-line'],
    ['a CRLF in a value (splitting, RFC 9112 section 11.1)', () => requestHead('GET', '/', 'a', { 'x-a': '1\r\nx-b: 2' }, 0), 'bad-field-value'],
    ['a NUL in a value', () => requestHead('GET', '/', 'a', ['x-a', '\x00'], 0), 'bad-field-value'],
    ['a CRLF in the host', () => requestHead('GET', '/', 'a\r\n', {}, 0), 'bad-field-value'],
    ['a name with a colon', () => requestHead('GET', '/', 'a', { 'x:a': '1' }, 0), 'bad-field-name'],
    ['a non-latin1 value', () => requestHead('GET', '/', 'a', { 'x-a': '\u2028' }, 0), 'bad-field-value'],
  ])('refuses %s', (_what, fn, reason) => {
    const e = refused(fn);
    expect(e.reason).toBe(reason);
    expect(e.code).toBe('BAD_REQUEST');
  });
});

describe('responseHead', () => {
  it('frames by what it knows of the body and the peer (RFC 9112 sections 6, 9)', () => {
    expect(responseHead(200, { 'content-type': 'text/plain' }, 5, 0)).toBe('HTTP/1.1 200 \r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\n');
    expect(responseHead(200, {}, -1, 0)).toBe('HTTP/1.1 200 \r\ntransfer-encoding: chunked\r\n\r\n');
    // An HTTP/1.0 client cannot read chunked: the body ends with the connection.
    expect(responseHead(200, {}, -1, HTTP10_PEER)).toBe('HTTP/1.1 200 \r\nconnection: close\r\n\r\n');
    expect(responseHead(200, {}, 3, HTTP10_PEER)).toBe('HTTP/1.1 200 \r\ncontent-length: 3\r\nconnection: keep-alive\r\n\r\n');
    expect(responseHead(200, {}, 3, CLOSE)).toBe('HTTP/1.1 200 \r\ncontent-length: 3\r\nconnection: close\r\n\r\n');
    // 204 and 304 carry no framing; a HEAD response describes the body a GET would have had.
    expect(responseHead(204, { 'content-length': '7', 'transfer-encoding': 'chunked' }, 0, 0)).toBe('HTTP/1.1 204 \r\n\r\n');
    expect(responseHead(304, {}, -1, 0)).toBe('HTTP/1.1 304 \r\n\r\n');
    expect(responseHead(200, {}, 42, NO_BODY)).toBe('HTTP/1.1 200 \r\ncontent-length: 42\r\n\r\n');
    expect(responseHead(100, { 'content-length': '1' }, -1, 0)).toBe('HTTP/1.1 100 \r\n\r\n');
    expect(responseHead(101, ['connection', 'upgrade', 'upgrade', 'websocket'], 0, 0)).toBe('HTTP/1.1 101 \r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n');
  });

  it('refuses what would split the response (RFC 9112 section 11.1) as an upstream protocol error', () => {
    const e = refused(() => responseHead(200, { 'x-a': 'a\nb' }, 0, 0));
    expect(e.code).toBe('UPSTREAM_PROTOCOL');
    expect(refused(() => responseHead(2000, {}, 0, 0)).reason).toBe('bad-start-line');
    expect(refused(() => lastChunk({ 'x-t': '\r' }, true)).reason).toBe('bad-field-value');
  });
});

describe('field lines made before', () => {
  it('checks a value again whenever it differs from the last one of its name, and reuses the line when it does not', () => {
    const a = responseHead(200, { 'x-kept': 'one' }, 0, 0);
    expect(responseHead(200, { 'x-kept': 'one' }, 0, 0)).toBe(a);
    expect(a).toContain('x-kept: one\r\n');
    // Same name, another value: checked, refused, and the good line still served after.
    expect(() => responseHead(200, { 'x-kept': 'one\r\nset-cookie: a=b' }, 0, 0)).toThrow(H1Error);
    expect(() => requestHead('GET', '/', 'h', ['x-kept', 'o\x00ne'], 0)).toThrow(/invalid value for field x-kept/);
    expect(responseHead(200, { 'x-kept': 'two' }, 0, 0)).toContain('x-kept: two\r\n');
    expect(responseHead(200, { 'x-kept': 'one' }, 0, 0)).toBe(a);
    // A bad name is refused whatever was kept for a good one.
    expect(() => responseHead(200, { 'x kept': 'one' }, 0, 0)).toThrow(/invalid field name/);
    expect(() => responseHead(200, { 'x-kept:': 'one' }, 0, 0)).toThrow(/invalid field name/);
    // The framing fields are never copied from a header map, kept or not.
    expect(requestHead('POST', '/', 'h', { 'content-length': '5', host: 'evil' }, 3)).toBe('POST / HTTP/1.1\r\nhost: h\r\ncontent-length: 3\r\n\r\n');
  });
});

describe('writing bodies', () => {
  it('sends a head and a small body as one buffer, a large one corked beside it', () => {
    const small = new Sink();
    writeMessage(small, 'HTTP/1.1 200 \r\ncontent-length: 2\r\n\r\n', Buffer.from('ok'));
    expect(small.writes).toHaveLength(1);
    expect(small.text).toBe('HTTP/1.1 200 \r\ncontent-length: 2\r\n\r\nok');
    const big = new Sink();
    const body = Buffer.alloc(100_000, 0x61);
    writeMessage(big, 'H', body);
    expect(big.batches).toEqual([2]);
    expect(big.writes[1].buffer).toBe(body.buffer); // not copied
    const none = new Sink();
    writeMessage(none, 'H', null);
    expect(none.text).toBe('H');
  });

  it("on a sink whose turn's writes leave together (a mux stream) a long body is not corked beside its head, so it is not joined into a copy", () => {
    const mux = Object.assign(new Sink(), { batchesWrites: true });
    const body = Buffer.alloc(100_000, 0x61);
    writeMessage(mux, 'H', body);
    expect(mux.batches).toEqual([1, 1]);
    expect(mux.writes[1]).toBe(body);
    const chunk = Buffer.alloc(20_000, 0x62);
    writeChunk(mux, chunk);
    expect(mux.batches).toEqual([1, 1, 1, 1, 1]);
    expect(mux.writes[3]).toBe(chunk);
    // A short body still goes in one buffer with its head (one frame).
    writeMessage(mux, 'H', Buffer.from('ok'));
    expect(mux.batches).toHaveLength(6);
  });

  it('chunks a body of unknown length and ends it with trailers (RFC 9112 section 7.1)', () => {
    const s = new Sink();
    s.write(responseHead(200, {}, -1, 0), 'latin1');
    writeChunk(s, Buffer.from('hello '));
    writeChunk(s, Buffer.alloc(0)); // would otherwise end the body
    writeChunk(s, Buffer.alloc(20_000, 0x62));
    s.write(lastChunk({ 'grpc-status': '0', 'x-list': ['a', 'b'] }, true));
    expect(s.batches).toEqual([1, 1, 3, 1]);
    const c = parse(s.text, { responses: true, step: 999 });
    expect(c.error).toBeNull();
    expect(c.messages[0].body).toBe('hello ' + 'b'.repeat(20_000));
    expect(c.messages[0].trailers).toEqual(['grpc-status', '0', 'x-list', 'a', 'x-list', 'b']);
    expect(lastChunk(undefined, true).toString()).toBe('0\r\n\r\n');
    expect(lastChunk({}, true).toString()).toBe('0\r\n\r\n');
  });

  it('round-trips through the parser: what it writes is read back as the same message', () => {
    const s = new Sink();
    writeMessage(s, requestHead('POST', '/a?b', 'h:1', ['x-a', ' v ', 'x-b', 'caf\xe9'], 3), Buffer.from('abc'));
    s.write(requestHead('PATCH', '/c', 'h', {}, -1), 'latin1');
    writeChunk(s, Buffer.from('xyz'));
    s.write(lastChunk(undefined, false));
    const c = parse(s.text, { step: 3 });
    expect(c.error).toBeNull();
    expect(c.messages.map((m) => [m.head.method, m.head.target, m.head.host, m.head.body, m.body])).toEqual([
      ['POST', '/a?b', 'h:1', Body.Length, 'abc'],
      ['PATCH', '/c', 'h', Body.Chunked, 'xyz'],
    ]);
    expect(c.messages[0].head.fields).toEqual(['host', 'h:1', 'x-a', 'v', 'x-b', 'caf\xe9', 'content-length', '3']);
  });
});

describe('against real HTTP/1.1 implementations', () => {
  it('node:http and undici read its responses: Content-Length, and chunked with trailers and connection: close', async () => {
    let n = 0;
    const server = createNetServer((sock: Socket) => {
      sock.once('data', () => {
        const i = n++;
        if (i === 0) writeMessage(sock, responseHead(200, { 'x-a': '1' }, 5, 0), Buffer.from('hello'));
        else {
          sock.write(responseHead(200, { trailer: 'x-t' }, -1, CLOSE), 'latin1');
          writeChunk(sock, Buffer.from('part1'));
          writeChunk(sock, Buffer.from('part2'));
          sock.end(lastChunk({ 'x-t': 'done' }, true));
        }
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as AddressInfo).port;
    try {
      const a = await undiciRequest(`http://127.0.0.1:${port}/`);
      expect(a.statusCode).toBe(200);
      expect(a.headers['x-a']).toBe('1');
      expect(await a.body.text()).toBe('hello');
      const res = await new Promise<IncomingMessage>((resolve, reject) => request({ port, host: '127.0.0.1', agent: false }, resolve).on('error', reject).end());
      let body = '';
      for await (const c of res) body += c;
      expect(body).toBe('part1part2');
      expect(res.trailers).toEqual({ 'x-t': 'done' });
    } finally {
      server.close();
    }
  });

  it('node:http reads its requests: Content-Length and chunked with trailers', async () => {
    const seen: string[] = [];
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        seen.push(`${req.method} ${req.url} ${req.headers['x-a']} ${body} ${JSON.stringify(req.trailers)}`);
        res.end('ok');
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { connect } = await import('node:net');
    const sock = connect((server.address() as AddressInfo).port, '127.0.0.1');
    await once(sock, 'connect');
    writeMessage(sock, requestHead('POST', '/one', 'x', { 'x-a': 'A' }, 3), Buffer.from('abc'));
    sock.write(requestHead('PUT', '/two', 'x', { 'x-a': 'B', trailer: 'x-t' }, -1), 'latin1');
    writeChunk(sock, Buffer.from('de'));
    sock.write(lastChunk({ 'x-t': 'v' }, false));
    let got = '';
    sock.on('data', (d: Buffer) => (got += d.toString('latin1')));
    while ((got.match(/\r\n\r\nok/g) ?? []).length < 2) await once(sock, 'data');
    sock.destroy();
    server.close();
    expect(seen).toEqual(['POST /one A abc {}', 'PUT /two B de {"x-t":"v"}']);
  });
});
