import * as grpc from '@grpc/grpc-js';
import { createServer as createH1Server, request as h1request, type IncomingHttpHeaders } from 'node:http';
import { connect as h2connect, createServer as createH2Server, type ServerHttp2Stream } from 'node:http2';
import { testPki } from './helpers/pki.js';
import { meshService, startProxy } from './helpers/proxy.js';
import { listenOnLoopback } from './helpers/fake-app.js';
import { echoClient, echoPackage, grpcOptions } from './helpers/fake-grpc.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Found by the adversary review of the data path: the inbound cleaned the app's response
 * HEADERS of the fields only a sidecar writes (deliver-to-app.ts NOT_FROM_APP), not its
 * TRAILERS. An app that ends a response with a `wren-proxy-error` trailer (or a mesh field
 * on HTTP/1.1, whose trailers kept them) had it relayed to the calling sidecar, which takes
 * such trailers for its peer's gRPC rescue (grpcErrorTrailers): it resets the request
 * stream right after the trailers (http/write-response.ts, h2/h2-server-stream.ts
 * endedByProxyError), so the rest of a request body still on its way was cut off (the app
 * saw its request end without it), and the calling client saw the sidecar-only field.
 *
 * Now every client that reads the app's trailers (the HTTP/1.1 pool's chunked trailers, an
 * upgrade's, node:http2's and the frame-level client's) drops those fields, and the app's own
 * trailer fields still arrive.
 */
const pki = testPki();
const FORGED = { 'wren-proxy-error': 'connect-refused', 'wren-peer': 'forged', 'x-forwarded-client-cert': 'By=forged' };
const SIDECAR_ONLY = Object.keys(FORGED);

async function pairFor(appPort: number, serverConfig: Record<string, unknown>, protocol?: 'http2' | 'grpc'): Promise<{ readonly client: Proxy; close(): Promise<void> }> {
  const server = await startProxy({ pki, serviceAccount: 'web', config: serverConfig });
  const client = await startProxy({ pki, serviceAccount: 'client', services: [meshService('web', 80, [{ appPort, proxy: server }], protocol === undefined ? undefined : { protocol })] });
  return {
    client,
    async close() {
      await client.close();
      await server.close();
    },
  };
}

function onlyAppFields(t: Record<string, unknown> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of [...SIDECAR_ONLY, 'x-app']) out[f] = t?.[f];
  return out;
}

// An upgrade the app declines (here a 200) is an ordinary response on the upgrade's own connection (http/h1-upgrade.ts).
test.each([
  ['a request', {}],
  ['a declined upgrade', { connection: 'upgrade', upgrade: 'websocket' }],
])('HTTP/1.1 app, %s: its chunked trailers reach the caller without the fields only a sidecar writes', async (_what, extra) => {
  const app = await listenOnLoopback(
    createH1Server((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { trailer: [...SIDECAR_ONLY, 'x-app'].join(', ') });
        res.write('ok');
        res.addTrailers({ ...FORGED, 'x-app': '1' });
        res.end();
      });
    }),
  );
  const pair = await pairFor(app.port, {});
  try {
    const got = await new Promise<{ status: number; body: string; trailers: IncomingHttpHeaders }>((resolve, reject) => {
      const q = h1request({ host: '127.0.0.1', port: pair.client.outboundPort, path: '/x', headers: { host: 'web', ...extra }, agent: false }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, trailers: res.trailers }));
        res.on('error', reject);
      });
      q.on('error', reject);
      q.end();
    });
    expect({ status: got.status, body: got.body }).toEqual({ status: 200, body: 'ok' });
    expect(onlyAppFields(got.trailers)).toEqual({ 'wren-proxy-error': undefined, 'wren-peer': undefined, 'x-forwarded-client-cert': undefined, 'x-app': '1' });
  } finally {
    await pair.close();
    await app.close();
  }
});

/**
 * An HTTP/2 app that answers at once, trailers included, and keeps reading the request:
 * `received` settles with the request body it got and whether it ended (a reset ends it early).
 */
function answeringH2App(): { readonly server: ReturnType<typeof createH2Server>; readonly received: Promise<string> } {
  let done!: (s: string) => void;
  const received = new Promise<string>((resolve) => (done = resolve));
  const server = createH2Server();
  server.on('stream', (stream: ServerHttp2Stream) => {
    let body = '';
    stream.on('data', (d: Buffer) => (body += d.toString()));
    stream.on('end', () => done(`ended: ${body}`));
    stream.on('close', () => done(`closed before its end (rst ${stream.rstCode}): ${body}`));
    stream.on('error', () => undefined);
    stream.respond({ ':status': 200 }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ ...FORGED, 'x-app': '1' }));
    stream.end('ok');
  });
  return { server, received };
}

test.each(['frames', 'node'])('HTTP/2 app (appHttp2 %s): the caller gets its trailers without the sidecar-only fields, and the rest of its request still reaches the app', async (appHttp2) => {
  const app = answeringH2App();
  const l = await listenOnLoopback(app.server);
  const pair = await pairFor(l.port, { protocol: { appHttp2 } }, 'http2');
  try {
    const s = h2connect(`http://127.0.0.1:${pair.client.outboundPort}`);
    s.on('error', () => undefined);
    const got = await new Promise<{ status: unknown; body: string; trailers: Record<string, unknown> | undefined }>((resolve) => {
      const q = s.request({ ':method': 'POST', ':path': '/x', ':authority': 'web' });
      let status: unknown;
      let body = '';
      let trailers: Record<string, unknown> | undefined;
      q.on('response', (h) => (status = h[':status']));
      q.on('data', (d: Buffer) => (body += d.toString()));
      // The response is whole: the rest of the request goes after it (RFC 9113 section 8.1).
      q.on('trailers', (t) => {
        trailers = { ...t };
        q.end('-rest');
      });
      q.on('error', () => undefined);
      q.on('close', () => resolve({ status, body, trailers }));
      q.write('first');
    });
    s.close();
    expect({ status: got.status, body: got.body }).toEqual({ status: 200, body: 'ok' });
    expect(onlyAppFields(got.trailers)).toEqual({ 'wren-proxy-error': undefined, 'wren-peer': undefined, 'x-forwarded-client-cert': undefined, 'x-app': '1' });
    expect(await app.received).toBe('ended: first-rest');
  } finally {
    await pair.close();
    await l.close();
  }
});

test.each(['frames', 'node'])('gRPC app (appHttp2 %s): trailing metadata reaches the caller without the sidecar-only fields', async (appHttp2) => {
  const server = new grpc.Server(grpcOptions);
  const { Echo } = echoPackage();
  server.addService(Echo.service, {
    Unary(_call: unknown, cb: grpc.sendUnaryData<{ message: string }>) {
      const md = new grpc.Metadata();
      for (const [k, v] of Object.entries({ ...FORGED, 'x-app': '1' })) md.set(k, v);
      cb(null, { message: 'ok' }, md);
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  const pair = await pairFor(port, { protocol: { appHttp2 } }, 'grpc');
  const c = echoClient(pair.client.outboundPort, 'web:80');
  try {
    const got = await new Promise<{ err: grpc.ServiceError | null; message: string | undefined; trailers: Record<string, unknown> | undefined }>((resolve) => {
      let trailers: Record<string, unknown> | undefined;
      const call = c.Unary({ message: 'hi' }, (err: grpc.ServiceError | null, res: { message: string } | undefined) => setImmediate(() => resolve({ err, message: res?.message, trailers })));
      call.on('status', (st: grpc.StatusObject) => (trailers = Object.fromEntries(Object.entries(st.metadata.getMap()).map(([k, v]) => [k, String(v)]))));
    });
    expect({ err: got.err, message: got.message }).toEqual({ err: null, message: 'ok' });
    expect(onlyAppFields(got.trailers)).toEqual({ 'wren-proxy-error': undefined, 'wren-peer': undefined, 'x-forwarded-client-cert': undefined, 'x-app': '1' });
  } finally {
    c.close();
    await pair.close();
    server.forceShutdown();
  }
});
