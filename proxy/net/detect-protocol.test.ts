import { classifyPrefix } from './detect-protocol.js';

const c = (s: string) => classifyPrefix(Buffer.from(s, 'latin1'));

describe('classifyPrefix', () => {
  test.each([
    ['GET / HTTP/1.1\r\n'],
    ['PROPFIND /dav HTTP/1.1\r\n'],
    ['QUERY /q HTTP/1.1\r\n'],
    ['M-SEARCH * HTTP/1.1\r\n'],
    ['\r\nGET / HTTP/1.1\r\n'],
    ['\r\n\r\n\nPOST /x?y=1 HTTP/1.0\r\n'],
    ['PRI * HTTP/1.1\r\n'],
    ['GET / HTTP/1.1\n'],
    // What node's parser (llhttp) also takes as a request line: the h1 codec parses and
    // refuses it, it is never spliced to the app (test/sniff-llhttp-differential.test.ts).
    ['GET  / HTTP/1.1\r\n'],
    ['GET /  HTTP/1.1\r\n'],
    ['GET / HTTP/2.0\r\n'],
    ['GET /whoami RTSP/1.0\r\n'],
    // llhttp skips any run of CR and LF before a request line, lone CRs too (RFC 9112
    // section 2.2 has those refused): the codec answers 400.
    ['\rGET / HTTP/1.1\r\n'],
    ['\r\r\r\nGET / HTTP/1.1\r\n'],
    ['\n\rGET / HTTP/1.1\r\n'],
    // HTTP/0.9 (no version), which llhttp takes with header fields after it: the codec answers 400.
    ['GET /whoami\r\n'],
    ['GET /whoami\n'],
    ['PROPFIND  /dav\r\n'],
    ['OPTIONS *\r\n'],
    ['\rGET http://x/a\r\n'],
  ])('HTTP/1.x request line by grammar: %j', (s) => expect(c(s)).toBe('http1'));

  test('the HTTP/2 preface, and its prefixes wait', () => {
    expect(c('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')).toBe('http2');
    expect(c('PRI * HTTP/2.0\r\n')).toBe('need-more');
  });

  test.each(['\r\nPROPFIND /a/b HTTP/1.1\r\n', '\n\r\rGET /a/b\r\n'])('every strict prefix of a request line waits for more: %j', (line) => {
    for (let k = 1; k < line.length; k++) expect([k, c(line.slice(0, k))]).toEqual([k, 'need-more']);
  });

  test.each([
    ['\x16\x03\x01\x00'], // TLS ClientHello
    ['\x00\x00\x00\x08'], // postgres startup
    ['*1\r\n$4\r\nPING\r\n'], // redis: token then CR
    ['GET\t/ HTTP/1.1\r\n'],
    ['GET / HTTP1'],
    ['GET / http/1.1\r\n'],
    ['GET / HTTP/x.1'],
    ['SET key value\r\n'], // redis inline command
    ['GET / HTTP/1.1\rX'],
    ['\r\x00'],
    [' GET / HTTP/1.1\r\n'],
    ['\r GET / HTTP/1.1\r\n'],
    // What llhttp refuses too: a CR not followed by LF after the target, a space then no version.
    ['GET /a\r\r\n'],
    ['GET /a \r\n'],
    // memcached's text protocol: a version-less line whose method is not upper-case is no
    // request to llhttp (it knows only upper-case methods).
    ['get session:42\r\n'],
    ['delete k\r\n'],
  ])('decided opaque at the first byte that breaks the grammar: %j', (s) => expect(c(s)).toBe('opaque'));

  test('a request line longer than the head limit is HTTP (the HTTP stack refuses it), not spliced', () => {
    expect(c('GET /' + 'a'.repeat(17 * 1024))).toBe('http1');
    expect(c('\r\n'.repeat(9 * 1024))).toBe('http1');
    expect(c('GET /' + 'a'.repeat(1024))).toBe('need-more');
  });
});
