import { connect as netConnect } from 'node:net';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { fakeTcpApp, type FakeApp } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * protocol.detectTimeoutMs on the inbound listener: a plaintext connection on a PERMISSIVE
 * port is sniffed (proxy/inbound/sniff.ts), and a client that says nothing within the
 * timeout (a server-speaks-first protocol) is spliced to the app. The outbound and the
 * inbound's CONNECT streams count each decision in wren_protocol_detect_total, the timeout
 * among them (docs/configuration.md: "no bytes from the client by then: opaque TCP
 * (counted)"; docs/security.md); the inbound listener's own sniff counted nothing, so
 * neither the timeout firing nor what plaintext callers speak could be seen.
 */
const pki = testPki();
let app: FakeApp;
/** A server-speaks-first app on a port the workload declares opaque. */
let opaqueApp: FakeApp;
let proxy: Proxy;
let dstPort = 0;

beforeAll(async () => {
  app = await fakeTcpApp('greeting\n');
  opaqueApp = await fakeTcpApp('opaque greeting\n');
  proxy = await startProxy({
    pki, serviceAccount: 'db',
    inboundOriginalDst: () => ({ address: '127.0.0.1', port: dstPort }),
    config: { policy: { mtls: { mode: 'PERMISSIVE' } }, protocol: { detectTimeoutMs: 100, opaquePorts: [opaqueApp.port] } },
  });
});

afterAll(async () => {
  await proxy.close();
  await Promise.all([app.close(), opaqueApp.close()]);
});

/** Connects to the inbound port plaintext, says nothing, and resolves with the app's greeting (spliced after the sniff). */
function silentClient(): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = netConnect(proxy.inboundPort, '127.0.0.1');
    let got = '';
    s.on('data', (d) => {
      got += d;
      if (got.includes('\n')) s.destroy();
    });
    s.on('close', () => resolve(got));
    s.on('error', reject);
  });
}

async function detectCount(result: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`)).text();
  const m = new RegExp(`^wren_protocol_detect_total\\{direction="inbound",result="${result}"\\} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

test('a silent plaintext client on a PERMISSIVE port reaches the app after detectTimeoutMs, counted as result="timeout"', async () => {
  dstPort = app.port;
  const before = await detectCount('timeout');
  expect(await silentClient()).toBe('greeting\n');
  expect(await detectCount('timeout')).toBe(before + 1);
});

test('a connection to one of protocol.opaquePorts is spliced unsniffed, counted as result="opaque-port" as on the outbound', async () => {
  dstPort = opaqueApp.port;
  const before = await detectCount('opaque-port');
  expect(await silentClient()).toBe('opaque greeting\n');
  expect(await detectCount('opaque-port')).toBe(before + 1);
});

test('a plaintext HTTP/1.1 request on a PERMISSIVE port is counted as result="http1"', async () => {
  dstPort = app.port;
  const before = await detectCount('http1');
  await new Promise<void>((resolve) => {
    const s = netConnect(proxy.inboundPort, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nHost: db\r\nConnection: close\r\n\r\n'));
    s.resume();
    s.on('close', () => resolve());
    s.on('error', () => undefined);
  });
  expect(await detectCount('http1')).toBe(before + 1);
});
