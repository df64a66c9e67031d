import { connect } from 'node:net';
import { testPki } from '../helpers/pki.js';
import { FLAG, FRAME, FrameReader, clientStart, frame, headerBlock } from '../helpers/h2-frames.js';
import { until } from '../helpers/until.js';
import { startH2Mesh, type H2Mesh } from '../adversary8/h2-mesh.js';

/**
 * Request trailers carrying a connection-specific field (RFC 9113 section 8.2.2:
 * `connection`, `keep-alive`, `proxy-connection`, `transfer-encoding`, `upgrade`, `te`
 * other than "trailers"). Such a request is malformed in any field section, and an
 * intermediary must not forward it (section 8.1.1). node:http2 (nghttp2) resets the
 * stream PROTOCOL_ERROR; the frame-level server checked the trailers' names and values but
 * not this, and the request went on to the app as a complete one (the field dropped as
 * hop-by-hop on the way).
 */
const pki = testPki();

/** A POST with a body, then trailers with `field`; resolves with the RST_STREAM code the client got (undefined: none, answered). */
function postWithTrailers(port: number, path: string, field: [string, string]): Promise<number | undefined> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    sock.on('error', () => undefined);
    const reader = new FrameReader((type, flags, id, p) => {
      if (id !== 1) return;
      if (type === FRAME.RST_STREAM) {
        sock.destroy();
        resolve(p.readUInt32BE(0));
      } else if ((type === FRAME.DATA || type === FRAME.HEADERS) && (flags & FLAG.END_STREAM) !== 0) {
        sock.destroy();
        resolve(undefined);
      }
    });
    sock.on('data', (d: Buffer) => reader.push(d));
    sock.write(Buffer.concat([
      clientStart(),
      frame(FRAME.HEADERS, FLAG.END_HEADERS, 1, headerBlock([[':method', 'POST'], [':scheme', 'http'], [':path', path], [':authority', 'app']])),
      frame(FRAME.DATA, 0, 1, Buffer.from('body')),
      frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, headerBlock([['x-ok', '1'], field])),
    ]));
  });
}

describe.each(['frames', 'node'])('outboundHttp2 %s', (outboundHttp2) => {
  let mesh: H2Mesh;
  beforeAll(async () => {
    const protocol = { meshHttp2: 'mux', outboundHttp2 };
    mesh = await startH2Mesh(pki, 'mux', { client: { protocol }, server: { protocol } });
    // Answers once the request has ended (with its trailers).
    mesh.handler = (stream) => {
      stream.on('end', () => {
        if (!stream.destroyed) {
          stream.respond({ ':status': 200 });
          stream.end('whole');
        }
      });
    };
  });
  afterAll(() => mesh.close());

  test.each([
    ['connection', 'close'],
    ['transfer-encoding', 'chunked'],
    ['upgrade', 'h2c'],
    ['te', 'gzip'],
  ])('trailers with %s: the stream is reset PROTOCOL_ERROR and the app never gets a whole request', async (name, value) => {
    const path = `/trailer-${name}`;
    expect(await postWithTrailers(mesh.client.outboundPort, path, [name, value])).toBe(1);
    // Whatever the app saw of it (the head may have gone ahead), it was not a complete request.
    await until(() => mesh.closed.some((c) => c.path === path), 300);
    const seen = mesh.closed.find((c) => c.path === path);
    if (seen !== undefined) expect(seen.rstCode).not.toBe(0);
  });
});
