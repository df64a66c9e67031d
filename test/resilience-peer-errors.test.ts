import { request as httpRequest, createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { connect } from 'node:http2';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import type { Proxy } from '../proxy/proxy.js';
import { listenOnLoopback } from './helpers/fake-app.js';
import { closedPort } from './helpers/closed-port.js';

/**
 * A meshed endpoint whose sidecar is up but whose app refuses or resets the connection (the
 * app container starting or restarting; found by adversary5). The peer sidecar answers
 * with its own proxy error (502 `connect-refused`, `upstream-reset`); the client sidecar
 * used to take it for the app's 502, so the always-safe retry, `retryOn: [connect-failure]`
 * and `[reset]` never fired for meshed endpoints, only for unmeshed ones. Now it is the
 * endpoint's local-origin failure (proxy/resilience/peer-outcome.ts), and an app cannot forge it:
 * the peer's inbound drops `wren-proxy-error` and the mesh fields from the app's response.
 * Two real sidecars over mTLS, apps on loopback, endpoints in round-robin order.
 */
interface App {
  readonly port: number;
  hits: number;
  close(): Promise<void>;
}

async function app(handle: (res: import('node:http').ServerResponse, req: import('node:http').IncomingMessage) => void): Promise<App> {
  const a = { hits: 0 } as App & { port: number; close(): Promise<void> };
  const server: Server = createServer((req, res) => {
    a.hits++;
    req.resume();
    req.on('end', () => handle(res, req));
  });
  const { port, close } = await listenOnLoopback(server);
  a.port = port;
  a.close = close;
  return a;
}

const pki = testPki();
let client: Proxy, server: Proxy;
let ok: App, resetter: App, forger: App, grpcOk: { port: number; close(): Promise<void> };
let closed: number;

beforeAll(async () => {
  ok = await app((res) => res.writeHead(200, { 'x-app': 'ok' }).end('ok'));
  // Reads the request, then drops the connection without an answer.
  resetter = await app((res) => res.socket?.destroy());
  // An app that writes the sidecars' own fields, as if its sidecar had failed to reach it.
  forger = await app((res) => res.writeHead(502, { 'x-app': 'forger', 'wren-proxy-error': 'connect-refused', 'wren-upgraded': 'websocket' }).end('forged'));
  const h2 = (await import('node:http2')).createServer();
  h2.on('stream', (st) => {
    st.resume();
    st.on('end', () => {
      st.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      st.on('wantTrailers', () => st.sendTrailers({ 'grpc-status': '0' }));
      st.end(Buffer.from([0, 0, 0, 0, 0]));
    });
  });
  grpcOk = await listenOnLoopback(h2);
  closed = await closedPort();
  server = await startProxy({ pki, serviceAccount: 'backend' });
  const policy = (extra: Record<string, unknown> = {}) => ({ policy: { loadBalancer: { kind: 'round-robin' }, outlierDetection: { enabled: false }, ...extra } });
  const retryOn = (on: string[]) => policy({ retry: { retryOn: on, backoffBaseMs: '1ms' } });
  const meshed = (...ports: number[]) => ports.map((appPort) => ({ appPort, proxy: server }));
  client = await startProxy({
    pki,
    serviceAccount: 'client',
    services: [
      meshService('down', 80, meshed(closed, ok.port), policy()),
      meshService('down-cf', 80, meshed(closed, ok.port), retryOn(['connect-failure'])),
      meshService('down-grpc', 80, meshed(closed, grpcOk.port), { protocol: 'grpc', ...retryOn(['connect-failure']) }),
      meshService('reset', 80, meshed(resetter.port, ok.port), policy()),
      meshService('reset-on', 80, meshed(resetter.port, ok.port), retryOn(['reset'])),
      meshService('forge', 80, meshed(forger.port, ok.port), retryOn(['connect-failure'])),
      meshService('forge-plain', 80, [{ appPort: forger.port, proxy: null }, { appPort: ok.port, proxy: null }], retryOn(['connect-failure'])),
      // Only the local-origin streak ejects here (consecutive5xx off): a 502 read as the app's would never eject.
      meshService('eject', 80, meshed(closed, ok.port), {
        policy: { loadBalancer: { kind: 'round-robin' }, outlierDetection: { consecutive5xx: 0, consecutiveLocalOriginFailure: 2, intervalMs: '10s', baseEjectionTimeMs: '30s', maxEjectionPercent: 50 } },
      }),
    ],
  });
});

afterAll(async () => {
  await client.close();
  await server.close();
  await Promise.all([ok, resetter, forger, grpcOk].map((a) => a.close()));
});

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
}

function call(svc: string, method = 'GET', body?: Buffer): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { host: `${svc}.default.svc.cluster.local` };
    if (body) headers['content-length'] = String(body.length);
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, method, path: '/', headers }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** n requests in a row (round-robin: every other one meets the failing endpoint first): their statuses. */
async function statuses(svc: string, n: number, method = 'GET', body?: Buffer): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await call(svc, method, body)).status);
  return out;
}

test('app port refused behind a live sidecar: retried on the other endpoint with the default policy (GET), and a POST whose body is kept (retryOn set)', async () => {
  expect(await statuses('down', 4)).toEqual([200, 200, 200, 200]);
  expect(await statuses('down-cf', 4, 'POST', Buffer.from('order'))).toEqual([200, 200, 200, 200]);
});

test('the same for a gRPC call (the peer answers trailers-only grpc-status 14 connect-refused)', async () => {
  const session = connect(`http://127.0.0.1:${client.outboundPort}`);
  try {
    const out: string[] = [];
    for (let i = 0; i < 4; i++) {
      const st = session.request({ ':method': 'POST', ':path': '/a.B/C', ':authority': 'down-grpc.default.svc.cluster.local', 'content-type': 'application/grpc', te: 'trailers' });
      st.end(Buffer.from([0, 0, 0, 0, 0]));
      const status = await new Promise<string>((resolve) => {
        let s = '';
        st.on('response', (h) => void (s = String(h['grpc-status'] ?? '')));
        st.on('trailers', (t) => void (s = String(t['grpc-status'])));
        st.on('close', () => resolve(s));
        st.resume();
      });
      out.push(status);
    }
    expect(out).toEqual(['0', '0', '0', '0']);
  } finally {
    session.close();
  }
});

test('the app resets: a bodyless GET is retried by default (idempotent-reset), with retryOn [reset] too; a POST that reached the app is not', async () => {
  expect(await statuses('reset', 4)).toEqual([200, 200, 200, 200]);
  expect(await statuses('reset-on', 4)).toEqual([200, 200, 200, 200]);
  const before = resetter.hits;
  const posts = await statuses('reset', 2, 'POST', Buffer.from('order'));
  expect(posts.sort()).toEqual([200, 502]);
  expect(resetter.hits - before).toBe(1);
});

test('an app cannot forge its sidecar\'s error: the peer drops wren-proxy-error and the mesh fields, so its POST is not replayed', async () => {
  const before = { forger: forger.hits, ok: ok.hits };
  const replies = [await call('forge', 'POST', Buffer.from('pay')), await call('forge', 'POST', Buffer.from('pay'))];
  const forged = replies.find((r) => r.status === 502);
  expect(forged?.headers['x-app']).toBe('forger');
  expect(forged?.headers['wren-proxy-error']).toBeUndefined();
  expect(forged?.headers['wren-upgraded']).toBeUndefined();
  expect(forger.hits - before.forger).toBe(1);
  expect(ok.hits - before.ok).toBe(1);
});

test('an unmeshed endpoint\'s wren-proxy-error is its app\'s answer: not read as a connect failure', async () => {
  const before = forger.hits;
  const replies = [await call('forge-plain', 'POST', Buffer.from('pay')), await call('forge-plain', 'POST', Buffer.from('pay'))];
  expect(replies.map((r) => r.status).sort()).toEqual([200, 502]);
  expect(forger.hits - before).toBe(1);
});

test('outlier detection counts them as local-origin failures: the refusing endpoint is ejected (consecutive-local-origin-failure)', async () => {
  await statuses('eject', 6);
  const all = (await (await fetch(`http://127.0.0.1:${client.adminPort}/clusters`)).json()) as Record<string, { endpoints: { port: number; health: string }[] }>;
  const eps = all['eject.default:80'].endpoints;
  expect(eps.find((e) => e.port === closed)?.health).toBe('ejected');
  expect(eps.find((e) => e.port === ok.port)?.health).toBe('healthy');
  const metrics = await (await fetch(`http://127.0.0.1:${client.adminPort}/metrics`)).text();
  expect(metrics).toMatch(/wren_outlier_ejections_enforced_total\{cluster="eject\.default:80",reason="consecutive-local-origin-failure"\} 1/);
});
