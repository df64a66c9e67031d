import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import { createServer as createH2cServer, type Http2Server, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import { createHash } from 'node:crypto';

type Req = IncomingMessage | Http2ServerRequest;
type Res = ServerResponse | Http2ServerResponse;

/** Byte i of a /pattern body: it changes along the body, so a byte from the wrong place is seen; `seed` sets bodies apart. */
export function patternByte(i: number, seed = 0): number {
  return (i * 7 + (i >>> 12) * 13 + seed * 37) & 0xff;
}

/**
 * A backend app for tests. Routes:
 *   /echo         200 with JSON {method, path, headers, bodyBytes, sha256, trailers}
 *   /status/N     responds N
 *   /big?bytes=N  streams N bytes
 *   /pattern?bytes=N[&seed=S]  streams N bytes, byte i being patternByte(i, S), in writes of 1-8 KiB
 *   /slow?ms=N    waits N ms before responding
 *   /trailers     chunked body then trailer `x-checksum`
 *   /reset        sends headers and a little body, then destroys the connection
 *   /hang         never responds
 *   /name         responds with the app's name (which backend answered)
 */
export interface FakeApp {
  readonly port: number;
  readonly name: string;
  readonly hits: { count: number };
  close(): Promise<void>;
}

function handler(name: string, hits: { count: number }) {
  return (req: Req, anyRes: Res) => {
    // Both servers' responses support the subset used here; one type keeps the routes shared.
    const res = anyRes as ServerResponse;
    hits.count++;
    const url = new URL(req.url ?? '/', 'http://x');
    const hash = createHash('sha256');
    let bytes = 0;
    const collect = (done: () => void) => {
      req.on('data', (d: Buffer) => {
        bytes += d.length;
        hash.update(d);
      });
      req.on('end', done);
    };
    if (url.pathname === '/echo')
      return collect(() => {
        const body = JSON.stringify({ name, method: req.method, path: req.url, headers: req.headers, bodyBytes: bytes, sha256: hash.digest('hex'), trailers: req.trailers, httpVersion: req.httpVersion });
        res.writeHead(200, { 'content-type': 'application/json', 'x-app': name });
        res.end(body);
      });
    if (url.pathname.startsWith('/status/')) return collect(() => { res.writeHead(Number(url.pathname.slice(8)), { 'x-app': name }); res.end(name); });
    if (url.pathname === '/name') return collect(() => { res.writeHead(200, { 'x-app': name }); res.end(name); });
    if (url.pathname === '/big') {
      const total = Number(url.searchParams.get('bytes') ?? 1024);
      const chunk = Buffer.alloc(64 * 1024, 97);
      let sent = 0;
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) });
      const pump = () => {
        while (sent < total) {
          const n = Math.min(chunk.length, total - sent);
          sent += n;
          if (!res.write(chunk.subarray(0, n))) return void res.once('drain', pump);
        }
        res.end();
      };
      req.resume();
      return pump();
    }
    if (url.pathname === '/pattern') {
      // Byte i of the body is patternByte(i): a receiver can check every byte, not only the count.
      const total = Number(url.searchParams.get('bytes') ?? 1024);
      const seed = Number(url.searchParams.get('seed') ?? 0);
      let sent = 0;
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) });
      const pump = () => {
        while (sent < total) {
          // Writes of 1-8 KiB: on the mesh hop each is a frame well inside one TLS record.
          const c = Buffer.allocUnsafe(Math.min(1024 + ((sent * 13) % 7168), total - sent));
          for (let k = 0; k < c.length; k++) c[k] = patternByte(sent + k, seed);
          sent += c.length;
          if (!res.write(c)) return void res.once('drain', pump);
        }
        res.end();
      };
      req.resume();
      return pump();
    }
    if (url.pathname === '/slow') {
      req.resume();
      const t = setTimeout(() => { res.writeHead(200, { 'x-app': name }); res.end('slow ' + name); }, Number(url.searchParams.get('ms') ?? 100));
      res.on('close', () => clearTimeout(t));
      return;
    }
    if (url.pathname === '/trailers')
      return collect(() => {
        res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
        res.write('part1 ');
        res.write('part2');
        res.addTrailers({ 'x-checksum': 'abc123' });
        res.end();
      });
    if (url.pathname === '/reset') {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('partial');
      setTimeout(() => (req.socket as Socket).destroy(), 20);
      return;
    }
    if (url.pathname === '/hang') return void req.resume();
    res.writeHead(404);
    res.end('not found');
  };
}

/** An HTTP/1.1 app (with a WebSocket-style upgrade echo: after 101 every byte is echoed back; the 101 names the XFCC it got in `x-xfcc`). */
export async function fakeApp(name = 'app'): Promise<FakeApp> {
  const hits = { count: 0 };
  const server: Server = createServer(handler(name, hits) as (req: IncomingMessage, res: ServerResponse) => void);
  server.on('upgrade', (req, socket: Socket, head) => {
    // x-xfcc: the caller identity the app was told (tests check it cannot be forged).
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: ${req.headers.upgrade}\r\nconnection: Upgrade\r\nx-app: ${name}\r\nx-xfcc: ${req.headers['x-forwarded-client-cert'] ?? 'none'}\r\n\r\n`);
    if (head.length) socket.write(head);
    socket.pipe(socket);
  });
  return listen(server, name, hits);
}

/** An HTTP/2 cleartext (prior knowledge) app with the same routes. */
export async function fakeH2cApp(name = 'h2app'): Promise<FakeApp> {
  const hits = { count: 0 };
  const server: Http2Server = createH2cServer(handler(name, hits) as (req: Http2ServerRequest, res: Http2ServerResponse) => void);
  return listen(server, name, hits);
}

/** A raw TCP app: echoes bytes, prefixed with a greeting sent first (server-speaks-first). */
export async function fakeTcpApp(greeting = 'hello\n'): Promise<FakeApp> {
  const { createServer: createNet } = await import('node:net');
  const hits = { count: 0 };
  const server = createNet((s) => {
    hits.count++;
    s.write(greeting);
    s.pipe(s);
  });
  return listen(server, 'tcp', hits);
}

async function listen(server: Server | Http2Server | import('node:net').Server, name: string, hits: { count: number }): Promise<FakeApp> {
  return { ...(await listenOnLoopback(server)), name, hits };
}

/** Listens on 127.0.0.1:0; close() stops the server and drops its open connections (keep-alive included). */
export async function listenOnLoopback(server: Server | Http2Server | import('node:net').Server): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        for (const s of sockets) s.destroy();
      }),
  };
}
