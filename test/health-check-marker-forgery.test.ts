import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect as h2connect } from 'node:http2';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { listenOnLoopback } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Any mesh workload (its own certificate) can set `wren-health-check` on its requests to
 * a peer's inbound. Envoy counts every downstream request in downstream_rq_* whatever its
 * headers, so a marker a peer can forge must not buy invisibility: only the shape the
 * prober sends (GET without a body, gRPC Health/Check, CONNECT) is counted apart; every
 * marked request is also counted per caller in wren_inbound_health_check_marked_total.
 */
const pki = testPki();
let server: Proxy;
let appPort = 0;
let appClose: () => Promise<void>;

beforeAll(async () => {
  const app = createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  const l = await listenOnLoopback(app);
  appPort = l.port;
  appClose = l.close;
  server = await startProxy({ pki, serviceAccount: 'web' });
}, 20_000);

afterAll(async () => {
  await server.close();
  await appClose();
});

async function metrics(p: Proxy): Promise<string> {
  return (await fetch(`http://127.0.0.1:${p.adminPort}/metrics`)).text();
}
const sum = (text: string, re: RegExp) => [...text.matchAll(re)].reduce((n, m) => n + Number(m[1]), 0);

function send(s: ReturnType<typeof h2connect>, head: Record<string, string>, body: string | null): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const st = s.request({ ':authority': 'web', 'wren-target-port': String(appPort), 'wren-orig-proto': 'HTTP/1.1', 'wren-health-check': '1', ...head }, { endStream: body === null });
    let code = 0;
    st.on('response', (h) => (code = Number(h[':status'])));
    st.on('error', reject);
    st.resume();
    st.on('close', () => resolve(code));
    if (body !== null) st.end(body);
  });
}

test('a peer cannot hide a real request from the request metrics with wren-health-check', async () => {
  const m = pki.issue('default', 'mallory');
  const s = h2connect(`https://127.0.0.1:${server.inboundPort}`, { key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem, rejectUnauthorized: false });
  s.on('error', () => undefined);
  const before = sum(await metrics(server), /istio_requests_total\{reporter="destination"[^}]*\} (\d+)/g);
  expect(await send(s, { ':method': 'POST', ':path': '/transfer' }, 'amount=1000000')).toBe(200);
  // A GET with a body is not the prober's shape either.
  expect(await send(s, { ':method': 'GET', ':path': '/balance' }, 'x')).toBe(200);
  const after = await metrics(server);
  expect(sum(after, /istio_requests_total\{reporter="destination"[^}]*\} (\d+)/g) - before).toBe(2);
  expect(sum(after, /wren_inbound_health_check_marked_total\{source_principal="[^"]*mallory",probe_shape="false"\} (\d+)/g)).toBe(2);

  // The prober's shape (GET, END_STREAM on HEADERS) is still counted apart, and per caller.
  expect(await send(s, { ':method': 'GET', ':path': '/ok' }, null)).toBe(200);
  s.destroy();
  const last = await metrics(server);
  expect(sum(last, /istio_requests_total\{reporter="destination"[^}]*\} (\d+)/g) - before).toBe(2);
  expect(sum(last, /wren_inbound_health_checks_total\{kind="http",response_code="200"\} (\d+)/g)).toBe(1);
  expect(sum(last, /wren_inbound_health_check_marked_total\{source_principal="[^"]*mallory",probe_shape="true"\} (\d+)/g)).toBe(1);

  // A TCP probe (CONNECT) reaches nothing of the app's but is counted per caller too.
  const t = h2connect(`https://127.0.0.1:${server.inboundPort}`, { key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem, rejectUnauthorized: false });
  t.on('error', () => undefined);
  const tcp = await new Promise<number>((resolve, reject) => {
    const st = t.request({ ':method': 'CONNECT', ':authority': `127.0.0.1:${appPort}`, 'wren-target-port': String(appPort), 'wren-health-check': '1' }, { endStream: false });
    st.on('response', (h) => resolve(Number(h[':status'])));
    st.on('error', reject);
  });
  t.destroy();
  expect(tcp).toBe(200);
  const tcpMetrics = await metrics(server);
  expect(sum(tcpMetrics, /wren_inbound_health_checks_total\{kind="tcp",response_code="200"\} (\d+)/g)).toBe(1);
  expect(sum(tcpMetrics, /wren_inbound_health_check_marked_total\{source_principal="[^"]*mallory",probe_shape="true"\} (\d+)/g)).toBe(2);
}, 30_000);
