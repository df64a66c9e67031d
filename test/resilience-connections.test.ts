import { request as httpRequest, createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { connect as netConnect, createServer as createNetServer, type Socket } from 'node:net';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeTcpApp, listenOnLoopback, type FakeApp } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * TrafficPolicy circuitBreaker.maxConnections and maxPendingRequests on the real data path
 * (docs/resilience.md, "Connection limits"): a connection is a peer HTTP/2 session opened
 * for the cluster or an opaque TCP connection; a pending request is one waiting for a peer
 * session to be established. Over either limit: 503 `overflow`, response flag UO,
 * wren_overflow_total{limit}. Each cluster here has sidecars of its own, because sessions
 * are pooled per peer across clusters.
 */
const pki = testPki();
let client: Proxy;
const sidecars: Proxy[] = [];
const closers: (() => Promise<void>)[] = [];
let b1: { port: number; hits: number }, b2: { port: number; hits: number };
let tcpApp: FakeApp;
let blackhole: { port: number; accepted: number };
let nextDst: { address: string; port: number } | undefined;

async function app(): Promise<{ port: number; hits: number }> {
  const a = { port: 0, hits: 0 };
  const server: Server = createServer((req, res) => {
    a.hits++;
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  const l = await listenOnLoopback(server);
  a.port = l.port;
  closers.push(l.close);
  return a;
}

beforeAll(async () => {
  const s1 = await startProxy({ pki, serviceAccount: 'backend' });
  const s2 = await startProxy({ pki, serviceAccount: 'backend' });
  const s3 = await startProxy({ pki, serviceAccount: 'db' });
  sidecars.push(s1, s2, s3);
  b1 = await app();
  b2 = await app();
  tcpApp = await fakeTcpApp('hello from db\n');
  closers.push(tcpApp.close);
  // Accepts TCP and never answers the TLS handshake: a peer session to it stays "being established".
  const held = new Set<Socket>();
  const bh = createNetServer((s) => {
    blackhole.accepted++;
    held.add(s);
    s.on('close', () => held.delete(s));
  });
  const l = await listenOnLoopback(bh);
  blackhole = { port: l.port, accepted: 0 };
  closers.push(l.close);
  const noOutlier = { outlierDetection: { enabled: false } };
  client = await startProxy({
    pki,
    serviceAccount: 'client',
    services: [
      meshService('conn', 80, [{ appPort: b1.port, proxy: s1 }, { appPort: b2.port, proxy: s2 }], {
        policy: { ...noOutlier, loadBalancer: { kind: 'round-robin' }, circuitBreaker: { maxConnections: 1 } },
      }),
      meshService('pend', 80, [{ appPort: 8080, proxy: { inboundPort: blackhole.port, tls: s1.tls } as unknown as Proxy }], {
        policy: { ...noOutlier, circuitBreaker: { maxPendingRequests: 1 }, timeouts: { connectMs: '400ms' }, retry: { attempts: 1 } },
      }),
      meshService('db', 5432, [{ appPort: tcpApp.port, proxy: s3 }], {
        protocol: 'opaque', clusterIPs: ['10.96.0.40'], policy: { ...noOutlier, circuitBreaker: { maxConnections: 1 } },
      }),
    ],
    originalDst: () => nextDst,
  });
});

afterAll(async () => {
  await client.close();
  await Promise.all(sidecars.map((s) => s.close()));
  await Promise.all(closers.map((c) => c()));
});

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  ms: number;
}

function call(svc: string): Promise<Reply> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path: '/', headers: { host: `${svc}.default.svc.cluster.local` } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, ms: Date.now() - t0 }));
    });
    req.on('error', reject);
    req.end();
  });
}

const metrics = async () => (await fetch(`http://127.0.0.1:${client.adminPort}/metrics`)).text();
const overflowCount = (text: string, cluster: string, limit: string): number =>
  Number(new RegExp(`^wren_overflow_total\\{cluster="${cluster}",limit="${limit}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
const flaggedUO = (text: string, svc: string): number =>
  Number(new RegExp(`^istio_requests_total\\{reporter="source",[^}]*destination_service="${svc}.default.svc.cluster.local",[^}]*response_code="503",grpc_response_status="",response_flags="UO",[^}]*\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);

test('maxConnections 1: the session to one peer is the cluster\'s only connection; a request that would open a second gets 503 overflow (UO)', async () => {
  const replies: Reply[] = [];
  for (let i = 0; i < 10; i++) replies.push(await call('conn'));
  const ok = replies.filter((r) => r.status === 200);
  const over = replies.filter((r) => r.status === 503);
  // Round robin alternates; only the peer whose session came first is ever reached.
  expect(ok.length).toBe(5);
  expect(over.length).toBe(5);
  for (const r of over) expect(r.headers['wren-proxy-error']).toBe('overflow');
  expect([b1.hits, b2.hits].sort()).toEqual([0, 5]);
  const m = await metrics();
  expect(overflowCount(m, 'conn.default:80', 'connections')).toBe(5);
  expect(flaggedUO(m, 'conn')).toBe(5);
  const view = (await (await fetch(`http://127.0.0.1:${client.adminPort}/clusters`)).json()) as Record<string, { limits: Record<string, { active: number; max: number }> }>;
  expect(view['conn.default:80'].limits.connections).toEqual({ active: 1, max: 1 });
  expect(view['conn.default:80'].limits.pending).toEqual({ active: 0, max: 1024 });
});

test('maxPendingRequests 1: while a peer session is being established, one request waits for it and the others get 503 overflow at once', async () => {
  const replies = await Promise.all([call('pend'), call('pend'), call('pend')]);
  const over = replies.filter((r) => r.status === 503);
  const waited = replies.filter((r) => r.status !== 503);
  expect(over.length).toBe(2);
  for (const r of over) {
    expect(r.headers['wren-proxy-error']).toBe('overflow');
    expect(r.ms).toBeLessThan(300); // not queued behind the 400 ms connect timeout
  }
  expect(waited.length).toBe(1);
  expect(waited[0].status).toBe(504);
  expect(waited[0].headers['wren-proxy-error']).toBe('connect-timeout');
  const m = await metrics();
  expect(overflowCount(m, 'pend.default:80', 'pending')).toBe(2);
  expect(flaggedUO(m, 'pend')).toBe(2);
});

/** Dials the db Service's ClusterIP through the client sidecar; resolves with the socket and what arrived first (or '' if it was closed). */
function dialDb(): Promise<{ socket: Socket; first: string }> {
  return new Promise((resolve, reject) => {
    nextDst = { address: '10.96.0.40', port: 5432 };
    const socket = netConnect({ port: client.outboundPort, host: '127.0.0.1' });
    let got = '';
    const done = () => resolve({ socket, first: got });
    socket.on('data', (d) => {
      got += d;
      if (got.includes('\n')) done();
    });
    socket.on('close', done);
    socket.on('error', reject);
  });
}

test('maxConnections 1 on an opaque TCP service: a second connection is closed while the first is open, and admitted once it closed', async () => {
  const a = await dialDb();
  expect(a.first).toBe('hello from db\n');
  const b = await dialDb();
  expect(b.first).toBe('');
  expect(b.socket.destroyed || b.socket.readableEnded).toBe(true);
  expect(overflowCount(await metrics(), 'db.default:5432', 'connections')).toBe(1);
  await new Promise<void>((r) => {
    a.socket.once('close', () => r());
    a.socket.end();
  });
  // The slot comes back when the proxy sees the connection close.
  let c = await dialDb();
  for (let i = 0; i < 20 && c.first === ''; i++) {
    await new Promise((r) => setTimeout(r, 50));
    c = await dialDb();
  }
  expect(c.first).toBe('hello from db\n');
  c.socket.end();
});
