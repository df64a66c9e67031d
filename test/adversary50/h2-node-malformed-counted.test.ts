import { execFile } from 'node:child_process';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { LogCapture } from '../helpers/log-capture.js';
import { startProxy } from '../helpers/proxy.js';
import { testPki } from '../helpers/pki.js';
import { scrape } from '../helpers/admin-metric.js';
import { until } from '../helpers/until.js';
import { FLAG, FRAME, FrameReader, clientStart, frame, headerBlock } from '../helpers/h2-frames.js';
import type { Proxy } from '../../proxy/proxy.js';

/**
 * A malformed HTTP/2 request (RFC 9113 section 8.1.1) on the listeners whose server is
 * node:http2: nghttp2 resets it (PROTOCOL_ERROR) before node announces a stream, so it
 * was neither counted nor logged there, where the frame-level server counts it
 * (wren_proxy_errors_total{code="bad-request"}) and logs it (HTTP/2, DPE, no status).
 * The same request now shows the same on every listener: the outbound with
 * `outboundHttp2: node`, a PERMISSIVE port's h2c, and the mTLS inbound (a peer sidecar).
 */
const pki = testPki();
const on = { telemetry: { accessLog: { enabled: true } } };

async function proxyErrors(p: Proxy, direction: string): Promise<number> {
  return (await scrape(p, 'wren_proxy_errors_total')).find((s) => s.labels['direction'] === direction && s.labels['code'] === 'bad-request')?.value ?? 0;
}

/** nghttp (a real HTTP/2 client) sending one request with `te: gzip` (malformed, RFC 9113 section 8.2.2), then leaving. */
function nghttpMalformed(port: number): Promise<string> {
  return new Promise((resolve) => {
    execFile('nghttp', ['-v', '-H', 'te: gzip', `http://127.0.0.1:${port}/x`], { timeout: 5000 }, (_err, stdout, stderr) => resolve(stdout + stderr));
  });
}

const head = (path: string, extra: [string, string][] = []): Buffer => headerBlock([[':method', 'GET'], [':scheme', 'http'], [':path', path], [':authority', 'web'], ...extra]);

/**
 * Two malformed requests (an upper-case field name, a connection-specific field) then a
 * good one on one connection: resolves with the codes of the RST_STREAMs and the status
 * of the good one's answer.
 */
function malformedThenGood(sock: Socket, extra: [string, string][] = []): Promise<{ resets: number[]; status: boolean }> {
  return new Promise((resolve) => {
    const resets: number[] = [];
    sock.on('error', () => undefined);
    const timer = setTimeout(() => {
      sock.destroy();
      resolve({ resets, status: false });
    }, 5000);
    const reader = new FrameReader((type, _flags, id, p) => {
      if (type === FRAME.RST_STREAM) resets.push(p.readUInt32BE(0));
      if (type === FRAME.HEADERS && id === 5) {
        clearTimeout(timer);
        sock.destroy();
        resolve({ resets, status: true });
      }
    });
    sock.on('data', (d: Buffer) => reader.push(d));
    sock.write(Buffer.concat([
      clientStart(),
      frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, head('/bad', [['X-Upper', 'v'], ...extra])),
      frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 3, head('/bad', [['connection', 'close'], ...extra])),
      frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 5, head('/good', extra)),
    ]));
  });
}

describe.each(['node', 'frames'])('the outbound, outboundHttp2 %s', (outboundHttp2) => {
  let p: Proxy;
  const log = new LogCapture();
  beforeAll(async () => {
    p = await startProxy({ pki, serviceAccount: 'client', accessLog: log, config: { ...on, protocol: { outboundHttp2 } } });
  });
  afterAll(() => p.close());

  test('a real client\'s malformed request, alone on its connection: counted as bad-request and logged (HTTP/2, DPE, no status)', async () => {
    const before = await proxyErrors(p, 'outbound');
    const out = await nghttpMalformed(p.outboundPort);
    expect(out).toMatch(/RST_STREAM[\s\S]*PROTOCOL_ERROR/);
    // The client's GOAWAY and FIN may still be on their way when nghttp exits.
    expect(await until(async () => (await proxyErrors(p, 'outbound')) === before + 1, 3000)).toBe(true);
    const line = await log.find((e) => e['protocol'] === 'HTTP/2' && e['response_code_details'] === 'bad-request');
    expect(line).toMatchObject({ response_code: 0, response_flags: 'DPE', method: null, path: null });
  });

  test('malformed requests before a good one on the same connection: reset, counted, and the good one answered', async () => {
    const before = await proxyErrors(p, 'outbound');
    const r = await malformedThenGood(netConnect(p.outboundPort, '127.0.0.1'));
    expect(r).toEqual({ resets: [1, 1], status: true });
    // The frame-level server counts each; node:http2 shows a run of them as one (h2-session-guard.ts).
    expect(await proxyErrors(p, 'outbound')).toBe(before + (outboundHttp2 === 'frames' ? 2 : 1));
  });
});

test('a PERMISSIVE port\'s h2c (node:http2): a malformed request is counted inbound and logged', async () => {
  const log = new LogCapture();
  const p = await startProxy({
    pki, serviceAccount: 'db', accessLog: log,
    inboundOriginalDst: () => ({ address: '127.0.0.1', port: 9 }),
    config: { ...on, policy: { mtls: { mode: 'PERMISSIVE' } } },
  });
  try {
    const before = await proxyErrors(p, 'inbound');
    expect(await nghttpMalformed(p.inboundPort)).toMatch(/PROTOCOL_ERROR/);
    expect(await until(async () => (await proxyErrors(p, 'inbound')) === before + 1, 3000)).toBe(true);
    expect(await log.find((e) => e['protocol'] === 'HTTP/2' && e['response_code_details'] === 'bad-request')).toMatchObject({ response_code: 0, response_flags: 'DPE' });
  } finally {
    await p.close();
  }
});

test('the mTLS inbound (node:http2): a peer\'s malformed requests are counted inbound, with its identity in the line', async () => {
  const log = new LogCapture();
  const p = await startProxy({ pki, serviceAccount: 'web', accessLog: log, config: on });
  try {
    const before = await proxyErrors(p, 'inbound');
    const cert = pki.issue('default', 'client');
    const sock = tlsConnect({ host: '127.0.0.1', port: p.inboundPort, key: cert.keyPem, cert: cert.certChainPem, ca: cert.trustBundlePem, ALPNProtocols: ['h2'], rejectUnauthorized: false });
    await new Promise((r) => sock.once('secureConnect', r));
    const r = await malformedThenGood(sock, [['wren-target-port', '9']]);
    expect(r.resets).toEqual([1, 1]);
    expect(await proxyErrors(p, 'inbound')).toBe(before + 1);
    const line = await log.find((e) => e['protocol'] === 'HTTP/2' && e['response_code_details'] === 'bad-request');
    expect(line).toMatchObject({ response_code: 0, response_flags: 'DPE' });
    expect(JSON.stringify(line)).toContain(cert.spiffeId);
  } finally {
    await p.close();
  }
});

test('a stream node:http2 refused past maxConcurrentStreams is that limit, not a malformed request', async () => {
  const p = await startProxy({ pki, serviceAccount: 'client', config: { protocol: { outboundHttp2: 'node' }, limits: { maxConcurrentStreams: 2 } } });
  try {
    const limits = async () => (await scrape(p, 'wren_limit_exceeded_total')).find((s) => s.labels['direction'] === 'outbound' && s.labels['limit'] === 'max-concurrent-streams')?.value ?? 0;
    const [bad, refusedBefore] = [await proxyErrors(p, 'outbound'), await limits()];
    const sock = netConnect(p.outboundPort, '127.0.0.1');
    sock.on('error', () => undefined);
    const frames: { type: number; id: number; code?: number }[] = [];
    const reader = new FrameReader((type, _flags, id, pl) => frames.push({ type, id, code: type === FRAME.RST_STREAM ? pl.readUInt32BE(0) : undefined }));
    sock.on('data', (d: Buffer) => reader.push(d));
    // Two uploads left open (answered, their request bodies never ended), then a third: refused.
    const post = (id: number) => frame(FRAME.HEADERS, FLAG.END_HEADERS, id, headerBlock([[':method', 'POST'], [':scheme', 'http'], [':path', '/open'], [':authority', 'web']]));
    sock.write(Buffer.concat([clientStart(), post(1), post(3), post(5)]));
    expect(await until(() => frames.some((f) => f.type === FRAME.RST_STREAM && f.id === 5), 3000)).toBe(true);
    // The first upload ends; the next stream is served, and the one refused between is counted as what it was.
    sock.write(Buffer.concat([frame(FRAME.DATA, FLAG.END_STREAM, 1), frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 7, head('/next'))]));
    expect(await until(() => frames.some((f) => f.type === FRAME.HEADERS && f.id === 7), 3000)).toBe(true);
    expect(await until(async () => (await limits()) === refusedBefore + 1, 2000)).toBe(true);
    expect(await proxyErrors(p, 'outbound')).toBe(bad);
    sock.destroy();
  } finally {
    await p.close();
  }
});
