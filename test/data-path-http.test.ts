import { request as httpRequest, type IncomingMessage } from 'node:http';
import { connect as netConnect } from 'node:net';
import { connect as h2connect } from 'node:http2';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { request as undiciRequest } from 'undici';
import WebSocket, { WebSocketServer } from 'ws';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeApp, fakeH2cApp, patternByte, type FakeApp } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';
import { bodyBufferStats } from '../proxy/net/body-buffers.js';

/** Two sidecars (client pod, server pod) and real backends, all on loopback. */
const pki = testPki();
let app: FakeApp, h2app: FakeApp, client: Proxy, server: Proxy;
let wsServer: WebSocketServer, wsPort: number, wsHttp: import('node:http').Server;
const logs: string[] = [];

beforeAll(async () => {
  app = await fakeApp('web-1');
  h2app = await fakeH2cApp('grpcish');
  wsHttp = createServer();
  wsServer = new WebSocketServer({ server: wsHttp });
  wsServer.on('connection', (ws, req) => ws.on('message', (m) => ws.send(`echo:${m}:${req.headers['x-forwarded-client-cert'] ?? 'no-xfcc'}`)));
  await new Promise<void>((r) => wsHttp.listen(0, '127.0.0.1', () => r()));
  wsPort = (wsHttp.address() as AddressInfo).port;
  server = await startProxy({ pki, serviceAccount: 'web', logs });
  client = await startProxy({
    pki,
    serviceAccount: 'client',
    logs,
    services: [
      meshService('web', 80, [{ appPort: app.port, proxy: server }]),
      meshService('h2web', 80, [{ appPort: h2app.port, proxy: server }]),
      meshService('ws', 80, [{ appPort: wsPort, proxy: server }]),
      meshService('down', 80, [{ appPort: 1, proxy: server }]),
      meshService('nopeer', 80, [{ appPort: app.port, proxy: { inboundPort: 1, tls: server.tls } as unknown as Proxy }]),
    ],
  });
});

afterAll(async () => {
  await client.close();
  await server.close();
  await app.close();
  await h2app.close();
  wsServer.close();
  wsHttp.closeAllConnections();
  await new Promise((r) => wsHttp.close(r));
});

function get(path: string, host: string, headers: Record<string, string> = {}): Promise<{ res: IncomingMessage; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path, headers: { host, ...headers } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ res, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('HTTP/1.1 travels between sidecars as HTTP/2 over mTLS and is downgraded for the app', async () => {
  const { res, body } = await get('/echo?x=1', 'web.default.svc.cluster.local');
  expect(res.statusCode).toBe(200);
  const seen = JSON.parse(body);
  expect(seen.httpVersion).toBe('1.1');
  expect(seen.path).toBe('/echo?x=1');
  expect(seen.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  expect(seen.headers['x-forwarded-for']).toContain('127.0.0.1');
  expect(seen.headers['x-forwarded-client-cert']).toBe(`By=${server.tls.spiffeId};URI=${client.tls.spiffeId}`);
  expect(seen.headers['wren-orig-proto']).toBeUndefined();
  expect(seen.headers['wren-target-port']).toBeUndefined();
  expect(res.headers['x-app']).toBe('web-1');
  const metrics = await (await fetch(`http://127.0.0.1:${client.adminPort}/metrics`)).text();
  expect(metrics).toMatch(/wren_peer_connections_total\{kind="mtls"\} [1-9]/);
  expect(metrics).toMatch(/istio_requests_total\{reporter="source",[^}]*destination_service="web.default.svc.cluster.local",[^}]*response_code="200"/);
});

test('hop-by-hop fields, and those the Connection header names, do not cross the proxies', async () => {
  const { res, body } = await get('/echo', 'web', { connection: 'keep-alive, x-hop', 'x-hop': 'secret', 'proxy-connection': 'keep-alive', 'keep-alive': 'timeout=5', 'x-end-to-end': 'yes' });
  expect(res.statusCode).toBe(200);
  const seen = JSON.parse(body).headers as Record<string, string>;
  expect(seen['x-end-to-end']).toBe('yes');
  expect(seen['x-hop']).toBeUndefined();
  expect(seen['proxy-connection']).toBeUndefined();
  expect(seen['keep-alive']).toBeUndefined();
});

test('an app cannot forge the caller identity header; short names and name.ns resolve', async () => {
  const { body } = await get('/echo', 'web', { 'x-forwarded-client-cert': 'By=x;URI=spiffe://evil/ns/x/sa/y', 'x-request-id': 'keep-me' });
  const seen = JSON.parse(body);
  expect(seen.headers['x-forwarded-client-cert']).toBe(`By=${server.tls.spiffeId};URI=${client.tls.spiffeId}`);
  expect(seen.headers['x-request-id']).toBe('keep-me');
  expect((await get('/name', 'web.default:80')).body).toBe('web-1');
});

test('absolute-form (proxy-style) requests route by their URL authority, with undici', async () => {
  const { statusCode, body } = await undiciRequest(`http://127.0.0.1:${client.outboundPort}/name`, { headers: { host: 'web' } });
  expect(statusCode).toBe(200);
  expect(await body.text()).toBe('web-1');
  const r = await new Promise<string>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path: 'http://web/name' }, (res) => {
      let b = '';
      res.on('data', (d) => (b += d));
      res.on('end', () => resolve(b));
    });
    req.on('error', reject);
    req.end();
  });
  expect(r).toBe('web-1');
});

test('a 100 MB upload and a 100 MB download stream through intact', async () => {
  const size = 100 * 1024 * 1024;
  const chunk = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < chunk.length; i++) chunk[i] = i % 251;
  const want = createHash('sha256');
  for (let i = 0; i < 100; i++) want.update(chunk);
  const up = await undiciRequest(`http://127.0.0.1:${client.outboundPort}/echo`, {
    method: 'POST',
    headers: { host: 'web', 'content-type': 'application/octet-stream' },
    body: Readable.from((function* () { for (let i = 0; i < 100; i++) yield chunk; })()),
  });
  const seen = (await up.body.json()) as { bodyBytes: number; sha256: string };
  expect(seen.bodyBytes).toBe(size);
  expect(seen.sha256).toBe(want.digest('hex'));
  const down = await undiciRequest(`http://127.0.0.1:${client.outboundPort}/big?bytes=${size}`, { headers: { host: 'web' } });
  let n = 0;
  for await (const d of down.body) n += (d as Buffer).length;
  expect(n).toBe(size);
}, 60_000);

test('a patterned download crosses the mesh byte for byte while its reader stalls and other requests cross the same sidecars', async () => {
  const size = 24 * 1024 * 1024;
  const down = await undiciRequest(`http://127.0.0.1:${client.outboundPort}/pattern?bytes=${size}`, { headers: { host: 'web' } });
  expect(down.statusCode).toBe(200);
  let n = 0;
  let wrong = -1;
  let reads = 0;
  for await (const d of down.body) {
    if (++reads === 1) {
      // The buffers on the way fill while other requests' reads land where this one's did.
      await new Promise((r) => setTimeout(r, 200));
      for (let i = 0; i < 20; i++) await (await undiciRequest(`http://127.0.0.1:${client.outboundPort}/pattern?bytes=${64 * 1024}`, { headers: { host: 'web' } })).body.arrayBuffer();
    } else if (reads % 8 === 0) await new Promise((r) => setTimeout(r, 2));
    const b = d as Buffer;
    if (wrong < 0)
      for (let k = 0; k < b.length; k++)
        if (b[k] !== patternByte(n + k)) {
          wrong = n + k;
          break;
        }
    n += b.length;
  }
  expect(n).toBe(size);
  expect(wrong).toBe(-1);
}, 60_000);

test('concurrent downloads of different bodies cross the mesh byte for byte while the sidecars reuse their body buffers (body-buffers.ts)', async () => {
  const before = bodyBufferStats();
  const size = 6 * 1024 * 1024;
  const download = async (seed: number): Promise<{ n: number; wrong: number }> => {
    const down = await undiciRequest(`http://127.0.0.1:${client.outboundPort}/pattern?bytes=${size}&seed=${seed}`, { headers: { host: 'web' } });
    expect(down.statusCode).toBe(200);
    let n = 0;
    let wrong = -1;
    let reads = 0;
    for await (const d of down.body) {
      // Odd seeds stall, then read slowly: their bytes wait in the sockets on the way while the others' flow through the same blocks.
      if (seed % 2 === 1 && ++reads % 8 === 1) await new Promise((r) => setTimeout(r, reads === 1 ? 150 : 2));
      const b = d as Buffer;
      if (wrong < 0)
        for (let k = 0; k < b.length; k++)
          if (b[k] !== patternByte(n + k, seed)) {
            wrong = n + k;
            break;
          }
      n += b.length;
    }
    return { n, wrong };
  };
  const got = await Promise.all([1, 2, 3, 4, 5, 6].map(download));
  expect(got).toEqual(Array.from({ length: 6 }, () => ({ n: size, wrong: -1 })));
  // Both sidecars run in this process: their copies came mostly from blocks handed back.
  const after = bodyBufferStats();
  expect(after.reused - before.reused).toBeGreaterThan(200);
  expect(after.reused - before.reused).toBeGreaterThan(10 * (after.made - before.made));
}, 60_000);

test('concurrent uploads of different bodies cross the mesh byte for byte while the sidecars reuse their body buffers (body-buffers.ts)', async () => {
  const before = bodyBufferStats();
  const size = 6 * 1024 * 1024;
  const upload = async (seed: number): Promise<{ bodyBytes: number; sha256: string; want: string }> => {
    const part = Buffer.alloc(256 * 1024);
    const want = createHash('sha256');
    const parts: Buffer[] = [];
    for (let off = 0; off < size; off += part.length) {
      const p = Buffer.alloc(part.length);
      for (let k = 0; k < p.length; k++) p[k] = patternByte(off + k, seed);
      want.update(p);
      parts.push(p);
    }
    const res = await undiciRequest(`http://127.0.0.1:${client.outboundPort}/echo`, {
      method: 'POST',
      headers: { host: 'web', 'content-type': 'application/octet-stream' },
      body: Readable.from(parts),
    });
    const seen = (await res.body.json()) as { bodyBytes: number; sha256: string };
    return { ...seen, want: want.digest('hex') };
  };
  const got = await Promise.all([1, 2, 3, 4].map(upload));
  for (const g of got) expect({ bytes: g.bodyBytes, sha256: g.sha256 }).toEqual({ bytes: size, sha256: g.want });
  const after = bodyBufferStats();
  expect(after.reused - before.reused).toBeGreaterThan(200);
  expect(after.reused - before.reused).toBeGreaterThan(10 * (after.made - before.made));
}, 60_000);

test('Expect: 100-continue is answered by the outbound sidecar (as Envoy does by default) and the body then crosses', async () => {
  const events: string[] = [];
  const echoed = await new Promise<{ status: number; json: { bodyBytes: number; headers: Record<string, string> } }>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, method: 'POST', path: '/echo', headers: { host: 'web', expect: '100-continue', 'content-length': '5' } }, (res) => {
      events.push(`response ${res.statusCode}`);
      let b = '';
      res.on('data', (d) => (b += d));
      res.on('end', () => resolve({ status: res.statusCode!, json: JSON.parse(b) }));
    });
    req.on('error', reject);
    // The body is only sent once the 100 arrives: without it this request would hang.
    req.on('continue', () => {
      events.push('continue');
      req.end('hello');
    });
  });
  expect(events).toEqual(['continue', 'response 200']);
  expect(echoed.status).toBe(200);
  expect(echoed.json.bodyBytes).toBe(5);
  // The expectation was met by the sidecar, so it is not passed on (Envoy's proxy_100_continue: false).
  expect(echoed.json.headers.expect).toBeUndefined();
});

test('HTTP/1.1 request and response trailers cross the mesh', async () => {
  const seenTrailers = await new Promise<Record<string, string>>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, method: 'POST', path: '/trailers', headers: { host: 'web', trailer: 'x-req-sum', 'transfer-encoding': 'chunked' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.trailers as Record<string, string>));
    });
    req.on('error', reject);
    req.write('abc');
    req.addTrailers({ 'x-req-sum': '42' });
    req.end();
  });
  expect(seenTrailers['x-checksum']).toBe('abc123');
  const echoed = await new Promise<Record<string, string>>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, method: 'POST', path: '/echo', headers: { host: 'web', trailer: 'x-req-sum' } }, (res) => {
      let b = '';
      res.on('data', (d) => (b += d));
      res.on('end', () => resolve(JSON.parse(b).trailers));
    });
    req.on('error', reject);
    req.write('abc');
    req.addTrailers({ 'x-req-sum': '42' });
    req.end();
  });
  expect(echoed['x-req-sum']).toBe('42');
});

test('HTTP/2 prior knowledge (h2c) from the app reaches an h2c backend, trailers included', async () => {
  const session = h2connect(`http://127.0.0.1:${client.outboundPort}`);
  const stream = session.request({ ':method': 'POST', ':path': '/trailers', ':authority': 'h2web' });
  stream.end('x');
  const result = await new Promise<{ status: number; trailers: Record<string, unknown>; body: string }>((resolve, reject) => {
    let status = 0, body = '', trailers = {};
    stream.on('response', (h) => (status = Number(h[':status'])));
    stream.on('trailers', (t) => (trailers = t));
    stream.on('data', (d) => (body += d));
    stream.on('end', () => resolve({ status, trailers, body }));
    stream.on('error', reject);
  });
  session.close();
  expect(result.status).toBe(200);
  expect(result.body).toBe('part1 part2');
  expect(result.trailers).toMatchObject({ 'x-checksum': 'abc123' });
});

test('WebSocket upgrades are tunnelled over the mesh', async () => {
  const ws = new WebSocket(`ws://127.0.0.1:${client.outboundPort}/`, { headers: { host: 'ws' } });
  const reply = await new Promise<string>((resolve, reject) => {
    ws.on('open', () => ws.send('hi'));
    ws.on('message', (m) => resolve(String(m)));
    ws.on('error', reject);
  });
  ws.close();
  expect(reply.startsWith('echo:hi:')).toBe(true);
});

test('unreachable backends and unknown services get a clear proxy error', async () => {
  const refused = await get('/echo', 'down');
  expect(refused.res.statusCode).toBe(502);
  expect(refused.res.headers['wren-proxy-error']).toBe('connect-refused');
  const nopeer = await get('/echo', 'nopeer');
  expect(nopeer.res.statusCode).toBe(502);
  expect(nopeer.res.headers['wren-proxy-error']).toBe('connect-refused');
  const unknown = await get('/echo', 'nosuchservice');
  expect(unknown.res.statusCode).toBe(404);
  expect(unknown.res.headers['wren-proxy-error']).toBe('no-route');
  expect(unknown.body).toContain('nosuchservice');
  expect((await get('/name', 'web')).body).toBe('web-1');
});

function raw(port: number, data: string): Promise<string> {
  return new Promise((resolve) => {
    const s = netConnect(port, '127.0.0.1', () => s.write(data));
    let b = '';
    s.on('data', (d) => (b += d));
    s.on('close', () => resolve(b));
    s.on('error', () => resolve(b));
  });
}

test('malformed HTTP gets a 400 and an oversized header a 431 naming the limit; the proxy keeps serving', async () => {
  const bad = await raw(client.outboundPort, 'GET /echo HTTP/1.1\r\nHost: web\r\nBad Header Line\r\n\r\n');
  expect(bad).toMatch(/^HTTP\/1.1 400/);
  const big = await raw(client.outboundPort, `GET /echo HTTP/1.1\r\nHost: web\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`);
  expect(big).toMatch(/^HTTP\/1.1 431/);
  expect(big).toContain('16384');
  expect((await get('/name', 'web')).body).toBe('web-1');
});

test('an HTTP/2 request over the header limit gets a 431 whose body names it; the session keeps serving', async () => {
  const session = h2connect(`http://127.0.0.1:${client.outboundPort}`);
  try {
    const ask = (headers: Record<string, string>) =>
      new Promise<{ status: number; body: string; error: string }>((resolve, reject) => {
        const st = session.request({ ':path': '/name', ':authority': 'h2web', ...headers });
        let body = '';
        let status = 0;
        let error = '';
        st.on('response', (h) => {
          status = Number(h[':status']);
          error = String(h['wren-proxy-error'] ?? '');
        });
        st.on('data', (d: Buffer) => (body += d.toString()));
        st.on('end', () => resolve({ status, body, error }));
        st.on('error', reject);
        st.end();
      });
    const big = await ask({ 'x-big': 'a'.repeat(20_000) });
    expect(big.status).toBe(431);
    expect(big.error).toBe('headers-too-large');
    expect(big.body).toContain('16384');
    // Just under the limit passes; the same session serves the next request.
    expect(await ask({ 'x-big': 'a'.repeat(15_000) })).toMatchObject({ status: 200, body: 'grpcish' });
  } finally {
    session.close();
  }
});

test('a client that disconnects mid-body and a backend that resets mid-response leave the proxy serving', async () => {
  await new Promise<void>((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, method: 'POST', path: '/echo', headers: { host: 'web', 'content-length': '1000000' } });
    req.on('error', () => resolve());
    req.write(Buffer.alloc(1000));
    setTimeout(() => {
      req.destroy();
      resolve();
    }, 50);
  });
  const reset = await new Promise<string>((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path: '/reset', headers: { host: 'web' } }, (res) => {
      res.on('data', () => undefined);
      res.on('error', () => resolve('error'));
      res.on('aborted', () => resolve('aborted'));
      res.on('end', () => resolve('end'));
    });
    req.on('error', () => resolve('error'));
    req.end();
  });
  expect(['error', 'aborted']).toContain(reset);
  expect((await get('/name', 'web')).body).toBe('web-1');
});
