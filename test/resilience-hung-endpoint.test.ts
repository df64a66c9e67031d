import { request as httpRequest, createServer, type Server } from 'node:http';
import { connect as h2connect, createServer as createH2cServer, type Http2Server } from 'node:http2';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { listenOnLoopback } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * A hung endpoint under the default balancer (peak-EWMA), real sidecars over mTLS: one app
 * accepts requests and never answers, the other answers at once, both behind one server
 * sidecar. The callers give up by themselves (their own 200 ms timeout, a gRPC deadline),
 * so every call to the hung app ends as a cancellation at the client sidecar. tower's
 * PeakEwma records the time until a request is dropped as an RTT sample: the hung app's
 * estimate rises to the callers' patience and P2C moves the traffic to the other app
 * after the first timeout or so. Without that sample the hung app took all 40 calls.
 */
const pki = testPki();
const CALLS = 40;
let client: Proxy, server: Proxy;
const closers: (() => Promise<void>)[] = [];
const hits = { httpHung: 0, httpGood: 0, grpcHung: 0, grpcGood: 0 };
let ports: Record<keyof typeof hits, number>;

async function httpApp(hung: boolean, count: () => void): Promise<number> {
  const s: Server = createServer((req, res) => {
    count();
    req.resume();
    if (!hung) req.on('end', () => res.writeHead(200).end('ok'));
  });
  const { port, close } = await listenOnLoopback(s);
  closers.push(close);
  return port;
}

async function grpcApp(hung: boolean, count: () => void): Promise<number> {
  const s: Http2Server = createH2cServer();
  s.on('stream', (st) => {
    count();
    st.on('error', () => undefined);
    st.resume();
    if (!hung) st.on('end', () => st.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '0' }, { endStream: true }));
  });
  const { port, close } = await listenOnLoopback(s);
  closers.push(close);
  return port;
}

beforeAll(async () => {
  ports = {
    httpHung: await httpApp(true, () => hits.httpHung++),
    httpGood: await httpApp(false, () => hits.httpGood++),
    grpcHung: await grpcApp(true, () => hits.grpcHung++),
    grpcGood: await grpcApp(false, () => hits.grpcGood++),
  };
  server = await startProxy({ pki, serviceAccount: 'web' });
  client = await startProxy({
    pki,
    serviceAccount: 'client',
    services: [
      // Default policy: peak-EWMA, outlier detection on. The hung app is listed first.
      meshService('web', 80, [{ appPort: ports.httpHung, proxy: server }, { appPort: ports.httpGood, proxy: server }], { protocol: 'http1' }),
      // Listed the other way round: which endpoint is older must not matter.
      meshService('g', 50051, [{ appPort: ports.grpcGood, proxy: server }, { appPort: ports.grpcHung, proxy: server }], { protocol: 'grpc' }),
    ],
  });
});

afterAll(async () => {
  await client?.close();
  await server?.close();
  for (const c of closers) await c();
});

/** One GET with the caller's own 200 ms timeout: the status, or 'timeout'. */
function getWithTimeout(): Promise<number | 'timeout'> {
  return new Promise((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path: '/', headers: { host: 'web' }, agent: false });
    const t = setTimeout(() => {
      req.destroy();
      resolve('timeout');
    }, 200);
    req.on('error', () => undefined);
    req.on('response', (res) => {
      clearTimeout(t);
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.end();
  });
}

/** One unary call with a 200 ms deadline: its grpc-status. */
async function callWithDeadline(): Promise<string> {
  const s = h2connect(`http://127.0.0.1:${client.outboundPort}`);
  s.on('error', () => undefined);
  try {
    const st = s.request({ ':method': 'POST', ':path': '/x.Y/Z', ':authority': 'g:50051', 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': '200m' });
    st.on('error', () => undefined);
    st.end(Buffer.from([0, 0, 0, 0, 0]));
    const h = await new Promise<Record<string, unknown>>((r) => st.once('response', r));
    st.resume();
    return String(h['grpc-status']);
  } finally {
    s.destroy();
  }
}

interface EndpointView {
  port: number;
  health: string;
  ewmaMs: number;
  failures: number;
  timesEjected: number;
}
async function endpointOf(cluster: string, port: number): Promise<EndpointView> {
  const all = (await (await fetch(`http://127.0.0.1:${client.adminPort}/clusters`)).json()) as Record<string, { endpoints: EndpointView[] }>;
  return all[cluster].endpoints.find((e) => e.port === port)!;
}

describe('a hung endpoint under peak-EWMA', () => {
  it('callers with their own timeout: the hung app loses the traffic after a timeout or two', async () => {
    const results: Record<string, number> = {};
    for (let i = 0; i < CALLS; i++) {
      const r = await getWithTimeout();
      results[r] = (results[r] ?? 0) + 1;
    }
    // Before the fix: 40 timeouts, all 40 on the hung app.
    expect(hits.httpHung).toBeGreaterThanOrEqual(1);
    expect(hits.httpHung).toBeLessThanOrEqual(4);
    expect(results[200]).toBe(CALLS - hits.httpHung);
    const hung = await endpointOf('web.default:80', ports.httpHung);
    const good = await endpointOf('web.default:80', ports.httpGood);
    // The estimate rose to about the callers' patience (200 ms), then decays (10 s) while the
    // healthy app takes the calls: above the default RTT (30 ms) and the healthy app's, however
    // long the calls took on a loaded machine. A caller's timeout is a cancellation, neutral
    // for outlier detection (docs/resilience.md, outcome classification).
    expect(hung.ewmaMs).toBeGreaterThan(30);
    expect(hung.ewmaMs).toBeGreaterThan(good.ewmaMs);
    expect(hung).toMatchObject({ failures: 0, timesEjected: 0, health: 'healthy' });
  }, 30_000);

  it('gRPC callers with a 200 ms deadline: DEADLINE_EXCEEDED on the first call or so, then the healthy app', async () => {
    const statuses: Record<string, number> = {};
    for (let i = 0; i < CALLS; i++) {
      const s = await callWithDeadline();
      statuses[s] = (statuses[s] ?? 0) + 1;
    }
    // Before the fix: grpc-status 4 on all 40 calls, all 40 on the hung app.
    expect(hits.grpcHung).toBeGreaterThanOrEqual(1);
    expect(hits.grpcHung).toBeLessThanOrEqual(4);
    expect(statuses['0']).toBe(CALLS - hits.grpcHung);
    expect(statuses['4']).toBe(hits.grpcHung);
    const hung = await endpointOf('g.default:50051', ports.grpcHung);
    const good = await endpointOf('g.default:50051', ports.grpcGood);
    expect(hung.ewmaMs).toBeGreaterThan(30);
    expect(hung.ewmaMs).toBeGreaterThan(good.ewmaMs);
    expect(hung).toMatchObject({ failures: 0, timesEjected: 0 });
  }, 30_000);
});
