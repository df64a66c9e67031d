import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, connect as tlsConnect, type TLSSocket } from 'node:tls';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { Duplex } from 'node:stream';
import { H1Server } from './h1-server.js';
import type { HttpService, ProxyResponse } from './exchange.js';
import { settledBody } from './settled-body.js';
import { seededRandom, systemClock } from '../../common/clock.js';
import { deferredPending } from '../../common/deferred.js';
import { testPki } from '../../test/helpers/pki.js';
import { MuxTestPairs } from '../mux/mux-test-pair.js';

/*
 * The HTTP/1.1 server's reads go straight to the connection (net/direct-reads.ts) and its
 * socket callbacks and response hand-overs run their deferred steps as they return
 * (common/deferred.ts enterTurn). These drive the paths where node's Readable takes over
 * again (paused for pipelining or a full request body, unshift, end) over real TCP and TLS
 * sockets, with bytes split at random, and check nothing is lost, reordered or late.
 */

const text = (s: string, headers: Record<string, string> = {}): ProxyResponse => ({ status: 200, headers: { 'content-type': 'text/plain', ...headers }, body: settledBody(Buffer.from(s)), trailers: () => undefined });

const servers: Server[] = [];
/** The server side of every connection, destroyed after each test (an upgraded one is no longer the H1Server's). */
const accepted = new Set<Socket>();
let h1: H1Server | null = null;
let muxPairs: MuxTestPairs | null = null;

afterEach(async () => {
  h1?.close();
  h1 = null;
  muxPairs?.close();
  muxPairs = null;
  for (const s of accepted) s.destroy();
  accepted.clear();
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

/** TCP, TLS, or virtual connections of one mesh multiplexer session (every stream's reads land in the session's shared buffer). */
type Transport = 'tcp' | 'tls' | 'mux';

async function listen(service: HttpService, transport: Transport): Promise<() => Promise<Socket>> {
  const server = new H1Server({ service, maxHeaderBytes: 4096, clock: systemClock });
  h1 = server;
  if (transport === 'mux') {
    muxPairs = new MuxTestPairs();
    const p = await muxPairs.pair({ window: 256 * 1024, onStream: (st) => server.serve(st as unknown as Socket) });
    expect(p.server.viewReads).toBe(true);
    return async () => p.client.open()! as unknown as Socket;
  }
  const tls = transport === 'tls';
  if (!tls) {
    const l = createServer({ allowHalfOpen: true }, (s) => (accepted.add(s), server.serve(s)));
    servers.push(l);
    l.listen(0, '127.0.0.1');
    await once(l, 'listening');
    const port = (l.address() as AddressInfo).port;
    return async () => {
      const s = connect(port, '127.0.0.1');
      await once(s, 'connect');
      return s;
    };
  }
  const pki = testPki();
  const srv = pki.issue('default', 'web');
  const cli = pki.issue('default', 'client');
  const l = createTlsServer({ key: srv.keyPem, cert: srv.certChainPem, ca: srv.trustBundlePem }, (s) => (accepted.add(s), server.serve(s)));
  servers.push(l);
  l.listen(0, '127.0.0.1');
  await once(l, 'listening');
  const port = (l.address() as AddressInfo).port;
  return async () => {
    const s: TLSSocket = tlsConnect({ port, host: '127.0.0.1', ca: cli.trustBundlePem, checkServerIdentity: () => undefined });
    await once(s, 'secureConnect');
    return s;
  };
}

/** Writes `wire` in randomly sized pieces, some pieces back to back (one read), some apart (several). */
async function writeSplit(s: Socket, wire: Buffer, seed: number): Promise<void> {
  const r = seededRandom(seed);
  let off = 0;
  while (off < wire.length) {
    const n = Math.max(1, Math.floor(r() * (r() < 0.2 ? 200_000 : 3000)));
    const piece = wire.subarray(off, off + n);
    off += piece.length;
    if (!s.write(piece)) await once(s, 'drain');
    if (r() < 0.1) await new Promise((res) => setTimeout(res, 1));
  }
}

/** Everything the server sends until `done` says it has it all, or the socket closes. */
function collect(s: Socket, done: (got: string) => boolean): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    s.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (done(got)) resolve(got);
    });
    s.on('close', () => resolve(got));
    s.on('error', () => undefined);
  });
}

/** Reads a request body slowly (a pause after each chunk), so the connection pauses its socket for the body's backpressure. */
async function slowDigest(body: AsyncIterable<Buffer>): Promise<string> {
  const h = createHash('sha256');
  let n = 0;
  let i = 0;
  for await (const c of body) {
    h.update(c);
    n += c.length;
    if (++i % 2 === 0) await new Promise((r) => setTimeout(r, 1));
  }
  return `${n}:${h.digest('hex').slice(0, 16)}`;
}

const digest = (b: Buffer): string => `${b.length}:${createHash('sha256').update(b).digest('hex').slice(0, 16)}`;

describe.each(['tcp', 'tls', 'mux'] as const)('H1Server direct reads and turns (%s)', (tls) => {
  it('pipelined requests behind large bodies read with backpressure, bytes split at random, three connections at once: every body whole, every response in order', async () => {
    const connectClient = await listen(async (req) => {
      const got = req.body === null ? '-' : await slowDigest(req.body as unknown as AsyncIterable<Buffer>);
      return text(`[${req.method} ${req.path} ${got}]`);
    }, tls);
    const bodies: Buffer[] = [];
    const parts: Buffer[] = [];
    const expected: string[] = [];
    for (let i = 0; i < 6; i++) {
      const b = Buffer.alloc(i % 2 === 0 ? 300_000 + i * 7919 : 0);
      for (let k = 0; k < b.length; k++) b[k] = (k * 31 + i) & 0xff;
      bodies.push(b);
      if (i % 3 === 2) {
        const head = `POST /chunked${i} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n`;
        const chunks: Buffer[] = [Buffer.from(head, 'latin1')];
        for (let off = 0; off < b.length; off += 40_000) {
          const c = b.subarray(off, off + 40_000);
          chunks.push(Buffer.from(`${c.length.toString(16)}\r\n`, 'latin1'), c, Buffer.from('\r\n', 'latin1'));
        }
        chunks.push(Buffer.from('0\r\n\r\n', 'latin1'));
        parts.push(...chunks);
        expected.push(`[POST /chunked${i} ${digest(b)}]`);
      } else if (b.length > 0) {
        parts.push(Buffer.from(`POST /cl${i} HTTP/1.1\r\nHost: a\r\nContent-Length: ${b.length}\r\n\r\n`, 'latin1'), b);
        expected.push(`[POST /cl${i} ${digest(b)}]`);
      } else {
        parts.push(Buffer.from(`GET /get${i} HTTP/1.1\r\nHost: a\r\n\r\n`, 'latin1'));
        expected.push(`[GET /get${i} -]`);
      }
    }
    // Three clients at once: over TCP every connection's reads land in one shared buffer
    // (net/direct-reads.ts setSharedReads), so what one connection keeps past a read (a
    // pipelined request held while the one before is answered, body bytes waiting for a
    // slow reader) must survive the other connections' reads.
    const all = Buffer.concat(parts);
    const last = expected[expected.length - 1];
    const runs = [0, 1, 2].map(async (k) => {
      const s = await connectClient();
      const result = collect(s, (got) => got.includes(last));
      await writeSplit(s, all, (tls === 'tls' ? 7 : tls === 'mux' ? 5 : 3) + 10 * k);
      const got = await result;
      s.destroy();
      return got;
    });
    for (const got of await Promise.all(runs)) {
      const seen = [...got.matchAll(/\[[^\]]*\]/g)].map((m) => m[0]);
      expect(seen).toEqual(expected);
      expect(got.match(/HTTP\/1\.1 200 OK\r\n/g)).toHaveLength(expected.length);
    }
  });

  it("an upgrade's bytes (in the head's read, while the service decides, after the 101) reach the tunnel whole and in order", async () => {
    const intoTunnel: Buffer[] = [];
    let tunnelEnded = false;
    const tunnel = new Duplex({
      read() {
        // Pushed below.
      },
      write(c: Buffer, _e, cb) {
        intoTunnel.push(c);
        cb();
      },
      final(cb) {
        tunnelEnded = true;
        cb();
      },
    });
    const connectClient = await listen(async (req) => {
      if (req.upgrade === undefined) return text('no upgrade');
      await new Promise((r) => setTimeout(r, 40));
      tunnel.push('from-upstream');
      return { status: 101, headers: { upgrade: 'websocket' }, body: tunnel as never, trailers: () => undefined };
    }, tls);
    const s = await connectClient();
    const result = collect(s, (got) => got.includes('from-upstream'));
    // The head and the tunnel's first bytes in one write (one read), more while the service decides.
    s.write('GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nHELD-1|');
    await new Promise((r) => setTimeout(r, 5));
    // Another connection's request while the service decides: over TCP its read lands in the
    // buffer the first one's was read into (setSharedReads), so the held bytes must be a copy.
    const other = await connectClient();
    const otherDone = collect(other, (got) => got.includes('no upgrade'));
    other.write(`GET /${'o'.repeat(200)} HTTP/1.1\r\nHost: a\r\n\r\n`);
    expect(await otherDone).toContain('no upgrade');
    other.destroy();
    s.write('WAITING-2|');
    await new Promise((r) => setTimeout(r, 5));
    s.write('WAITING-3|');
    const got = await result;
    expect(got).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/);
    s.write('AFTER-4|');
    s.end();
    const t0 = Date.now();
    while (!tunnelEnded && Date.now() - t0 < 3000) await new Promise((r) => setTimeout(r, 5));
    expect(Buffer.concat(intoTunnel).toString()).toBe('HELD-1|WAITING-2|WAITING-3|AFTER-4|');
    expect(tunnelEnded).toBe(true);
    s.destroy();
  });

  it("a request and its body in one read, then the client's FIN: aborted (not answered), the body reader told, and the connection closed", async () => {
    let bodyError = '';
    let sawEnd = false;
    const connectClient = await listen(async (req) => {
      req.body!.on('data', () => undefined);
      req.body!.on('end', () => (sawEnd = true));
      await new Promise<void>((r) => req.body!.on('error', (e: Error) => ((bodyError = e.message), r())));
      return text('too late');
    }, tls);
    const s = await connectClient();
    const answer = collect(s, () => false);
    s.write('POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n12345');
    await new Promise((r) => setTimeout(r, 20));
    s.end();
    // 499 from the error table: the client went away mid-request.
    expect(await answer).toMatch(/^HTTP\/1\.1 499 /);
    expect(sawEnd).toBe(false);
    expect(bodyError).toMatch(/client cancelled/);
  });

  it('no turn is left open: after requests are served, deferred steps take a tick again and approxNow reads the clock afresh', async () => {
    const connectClient = await listen(async (req) => text(req.path), tls);
    const s = await connectClient();
    const result = collect(s, (got) => got.includes('/b'));
    s.write('GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n');
    await result;
    await new Promise((r) => setTimeout(r, 5));
    expect(deferredPending()).toBe(false);
    const a = systemClock.approxNow();
    const t = performance.now();
    while (performance.now() - t < 2);
    expect(systemClock.approxNow()).toBeGreaterThan(a);
    s.destroy();
  });
});
