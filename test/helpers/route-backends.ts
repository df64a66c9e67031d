import { createServer, request, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createH2cServer, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import { connect as tcpConnect, createServer as createTcpServer, type AddressInfo, type Server, type Socket } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { echoPackage, grpcOptions } from './fake-grpc.js';

/** What an echo backend saw, as the conformance echo server reports it. */
export interface Echoed {
  readonly backend: string;
  readonly method: string;
  readonly path: string;
  readonly host: string;
  readonly headers: IncomingHttpHeaders;
}

export interface EchoBackend {
  readonly name: string;
  readonly port: number;
  readonly seen: Echoed[];
  close(): Promise<void>;
}

/**
 * An HTTP backend answering any path with JSON: which backend it is and what it received.
 * `?delayMs=N` waits first; `?status=N` answers N. It speaks HTTP/1.1 and h2c (prior
 * knowledge) on one port, as the sidecar delivers in the caller's protocol.
 */
export async function httpEchoBackend(name: string): Promise<EchoBackend> {
  const seen: Echoed[] = [];
  const handle = (req: IncomingMessage | Http2ServerRequest, anyRes: ServerResponse | Http2ServerResponse) => {
    const res = anyRes as ServerResponse;
    req.resume();
    req.on('end', () => {
      const host = req.headers.host ?? String(req.headers[':authority'] ?? '');
      const e: Echoed = { backend: name, method: req.method ?? '', path: req.url ?? '', host, headers: req.headers };
      seen.push(e);
      const q = new URL(req.url ?? '/', 'http://x').searchParams;
      const delay = Number(q.get('delayMs') ?? 0);
      const t = setTimeout(() => {
        res.writeHead(Number(q.get('status') ?? 200), { 'content-type': 'application/json', 'x-backend': name });
        res.end(JSON.stringify(e));
      }, delay);
      res.on('close', () => clearTimeout(t));
    });
  };
  const h1 = createServer(handle);
  h1.keepAliveTimeout = 1000;
  const h2 = createH2cServer(handle);
  const listen = (s: Server) => new Promise<number>((r) => s.listen(0, '127.0.0.1', () => r((s.address() as AddressInfo).port)));
  const [h1Port, h2Port] = [await listen(h1), await listen(h2)];
  const sockets = new Set<Socket>();
  const track = (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
  };
  // One port for both: the HTTP/2 preface starts with "PRI"; the connection is relayed to the server of its protocol.
  const front = createTcpServer((sock) => {
    track(sock);
    sock.once('data', (first: Buffer) => {
      const up = tcpConnect(first.subarray(0, 3).toString('latin1') === 'PRI' ? h2Port : h1Port, '127.0.0.1');
      track(up);
      up.write(first);
      sock.pipe(up).pipe(sock);
      up.on('close', () => sock.destroy());
      sock.on('close', () => up.destroy());
    });
  });
  const port = await listen(front);
  const close = () =>
    new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      h1.close();
      h2.close();
      front.close(() => r());
    });
  return { name, port, seen, close };
}

/** A gRPC Echo backend whose Unary answers `message` = JSON {backend, metadata}. */
export async function grpcEchoBackend(name: string): Promise<EchoBackend> {
  const server = new grpc.Server(grpcOptions);
  const seen: Echoed[] = [];
  server.addService(echoPackage().Echo.service, {
    Unary(call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) {
      const headers = Object.fromEntries(Object.entries(call.metadata.getMap()).map(([k, v]) => [k, String(v)]));
      seen.push({ backend: name, method: 'POST', path: call.getPath(), host: '', headers });
      cb(null, { message: JSON.stringify({ backend: name, headers }) });
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  return { name, port, seen, close: () => new Promise<void>((r) => server.tryShutdown(() => r())) };
}

export interface Reply {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly echoed: Echoed | null;
  readonly text: string;
}

/** One HTTP/1.1 request through a sidecar's outbound port, addressed by Host; redirects are not followed. */
export function send(outboundPort: number, host: string, path: string, o: { method?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: outboundPort, path, method: o.method ?? 'GET', headers: { host, ...o.headers }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let echoed: Echoed | null = null;
        if (String(res.headers['content-type']).startsWith('application/json')) echoed = JSON.parse(text) as Echoed;
        resolve({ status: res.statusCode ?? 0, headers: res.headers, echoed, text });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}
