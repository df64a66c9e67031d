import { connect as h2connect, createServer as createH2cServer, type Http2Server } from 'node:http2';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testPki } from './helpers/pki.js';
import { assertBuilt, startProxyProcess, type ProxyProcess } from './helpers/proxy-process.js';

/**
 * Issue 12 ("RSS under load ≤ 100 MB per sidecar"): under HTTP/2 load a sidecar's V8 heap
 * stays small. Every request leaves node:http2 objects that survive a few scavenges; with
 * V8's defaults the young generation grows to 2 × 32 MB and the old generation fills with
 * promoted garbage up to ~4× its live size, which was most of the 220-270 MB resident per
 * sidecar after the benchmark's gRPC loads. The proxy sets its own heap flags at start and
 * is launched with the young generation's cap (cli/heap-flags.ts, SIDECAR_NODE_FLAGS, as the
 * image launches it); this drives gRPC-shaped unary calls (HEADERS, DATA, trailers) through
 * a real pair of `wren proxy` processes and reads each one's heap size from its /metrics.
 */
const pki = testPki();
const REQUESTS = 6000;
const IN_FLIGHT = 64;
/** The heap (nodejs_heap_size_total_bytes) either sidecar may have after the load: the default young generation alone is 64 MB. */
const HEAP_LIMIT_MB = 56;

let dir: string;
let app: Http2Server;
let inbound: ProxyProcess, outbound: ProxyProcess;

beforeAll(async () => {
  assertBuilt();
  dir = await mkdtemp(join(tmpdir(), 'wren-heap-'));
  app = createH2cServer();
  app.on('stream', (stream) => {
    stream.on('error', () => undefined);
    stream.resume();
    stream.once('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(Buffer.from([0, 0, 0, 0, 6, 0x0a, 4, 0x70, 0x6f, 0x6e, 0x67]));
    });
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  const appPort = (app.address() as import('node:net').AddressInfo).port;
  inbound = await startProxyProcess(pki, dir, 'web');
  outbound = await startProxyProcess(pki, dir, 'client', {
    mesh: { services: [{ name: 'echo', ports: [{ port: 50051, protocol: 'grpc', endpoints: [{ address: '127.0.0.1', port: appPort, proxyPort: inbound.inboundPort, identity: inbound.spiffeId }] }] }] },
  });
}, 30_000);

afterAll(async () => {
  await Promise.all([outbound?.close(), inbound?.close()]);
  await new Promise((r) => app?.close(r));
  await rm(dir, { recursive: true, force: true });
});

async function heapMb(p: ProxyProcess): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${p.adminPort}/metrics`)).text();
  const m = /^nodejs_heap_size_total_bytes (\S+)$/m.exec(text);
  if (!m) throw new Error('no nodejs_heap_size_total_bytes in /metrics');
  return Number(m[1]) / 1048576;
}

test(`after ${REQUESTS} unary gRPC calls, ${IN_FLIGHT} in flight, neither sidecar's heap exceeds ${HEAP_LIMIT_MB} MB`, async () => {
  const session = h2connect(`http://127.0.0.1:${outbound.outboundPort}`);
  session.on('error', () => undefined);
  const frame = Buffer.from([0, 0, 0, 0, 6, 0x0a, 4, 0x70, 0x69, 0x6e, 0x67]);
  let sent = 0;
  let ok = 0;
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const s = session.request({ ':method': 'POST', ':path': '/wren.test.Echo/Unary', ':authority': 'echo:50051', 'content-type': 'application/grpc', te: 'trailers' });
      s.on('trailers', (t) => t['grpc-status'] === '0' && ok++);
      s.on('error', () => undefined);
      s.resume();
      s.on('close', resolve);
      s.end(frame);
    });
  const worker = async (): Promise<void> => {
    while (sent < REQUESTS) {
      sent++;
      await one();
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  session.close();
  expect(ok).toBe(REQUESTS);
  const [out, inn] = [await heapMb(outbound), await heapMb(inbound)];
  expect({ outbound: out < HEAP_LIMIT_MB, inbound: inn < HEAP_LIMIT_MB, out, inn }).toEqual({ outbound: true, inbound: true, out, inn });
}, 120_000);
