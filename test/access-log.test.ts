import { request as httpRequest, createServer, type IncomingHttpHeaders } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import { testPki } from './helpers/pki.js';
import { closedPort } from './helpers/closed-port.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeApp, fakeTcpApp, listenOnLoopback, type FakeApp } from './helpers/fake-app.js';
import { LogCapture } from './helpers/log-capture.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Access logs on the real data path (docs/observability.md, Access logs): a client
 * sidecar and a server sidecar over mTLS in front of real apps, both writing their lines
 * to a captured sink. Each outcome carries Envoy's response flag.
 */
const pki = testPki();
let client: Proxy, server: Proxy, app: FakeApp, tcpApp: FakeApp, lockedApp: FakeApp;
let failing: { port: number; close(): Promise<void> }, failing2: { port: number; close(): Promise<void> };
let refused: number;
const clientLog = new LogCapture();
const serverLog = new LogCapture();
let nextDst: { address: string; port: number } | undefined;
const on = { telemetry: { accessLog: { enabled: true } } };
const SECRETS = { authorization: 'Bearer s3cr3t-t0ken', 'proxy-authorization': 'Basic cHJveHk6c2VjcmV0', cookie: 'session=c00kie-value', 'x-api-key': 'k3y-value-123' };

beforeAll(async () => {
  [app, tcpApp, lockedApp] = await Promise.all([fakeApp('web'), fakeTcpApp('hello from tcp\n'), fakeTcpApp('never seen\n')]);
  const failer = () => listenOnLoopback(createServer((_q, s) => { s.writeHead(503); s.end('failing on cue'); }));
  [failing, failing2] = await Promise.all([failer(), failer()]);
  refused = await closedPort();
  const policy = {
    authorizationPolicies: [
      { name: 'default/deny-admin', action: 'DENY', rules: [{ to: [{ operation: { ports: [String(app.port)], paths: ['/admin'] } }] }] },
      { name: 'default/deny-locked', action: 'DENY', rules: [{ to: [{ operation: { ports: [String(lockedApp.port)] } }] }] },
    ],
  };
  server = await startProxy({ pki, serviceAccount: 'web', config: { ...on, policy }, accessLog: serverLog });
  const noOutlier = { outlierDetection: { enabled: false } };
  const retry = { ...noOutlier, retry: { retryOn: ['5xx'], attempts: 2, backoffBaseMs: '1ms' } };
  client = await startProxy({
    pki,
    serviceAccount: 'client',
    config: on,
    accessLog: clientLog,

    originalDst: (_s: Socket) => nextDst,
    services: [
      meshService('web', 80, [{ appPort: app.port, proxy: server }]),
      meshService('timeout', 80, [{ appPort: app.port, proxy: server }], { policy: { timeouts: { requestMs: '200ms' } } }),
      meshService('all-fail', 80, [{ appPort: failing.port, proxy: server }, { appPort: failing2.port, proxy: server }], { policy: retry }),
      meshService('half-fail', 80, [{ appPort: failing.port, proxy: server }, { appPort: app.port, proxy: server }], { policy: retry }),
      meshService('dead', 80, [{ appPort: refused, proxy: null }], { policy: noOutlier }),
      meshService('empty', 80, [{ appPort: app.port, proxy: server, ready: false }]),
      meshService('db', 5432, [{ appPort: tcpApp.port, proxy: server }], { clusterIPs: ['10.96.0.20'], protocol: 'opaque' }),
      meshService('locked', 6000, [{ appPort: lockedApp.port, proxy: server }], { clusterIPs: ['10.96.0.21'], protocol: 'opaque' }),
    ],
  });
});

afterAll(async () => {
  await client.close();
  await server.close();
  await Promise.all([app.close(), tcpApp.close(), lockedApp.close(), failing.close(), failing2.close()]);
});

interface Reply {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

function call(host: string, path: string, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path, headers: { host, ...headers } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

const byId = (id: string) => (e: Record<string, unknown>) => e['request_id'] === id;

test('a success: one parseable line on each sidecar, flags "-", Istio keys, peer identities, the W3C trace id', async () => {
  const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  const r = await call('web.default.svc.cluster.local', '/name?q=1', { 'x-request-id': 'req-success', 'user-agent': 'curl/8.0', traceparent });
  expect(r.status).toBe(200);
  const out = await clientLog.find(byId('req-success'));
  expect(out).toMatchObject({
    method: 'GET', path: '/name?q=1', protocol: 'HTTP/1.1', response_code: 200, response_flags: '-', response_code_details: 'via_upstream',
    authority: 'web.default.svc.cluster.local', user_agent: 'curl/8.0', bytes_received: 0, bytes_sent: 3,
    upstream_cluster: 'outbound|80||web.default.svc.cluster.local', upstream_host: `127.0.0.1:${app.port}`,
    upstream_peer_identity: server.tls.spiffeId, downstream_peer_identity: null, trace_id: '4bf92f3577b34da6a3ce929d0e0e4736',
    upstream_request_attempt_count: 1, route_name: 'default',
  });
  expect(typeof out['duration']).toBe('number');
  expect(typeof out['upstream_service_time']).toBe('number');
  expect(new Date(out['start_time'] as string).toISOString()).toBe(out['start_time']);
  expect(out['downstream_remote_address']).toMatch(/^127\.0\.0\.1:\d+$/);
  const inbound = await serverLog.find(byId('req-success'));
  expect(inbound).toMatchObject({
    response_code: 200, response_flags: '-', upstream_cluster: `inbound|${app.port}||`, upstream_host: `127.0.0.1:${app.port}`,
    downstream_peer_identity: client.tls.spiffeId, trace_id: '4bf92f3577b34da6a3ce929d0e0e4736',
  });
  // Every line on both sides is JSON.
  expect(() => clientLog.entries()).not.toThrow();
  expect(() => serverLog.entries()).not.toThrow();
});

test('body bytes are counted as they pass, streamed (chunked) bodies included', async () => {
  const body = 'x'.repeat(70_000);
  const r = await new Promise<Reply>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, method: 'POST', path: '/echo', headers: { host: 'web.default.svc.cluster.local', 'x-request-id': 'req-bytes' } }, (res) => {
      let b = '';
      res.on('data', (d) => (b += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: b }));
    });
    req.on('error', reject);
    req.write(body.slice(0, 30_000)); // no content-length: chunked
    req.end(body.slice(30_000));
  });
  expect(JSON.parse(r.body).bodyBytes).toBe(70_000);
  const sent = Buffer.byteLength(r.body);
  expect(await clientLog.find(byId('req-bytes'))).toMatchObject({ method: 'POST', bytes_received: 70_000, bytes_sent: sent });
  expect(await serverLog.find(byId('req-bytes'))).toMatchObject({ bytes_received: 70_000, bytes_sent: sent });
  await call('web.default.svc.cluster.local', '/trailers', { 'x-request-id': 'req-chunked' });
  expect(await clientLog.find(byId('req-chunked'))).toMatchObject({ bytes_sent: 'part1 part2'.length });
});

test('a malformed traceparent is never logged: both lines carry the trace the client sidecar started instead (Envoy\'s %TRACE_ID% is the active trace\'s)', async () => {
  await call('web.default.svc.cluster.local', '/name', { 'x-request-id': 'req-badtrace', traceparent: '00-00000000000000000000000000000000-00f067aa0ba902b7-01' });
  const id = (await clientLog.find(byId('req-badtrace')))['trace_id'];
  expect(id).toMatch(/^[0-9a-f]{32}$/);
  expect(id).not.toBe('00000000000000000000000000000000');
  expect((await serverLog.find(byId('req-badtrace')))['trace_id']).toBe(id);
});

test('secret headers never reach a line, on either sidecar', async () => {
  const r = await call('web.default.svc.cluster.local', '/echo', { 'x-request-id': 'req-secret', ...SECRETS });
  expect(r.status).toBe(200);
  expect(JSON.parse(r.body).headers.authorization).toBe(SECRETS.authorization); // they did travel
  await clientLog.find(byId('req-secret'));
  await serverLog.find(byId('req-secret'));
  const all = clientLog.lines.join('\n') + serverLog.lines.join('\n');
  for (const v of Object.values(SECRETS)) expect(all).not.toContain(v);
  expect(all).not.toContain('c00kie');
});

test('no route: 404 with NR', async () => {
  const r = await call('nowhere.default.svc.cluster.local', '/', { 'x-request-id': 'req-nr' });
  expect(r.status).toBe(404);
  expect(await clientLog.find(byId('req-nr'))).toMatchObject({ response_code: 404, response_flags: 'NR', response_code_details: 'no-route', upstream_cluster: null });
});

test('an endpoint that refuses connections: UF; a service without ready endpoints: UH', async () => {
  const dead = await call('dead.default.svc.cluster.local', '/', { 'x-request-id': 'req-uf' });
  expect(dead.status).toBeGreaterThanOrEqual(500);
  expect(await clientLog.find(byId('req-uf'))).toMatchObject({ response_code: dead.status, response_flags: 'UF', upstream_host: `127.0.0.1:${refused}`, upstream_peer_identity: null });
  const empty = await call('empty.default.svc.cluster.local', '/', { 'x-request-id': 'req-uh' });
  expect(empty.status).toBe(503);
  expect(await clientLog.find(byId('req-uh'))).toMatchObject({ response_code: 503, response_flags: 'UH' });
});

test('a request timeout: 504 with UT', async () => {
  const r = await call('timeout.default.svc.cluster.local', '/slow?ms=3000', { 'x-request-id': 'req-ut' });
  expect(r.status).toBe(504);
  expect(await clientLog.find(byId('req-ut'))).toMatchObject({ response_code: 504, response_flags: 'UT', response_code_details: 'request-timeout' });
});

test('retries: exhausted ones are URX with their attempt count; a successful retry shows attempts > 1 and no flag', async () => {
  const r = await call('all-fail.default.svc.cluster.local', '/', { 'x-request-id': 'req-urx' });
  expect(r.status).toBe(503);
  expect(await clientLog.find(byId('req-urx'))).toMatchObject({ response_code: 503, response_flags: 'URX', upstream_request_attempt_count: 2 });
  // Half the endpoints fail: some request's first attempt lands on the failing one and is retried.
  for (let i = 0; i < 12; i++) expect((await call('half-fail.default.svc.cluster.local', '/name', { 'x-request-id': `req-retry-${i}` })).status).toBe(200);
  const retried = await clientLog.find((e) => String(e['request_id']).startsWith('req-retry-') && (e['upstream_request_attempt_count'] as number) > 1);
  expect(retried).toMatchObject({ response_code: 200, response_flags: '-', upstream_request_attempt_count: 2 });
});

test('a client that goes away before the response: DC', async () => {
  await new Promise<void>((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path: '/hang', headers: { host: 'web.default.svc.cluster.local', 'x-request-id': 'req-dc' } });
    req.on('error', () => resolve());
    req.end();
    setTimeout(() => req.destroy(), 150);
  });
  expect(await clientLog.find(byId('req-dc'))).toMatchObject({ response_flags: 'DC', response_code: 0 });
});

test('a client that goes away in the middle of the response body: DC with the status it got', async () => {
  await new Promise<void>((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path: '/big?bytes=67108864', headers: { host: 'web.default.svc.cluster.local', 'x-request-id': 'req-dc-body' } }, (res) => {
      res.once('data', () => {
        req.destroy();
        resolve();
      });
    });
    req.on('error', () => resolve());
    req.end();
  });
  expect(await clientLog.find(byId('req-dc-body'))).toMatchObject({ response_flags: 'DC', response_code: 200, response_code_details: 'downstream_remote_disconnect' });
});

test('an authorization deny: 403 on the server sidecar with RBAC and the matched policy; the client logs what it got', async () => {
  const r = await call('web.default.svc.cluster.local', '/admin', { 'x-request-id': 'req-rbac' });
  expect(r.status).toBe(403);
  expect(await serverLog.find(byId('req-rbac'))).toMatchObject({
    response_code: 403, response_flags: 'RBAC', response_code_details: 'rbac_access_denied_matched_policy[deny-policy default/deny-admin]', downstream_peer_identity: client.tls.spiffeId,
  });
  expect(await clientLog.find(byId('req-rbac'))).toMatchObject({ response_code: 403, response_flags: '-' });
});

test('an opaque TCP connection: one line per sidecar when it closes, with the bytes both ways', async () => {
  nextDst = { address: '10.96.0.20', port: 5432 };
  const got = await new Promise<string>((resolve, reject) => {
    const s = netConnect({ port: client.outboundPort, host: '127.0.0.1' });
    let data = '';
    s.on('data', (d) => {
      data += d;
      if (data === 'hello from tcp\n') s.write('PING\n');
      if (data.endsWith('PING\n')) s.end();
    });
    s.on('close', () => resolve(data));
    s.on('error', reject);
  });
  expect(got).toBe('hello from tcp\nPING\n');
  const out = await clientLog.find((e) => e['upstream_cluster'] === 'outbound|5432||db.default.svc.cluster.local');
  expect(out).toMatchObject({
    method: null, protocol: null, response_code: 0, response_flags: '-', bytes_received: 5, bytes_sent: 20,
    downstream_local_address: '10.96.0.20:5432', upstream_host: `127.0.0.1:${tcpApp.port}`, upstream_peer_identity: server.tls.spiffeId, upstream_request_attempt_count: 1,
  });
  const inbound = await serverLog.find((e) => e['upstream_cluster'] === `inbound|${tcpApp.port}||`);
  expect(inbound).toMatchObject({ response_flags: '-', bytes_received: 5, bytes_sent: 20, downstream_peer_identity: client.tls.spiffeId });
});

test('an opaque TCP connection that cannot be routed is logged at once with NR', async () => {
  nextDst = undefined; // no original destination: nothing to route by
  await new Promise<void>((resolve) => {
    const s = netConnect({ port: client.outboundPort, host: '127.0.0.1' });
    s.on('connect', () => s.write('\x00\x01binary'));
    s.on('close', () => resolve());
    s.on('error', () => resolve());
  });
  expect(await clientLog.find((e) => e['protocol'] === null && e['response_flags'] === 'NR', 5000)).toMatchObject({ response_code: 0, bytes_sent: 0 });
});

test('an opaque TCP connection refused by authorization: the server sidecar logs RBAC with the matched policy', async () => {
  nextDst = { address: '10.96.0.21', port: 6000 };
  const got = await new Promise<string>((resolve) => {
    const s = netConnect({ port: client.outboundPort, host: '127.0.0.1' });
    let data = '';
    s.on('data', (d) => (data += d));
    s.on('close', () => resolve(data));
    s.on('error', () => resolve(data));
  });
  expect(got).toBe('');
  expect(await serverLog.find((e) => e['upstream_cluster'] === `inbound|${lockedApp.port}||`)).toMatchObject({
    response_flags: 'RBAC', response_code_details: 'forbidden', connection_termination_details: 'rbac_access_denied_matched_policy[deny-policy default/deny-locked]',
    downstream_peer_identity: client.tls.spiffeId, bytes_received: 0, bytes_sent: 0,
  });
});

test('an HTTP/1.1 upgrade (WebSocket) is logged when its tunnel closes, with the bytes that came back through it', async () => {
  nextDst = undefined; // routed by its Host header
  const s = netConnect({ port: client.outboundPort, host: '127.0.0.1' });
  let got = '';
  await new Promise<void>((resolve, reject) => {
    s.on('connect', () => s.write('GET /ws HTTP/1.1\r\nHost: web.default.svc.cluster.local\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nx-request-id: req-ws\r\n\r\n'));
    s.on('data', (d) => {
      got += d;
      if (got.includes('\r\n\r\n') && !got.includes('ping!')) s.write('ping!');
      if (got.endsWith('ping!')) s.end();
    });
    s.on('close', () => resolve());
    s.on('error', reject);
  });
  expect(got).toMatch(/^HTTP\/1\.1 101 /);
  expect(await clientLog.find(byId('req-ws'))).toMatchObject({ response_code: 101, response_flags: '-', method: 'GET', path: '/ws', bytes_sent: 5 });
  await serverLog.find(byId('req-ws'));
});

test('a proxy that stops writes the lines it still buffers (accessLogFlush: an hour, 1 MiB, so only the shutdown flush can write them)', async () => {
  const log = new LogCapture();
  const p = await startProxy({
    pki, serviceAccount: 'client', accessLog: log,
    config: { ...on, accessLogFlush: { intervalMs: '1h', minBytes: 1 << 20 } },
    services: [meshService('web', 80, [{ appPort: app.port, proxy: null }])],
  });
  let closed = false;
  try {
    const r = await new Promise<number>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: p.outboundPort, path: '/name', headers: { host: 'web.default.svc.cluster.local', 'x-request-id': 'req-buffered' } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end();
    });
    expect(r).toBe(200);
    await new Promise((r) => setTimeout(r, 100));
    expect(log.lines).toEqual([]); // buffered: neither the size nor the interval was reached
    await p.close();
    closed = true;
    expect(log.entries().map((e) => e['request_id'])).toEqual(['req-buffered']);
  } finally {
    if (!closed) await p.close();
  }
});
