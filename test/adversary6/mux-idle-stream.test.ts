import { testPki } from '../helpers/pki.js';
import { startProxy } from '../helpers/proxy.js';
import { fakeApp, type FakeApp } from '../helpers/fake-app.js';
import { metric } from '../helpers/admin-metric.js';
import type { Proxy } from '../../proxy/proxy.js';
import { FrameType, ResetCode } from '../../proxy/mux/frame.js';
import { RawMux } from './raw-mux.js';

/**
 * A lead of the adversary review of the data path: "a virtual connection opened with an
 * empty DATA frame and never used sits under the 1 h idle timeout, not the request-headers
 * timeout, since the header timer starts at the first byte". It does not: each virtual
 * connection is served as a new HTTP/1.1 connection, whose first request head must arrive
 * within limits.requestHeadersTimeoutMs of its opening (proxy/h1/h1-connection.ts starts in
 * the head phase), so an unused stream is reset then and counted, as a silent TCP connection
 * is closed. Only between requests does a stream wait under limits.idleConnectionTimeoutMs
 * (1 h): a keep-alive connection the caller's pool holds idle, as Envoy's upstream
 * idle_timeout (1 h) lets one sit, bounded by limits.maxConcurrentStreams per mux connection
 * (docs/security.md, "The mesh multiplexer").
 */
const pki = testPki();
const HEADERS_TIMEOUT_MS = 300;
const COUNTER = /wren_limit_exceeded_total\{direction="inbound",limit="request-headers-timeout"\} (\d+)/;
let app: FakeApp, server: Proxy;

beforeAll(async () => {
  app = await fakeApp('web');
  server = await startProxy({ pki, serviceAccount: 'web', config: { limits: { requestHeadersTimeoutMs: HEADERS_TIMEOUT_MS } } });
});

afterAll(async () => {
  await server.close();
  await app.close();
});

const resetOf = (m: RawMux, id: number) => m.frames.find((f) => f.id === id && f.type === FrameType.Reset);

test('a virtual connection opened with an empty DATA frame and never used is reset after requestHeadersTimeoutMs, counted', async () => {
  const before = await metric(server, COUNTER);
  const peer = await RawMux.open(pki, server.inboundPort);
  try {
    const opened = Date.now();
    peer.data(1, '');
    expect(await peer.until(() => resetOf(peer, 1) !== undefined, 10_000)).toBe(true);
    expect(Date.now() - opened).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 50);
    expect(resetOf(peer, 1)!.payload.readUInt32BE(0)).toBe(ResetCode.Cancel);
    expect(await metric(server, COUNTER)).toBe(before + 1);
    // The connection goes on: only the stream was let go.
    expect(peer.closed).toBe(false);
  } finally {
    peer.close();
  }
}, 20_000);

test('a virtual connection idle between requests is kept (a keep-alive connection): its next request is served after the headers timeout', async () => {
  const peer = await RawMux.open(pki, server.inboundPort);
  const request = `GET /name HTTP/1.1\r\nhost: web\r\nwren-target-port: ${app.port}\r\nwren-orig-proto: HTTP/1.1\r\n\r\n`;
  const answers = (): number => peer.text(1).split('HTTP/1.1 200').length - 1;
  try {
    peer.data(1, request);
    expect(await peer.until(() => answers() === 1, 10_000)).toBe(true);
    // Idle past the request-headers timeout: the idle timeout (1 h) is what applies now.
    await new Promise((r) => setTimeout(r, 3 * HEADERS_TIMEOUT_MS));
    peer.data(1, request);
    expect(await peer.until(() => answers() === 2, 10_000)).toBe(true);
    expect(resetOf(peer, 1)).toBeUndefined();
  } finally {
    peer.close();
  }
}, 20_000);
