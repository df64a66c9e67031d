import { execFile } from 'node:child_process';
import { connect as netConnect } from 'node:net';
import { connect as h2Connect } from 'node:http2';
import { LogCapture } from './helpers/log-capture.js';
import { startProxy } from './helpers/proxy.js';
import { testPki } from './helpers/pki.js';
import { scrape } from './helpers/admin-metric.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Requests refused before the layers on HTTP/2 (a malformed head on the frame-level server,
 * reset PROTOCOL_ERROR; a plain CONNECT answered by either HTTP/2 server) and the HTTP/1.1
 * 408 request-headers timeout. The HTTP/1.1 codec's refusals were counted in
 * wren_proxy_errors_total and logged (AccessLog.refused(), flag from the error table);
 * these were neither counted (the HTTP/2 ones) nor logged, so a client sending broken
 * HTTP/2 requests, or heads that never end, was invisible.
 */
const pki = testPki();
const on = { telemetry: { accessLog: { enabled: true } }, limits: { requestHeadersTimeoutMs: '300ms' } };
let frames: Proxy;
let node: Proxy;
const framesLog = new LogCapture();
const nodeLog = new LogCapture();

beforeAll(async () => {
  frames = await startProxy({ pki, serviceAccount: 'client', accessLog: framesLog, config: on });
  node = await startProxy({ pki, serviceAccount: 'client', accessLog: nodeLog, config: { ...on, protocol: { outboundHttp2: 'node' } } });
});

afterAll(async () => {
  await frames?.close();
  await node?.close();
});

async function proxyErrors(p: Proxy, code: string): Promise<number> {
  return (await scrape(p, 'wren_proxy_errors_total')).find((s) => s.labels['direction'] === 'outbound' && s.labels['code'] === code)?.value ?? 0;
}

/** nghttp (a real HTTP/2 client) sending a request with `te: gzip`, which RFC 9113 section 8.2.2 makes malformed; resolves with its output. */
function nghttpMalformed(port: number): Promise<string> {
  return new Promise((resolve) => {
    execFile('nghttp', ['-v', '-H', 'te: gzip', `http://127.0.0.1:${port}/x`], { timeout: 5000 }, (_err, stdout, stderr) => resolve(stdout + stderr));
  });
}

/** A plain CONNECT from node:http2; resolves with the status and the client's local port. */
function plainConnect(port: number): Promise<{ status: number; localPort: number }> {
  return new Promise((resolve, reject) => {
    const c = h2Connect(`http://127.0.0.1:${port}`);
    c.on('error', reject);
    c.once('connect', () => {
      const localPort = c.socket.localPort ?? 0;
      const req = c.request({ ':method': 'CONNECT', ':authority': 'web:80' });
      req.on('error', reject);
      // A CONNECT stream stays open for the tunnel's bytes: the answer's head is all there is.
      req.on('response', (h) => {
        c.destroy();
        resolve({ status: Number(h[':status']), localPort });
      });
    });
  });
}

/** Writes part of a head and never finishes it; resolves with the client's port and what came back once the proxy closes. */
function partialHead(port: number): Promise<{ port: number; reply: string }> {
  return new Promise((resolve) => {
    const s = netConnect({ host: '127.0.0.1', port });
    let local = 0;
    let reply = '';
    s.on('error', () => undefined);
    s.on('data', (d: Buffer) => (reply += d.toString('latin1')));
    s.once('connect', () => {
      local = s.localPort ?? 0;
      s.write('GET /x HTTP/1.1\r\nhost: web\r\n');
    });
    const t = setTimeout(() => s.destroy(), 5000);
    s.on('close', () => {
      clearTimeout(t);
      resolve({ port: local, reply });
    });
  });
}

test('a malformed HTTP/2 head on the frame-level server: counted as bad-request, and logged (HTTP/2, DPE, no status: the stream was reset)', async () => {
  const before = await proxyErrors(frames, 'bad-request');
  const out = await nghttpMalformed(frames.outboundPort);
  expect(out).toMatch(/RST_STREAM[\s\S]*PROTOCOL_ERROR/);
  expect(await proxyErrors(frames, 'bad-request')).toBe(before + 1);
  const line = await framesLog.find((e) => e['protocol'] === 'HTTP/2' && e['response_code_details'] === 'bad-request');
  expect(line).toMatchObject({ response_code: 0, response_flags: 'DPE', method: null, path: null });
  expect(String(line['downstream_remote_address'])).toMatch(/^127\.0\.0\.1:\d+$/);
});

test.each([
  ['frame-level', () => frames, () => framesLog],
  ['node:http2', () => node, () => nodeLog],
])('a plain CONNECT on the %s HTTP/2 server: refused, counted and logged with the client\'s address', async (_name, p, log) => {
  const before = await proxyErrors(p(), 'connect-not-supported');
  const { status, localPort } = await plainConnect(p().outboundPort);
  expect(status).toBe(403);
  expect(await proxyErrors(p(), 'connect-not-supported')).toBe(before + 1);
  expect(await log().find((e) => e['downstream_remote_address'] === `127.0.0.1:${localPort}`)).toMatchObject({
    protocol: 'HTTP/2', response_code: 403, response_code_details: 'connect-not-supported', method: null, path: null,
  });
});

test('the HTTP/1.1 408 request-headers timeout: logged with its own details, flag DPE', async () => {
  const { port, reply } = await partialHead(frames.outboundPort);
  expect(reply).toMatch(/^HTTP\/1\.1 408 /);
  expect(await framesLog.find((e) => e['downstream_remote_address'] === `127.0.0.1:${port}`)).toMatchObject({
    protocol: 'HTTP/1.1', response_code: 408, response_flags: 'DPE', response_code_details: 'headers-timeout', method: null, path: null,
  });
});

test('access logging off: the same refusals are counted and write no line', async () => {
  const log = new LogCapture();
  const p = await startProxy({ pki, serviceAccount: 'client', accessLog: log, config: { limits: { requestHeadersTimeoutMs: '300ms' } } });
  let closed = false;
  try {
    const bad = await proxyErrors(p, 'bad-request');
    expect(await nghttpMalformed(p.outboundPort)).toMatch(/PROTOCOL_ERROR/);
    expect(await proxyErrors(p, 'bad-request')).toBe(bad + 1);
    expect((await plainConnect(p.outboundPort)).status).toBe(403);
    expect((await partialHead(p.outboundPort)).reply).toMatch(/^HTTP\/1\.1 408 /);
    // Closing flushes whatever was queued: a line written for any of them would be here now.
    await p.close();
    closed = true;
    expect(log.lines).toEqual([]);
  } finally {
    if (!closed) await p.close();
  }
});

test.each([
  ['frame-level', () => frames, () => framesLog],
  ['node:http2', () => node, () => nodeLog],
])('an HTTP/2 head over maxHeaderBytes on the %s server: its 431 has a line (counted before, logged now)', async (_name, p, log) => {
  const { status, localPort } = await new Promise<{ status: number; localPort: number }>((resolve, reject) => {
    const c = h2Connect(`http://127.0.0.1:${p().outboundPort}`);
    c.on('error', reject);
    c.once('connect', () => {
      const localPort = c.socket.localPort ?? 0;
      const req = c.request({ ':path': '/x', ':authority': 'web', 'x-big': 'a'.repeat(20_000) });
      req.on('error', reject);
      req.on('response', (h) => {
        c.destroy();
        resolve({ status: Number(h[':status']), localPort });
      });
      req.end();
    });
  });
  expect(status).toBe(431);
  expect(await log().find((e) => e['downstream_remote_address'] === `127.0.0.1:${localPort}`)).toMatchObject({
    protocol: 'HTTP/2', response_code: 431, response_flags: 'DPE', response_code_details: 'headers-too-large', method: null, path: null,
  });
});

test('a plain CONNECT on a PERMISSIVE port\'s plaintext HTTP/2 (tunnels are for mTLS peers): a 400, counted and logged', async () => {
  const log = new LogCapture();
  const p = await startProxy({
    pki, serviceAccount: 'db', accessLog: log,
    inboundOriginalDst: () => ({ address: '127.0.0.1', port: 9 }),
    config: { ...on, policy: { mtls: { mode: 'PERMISSIVE' } } },
  });
  try {
    const inbound = async () => (await scrape(p, 'wren_proxy_errors_total')).find((s) => s.labels['direction'] === 'inbound' && s.labels['code'] === 'bad-request')?.value ?? 0;
    const before = await inbound();
    const { status, localPort } = await plainConnect(p.inboundPort);
    expect(status).toBe(400);
    expect(await inbound()).toBe(before + 1);
    expect(await log.find((e) => e['downstream_remote_address'] === `127.0.0.1:${localPort}`)).toMatchObject({
      protocol: 'HTTP/2', response_code: 400, response_flags: 'DPE', response_code_details: 'bad-request', method: null, path: null,
    });
  } finally {
    await p.close();
  }
});
