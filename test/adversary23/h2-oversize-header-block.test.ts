import { testPki } from '../helpers/pki.js';
import { startH2Mesh, type H2Mesh } from '../adversary8/h2-mesh.js';
import { FLAG, FRAME, clientStart, frame, headerBlock, isGoaway, isRst, rawPeer, request, rstCode, type RawPeer } from '../helpers/h2-frames.js';
import { HpackDecoder } from '../../proxy/h2/hpack-decoder.js';

/**
 * Found by review (adv23): a request whose header block (gRPC metadata, say) was more than
 * 2 x the hard header cap + 16 KiB octets (limits.maxHeaderBytes x 4 is the cap; with
 * maxHeaderBytes 4 KiB, 48 KiB) was taken by the outbound's frame-level server for a
 * CONTINUATION flood: GOAWAY ENHANCE_YOUR_CALM, and every other stream of the app's
 * connection died with it. An oversize header list is the stream's error (RFC 9113 section
 * 10.5.1): nghttp2 and Envoy refuse that stream (a 431, or RST_STREAM) and the connection
 * goes on. A real flood (CONTINUATION frames past the 8 nghttp2 takes, CVE-2024-27316) still
 * ends the connection. Both outbound servers (protocol.outboundHttp2), through a real pair.
 */
const pki = testPki();
const meshes = new Map<string, H2Mesh>();
let release: () => void = () => undefined;
/** Resolves when the app has the slow request (its stream open at the app). */
let slowSeen: () => void = () => undefined;

beforeAll(async () => {
  for (const codec of ['frames', 'node'] as const) {
    const m = await startH2Mesh(pki, 'mux', { client: { protocol: { meshHttp2: 'mux', outboundHttp2: codec }, limits: { maxHeaderBytes: 4096 } } });
    m.handler = (stream, headers) => {
      if (headers[':path'] !== '/slow') {
        stream.respond({ ':status': 200 });
        stream.end('ok');
        return;
      }
      // Held until the test has seen the oversize block refused: the stream is open meanwhile.
      slowSeen();
      const prev = release;
      release = () => {
        prev();
        if (stream.destroyed) return;
        stream.respond({ ':status': 200 });
        stream.end('slow');
      };
    };
    meshes.set(codec, m);
  }
});
afterAll(async () => {
  for (const m of meshes.values()) await m.close();
});

/** An HPACK literal field without indexing, new name, of any length (RFC 7541 sections 6.2.2, 5.1). */
function hpackLiteral(name: string, value: string): Buffer {
  const int = (n: number): number[] => {
    if (n < 127) return [n];
    const out = [127];
    for (n -= 127; n >= 128; n >>>= 7) out.push((n & 0x7f) | 0x80);
    out.push(n);
    return out;
  };
  return Buffer.concat([Buffer.from([0, ...int(name.length)]), Buffer.from(name, 'latin1'), Buffer.from(int(value.length)), Buffer.from(value, 'latin1')]);
}

/** `block` on stream `id` in HEADERS and CONTINUATION frames of at most 16 KiB. */
function inFrames(id: number, block: Buffer): Buffer {
  const parts: Buffer[] = [];
  for (let off = 0; off < block.length; off += 16_384) {
    const last = off + 16_384 >= block.length;
    parts.push(frame(off === 0 ? FRAME.HEADERS : FRAME.CONTINUATION, (off === 0 ? FLAG.END_STREAM : 0) | (last ? FLAG.END_HEADERS : 0), id, block.subarray(off, off + 16_384)));
  }
  return Buffer.concat(parts);
}

const BASE: [string, string][] = [[':method', 'GET'], [':scheme', 'http'], [':path', '/big'], [':authority', 'app']];
const isHead = (id: number) => (f: { type: number; id: number }): boolean => f.type === FRAME.HEADERS && f.id === id;
const status = (p: RawPeer, id: number): string | undefined => {
  const f = p.frames.find(isHead(id));
  return f?.fields?.[1];
};

describe.each(['frames', 'node'])('protocol.outboundHttp2 %s', (codec) => {
  test('a 60 KB header block (4 frames) refuses only its stream; the stream open beside it is answered, and a later one', async () => {
    const p = rawPeer(meshes.get(codec)!.client.outboundPort, new HpackDecoder(4096));
    try {
      const atApp = new Promise<void>((r) => (slowSeen = r));
      p.sock.write(Buffer.concat([clientStart(), request(1, 'app', '/slow')]));
      // The slow request has reached the app before the oversize block goes.
      await atApp;
      p.sock.write(inFrames(3, Buffer.concat([headerBlock(BASE), hpackLiteral('x-metadata', 'm'.repeat(60_000))])));
      const refused = await p.until((f) => isHead(3)(f) || isRst(3)(f) || isGoaway(f));
      const how = refused.type === FRAME.HEADERS ? `status ${refused.fields?.[1]}` : refused.type === FRAME.RST_STREAM ? `reset ${rstCode(refused)}` : `goaway ${refused.payload.readUInt32BE(4)}`;
      // node:http2 answers it from the listener's own check (h2-server.ts), the frame-level server from its decoder's.
      expect(how).toBe('status 431');
      release();
      await p.until(isHead(1));
      expect(status(p, 1)).toBe('200');
      p.sock.write(request(5, 'app', '/after'));
      await p.until(isHead(5));
      expect(status(p, 5)).toBe('200');
      expect(p.frames.some(isGoaway)).toBe(false);
    } finally {
      p.sock.destroy();
    }
  });

  test('a CONTINUATION flood (empty frames past the 8 nghttp2 takes, CVE-2024-27316) still ends the connection', async () => {
    const p = rawPeer(meshes.get(codec)!.client.outboundPort, new HpackDecoder(4096));
    try {
      const parts = [clientStart(), frame(FRAME.HEADERS, FLAG.END_STREAM, 1, headerBlock(BASE))];
      for (let i = 0; i < 1000; i++) parts.push(frame(FRAME.CONTINUATION, 0, 1));
      p.sock.write(Buffer.concat(parts));
      await p.closed;
      expect(p.frames.some(isRst(1))).toBe(false);
    } finally {
      p.sock.destroy();
    }
  });
});
