import { connect as h2connect, createServer as createH2cServer } from 'node:http2';

import { listenOnLoopback } from '../helpers/fake-app.js';
import { echoClient } from '../helpers/fake-grpc.js';
import { obsPair, until, type ObsPair } from './obs-pair.js';

/**
 * A gRPC call answered without any grpc-status: here an HTTP/2 app that is not a gRPC
 * server (an overloaded backend, a misrouted port) answers 503 text/plain. grpc-js reports
 * UNAVAILABLE (14); Istio's grpc_response_status is Envoy's getGrpcStatus, which infers the
 * status from the HTTP one when there is no grpc-status (httpToGrpcStatus: 503 → 14). Wren
 * said "" there, so the call fell out of every per-gRPC-status panel and alert.
 */
let pair: ObsPair;
let app: { port: number; close(): Promise<void> };

beforeAll(async () => {
  const h2 = createH2cServer((req, res) => {
    req.resume();
    const status = Number(req.headers['x-status'] ?? 503);
    res.writeHead(status, { 'content-type': 'text/plain' });
    res.end('not a grpc server');
  });
  app = await listenOnLoopback(h2);
  pair = await obsPair([{ name: 'h2', port: 9091, appPort: app.port, extra: { protocol: 'grpc' } }]);
});

afterAll(async () => {
  await pair.close();
  await app.close();
});

test('a gRPC call answered 503 without grpc-status is grpc_response_status 14 at both reporters, what the gRPC client saw', async () => {
  const c = echoClient(pair.client.outboundPort, 'h2.default.svc.cluster.local:9091');
  const err = await new Promise<{ code?: number } | null>((resolve) => c.Unary({ message: 'm' }, (e: { code?: number } | null) => resolve(e)));
  c.close();
  expect(err?.code).toBe(14);
  const grpc503 = (s: { labels: Record<string, string> }) => s.labels.request_protocol === 'grpc' && s.labels.response_code === '503';
  for (const p of [pair.client, pair.server]) {
    const s = (await until(p, 'istio_requests_total', (x) => x.some(grpc503))).filter(grpc503);
    expect(s.map((x) => x.labels.grpc_response_status)).toEqual(['14']);
  }
});

test('a gRPC-Web call (its status in a frame of the body) gets no inferred status from its HTTP 200', async () => {
  const session = h2connect(`http://127.0.0.1:${pair.client.outboundPort}`);
  await new Promise<void>((resolve, reject) => {
    const st = session.request({ ':method': 'POST', ':path': '/wren.test.Echo/Unary', ':authority': 'h2.default.svc.cluster.local:9091', 'content-type': 'application/grpc-web+proto', 'x-status': '200' });
    st.on('response', (h) => expect(h[':status']).toBe(200));
    st.resume();
    st.on('end', () => resolve());
    st.on('error', reject);
    st.end(Buffer.alloc(5));
  });
  session.close();
  const web200 = (s: { labels: Record<string, string> }) => s.labels.request_protocol === 'grpc' && s.labels.response_code === '200';
  const s = (await until(pair.client, 'istio_requests_total', (x) => x.some(web200))).filter(web200);
  expect(s.map((x) => x.labels.grpc_response_status)).toEqual(['']);
});
