import { createServer, type Server } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeApp, listenOnLoopback, type FakeApp } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';
import { metric } from './helpers/admin-metric.js';

/**
 * Issue 12, lean data path: the listeners serve HTTP/1.1 with Wren's codec (proxy/h1/,
 * proxy/http/h1-server.ts) instead of node:http. Through two real sidecars: refusals come
 * from the one error table and are counted; pipelined requests are answered in order; a
 * client pushing 1 GB at an app that never reads is held back by backpressure, so the
 * sidecars' memory does not grow with it.
 */
const pki = testPki();
let app: FakeApp, client: Proxy, server: Proxy;
let stuck: { port: number; close(): Promise<void> };

beforeAll(async () => {
  app = await fakeApp('web');
  // Reads nothing of an upload and never answers it.
  const srv: Server = createServer((req) => void req.pause());
  stuck = await listenOnLoopback(srv);
  server = await startProxy({ pki, serviceAccount: 'web' });
  client = await startProxy({
    pki,
    serviceAccount: 'client',
    services: [meshService('web', 80, [{ appPort: app.port, proxy: server }]), meshService('stuck', 80, [{ appPort: stuck.port, proxy: server }])],
  });
}, 20_000);

afterAll(async () => {
  await client.close();
  await server.close();
  await app.close();
  await stuck.close();
});

/** Writes `wire` on a new connection to the outbound port; everything received until the proxy closes it or `until` matches. */
function exchange(wire: string, until?: RegExp, ms = 5000): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    const s = netConnect(client.outboundPort, '127.0.0.1', () => s.write(wire));
    const t = setTimeout(() => s.destroy(), ms);
    s.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (until?.test(got)) s.destroy();
    });
    s.on('close', () => {
      clearTimeout(t);
      resolve(got);
    });
    s.on('error', () => undefined);
  });
}

/** The bodies of the consecutive responses in `wire` (content-length or chunked framing). */
function bodies(wire: string): string[] {
  const out: string[] = [];
  let at = 0;
  while (at < wire.length) {
    const end = wire.indexOf('\r\n\r\n', at);
    if (end < 0) break;
    const head = wire.slice(at, end).toLowerCase();
    at = end + 4;
    const cl = /\r\ncontent-length: (\d+)/.exec(head);
    if (cl) {
      out.push(wire.slice(at, at + Number(cl[1])));
      at += Number(cl[1]);
      continue;
    }
    let body = '';
    for (;;) {
      const lf = wire.indexOf('\r\n', at);
      const n = parseInt(wire.slice(at, lf), 16);
      at = lf + 2;
      if (n === 0) break;
      body += wire.slice(at, at + n);
      at += n + 2;
    }
    at = wire.indexOf('\r\n', at) + 2; // no trailers here: the empty line
    out.push(body);
  }
  return out;
}

const NAME = 'GET /name HTTP/1.1\r\nHost: web\r\n\r\n';
const ANSWERED = /\r\n0\r\n\r\n$|content-length/;

test('a smuggling-shaped request is refused from the error table (the body names the RFC rule) and counted; the proxy keeps serving', async () => {
  const bad = /wren_proxy_errors_total\{direction="outbound",code="bad-request"\} (\d+)/;
  const before = await metric(client, bad);
  const reply = await exchange('POST /echo HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: web\r\n\r\n');
  expect(reply).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
  expect(reply).toContain('wren-proxy-error: bad-request\r\n');
  expect(reply).toContain('connection: close\r\n');
  expect(reply).toMatch(/\r\n\r\nmalformed request: both Content-Length and Transfer-Encoding \(RFC 9112 sections 6\.3 item 3 and 11\.2\)\n$/);
  expect(reply).not.toContain('smuggled');
  expect(await metric(client, bad)).toBe(before + 1);
  const big = /wren_proxy_errors_total\{direction="outbound",code="headers-too-large"\} (\d+)/;
  const beforeBig = await metric(client, big);
  const tooBig = await exchange(`GET /name HTTP/1.1\r\nHost: web\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`);
  expect(tooBig).toMatch(/^HTTP\/1\.1 431 Request Header Fields Too Large\r\nwren-proxy-error: headers-too-large\r\n[^]*over 16384 bytes \(the limit\)/);
  expect(await metric(client, big)).toBe(beforeBig + 1);
  // More than 100 fields (Envoy's max_headers_count default): 431 as well; node:http kept the first 2000 silently.
  const fields = Array.from({ length: 101 }, (_, i) => `x-f${i}: ${i}\r\n`).join('');
  const many = await exchange(`GET /name HTTP/1.1\r\nHost: web\r\n${fields}\r\n`);
  expect(many).toMatch(/^HTTP\/1\.1 431 Request Header Fields Too Large\r\nwren-proxy-error: headers-too-large\r\n[^]*more than 100 fields \(the limit\)/);
  expect(await metric(client, big)).toBe(beforeBig + 2);
  expect(bodies(await exchange(NAME, ANSWERED))).toEqual(['web']);
});

test('pipelined requests are answered in order through both sidecars, whatever order the app finishes them in', async () => {
  const wire = ['/slow?ms=150', '/name', '/slow?ms=50'].map((p) => `GET ${p} HTTP/1.1\r\nHost: web\r\n\r\n`).join('');
  const reply = await exchange(wire, /(?:HTTP\/1\.1 200 OK[^]*){3}\r\n0\r\n\r\n$/);
  expect(bodies(reply)).toEqual(['slow web', 'web', 'slow web']);
  expect(reply.match(/HTTP\/1\.1 200 OK\r\n/g)).toHaveLength(3);
});

test('a 1 GB upload to an app that never reads: backpressure holds the client back and the sidecars stay within a bounded memory', async () => {
  const GB = 1 << 30;
  const chunk = Buffer.alloc(1 << 20, 120);
  const mem = () => {
    const m = process.memoryUsage();
    return m.heapUsed + m.external;
  };
  global.gc?.();
  const before = mem();
  let peak = before;
  const sample = setInterval(() => (peak = Math.max(peak, mem())), 50);
  const accepted = await new Promise<number>((resolve) => {
    const s: Socket = netConnect(client.outboundPort, '127.0.0.1');
    let sent = 0;
    s.on('error', () => undefined);
    s.once('connect', () => {
      s.write(`POST /upload HTTP/1.1\r\nHost: stuck\r\nContent-Length: ${GB}\r\n\r\n`);
      const pump = () => {
        while (sent < GB) {
          sent += chunk.length;
          if (!s.write(chunk)) return void s.once('drain', pump);
        }
      };
      pump();
    });
    // Long enough to push the whole GB at loopback speed if nothing held it back.
    setTimeout(() => {
      const inKernelOrProxy = sent - s.writableLength;
      s.destroy();
      resolve(inKernelOrProxy);
    }, 4000);
  });
  clearInterval(sample);
  // Every buffer on the way (client and sidecar sockets, the HTTP/2 windows between the
  // sidecars, the app's socket) is bounded: tens of MB, not the gigabyte.
  expect(accepted).toBeLessThan(64 << 20);
  expect(peak - before).toBeLessThan(64 << 20);
  // Both sidecars keep serving.
  expect(bodies(await exchange(NAME, ANSWERED))).toEqual(['web']);
}, 20_000);
