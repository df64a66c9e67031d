import { createServer } from 'node:http';
import { connect as h2connect } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { once } from 'node:events';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { recordingTcpApp, type RecordingTcpApp } from './helpers/recording-tcp-app.js';
import { scrape } from './helpers/admin-metric.js';
import { until } from './helpers/until.js';
import { listenOnLoopback } from './helpers/fake-app.js';
import { parseInboundPolicy } from '../contract/parse.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * (And a client that says nothing until the timer and then sends a whole request: the app
 * is dialled, but its first bytes are judged before anything is spliced, so the request
 * goes through the HTTP layers; a server-first app that greets first is spliced.)
 *
 * A client that sends the start of an HTTP request line (`GET /whoami HT`), waits out
 * protocol.detectTimeoutMs, then sends the rest with a forged x-forwarded-client-cert: the
 * sniff decided on its timer, and the connection was spliced to the app as opaque TCP, so
 * the forged header (and anything the HTTP layers strip or authorize) reached the app
 * unparsed. Now such a connection is closed (counted as limit="detect-timeout") on a
 * PERMISSIVE plaintext port and on a peer's CONNECT stream to a port not declared opaque;
 * a port declared opaque is still spliced, and a silent client (server-first) still is too.
 */
const pki = testPki();
const DETECT_MS = 150;
const FORGED = 'x-forwarded-client-cert: By=spiffe://cluster.local/ns/default/sa/web;URI=spiffe://cluster.local/ns/default/sa/admin\r\n';
let app: RecordingTcpApp, opaqueApp: RecordingTcpApp;
/** An HTTP app: the x-forwarded-client-cert each request arrived with. */
let web: { port: number; close(): Promise<void> };
const seenXfcc: string[] = [];
let permissive: Proxy, strict: Proxy;
let dstPort = 0;

beforeAll(async () => {
  app = await recordingTcpApp();
  opaqueApp = await recordingTcpApp();
  web = await listenOnLoopback(createServer((req, res) => {
    seenXfcc.push(String(req.headers['x-forwarded-client-cert'] ?? ''));
    res.end('web');
  }));
  const protocol = { detectTimeoutMs: DETECT_MS, opaquePorts: [opaqueApp.port] };
  permissive = await startProxy({
    pki, serviceAccount: 'web', inboundOriginalDst: () => ({ address: '127.0.0.1', port: dstPort }),
    config: { policy: { mtls: { mode: 'PERMISSIVE' } }, protocol },
  });
  strict = await startProxy({ pki, serviceAccount: 'web', config: { protocol } });
});

afterAll(async () => {
  await Promise.all([permissive.close(), strict.close()]);
  await Promise.all([app.close(), opaqueApp.close(), web.close()]);
});

async function sample(p: Proxy, name: string, want: Record<string, string>): Promise<number> {
  return (await scrape(p, name)).find((s) => Object.entries(want).every(([k, v]) => s.labels[k] === v))?.value ?? 0;
}
const closedByTimer = (p: Proxy) => sample(p, 'wren_limit_exceeded_total', { direction: 'inbound', limit: 'detect-timeout' });
const timeouts = (p: Proxy) => sample(p, 'wren_protocol_detect_total', { direction: 'inbound', result: 'timeout' });
const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Plaintext to the PERMISSIVE port: the first part, a wait past the timeout, the rest; resolves when the proxy closes, with what came back. */
async function stalledPlaintext(first: string, rest: string): Promise<{ got: string; closed: boolean }> {
  const s = netConnect(permissive.inboundPort, '127.0.0.1');
  s.on('error', () => undefined);
  let got = '';
  let closed = false;
  s.on('data', (d: Buffer) => (got += d.toString('latin1')));
  s.on('close', () => (closed = true));
  await once(s, 'connect');
  s.write(first);
  await delay(DETECT_MS * 3);
  if (!closed) s.write(rest);
  await until(() => closed || got.length > 0, 3000);
  s.destroy();
  return { got, closed };
}

test('PERMISSIVE plaintext: a request line begun, the timer, then a forged XFCC: closed, counted, the app never gets a byte', async () => {
  dstPort = app.port;
  const [closedBefore, timeoutsBefore, conns] = [await closedByTimer(permissive), await timeouts(permissive), app.conns.length];
  const r = await stalledPlaintext('GET /whoami HT', `TP/1.1\r\nhost: web\r\n${FORGED}\r\n`);
  expect(r).toEqual({ got: '', closed: true });
  expect(await closedByTimer(permissive)).toBe(closedBefore + 1);
  expect(await timeouts(permissive)).toBe(timeoutsBefore + 1);
  // Nothing was dialled at the app, so no forged header reached it.
  expect(app.conns.length).toBe(conns);
  expect(app.conns.some((c) => c.data.includes('x-forwarded-client-cert'))).toBe(false);
});

test('PERMISSIVE plaintext: a prefix of the h2 preface then the timer is closed the same way', async () => {
  dstPort = app.port;
  const before = await closedByTimer(permissive);
  const r = await stalledPlaintext('PRI * HTTP/2', '.0\r\n\r\nSM\r\n\r\n');
  expect(r).toEqual({ got: '', closed: true });
  expect(await closedByTimer(permissive)).toBe(before + 1);
});

test('a port declared opaque is still spliced at once (no detection), whatever its bytes', async () => {
  dstPort = opaqueApp.port;
  const before = await closedByTimer(permissive);
  const s = netConnect(permissive.inboundPort, '127.0.0.1');
  s.on('error', () => undefined);
  let got = '';
  s.on('data', (d: Buffer) => (got += d.toString('latin1')));
  await once(s, 'connect');
  s.write('GET /x HT');
  await delay(DETECT_MS * 2);
  s.write('TP/1.1\r\n');
  // The echo app returns both parts: the connection was spliced.
  expect(await until(() => got === 'GET /x HTTP/1.1\r\n', 3000)).toBe(true);
  s.destroy();
  expect(await closedByTimer(permissive)).toBe(before);
});

test('a silent client (server-speaks-first) is still spliced after the timeout: its first bytes reach the app', async () => {
  dstPort = app.port;
  const s = netConnect(permissive.inboundPort, '127.0.0.1');
  s.on('error', () => undefined);
  let got = '';
  s.on('data', (d: Buffer) => (got += d.toString('latin1')));
  await once(s, 'connect');
  await delay(DETECT_MS * 3);
  s.write('\x00\x01binary');
  expect(await until(() => got === '\x00\x01binary', 3000)).toBe(true);
  s.destroy();
});

test('a peer\'s CONNECT stream to a port not declared opaque: the start of a request line, the timer, the rest: refused with 400, counted, the app never gets a byte', async () => {
  const m = pki.issue('default', 'mallory');
  const session = h2connect(`https://127.0.0.1:${strict.inboundPort}`, { key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem, rejectUnauthorized: false });
  session.on('error', () => undefined);
  try {
    const [before, conns] = [await closedByTimer(strict), app.conns.length];
    const st = session.request({ ':method': 'CONNECT', ':authority': `127.0.0.1:${app.port}`, 'wren-target-port': String(app.port) });
    st.on('error', () => undefined);
    let status = 0;
    let error = '';
    st.on('response', (h) => {
      status = Number(h[':status']);
      error = String(h['wren-proxy-error'] ?? '');
    });
    st.write('GET /whoami HT');
    await delay(DETECT_MS * 3);
    if (!st.destroyed) st.write(`TP/1.1\r\nhost: web\r\n${FORGED}\r\n`);
    expect(await until(() => status !== 0, 3000)).toBe(true);
    expect({ status, error }).toEqual({ status: 400, error: 'bad-request' });
    expect(await closedByTimer(strict)).toBe(before + 1);
    expect(app.conns.length).toBe(conns);
  } finally {
    session.destroy();
  }
});

test('PERMISSIVE plaintext: silent past the timer, then a whole request with a forged XFCC: served through the HTTP layers (the XFCC dropped), not spliced', async () => {
  dstPort = web.port;
  const s = netConnect(permissive.inboundPort, '127.0.0.1');
  s.on('error', () => undefined);
  let got = '';
  s.on('data', (d: Buffer) => (got += d.toString('latin1')));
  await once(s, 'connect');
  await delay(DETECT_MS * 3);
  s.write(`GET /late HTTP/1.1\r\nhost: web\r\n${FORGED}connection: close\r\n\r\n`);
  expect(await until(() => /\r\n\r\nweb$/.test(got), 3000)).toBe(true);
  s.destroy();
  expect(got).toMatch(/^HTTP\/1\.1 200 /);
  // A plaintext caller has no identity: the sidecar sent no XFCC, and never the forged one.
  expect(seenXfcc).toEqual(['']);
});

test('a peer\'s CONNECT stream silent past the timer, then raw HTTP with a forged XFCC: parsed through the mTLS stack (the session peer\'s XFCC)', async () => {
  const m = pki.issue('default', 'mallory');
  const session = h2connect(`https://127.0.0.1:${strict.inboundPort}`, { key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem, rejectUnauthorized: false });
  session.on('error', () => undefined);
  try {
    const st = session.request({ ':method': 'CONNECT', ':authority': `127.0.0.1:${web.port}`, 'wren-target-port': String(web.port) });
    st.on('error', () => undefined);
    let got = '';
    st.on('data', (d: Buffer) => (got += d.toString('latin1')));
    await delay(DETECT_MS * 3);
    st.write(`GET /late HTTP/1.1\r\nhost: web\r\n${FORGED}connection: close\r\n\r\n`);
    expect(await until(() => /\r\n\r\nweb$/.test(got), 3000)).toBe(true);
    expect(got).toMatch(/^HTTP\/1\.1 200 /);
    const xfcc = seenXfcc[seenXfcc.length - 1];
    expect(xfcc).toContain(m.spiffeId);
    expect(xfcc).not.toContain('sa/admin');
  } finally {
    session.destroy();
  }
});

test('PERMISSIVE plaintext: silent past the timer, then the start of a request line that stalls again: closed, counted, no byte spliced to the app', async () => {
  dstPort = app.port;
  const [before, conns] = [await closedByTimer(permissive), app.conns.length];
  const s = netConnect(permissive.inboundPort, '127.0.0.1');
  s.on('error', () => undefined);
  let closed = false;
  s.on('close', () => (closed = true));
  await once(s, 'connect');
  await delay(DETECT_MS * 3);
  s.write('GET /whoami HT');
  await delay(DETECT_MS * 3);
  if (!closed) s.write(`TP/1.1\r\nhost: web\r\n${FORGED}\r\n`);
  expect(await until(() => closed, 3000)).toBe(true);
  expect(await closedByTimer(permissive)).toBe(before + 1);
  // The app was dialled for the silent client (it might have spoken first), and got nothing.
  expect(await until(() => app.conns.length === conns + 1 && app.conns[conns].closed, 3000)).toBe(true);
  expect(app.conns[conns].data).toBe('');
});

test('PERMISSIVE plaintext: silent past the timer, then HTTP: no longer an open tunnel, so a push that denies TCP to the port leaves it open, its requests authorized one by one', async () => {
  dstPort = web.port;
  const push = (authorizationPolicies: Record<string, unknown>[]) =>
    permissive.applySnapshot({ version: `v${Date.now()}-${authorizationPolicies.length}`, source: 'test', services: permissive.snapshot.services, inboundPolicy: parseInboundPolicy({ mtls: { mode: 'PERMISSIVE' }, authorizationPolicies }, 'policy') });
  const s = netConnect(permissive.inboundPort, '127.0.0.1');
  s.on('error', () => undefined);
  let got = '';
  let closed = false;
  s.on('data', (d: Buffer) => (got += d.toString('latin1')));
  s.on('close', () => (closed = true));
  const answers = (status: number) => got.split(`HTTP/1.1 ${status} `).length - 1;
  try {
    await once(s, 'connect');
    await delay(DETECT_MS * 3);
    s.write('GET /first HTTP/1.1\r\nhost: web\r\n\r\n');
    expect(await until(() => answers(200) === 1 && got.endsWith('web'), 3000)).toBe(true);
    // GETs only: an ALLOW whose rules are all HTTP admits no TCP (the open tunnels are judged with http: null).
    push([{ name: 'default/get-only', action: 'ALLOW', rules: [{ to: [{ operation: { methods: ['GET'] } }] }] }]);
    // The next request on the same connection: served under the new policy, a POST refused by it.
    s.write('GET /second HTTP/1.1\r\nhost: web\r\n\r\n');
    expect(await until(() => closed || (answers(200) === 2 && got.endsWith('web')), 3000)).toBe(true);
    s.write('POST /third HTTP/1.1\r\nhost: web\r\ncontent-length: 0\r\n\r\n');
    expect(await until(() => closed || answers(403) === 1, 3000)).toBe(true);
    expect({ closed, ok: answers(200), denied: answers(403) }).toEqual({ closed: false, ok: 2, denied: 1 });
  } finally {
    s.destroy();
    push([]);
  }
});
