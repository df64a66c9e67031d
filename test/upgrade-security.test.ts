import { connect as netConnect, createServer as createNetServer, type Socket } from 'node:net';
import { createServer, request as httpRequest } from 'node:http';
import WebSocket, { WebSocketServer } from 'ws';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { listenOnLoopback } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * HTTP/1.1 upgrades (WebSocket and others) between two real sidecars (issue 11, item 2):
 * an upgrade request goes through the same header rules and authorization as any request,
 * reaches the app as a head rebuilt from the filtered headers, and only bytes after the
 * app's 101 flow as a tunnel. The app is a raw socket that records every byte it gets.
 */
const pki = testPki();
let server: Proxy, client: Proxy, mallory: Proxy;
let raw: RawApp;
let wsHttp: import('node:http').Server, wsServer: WebSocketServer, wsPort: number;
let wsClose: () => Promise<void>;
const wsHeads: Record<string, string | string[] | undefined>[] = [];

/**
 * A raw HTTP/1.1 app that pipelines like a real server: every complete request head in
 * what it reads is answered in turn. `Upgrade: websocket` on /ws is answered with a 101
 * after `delayMs`, then every byte is echoed; anything else gets a 200 naming the path.
 */
interface RawApp {
  readonly port: number;
  /** Per connection: every byte received, and the bytes that arrived after a head but before the app's 101. */
  readonly conns: { bytes: string; beforeSwitch: string; answered: string[] }[];
  close(): Promise<void>;
}

async function rawApp(delayMs = 150): Promise<RawApp> {
  const conns: RawApp['conns'] = [];
  const srv = createNetServer((s: Socket) => {
    const c = { bytes: '', beforeSwitch: '', answered: [] as string[] };
    conns.push(c);
    let buf = '';
    let mode: 'http' | 'waiting' | 'tunnel' = 'http';
    s.on('data', (d: Buffer) => {
      c.bytes += d.toString('latin1');
      if (mode === 'tunnel') return void s.write(d);
      if (mode === 'waiting') return void (c.beforeSwitch += d.toString('latin1'));
      buf += d.toString('latin1');
      for (let end = buf.indexOf('\r\n\r\n'); end >= 0 && mode === 'http'; end = buf.indexOf('\r\n\r\n')) {
        const head = buf.slice(0, end);
        buf = buf.slice(end + 4);
        const path = head.split(' ')[1];
        c.answered.push(path);
        if (path === '/ws' && /\r\nupgrade: *websocket/i.test(head)) {
          mode = 'waiting';
          c.beforeSwitch += buf;
          buf = '';
          setTimeout(() => {
            s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nx-app: raw\r\n\r\n');
            mode = 'tunnel';
            // Bytes held back by the proxies arrive now, after the switch.
          }, delayMs);
        } else {
          const body = `answered ${path}`;
          s.write(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\nx-app: raw\r\n\r\n${body}`);
        }
      }
    });
    s.on('error', () => undefined);
  });
  const l = await listenOnLoopback(srv);
  return { port: l.port, conns, close: l.close };
}

beforeAll(async () => {
  raw = await rawApp();
  wsHttp = createServer();
  wsServer = new WebSocketServer({ server: wsHttp });
  wsServer.on('connection', (ws, req) => {
    wsHeads.push(req.headers);
    ws.send('hello from server');
    ws.on('message', (m, isBinary) => ws.send(isBinary ? (m as Buffer) : `echo:${String(m)}`, { binary: isBinary }));
  });
  const l = await listenOnLoopback(wsHttp);
  wsPort = l.port;
  wsClose = l.close;
  const policy = {
    authorizationPolicies: [
      { name: 'default/deny-mallory', action: 'DENY', rules: [{ from: [{ source: { principals: ['*/sa/mallory'] } }] }] },
      // The upgrade's own fields, which the listeners keep out of the header map, are what the conditions read.
      { name: 'default/no-ws', action: 'DENY', rules: [{ to: [{ operation: { paths: ['/no-ws*'] } }], when: [{ key: 'request.headers[upgrade]', values: ['websocket'] }] }] },
    ],
  };
  server = await startProxy({ pki, serviceAccount: 'web', config: { policy } });
  const services = [
    meshService('raw', 80, [{ appPort: raw.port, proxy: server }]),
    meshService('ws', 80, [{ appPort: wsPort, proxy: server }]),
    // The same app with no sidecar: the outbound alone rebuilds the head and holds the bytes.
    meshService('unmeshed', 80, [{ appPort: raw.port, proxy: null }]),
  ];
  [client, mallory] = await Promise.all([startProxy({ pki, serviceAccount: 'client', services }), startProxy({ pki, serviceAccount: 'mallory', services })]);
});

afterAll(async () => {
  await Promise.all([client.close(), mallory.close(), server.close()]);
  wsServer.close();
  await Promise.all([raw.close(), wsClose()]);
});

/** Writes `data` in one go on a new connection to the sidecar's outbound port; resolves with all it got back once it closes (or after `ms`). */
function exchange(via: Proxy, data: string, ms = 1500, then?: (s: Socket, got: () => string) => void): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    const s = netConnect(via.outboundPort, '127.0.0.1', () => s.write(data));
    const t = setTimeout(() => s.destroy(), ms);
    s.on('data', (d) => {
      got += d.toString('latin1');
      then?.(s, () => got);
    });
    s.on('close', () => {
      clearTimeout(t);
      resolve(got);
    });
    s.on('error', () => undefined);
  });
}

const FORGED_XFCC = 'By=spiffe://cluster.local/ns/default/sa/web;URI=spiffe://cluster.local/ns/default/sa/admin';


/** The status a real WebSocket client gets for `path` through an outbound (101 when it opens). */
function webSocketStatus(port: number, path: string): Promise<number> {
  return new Promise<number>((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, { headers: { host: 'ws' } });
    ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.on('open', () => {
      resolve(101);
      ws.close();
    });
    ws.on('error', () => undefined);
  });
}

test('a forged identity and a pipelined request behind an Upgrade never reach the app', async () => {
  const before = raw.conns.length;
  const reply = await exchange(
    client,
    'GET /admin HTTP/1.1\r\nHost: raw\r\nConnection: Upgrade\r\nUpgrade: foo\r\n' +
      `X-Forwarded-Client-Cert: ${FORGED_XFCC}\r\nwren-target-port: 1\r\nwren-orig-proto: HTTP/2\r\n\r\n` +
      'GET /smuggled HTTP/1.1\r\nHost: raw\r\n\r\n',
  );
  // The app did not switch: its answer is relayed as a normal response and the connection closed.
  expect(reply).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
  expect(reply).toContain('answered /admin');
  expect(reply).not.toContain('smuggled');
  await new Promise((r) => setTimeout(r, 200));
  const conns = raw.conns.slice(before);
  expect(conns).toHaveLength(1);
  const [c] = conns;
  expect(c.answered).toEqual(['/admin']);
  const head = c.bytes.toLowerCase();
  expect(head).not.toContain('smuggled');
  expect(head).not.toContain('sa/admin');
  expect(head).not.toContain('wren-target-port');
  expect(head).not.toContain('wren-orig-proto');
  expect(head).toContain(`x-forwarded-client-cert: by=${server.tls.spiffeId};uri=${client.tls.spiffeId}\r\n`.toLowerCase());
  expect(head).toMatch(/\r\nx-request-id: [0-9a-f-]{36}\r\n/);
  // Appended by each sidecar, as for any request.
  expect(head).toMatch(/\r\nx-forwarded-for: 127\.0\.0\.1, 127\.0\.0\.1\r\n/);
  // The head the app gets is rebuilt: one request line, the upgrade intent re-stated, nothing after it.
  expect(c.bytes.startsWith('GET /admin HTTP/1.1\r\n')).toBe(true);
  expect(head).toMatch(/\r\nupgrade: foo\r\n/);
  expect(c.bytes.endsWith('\r\n\r\n')).toBe(true);
});

test('bytes the client sends after the head are held until the app answers 101, then flow both ways', async () => {
  const before = raw.conns.length;
  let sentMore = false;
  const reply = await exchange(client, 'GET /ws HTTP/1.1\r\nHost: raw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nearly-bytes|', 1500, (s, got) => {
    if (!sentMore && got().includes('early-bytes|')) {
      sentMore = true;
      s.write('later-bytes');
    }
    if (got().includes('later-bytes')) s.end();
  });
  expect(reply).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/i);
  expect(reply.toLowerCase()).toContain('\r\nupgrade: websocket\r\n');
  expect(reply.toLowerCase()).toContain('\r\nconnection: upgrade\r\n');
  expect(reply).toContain('x-app: raw');
  // Held bytes come first, right after the 101 head.
  expect(reply.slice(reply.indexOf('\r\n\r\n') + 4)).toBe('early-bytes|later-bytes');
  const [c] = raw.conns.slice(before);
  // Nothing reached the app between its head and its 101.
  expect(c.beforeSwitch).toBe('');
  expect(c.answered).toEqual(['/ws']);
  expect(c.bytes.slice(c.bytes.indexOf('\r\n\r\n') + 4)).toBe('early-bytes|later-bytes');
});

test('authorization refuses an upgrade exactly like a plain request: 403 before anything reaches the app', async () => {
  const before = raw.conns.length;
  const plain = await new Promise<{ status: number; headers: Record<string, unknown>; body: string }>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: mallory.outboundPort, path: '/ws', headers: { host: 'raw' } }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
  expect(plain).toMatchObject({ status: 403, headers: expect.objectContaining({ 'wren-proxy-error': 'forbidden', 'wren-authz-reason': 'deny-policy default/deny-mallory' }) });
  const reply = await exchange(mallory, 'GET /ws HTTP/1.1\r\nHost: raw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nframe-bytes');
  expect(reply).toMatch(/^HTTP\/1\.1 403 Forbidden\r\n/);
  expect(reply.toLowerCase()).toContain('wren-proxy-error: forbidden\r\n');
  expect(reply.toLowerCase()).toContain('wren-authz-reason: deny-policy default/deny-mallory\r\n');
  expect(reply).toContain(plain.body);
  expect(reply).not.toContain('frame-bytes');
  // A real WebSocket client is refused the same way.
  expect(await webSocketStatus(mallory.outboundPort, '/')).toBe(403);
  await new Promise((r) => setTimeout(r, 100));
  expect(raw.conns.length).toBe(before);
});

test('an upgrade request with a body is refused (400) and nothing reaches the app; errors take the one mapping', async () => {
  const before = raw.conns.length;
  const unknown = await exchange(client, 'GET /ws HTTP/1.1\r\nHost: nosuchservice\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
  expect(unknown).toMatch(/^HTTP\/1\.1 404 Not Found\r\n/);
  expect(unknown.toLowerCase()).toContain('wren-proxy-error: no-route\r\n');
  expect(unknown).toContain('no service matches the request authority: nosuchservice');
  const reply = await exchange(client, 'POST /ws HTTP/1.1\r\nHost: raw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\nhello');
  expect(reply).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
  expect(reply.toLowerCase()).toContain('wren-proxy-error: bad-request\r\n');
  await new Promise((r) => setTimeout(r, 100));
  expect(raw.conns.length).toBe(before);
});

test('a real WebSocket works end to end both ways, with the mesh headers set by the sidecars', async () => {
  const ws = new WebSocket(`ws://127.0.0.1:${client.outboundPort}/chat`, { headers: { host: 'ws', 'x-forwarded-client-cert': FORGED_XFCC } });
  const big = Buffer.alloc(1 << 20, 7);
  const got: (string | Buffer)[] = [];
  await new Promise<void>((resolve, reject) => {
    ws.on('message', (m, isBinary) => {
      got.push(isBinary ? (m as Buffer) : String(m));
      if (got.length === 1) ws.send('ping');
      else if (got.length === 2) ws.send(big);
      else resolve();
    });
    ws.on('error', reject);
  });
  ws.close();
  expect(got[0]).toBe('hello from server');
  expect(got[1]).toBe('echo:ping');
  expect(Buffer.isBuffer(got[2]) && (got[2] as Buffer).equals(big)).toBe(true);
  const h = wsHeads.at(-1)!;
  expect(h['x-forwarded-client-cert']).toBe(`By=${server.tls.spiffeId};URI=${client.tls.spiffeId}`);
  expect(h['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  expect(h['wren-target-port']).toBeUndefined();
  expect(h['upgrade']).toBe('websocket');
  expect(h['host']).toBe('ws');
  expect(h['sec-websocket-key']).toBeDefined();
});

test('an Upgrade: h2c offer is ignored: the request is served as plain HTTP/1.1, body included', async () => {
  const before = raw.conns.length;
  const reply = await exchange(
    client,
    'POST /plain HTTP/1.1\r\nHost: raw\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nContent-Length: 3\r\n\r\nabc',
    1500,
    (s, got) => {
      if (got().includes('answered /plain')) s.end();
    },
  );
  expect(reply).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
  expect(reply).toContain('answered /plain');
  const [c] = raw.conns.slice(before);
  expect(c.answered).toEqual(['/plain']);
  expect(c.bytes.toLowerCase()).not.toMatch(/upgrade|http2-settings/);
  expect(c.bytes.startsWith('POST /plain HTTP/1.1\r\n')).toBe(true);
  expect(c.bytes.endsWith('\r\n\r\nabc')).toBe(true);
});

test('to an unmeshed endpoint the outbound alone applies the same rules', async () => {
  const before = raw.conns.length;
  const refused = await exchange(
    client,
    `GET /admin HTTP/1.1\r\nHost: unmeshed\r\nConnection: Upgrade\r\nUpgrade: foo\r\nX-Forwarded-Client-Cert: ${FORGED_XFCC}\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: raw\r\n\r\n`,
  );
  expect(refused).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
  expect(refused).not.toContain('smuggled');
  const switched = await exchange(client, 'GET /ws HTTP/1.1\r\nHost: unmeshed\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nearly', 1500, (s, got) => {
    if (got().endsWith('early')) s.end();
  });
  expect(switched).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/);
  expect(switched.endsWith('\r\n\r\nearly')).toBe(true);
  await new Promise((r) => setTimeout(r, 100));
  const conns = raw.conns.slice(before);
  expect(conns.map((c) => c.answered)).toEqual([['/admin'], ['/ws']]);
  expect(conns[0].bytes).not.toMatch(/smuggled|sa\/admin|x-forwarded-client-cert/i);
  expect(conns[0].bytes).toMatch(/\r\nx-request-id: [0-9a-f-]{36}\r\n/);
  expect(conns[1].beforeSwitch).toBe('');
});

// Last in the file: its plain request leaves a kept-alive connection to the raw app, which the tests above would take for a new one.
test('a DENY on request.headers[upgrade] refuses the WebSocket upgrade (403), not the plain request to the same path', async () => {
  const before = raw.conns.length;
  const reply = await exchange(client, 'GET /no-ws HTTP/1.1\r\nHost: raw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nframe-bytes');
  expect(reply).toMatch(/^HTTP\/1\.1 403 Forbidden\r\n/);
  expect(reply.toLowerCase()).toContain('wren-authz-reason: deny-policy default/no-ws\r\n');
  expect(reply).not.toContain('frame-bytes');
  expect(await webSocketStatus(client.outboundPort, '/no-ws')).toBe(403);
  await new Promise((r) => setTimeout(r, 100));
  expect(raw.conns.length).toBe(before);
  const plain = await exchange(client, 'GET /no-ws HTTP/1.1\r\nHost: raw\r\nConnection: close\r\n\r\n');
  expect(plain).toMatch(/^HTTP\/1\.1 200 /);
});
