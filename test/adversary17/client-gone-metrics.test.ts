import { request as httpRequest } from 'node:http';
import { fakeApp, type FakeApp } from '../helpers/fake-app.js';
import { echoClient, fakeGrpc, type FakeGrpc } from '../helpers/fake-grpc.js';
import { lineOf, obsPair, until, type ObsPair } from './obs-pair.js';

/**
 * A client that leaves before any response: Istio's stats filter labels the request
 * response_code `info.responseCode().value_or(0)` ("0"), and Envoy's access log says 0 and
 * no byte sent. Wren used to count the synthetic answer it never sent: response_code="499"
 * (nginx's code, which Envoy never uses) with its 33-byte text body, and for gRPC a
 * response_code="200" grpc_response_status="1" that no client received.
 */
let web: FakeApp, grpcApp: FakeGrpc, pair: ObsPair;

beforeAll(async () => {
  web = await fakeApp('web');
  grpcApp = await fakeGrpc();
  pair = await obsPair([
    { name: 'web', port: 80, appPort: web.port },
    { name: 'echo', port: 9090, appPort: grpcApp.port, extra: { protocol: 'grpc' } },
  ]);
});

afterAll(async () => {
  await pair.close();
  await web.close();
  await grpcApp.close();
});

test('HTTP/1.1: a client gone before the response is response_code 0 (DC) with 0 response bytes, in the metrics and the access log', async () => {
  await new Promise<void>((resolve) => {
    const r = httpRequest({ host: '127.0.0.1', port: pair.client.outboundPort, path: '/hang', headers: { host: 'web.default.svc.cluster.local' } });
    r.on('error', () => undefined);
    r.end();
    // Once the app has the request, the client goes.
    const wait = () => (web.hits.count > 0 ? (r.destroy(), resolve()) : setTimeout(wait, 10));
    wait();
  });
  const dc = (s: { labels: Record<string, string> }) => s.labels.response_flags === 'DC' && s.labels.request_protocol === 'http';
  const src = (await until(pair.client, 'istio_requests_total', (s) => s.some(dc))).filter(dc);
  expect(src.map((s) => s.labels.response_code)).toEqual(['0']);
  const bytes = (await until(pair.client, 'istio_response_bytes_sum', (s) => s.some(dc))).filter(dc);
  expect(bytes.map((s) => s.value)).toEqual([0]);
  const line = await lineOf(pair.clientLines, (l) => l.path === '/hang');
  expect(line).toMatchObject({ response_code: 0, response_flags: 'DC', bytes_sent: 0, response_code_details: 'downstream_remote_disconnect' });
});

test('gRPC: a call the client cancels before the response is response_code 0 with no grpc_response_status (DC), as Istio reports it', async () => {
  const c = echoClient(pair.client.outboundPort, 'echo.default.svc.cluster.local:9090');
  await new Promise<void>((resolve) => {
    const call = c.Unary({ message: 'm', delayMs: 5000 }, () => resolve());
    const wait = () => (grpcApp.started.length > 0 ? call.cancel() : setTimeout(wait, 10));
    wait();
  });
  c.close();
  const dc = (s: { labels: Record<string, string> }) => s.labels.response_flags === 'DC' && s.labels.request_protocol === 'grpc';
  const src = (await until(pair.client, 'istio_requests_total', (s) => s.some(dc))).filter(dc);
  expect(src.map((s) => [s.labels.response_code, s.labels.grpc_response_status])).toEqual([['0', '']]);
  const line = await lineOf(pair.clientLines, (l) => l.path === '/wren.test.Echo/Unary');
  expect(line).toMatchObject({ response_code: 0, response_flags: 'DC', bytes_sent: 0 });
});

test('gRPC to an HTTP/2 app: the server sidecar reports the call its caller cancelled as DC, not as an upstream reset (UR) of the app', async () => {
  grpcApp.started.length = 0;
  const c = echoClient(pair.client.outboundPort, 'echo.default.svc.cluster.local:9090');
  await new Promise<void>((resolve) => {
    const call = c.Unary({ message: 'second', delayMs: 5000 }, () => resolve());
    const wait = () => (grpcApp.started.length > 0 ? call.cancel() : setTimeout(wait, 10));
    wait();
  });
  c.close();
  const grpcDst = (s: { labels: Record<string, string> }) => s.labels.request_protocol === 'grpc' && s.labels.response_flags !== '-';
  const dst = (await until(pair.server, 'istio_requests_total', (s) => s.filter(grpcDst).reduce((n, x) => n + x.value, 0) >= 2)).filter(grpcDst);
  expect(dst.map((s) => s.labels.response_flags)).toEqual(['DC']);
  const line = await lineOf(pair.serverLines, (l) => l.path === '/wren.test.Echo/Unary' && l.response_flags !== 'DC');
  expect(line).toBeUndefined();
});
