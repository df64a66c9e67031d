import { connect as netConnect, createServer as createNetServer, type Socket } from 'node:net';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeTcpApp, listenOnLoopback, type FakeApp } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';
import { closedPort } from './helpers/closed-port.js';

/**
 * Opaque TCP takes the HTTP stack's route → admission → retry → pick layers
 * (proxy/outbound/tcp-stack.ts), so a TCP connection meets the same limits, timeouts,
 * retries, balancing and error codes as a request (docs/architecture.md, "Opaque TCP").
 */
const pki = testPki();
let client: Proxy;
let server: Proxy;
let tcpApp: FakeApp;
let blackhole: { port: number };
let refusedPort: number;
const closers: (() => Promise<void>)[] = [];
let nextDst: { address: string; port: number } | undefined;

beforeAll(async () => {
  server = await startProxy({ pki, serviceAccount: 'db' });
  tcpApp = await fakeTcpApp('hello from db\n');
  closers.push(tcpApp.close);
  // Accepts TCP and never answers the TLS handshake: a peer session to it never comes up.
  const held = new Set<Socket>();
  const bh = await listenOnLoopback(
    createNetServer((s) => {
      held.add(s);
      s.on('close', () => held.delete(s));
    }),
  );
  blackhole = { port: bh.port };
  closers.push(bh.close);
  // A port nobody listens on: connects are refused.
  refusedPort = await closedPort();
  const noOutlier = { outlierDetection: { enabled: false } };
  client = await startProxy({
    pki,
    serviceAccount: 'client',
    services: [
      meshService('capped', 5432, [{ appPort: tcpApp.port, proxy: server }], {
        protocol: 'opaque', clusterIPs: ['10.96.1.1'], policy: { ...noOutlier, circuitBreaker: { maxConnections: 1 } },
      }),
      meshService('slow', 5432, [{ appPort: 5432, proxy: { inboundPort: blackhole.port, tls: server.tls } as unknown as Proxy }], {
        protocol: 'opaque', clusterIPs: ['10.96.1.2'], policy: { ...noOutlier, timeouts: { connectMs: '200ms' }, retry: { attempts: 1 }, circuitBreaker: { maxPendingRequests: 1 } },
      }),
      meshService('pend', 5432, [{ appPort: 5432, proxy: { inboundPort: blackhole.port, tls: server.tls } as unknown as Proxy }], {
        protocol: 'opaque', clusterIPs: ['10.96.1.4'], policy: { ...noOutlier, timeouts: { connectMs: '3s' }, retry: { attempts: 1 }, circuitBreaker: { maxPendingRequests: 1 } },
      }),
      meshService('flaky', 6379, [{ appPort: tcpApp.port, proxy: null }, { appPort: refusedPort, proxy: null }], {
        protocol: 'opaque', clusterIPs: ['10.96.1.3'], policy: { loadBalancer: { kind: 'round-robin' }, outlierDetection: { consecutiveGatewayFailure: 2, consecutive5xx: 2 } },
      }),
    ],
    originalDst: () => nextDst,
  });
});

afterAll(async () => {
  await client.close();
  await server.close();
  await Promise.all(closers.map((c) => c()));
});

/** Dials `dst` through the client sidecar; resolves with the socket, what arrived first ('' if closed first) and how long that took. */
function dial(dst: { address: string; port: number }): Promise<{ socket: Socket; first: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    nextDst = dst;
    const socket = netConnect({ port: client.outboundPort, host: '127.0.0.1' });
    let got = '';
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      resolve({ socket, first: got, ms: Date.now() - t0 });
    };
    socket.on('data', (d) => {
      got += d;
      if (got.includes('\n')) finish();
    });
    socket.on('close', finish);
    socket.on('error', reject);
  });
}

const metrics = async () => (await fetch(`http://127.0.0.1:${client.adminPort}/metrics`)).text();
const count = (text: string, re: string): number => Number(new RegExp(`^${re} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
const proxyErrors = (text: string, code: string) => count(text, `wren_proxy_errors_total\\{direction="outbound",code="${code}"\\}`);

test('a TCP connection over maxConnections is refused through the error table: wren_overflow_total and wren_proxy_errors_total{code="overflow"}', async () => {
  const a = await dial({ address: '10.96.1.1', port: 5432 });
  expect(a.first).toBe('hello from db\n');
  const before = proxyErrors(await metrics(), 'overflow');
  const b = await dial({ address: '10.96.1.1', port: 5432 });
  expect(b.first).toBe('');
  const m = await metrics();
  expect(count(m, 'wren_overflow_total\\{cluster="capped.default:5432",limit="connections"\\}')).toBe(1);
  expect(proxyErrors(m, 'overflow')).toBe(before + 1);
  a.socket.destroy();
});

test('the service\'s connect timeout bounds a TCP connection\'s connect (not the pool default of 1 s), retried like a request, counted as connect-timeout', async () => {
  const r = await dial({ address: '10.96.1.2', port: 5432 });
  expect(r.first).toBe('');
  // Two attempts (retry.attempts 1) of 200 ms each plus a backoff of at most 250 ms (slack
  // for a loaded machine); the pool default would take 1 s per attempt.
  expect(r.ms).toBeGreaterThanOrEqual(190);
  expect(r.ms).toBeLessThan(1800);
  const m = await metrics();
  expect(proxyErrors(m, 'connect-timeout')).toBe(1);
  expect(count(m, 'wren_retries_total\\{cluster="slow.default:5432"\\}')).toBe(1);
});

test('a TCP connection waiting for a peer session is a pending request: over maxPendingRequests it is refused at once', async () => {
  const first = dial({ address: '10.96.1.4', port: 5432 });
  await new Promise((r) => setTimeout(r, 100));
  const second = await dial({ address: '10.96.1.4', port: 5432 });
  expect(second.first).toBe('');
  // Refused at once, not after the 3 s connect timeout the first one waits out.
  expect(second.ms).toBeLessThan(1000);
  expect(count(await metrics(), 'wren_overflow_total\\{cluster="pend.default:5432",limit="pending"\\}')).toBe(1);
  // The first one fails after its connect timeouts; afterAll's close ends it if it has not.
  first.catch(() => undefined);
});

test('unmeshed TCP endpoints: a refused connect is retried on the other endpoint, and once outlier detection ejects the bad one TCP skips it', async () => {
  const retries = async () => count(await metrics(), 'wren_retries_total\\{cluster="flaky.default:6379"\\}');
  for (let i = 0; i < 6; i++) {
    const r = await dial({ address: '10.96.1.3', port: 6379 });
    expect(r.first).toBe('hello from db\n');
    r.socket.destroy();
  }
  const afterWarmup = await retries();
  expect(afterWarmup).toBeGreaterThanOrEqual(2);
  const view = (await (await fetch(`http://127.0.0.1:${client.adminPort}/clusters`)).json()) as Record<string, { endpoints: { port: number; health: string }[] }>;
  expect(view['flaky.default:6379'].endpoints.find((e) => e.port === refusedPort)?.health).toBe('ejected');
  for (let i = 0; i < 6; i++) {
    const r = await dial({ address: '10.96.1.3', port: 6379 });
    expect(r.first).toBe('hello from db\n');
    r.socket.destroy();
  }
  expect(await retries()).toBe(afterWarmup);
});
