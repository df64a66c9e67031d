import { connect as h2connect, createServer as createH2cServer, type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { startProxy, meshService } from '../helpers/proxy.js';
import { listenOnLoopback } from '../helpers/fake-app.js';
import type { TestPki } from '../helpers/pki.js';
import type { Proxy } from '../../proxy/proxy.js';

export type Transport = 'mux' | 'h2';

/** A suite's pair on each transport: started before its tests, closed after them. */
export function bothMeshes(pki: TestPki): Map<string, H2Mesh> {
  const meshes = new Map<string, H2Mesh>();
  beforeAll(async () => {
    for (const t of ['mux', 'h2'] as const) meshes.set(t, await startH2Mesh(pki, t));
  });
  afterAll(async () => {
    for (const m of meshes.values()) await m.close();
  });
  return meshes;
}
export type AppHandler = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, rawHeaders: string[]) => void;

/**
 * An h2c app whose handler a test sets, behind an `app` sidecar, and a client sidecar
 * routing app:80 to it over `protocol.meshHttp2` `transport` (on both sidecars): the pair
 * the adversary8 suites attack, once per transport.
 */
export interface H2Mesh {
  readonly transport: Transport;
  readonly server: Proxy;
  readonly client: Proxy;
  /** The app's own port (behind `server`). */
  readonly appPort: number;
  /** What the app does with the next streams (default: 200 "ok"). */
  handler: AppHandler;
  /** Streams the app has seen close, with how (rstCode 0: ended cleanly both ways). */
  readonly closed: { path: string; rstCode: number; aborted: boolean; body: Buffer; trailers?: IncomingHttpHeaders; headers: IncomingHttpHeaders }[];
  close(): Promise<void>;
}

const ok: AppHandler = (stream) => {
  stream.respond({ ':status': 200 });
  stream.end('ok');
};

export async function startH2Mesh(pki: TestPki, transport: Transport, o: { readonly protocol?: 'http2' | 'grpc'; readonly client?: Record<string, unknown>; readonly server?: Record<string, unknown>; /** The service's TrafficPolicy. */ readonly policy?: Record<string, unknown> } = {}): Promise<H2Mesh> {
  const app = createH2cServer();
  const mesh = { transport, handler: ok, closed: [] as H2Mesh['closed'] } as { -readonly [K in keyof H2Mesh]: H2Mesh[K] };
  app.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags: number, raw: string[]) => {
    const seen = { path: String(headers[':path']), rstCode: 0, aborted: false, body: Buffer.alloc(0), headers, trailers: undefined as IncomingHttpHeaders | undefined };
    const parts: Buffer[] = [];
    stream.on('aborted', () => (seen.aborted = true));
    stream.on('trailers', (t: IncomingHttpHeaders) => (seen.trailers = t));
    stream.on('error', () => undefined);
    stream.on('close', () => {
      seen.rstCode = stream.rstCode ?? 0;
      seen.body = Buffer.concat(parts);
      mesh.closed.push(seen);
    });
    mesh.handler(stream, headers, raw);
    // Collected unless the handler paused the stream (an app that never reads).
    if (stream.readableFlowing !== false) stream.on('data', (d: Buffer) => parts.push(d));
  });
  const l = await listenOnLoopback(app);
  const protocol = { meshHttp2: transport };
  mesh.appPort = l.port;
  mesh.server = await startProxy({ pki, serviceAccount: 'app', config: { protocol, ...o.server } });
  mesh.client = await startProxy({
    pki, serviceAccount: 'client', config: { protocol, ...o.client },
    services: [meshService('app', 80, [{ appPort: l.port, proxy: mesh.server }], { protocol: o.protocol ?? 'http2', ...(o.policy ? { policy: o.policy } : {}) })],
  });
  mesh.close = async () => {
    await mesh.client.close();
    await mesh.server.close();
    await l.close();
  };
  return mesh as H2Mesh;
}

/** What an HTTP/2 client got for one request: the head, the body, the trailers, and how its stream ended. */
export interface H2Result {
  status?: number;
  headers?: IncomingHttpHeaders;
  body: Buffer;
  trailers?: IncomingHttpHeaders;
  /** The response ended with END_STREAM ('end' seen and no reset). */
  ended: boolean;
  rstCode: number;
  error?: string;
}

/** One request on a fresh h2c connection to the client sidecar's outbound port. */
export function h2request(
  client: Proxy,
  headers: OutgoingHttpHeaders,
  o: { readonly body?: Buffer | string; readonly trailers?: OutgoingHttpHeaders; readonly timeoutMs?: number; readonly session?: ClientHttp2Session } = {},
): Promise<H2Result> {
  return new Promise((resolve) => {
    const s = o.session ?? h2connect(`http://127.0.0.1:${client.outboundPort}`).on('error', () => undefined);
    const withBody = o.body !== undefined || o.trailers !== undefined;
    const req = s.request({ ':authority': 'app', ':path': '/', ...headers }, { endStream: !withBody, waitForTrailers: o.trailers !== undefined });
    const r: H2Result = { body: Buffer.alloc(0), ended: false, rstCode: 0 };
    const parts: Buffer[] = [];
    const timer = setTimeout(() => req.close(), o.timeoutMs ?? 5000);
    if (o.trailers !== undefined) req.on('wantTrailers', () => req.sendTrailers(o.trailers!));
    req.on('response', (h) => {
      r.status = Number(h[':status']);
      r.headers = h;
    });
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('trailers', (t) => (r.trailers = t));
    req.on('end', () => (r.ended = true));
    req.on('error', (e) => (r.error = e.message));
    req.on('close', () => {
      clearTimeout(timer);
      r.rstCode = req.rstCode ?? 0;
      if (r.rstCode !== 0) r.ended = false;
      r.body = Buffer.concat(parts);
      if (o.session === undefined) s.close();
      resolve(r);
    });
    if (withBody) req.end(o.body ?? '');
  });
}
