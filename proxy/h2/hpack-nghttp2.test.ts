/**
 * The codec against a real peer: node:http2 (nghttp2) on a raw TCP connection (h2c, prior
 * knowledge, RFC 9113 section 3.3). Our encoder's blocks must be read by nghttp2's decoder,
 * and nghttp2's encoder (Huffman strings, its dynamic table, never-indexed fields, a table
 * size update when we advertise a small table) must be read by our decoder, on several
 * streams in a row so the dynamic table carries over.
 */
import http2 from 'node:http2';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { FLAG, FRAME, FrameReader, PREFACE, frame } from '../../test/helpers/h2-frames.js';
import { HpackDecoder } from './hpack-decoder.js';
import { HpackEncoder } from './hpack-encoder.js';
import { HpackError } from './hpack-error.js';

const SETTINGS_HEADER_TABLE_SIZE = 0x1;

interface Received {
  /** Response header blocks by stream (HEADERS plus CONTINUATION, joined), in arrival order. */
  blocks: { streamId: number; block: Buffer }[];
  goaway: number | null;
}

/** A raw client connection that has exchanged SETTINGS with the server. */
class RawH2 {
  readonly received: Received = { blocks: [], goaway: null };
  private waiters: (() => void)[] = [];
  private pending: { streamId: number; parts: Buffer[] } | null = null;

  private constructor(private readonly socket: net.Socket) {}

  static async connect(port: number, settings: Buffer = Buffer.alloc(0)): Promise<RawH2> {
    const socket = net.connect(port, '127.0.0.1');
    const c = new RawH2(socket);
    let settled = false;
    const ready = new Promise<void>((resolve, reject) => {
      socket.on('error', reject);
      const reader = new FrameReader((type, flags, streamId, payload) => {
        if (type === FRAME.SETTINGS && !(flags & FLAG.ACK)) {
          socket.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
          if (!settled) resolve();
          settled = true;
        } else if (type === FRAME.HEADERS || type === FRAME.CONTINUATION) {
          // HEADERS may carry PADDED/PRIORITY (RFC 9113 section 6.2); node sends neither
          // here, and a block that did would fail to decode in the tests below.
          if (type === FRAME.HEADERS) c.pending = { streamId, parts: [] };
          c.pending!.parts.push(payload);
          if (flags & FLAG.END_HEADERS) {
            c.received.blocks.push({ streamId, block: Buffer.concat(c.pending!.parts) });
            c.pending = null;
          }
        } else if (type === FRAME.GOAWAY) {
          c.received.goaway = payload.readUInt32BE(4);
        }
        c.wake();
      });
      socket.on('data', (d: Buffer) => reader.push(d));
    });
    socket.write(Buffer.concat([PREFACE, frame(FRAME.SETTINGS, 0, 0, settings)]));
    await ready;
    return c;
  }

  send(streamId: number, block: Buffer): void {
    this.socket.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, streamId, block));
  }

  async until(done: (r: Received) => boolean): Promise<void> {
    while (!done(this.received)) await new Promise<void>((r) => this.waiters.push(r));
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  close(): void {
    this.socket.destroy();
  }
}

function encodeBlock(enc: HpackEncoder, fields: string[]): Buffer {
  const out = Buffer.alloc(enc.encodedLength(fields));
  enc.encode(fields, out);
  return out;
}

describe('HPACK against node:http2 (nghttp2)', () => {
  const servers: http2.Http2Server[] = [];
  const clients: RawH2[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  });

  /** A server that answers each request with its raw request headers, as a JSON response header. */
  async function echoServer(settings: http2.Settings): Promise<{ port: number; seen: string[][] }> {
    const seen: string[][] = [];
    const server = http2.createServer({ settings });
    server.on('stream', (stream, _headers, _flags, rawHeaders) => {
      seen.push(rawHeaders as unknown as string[]);
      stream.respond({ ':status': 200, 'x-n': String(seen.length) }, { endStream: true });
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return { port: (server.address() as AddressInfo).port, seen };
  }

  const request = (path: string, extra: string[] = []): string[] => [
    ':method', 'POST', ':scheme', 'http', ':path', path, ':authority', 'app.local',
    'content-type', 'application/grpc', 'te', 'trailers', 'grpc-timeout', '1S', ...extra,
  ];

  for (const headerTableSize of [4096, 256, 0]) {
    it(`nghttp2 reads our blocks on several streams (server headerTableSize ${headerTableSize})`, async () => {
      const { port, seen } = await echoServer({ headerTableSize });
      const c = await RawH2.connect(port);
      clients.push(c);
      const enc = new HpackEncoder();
      const sent = [
        request('/a.B/C'),
        request('/a.B/D', ['x-long', 'v'.repeat(300), 'cookie', 'a=1', 'cookie', 'b=2', 'user-agent', 'wren']),
        request('/a.B/E', ['accept-encoding', 'gzip, deflate', 'x-empty', '']),
      ];
      sent.forEach((fields, i) => c.send(1 + 2 * i, encodeBlock(enc, fields)));
      await c.until((r) => r.blocks.length === sent.length || r.goaway !== null);
      expect(c.received.goaway).toBeNull();
      expect(seen).toEqual(sent);
    });
  }

  for (const headerTableSize of [4096, 256, 0]) {
    it(`nghttp2 reads our blocks with the dynamic table, a block before the SETTINGS and a lower limit later (server headerTableSize ${headerTableSize})`, async () => {
      const { port, seen } = await echoServer({ headerTableSize });
      const c = await RawH2.connect(port);
      clients.push(c);
      const enc = new HpackEncoder();
      const sent: string[][] = [];
      const lengths: number[] = [];
      const send = (fields: string[]): void => {
        sent.push(fields);
        const block = enc.block(fields);
        lengths.push(block.length);
        c.send(2 * sent.length - 1, block);
      };
      const xfcc = ['x-forwarded-client-cert', `By=spiffe://cluster.local/ns/default/sa/web;Hash=${'ab'.repeat(32)};URI=spiffe://cluster.local/ns/default/sa/client`];
      // The first block goes before our session has read the server's SETTINGS: no table yet.
      send(request('/a.B/C', xfcc));
      enc.setLimit(headerTableSize);
      for (let i = 0; i < 4; i++) send(request(i % 2 === 0 ? '/a.B/C' : '/a.B/D', [...xfcc, 'user-agent', 'wren', 'x-request-id', `id-${i}`]));
      // We may use less than the server allows: a smaller table, signalled, then the full one again.
      enc.setLimit(Math.min(100, headerTableSize));
      send(request('/a.B/E', xfcc));
      enc.setLimit(headerTableSize);
      for (let i = 0; i < 3; i++) send(request('/a.B/E', [...xfcc, 'user-agent', 'wren']));
      await c.until((r) => r.blocks.length === sent.length || r.goaway !== null);
      expect(c.received.goaway).toBeNull();
      expect(seen).toEqual(sent);
      // With a table, the certificate and the rest are indexes by the last block.
      if (headerTableSize === 4096) expect(lengths[lengths.length - 1]).toBeLessThan(lengths[0] / 3);
      else if (headerTableSize === 0) expect(lengths[lengths.length - 1]).toBeGreaterThan(lengths[0]);
    });
  }

  it('nghttp2 refuses a first block without the table size update once its table is below 4096 (why the encoder sends one)', async () => {
    const { port, seen } = await echoServer({ headerTableSize: 0 });
    const c = await RawH2.connect(port);
    clients.push(c);
    const block = encodeBlock(new HpackEncoder(), request('/x'));
    expect(block[0]).toBe(0x20);
    c.send(1, block.subarray(1));
    await c.until((r) => r.goaway !== null);
    expect(c.received.goaway).toBe(0x9); // COMPRESSION_ERROR
    expect(seen).toEqual([]);
  });

  async function responseServer(): Promise<number> {
    let n = 0;
    const server = http2.createServer();
    server.on('stream', (stream) => {
      n++;
      stream.respond({
        ':status': n === 2 ? 404 : 200,
        'content-type': 'application/grpc+proto',
        'x-request-id': `req-${n}`,
        'x-repeated': 'the same long value on every response, so nghttp2 indexes it',
        'set-cookie': ['a=1; Path=/', `b=${n}`],
        'x-secret': 'never-index-me',
        [http2.sensitiveHeaders]: ['x-secret'],
      }, { endStream: true });
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return (server.address() as AddressInfo).port;
  }

  function expectResponse(fields: string[], n: number): void {
    const pairs = new Map<string, string[]>();
    for (let i = 0; i < fields.length; i += 2) pairs.set(fields[i], [...(pairs.get(fields[i]) ?? []), fields[i + 1]]);
    expect(fields[0]).toBe(':status');
    expect(pairs.get(':status')).toEqual([n === 2 ? '404' : '200']);
    expect(pairs.get('content-type')).toEqual(['application/grpc+proto']);
    expect(pairs.get('x-request-id')).toEqual([`req-${n}`]);
    expect(pairs.get('x-repeated')).toEqual(['the same long value on every response, so nghttp2 indexes it']);
    expect(pairs.get('set-cookie')).toEqual(['a=1; Path=/', `b=${n}`]);
    expect(pairs.get('x-secret')).toEqual(['never-index-me']);
    expect(pairs.get('date')).toHaveLength(1);
  }

  it('our decoder reads nghttp2 response blocks in order, its dynamic table carried across streams', async () => {
    const port = await responseServer();
    const c = await RawH2.connect(port);
    clients.push(c);
    const enc = new HpackEncoder();
    for (let i = 0; i < 4; i++) c.send(1 + 2 * i, encodeBlock(enc, request('/r')));
    await c.until((r) => r.blocks.length === 4 || r.goaway !== null);
    expect(c.received.goaway).toBeNull();
    const d = new HpackDecoder(4096);
    const sizes: number[] = [];
    for (const [i, { block }] of c.received.blocks.entries()) {
      const r = d.decode(block);
      if (r instanceof HpackError) throw new Error(r.message);
      expectResponse(r, i + 1);
      sizes.push(block.length);
    }
    // The later blocks refer to the entries the first one inserted: nghttp2 did use the table.
    expect(d.tableSize).toBeGreaterThan(0);
    expect(d.tableEntries()).toContain('x-repeated');
    expect(d.tableEntries()).not.toContain('never-index-me');
    expect(sizes[3]).toBeLessThan(sizes[0] / 2);
  });

  it('our decoder follows the size update nghttp2 sends when we advertise a 64-octet table', async () => {
    const port = await responseServer();
    const settings = Buffer.alloc(6);
    settings.writeUInt16BE(SETTINGS_HEADER_TABLE_SIZE, 0);
    settings.writeUInt32BE(64, 2);
    const c = await RawH2.connect(port, settings);
    clients.push(c);
    const enc = new HpackEncoder();
    for (let i = 0; i < 3; i++) c.send(1 + 2 * i, encodeBlock(enc, request('/r')));
    await c.until((r) => r.blocks.length === 3 || r.goaway !== null);
    // Section 4.2: the first block starts with the update to at most 64.
    expect(c.received.blocks[0].block[0] & 0xe0).toBe(0x20);
    const d = new HpackDecoder(64);
    for (const [i, { block }] of c.received.blocks.entries()) {
      const r = d.decode(block);
      if (r instanceof HpackError) throw new Error(r.message);
      expectResponse(r, i + 1);
      expect(d.tableSize).toBeLessThanOrEqual(64);
    }
    // A decoder that advertised 32 refuses the same first block (section 6.3).
    expect((new HpackDecoder(32).decode(c.received.blocks[0].block) as HpackError).reason).toBe('table-size-too-large');
  });
});
