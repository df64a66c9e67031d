import { connect as netConnect, createServer as createNetServer, type Socket } from 'node:net';
import { connect as h2connect, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { fakeApp, fakeH2cApp, fakeTcpApp, listenOnLoopback, type FakeApp } from './helpers/fake-app.js';
import { metric } from './helpers/admin-metric.js';
import { until } from './helpers/until.js';
import { parseInboundPolicy } from '../contract/parse.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * A port switched from PERMISSIVE to STRICT while plaintext connections to it are open
 * (docs/policy.md, "Open connections when the mode changes"): the next HTTP request on an
 * open HTTP/1.1 keep-alive connection or h2c session is refused (403 unauthenticated) and
 * the connection ends (connection: close / GOAWAY); an open opaque plaintext splice or
 * switched WebSocket is closed at the push; a request in flight at the push finishes. Real sidecars, real
 * sockets; the original destination is injected (there is no iptables here).
 */
const pki = testPki();
let app: FakeApp, h2App: FakeApp, tcpA: FakeApp, tcpB: FakeApp, sniffApp: FakeApp;
let redirect = 0;
const inboundOriginalDst = () => ({ address: '127.0.0.1', port: redirect });

beforeAll(async () => {
  [app, h2App, tcpA, tcpB, sniffApp] = await Promise.all([fakeApp('a'), fakeH2cApp('h2'), fakeTcpApp('hello a\n'), fakeTcpApp('hello b\n'), fakeTcpApp('hello sniffed\n')]);
});

afterAll(async () => {
  await Promise.all([app, h2App, tcpA, tcpB, sniffApp].map((a) => a.close()));
});

/** A sidecar whose workload is PERMISSIVE; tcpA and tcpB are its opaque (server-speaks-first) ports. */
async function withPermissive(fn: (p: Proxy) => Promise<void>): Promise<void> {
  const p = await startProxy({
    pki, serviceAccount: 'web', inboundOriginalDst,
    config: { policy: { mtls: { mode: 'PERMISSIVE' } }, protocol: { detectTimeoutMs: 400, opaquePorts: [tcpA.port, tcpB.port] } },
  });
  try {
    await fn(p);
  } finally {
    await p.close();
  }
}

function push(p: Proxy, policy: Record<string, unknown>): void {
  p.applySnapshot({ version: `v${Date.now()}`, source: 'test', services: p.snapshot.services, inboundPolicy: parseInboundPolicy(policy, 'policy') });
}

/** A plain TCP connection to the inbound port, recording what comes back and whether it closed. */
function open(p: Proxy): { socket: Socket; state: { out: string; closed: boolean } } {
  const socket = netConnect(p.inboundPort, '127.0.0.1');
  const state = { out: '', closed: false };
  socket.on('data', (d: Buffer) => (state.out += d.toString('latin1')));
  socket.on('close', () => (state.closed = true));
  socket.on('error', () => undefined);
  return { socket, state };
}

const strictRefused = (p: Proxy, protocol: 'http' | 'tcp') => metric(p, new RegExp(`wren_plaintext_strict_refused_total\\{protocol="${protocol}"\\} (\\d+)`));
const get = (path: string) => `GET ${path} HTTP/1.1\r\nhost: web\r\n\r\n`;

test('HTTP/1.1 keep-alive: the request in flight at the push finishes; the next one is refused 403 unauthenticated and the connection closes', async () => {
  await withPermissive(async (p) => {
    redirect = app.port;
    const { socket, state } = open(p);
    socket.write(get('/name'));
    expect(await until(() => state.out.endsWith('\r\n\r\na'), 3000)).toBe(true);
    // In flight when the port becomes STRICT: it was admitted, and is answered.
    socket.write(get('/slow?ms=300'));
    expect(await until(() => app.hits.count === 2, 3000)).toBe(true);
    push(p, { mtls: { mode: 'STRICT' } });
    expect(await until(() => state.out.endsWith('slow a'), 3000)).toBe(true);
    expect(state.closed).toBe(false);

    const answered = state.out.length;
    socket.write(get('/name'));
    expect(await until(() => state.closed, 3000)).toBe(true);
    const refusal = state.out.slice(answered);
    expect(refusal).toMatch(/^HTTP\/1\.1 403 /);
    expect(refusal).toMatch(/\r\nwren-proxy-error: unauthenticated\r\n/i);
    expect(refusal).toMatch(/\r\nconnection: close\r\n/i);
    expect(refusal).toContain('a client certificate is required');
    expect(app.hits.count).toBe(2);
    expect(await strictRefused(p, 'http')).toBe(1);
    expect(await metric(p, /istio_requests_total\{reporter="destination",[^}]*response_code="403",[^}]*response_flags="RBAC",[^}]*connection_security_policy="none"\} (\d+)/)).toBe(1);
  });
});

test('h2c: a stream after the push is refused (403; gRPC: UNAUTHENTICATED) and the session gets GOAWAY', async () => {
  await withPermissive(async (p) => {
    redirect = h2App.port;
    const before = h2App.hits.count;
    const sessions = [0, 1].map(() => {
      const s = h2connect(`http://127.0.0.1:${p.inboundPort}`);
      const state = { s, goaway: false };
      s.on('error', () => undefined);
      s.on('goaway', () => (state.goaway = true));
      return state;
    });
    for (const { s } of sessions) expect(await h2get(s, {})).toMatchObject({ status: 200, body: 'h2' });

    push(p, { mtls: { mode: 'STRICT' } });
    const [plain, grpc] = sessions;
    expect(await h2get(plain.s, {})).toMatchObject({ status: 403, headers: { 'wren-proxy-error': 'unauthenticated' } });
    expect(await h2get(grpc.s, { 'content-type': 'application/grpc', te: 'trailers' })).toMatchObject({ status: 200, headers: { 'grpc-status': '16', 'wren-proxy-error': 'unauthenticated' } });
    expect(await until(() => plain.goaway && grpc.goaway, 3000)).toBe(true);
    // After GOAWAY the session takes no stream: nothing more on it is served.
    expect((await h2get(plain.s, {})).status).not.toBe(200);
    expect(h2App.hits.count - before).toBe(2);
    expect(await strictRefused(p, 'http')).toBe(2);
    for (const { s } of sessions) s.destroy();
  });
});

test('opaque plaintext splices to a port that becomes STRICT are closed at the push; one to a port left PERMISSIVE keeps flowing', async () => {
  await withPermissive(async (p) => {
    redirect = tcpA.port;
    const a = open(p);
    expect(await until(() => a.state.out === 'hello a\n', 3000)).toBe(true);
    redirect = tcpB.port;
    const b = open(p);
    expect(await until(() => b.state.out === 'hello b\n', 3000)).toBe(true);
    a.socket.write('before;');
    expect(await until(() => a.state.out.endsWith('before;'), 3000)).toBe(true);

    push(p, { mtls: { mode: 'STRICT' }, portLevelMtls: { [String(tcpB.port)]: { mode: 'PERMISSIVE' } } });
    expect(await until(() => a.state.closed, 3000)).toBe(true);
    b.socket.write('after;');
    expect(await until(() => b.state.out.endsWith('after;'), 3000)).toBe(true);
    expect(b.state.closed).toBe(false);
    expect(await strictRefused(p, 'tcp')).toBe(1);
    b.socket.destroy();
  });
});

test('a plaintext WebSocket switched before the push is a byte stream too: closed at the push', async () => {
  await withPermissive(async (p) => {
    redirect = app.port;
    const ws = open(p);
    ws.socket.write('GET /chat HTTP/1.1\r\nhost: web\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\nping;');
    expect(await until(() => ws.state.out.endsWith('\r\n\r\nping;'), 3000)).toBe(true);
    expect(ws.state.out).toMatch(/^HTTP\/1\.1 101 /);

    push(p, { mtls: { mode: 'STRICT' } });
    expect(await until(() => ws.state.closed, 3000)).toBe(true);
    expect(await strictRefused(p, 'tcp')).toBe(1);
  });
});

test('an upgrade admitted before the push and switched after it is closed as it switches', async () => {
  // An app that takes 300 ms to answer 101: the push lands while the upgrade is at the app.
  const slow = createNetServer((s) => {
    s.on('error', () => undefined);
    s.once('data', () => setTimeout(() => s.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n'), 300));
    s.on('data', (d: Buffer) => slowGot.push(d.toString('latin1')));
  });
  const slowGot: string[] = [];
  const slowApp = await listenOnLoopback(slow);
  try {
    await withPermissive(async (p) => {
      redirect = slowApp.port;
      const ws = open(p);
      ws.socket.write('GET /chat HTTP/1.1\r\nhost: web\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\n');
      expect(await until(() => slowGot.length > 0, 3000)).toBe(true);
      push(p, { mtls: { mode: 'STRICT' } });
      expect(await until(() => ws.state.closed, 3000)).toBe(true);
      expect(await strictRefused(p, 'tcp')).toBe(1);
    });
  } finally {
    await slowApp.close();
  }
});

test('a connection still being sniffed when the port becomes STRICT is judged by the new mode', async () => {
  await withPermissive(async (p) => {
    // Not an opaque port: the proxy waits for the client's first bytes (a partial request
    // line, then detectTimeoutMs), then would take them for opaque TCP.
    redirect = sniffApp.port;
    const c = open(p);
    c.socket.write('GET /na');
    await new Promise((r) => setTimeout(r, 100));
    const refused = await metric(p, /wren_inbound_connections_total\{tls="false",outcome="refused"\} (\d+)/);
    push(p, { mtls: { mode: 'STRICT' } });
    expect(await until(() => c.state.closed, 3000)).toBe(true);
    expect(c.state.out).toBe('');
    expect(sniffApp.hits.count).toBe(0);
    expect(await metric(p, /wren_inbound_connections_total\{tls="false",outcome="refused"\} (\d+)/)).toBe(refused + 1);
  });
});

function h2get(session: ClientHttp2Session, extra: Record<string, string>): Promise<{ status: number | string; headers: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve) => {
    const req = session.request({ ':path': '/name', ':authority': 'web', ...extra });
    let headers: IncomingHttpHeaders = {};
    let body = '';
    req.on('response', (h) => (headers = h));
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => resolve({ status: Number(headers[':status']), headers, body }));
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ status: `error ${e.code ?? e.message}`, headers, body }));
    req.end();
  });
}
