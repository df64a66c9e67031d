import { request as httpRequest } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import { scrape, type Series } from './helpers/admin-metric.js';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeApp, fakeTcpApp, type FakeApp } from './helpers/fake-app.js';
import { echoClient, fakeGrpc, type EchoClient, type FakeGrpc } from './helpers/fake-grpc.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Istio's standard metrics with Istio's labels, end to end: a client sidecar (workload
 * client-v2) calls a server sidecar (workload web-v1) over mTLS on real sockets, and both
 * admin /metrics are scraped. The source reporter (client) knows the destination workload
 * from the endpoint (the control plane's Endpoint.workload); the destination reporter
 * (server) knows the caller's from the wren-peer header the client sidecar added, and the
 * service the caller meant. Every label value is asserted.
 */
const pki = testPki();
let web: FakeApp, grpcApp: FakeGrpc, tcpApp: FakeApp, server: Proxy, client: Proxy, grpc: EchoClient;
let nextDst: { address: string; port: number } | undefined;

const identity = (sa: string, workload: Record<string, string>) => ({ identity: { namespace: 'default', serviceAccount: sa, trustDomain: pki.trustDomain, workload } });

beforeAll(async () => {
  web = await fakeApp('web');
  grpcApp = await fakeGrpc();
  tcpApp = await fakeTcpApp('hello from redis\n');
  server = await startProxy({ pki, serviceAccount: 'web', config: identity('web', { name: 'web-v1', app: 'web', version: 'v1' }) });
  const at = (appPort: number) => [{ appPort, proxy: server, workload: { name: 'web-v1', app: 'web', version: 'v1' } }];
  client = await startProxy({
    pki,
    serviceAccount: 'client',
    config: identity('client', { name: 'client-v2', app: 'client', version: 'v2' }),
    services: [
      meshService('web', 80, at(web.port)),
      meshService('echo', 9090, at(grpcApp.port), { protocol: 'grpc' }),
      meshService('down', 80, [{ appPort: web.port, proxy: server, ready: false }]),
      meshService('redis', 6379, at(tcpApp.port), { clusterIPs: ['10.96.0.10'], protocol: 'opaque' }),
    ],
    originalDst: (_s: Socket) => nextDst,
  });
  grpc = echoClient(client.outboundPort, 'echo.default.svc.cluster.local:9090');
});

// The original destination one test sets (opaque TCP to redis) must not leak into the next
// test's connections (the upgrade test then reached redis and got a 502).
afterEach(() => {
  nextDst = undefined;
});

afterAll(async () => {
  grpc.close();
  await client.close();
  await server.close();
  await web.close();
  await grpcApp.close();
  await tcpApp.close();
});

/** The series of `name` whose labels are exactly `labels`, waiting (bounded) for it: a sidecar counts when the response's last byte has gone. */
async function exactly(p: Proxy, name: string, labels: Record<string, string>): Promise<Series | undefined> {
  const want = JSON.stringify(Object.entries(labels).sort());
  for (let i = 0; i < 100; i++) {
    const s = (await scrape(p, name)).find((x) => JSON.stringify(Object.entries(x.labels).sort()) === want);
    if (s) return s;
    await new Promise((r) => setTimeout(r, 20));
  }
  return undefined;
}

function get(host: string, path: string, body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, method: body ? 'POST' : 'GET', path, headers: { host, 'wren-peer': 'forged;kube-system;x;y;kubernetes.default' } }, (res) => {
      let b = '';
      res.on('data', (d) => (b += d));
      res.on('end', () => resolve({ status: res.statusCode!, body: b }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const CLIENT = () => client.tls.spiffeId;
const SERVER = () => server.tls.spiffeId;
const source = () => ({ source_workload: 'client-v2', source_workload_namespace: 'default', source_principal: CLIENT(), source_app: 'client', source_version: 'v2' });
const destination = () => ({ destination_workload: 'web-v1', destination_workload_namespace: 'default', destination_principal: SERVER(), destination_app: 'web', destination_version: 'v1' });
const service = (name: string) => ({ destination_service: `${name}.default.svc.cluster.local`, destination_service_name: name, destination_service_namespace: 'default' });

test('HTTP: both reporters, every label; the app never sees wren-peer, and one the app sent is not believed', async () => {
  const res = await get('web.default.svc.cluster.local', '/echo', 'x'.repeat(100));
  expect(res.status).toBe(200);
  expect(Object.keys(JSON.parse(res.body).headers)).not.toContain('wren-peer');
  const http = { request_protocol: 'http', response_code: '200', grpc_response_status: '', response_flags: '-' };
  const src = { reporter: 'source', ...source(), ...destination(), ...service('web'), ...http, connection_security_policy: 'unknown' };
  const dst = { reporter: 'destination', ...source(), ...destination(), ...service('web'), ...http, connection_security_policy: 'mutual_tls' };
  expect((await exactly(client, 'istio_requests_total', src))?.value).toBe(1);
  expect((await exactly(server, 'istio_requests_total', dst))?.value).toBe(1);
  // Body sizes: the request's 100 bytes on both sides.
  expect((await exactly(client, 'istio_request_bytes_sum', src))?.value).toBe(100);
  expect((await exactly(server, 'istio_request_bytes_sum', dst))?.value).toBe(100);
  expect((await exactly(server, 'istio_response_bytes_count', dst))?.value).toBe(1);
  expect((await exactly(client, 'istio_request_duration_milliseconds_count', src))?.value).toBe(1);
});

test('gRPC: request_protocol grpc and grpc_response_status from the trailers, both reporters', async () => {
  const err = await new Promise<{ code?: number } | null>((resolve) => grpc.Unary({ message: 'm', failCode: 5 }, (e: { code?: number } | null) => resolve(e)));
  expect(err?.code).toBe(5);
  const g = { request_protocol: 'grpc', response_code: '200', grpc_response_status: '5', response_flags: '-' };
  expect((await exactly(client, 'istio_requests_total', { reporter: 'source', ...source(), ...destination(), ...service('echo'), ...g, connection_security_policy: 'unknown' }))?.value).toBe(1);
  expect((await exactly(server, 'istio_requests_total', { reporter: 'destination', ...source(), ...destination(), ...service('echo'), ...g, connection_security_policy: 'mutual_tls' }))?.value).toBe(1);
});

test('proxy errors: NR (no route: destination all unknown, not the authority sent) and UH (no ready endpoint)', async () => {
  expect((await get('nowhere-7f3a.example', '/')).status).toBe(404);
  expect((await get('down.default.svc.cluster.local', '/')).status).toBe(503);
  const unknownDst = {
    destination_workload: 'unknown', destination_workload_namespace: 'unknown', destination_principal: 'unknown', destination_app: 'unknown', destination_version: 'unknown',
  };
  const base = { reporter: 'source', ...source(), ...unknownDst, request_protocol: 'http', grpc_response_status: '', connection_security_policy: 'unknown' };
  const nr = { ...base, destination_service: 'unknown', destination_service_name: 'unknown', destination_service_namespace: 'unknown', response_code: '404', response_flags: 'NR' };
  expect((await exactly(client, 'istio_requests_total', nr))?.value).toBe(1);
  expect((await exactly(client, 'istio_requests_total', { ...base, ...service('down'), response_code: '503', response_flags: 'UH' }))?.value).toBe(1);
});

test('opaque TCP: istio_tcp_* at both reporters, the caller known at the destination from the CONNECT stream', async () => {
  nextDst = { address: '10.96.0.10', port: 6379 };
  const got = await new Promise<string>((resolve, reject) => {
    const s = netConnect({ port: client.outboundPort, host: '127.0.0.1' });
    let b = '';
    s.on('data', (d) => {
      b += d;
      if (b === 'hello from redis\n') s.write('PING\n');
      if (b.endsWith('PING\n')) s.end();
    });
    s.on('close', () => resolve(b));
    s.on('error', reject);
  });
  expect(got).toBe('hello from redis\nPING\n');
  const tcp = { request_protocol: 'tcp', response_flags: '-' };
  const src = { reporter: 'source', ...source(), ...destination(), ...service('redis'), ...tcp, connection_security_policy: 'unknown' };
  const dst = { reporter: 'destination', ...source(), ...destination(), ...service('redis'), ...tcp, connection_security_policy: 'mutual_tls' };
  for (const [p, labels] of [[client, src], [server, dst]] as const) {
    expect((await exactly(p, 'istio_tcp_connections_opened_total', labels))?.value).toBe(1);
    expect((await exactly(p, 'istio_tcp_connections_closed_total', labels))?.value).toBe(1);
    expect((await exactly(p, 'istio_tcp_received_bytes_total', labels))?.value).toBe(5);
    expect((await exactly(p, 'istio_tcp_sent_bytes_total', labels))?.value).toBe('hello from redis\nPING\n'.length);
  }
});

test('an upgrade (WebSocket) over the extended CONNECT stream: the destination reporter knows the caller from the stream\'s headers', async () => {
  nextDst = undefined; // the opaque TCP case above pointed redirected connections at redis
  const got = await new Promise<string>((resolve, reject) => {
    const s = netConnect({ port: client.outboundPort, host: '127.0.0.1' });
    let b = '';
    s.on('connect', () => s.write('GET /ws HTTP/1.1\r\nhost: web.default.svc.cluster.local\r\nconnection: Upgrade\r\nupgrade: websocket\r\nwren-peer: forged;default;x;y;web.default\r\n\r\n'));
    s.on('data', (d) => {
      b += d;
      if (b.includes('\r\n\r\n') && !b.includes('ping')) s.write('ping');
      if (b.endsWith('ping')) s.end();
    });
    s.on('close', () => resolve(b));
    s.on('error', reject);
  });
  expect(got).toMatch(/^HTTP\/1\.1 101 /);
  expect(got.endsWith('ping')).toBe(true);
  const up = { request_protocol: 'http', response_code: '101', grpc_response_status: '', response_flags: '-' };
  expect((await exactly(client, 'istio_requests_total', { reporter: 'source', ...source(), ...destination(), ...service('web'), ...up, connection_security_policy: 'unknown' }))?.value).toBe(1);
  expect((await exactly(server, 'istio_requests_total', { reporter: 'destination', ...source(), ...destination(), ...service('web'), ...up, connection_security_policy: 'mutual_tls' }))?.value).toBe(1);
});
