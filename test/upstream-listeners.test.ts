import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { connect as netConnect, createServer, type AddressInfo, type Server } from 'node:net';
import { connect as h2connect } from 'node:http2';
import { once } from 'node:events';
import { promisify } from 'node:util';
import { request as undiciRequest } from 'undici';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeApp, fakeH2cApp, fakeTcpApp, type FakeApp } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';
import { closedPort } from './helpers/closed-port.js';

/**
 * Explicit upstreams (proxy config `upstreams`, Consul's local_bind_port): a client with
 * no iptables redirect reaches a mesh service through a local port, over the same
 * outbound path (detection, routing, mTLS to the peer sidecar, metrics).
 */
const run = promisify(execFile);
const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
// Decided at collection time, so a machine without Redis reports the test as skipped.
const REDIS = has('redis-server') && has('redis-cli');
const redisTest = REDIS ? test : test.skip;

const pki = testPki();
let echo: FakeApp, web: FakeApp, h2web: FakeApp, server: Proxy, client: Proxy;
let redis: ChildProcess | undefined, redisPort = 0;
const UP = { echo: 0, web: 1, webH2: 2, redis: 3, missing: 4 };

beforeAll(async () => {
  echo = await fakeTcpApp('echo ready\n');
  web = await fakeApp('web-1');
  h2web = await fakeH2cApp('h2web');
  if (REDIS) {
    redisPort = await closedPort();
    redis = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    for (let i = 0; i < 100; i++) {
      const up = await run('redis-cli', ['-p', String(redisPort), 'ping']).then((r) => r.stdout.trim() === 'PONG', () => false);
      if (up) break;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  server = await startProxy({ pki, serviceAccount: 'backend' });
  client = await startProxy({
    pki,
    serviceAccount: 'client',
    services: [
      meshService('echo', 7000, [{ appPort: echo.port, proxy: server }]),
      meshService('web', 80, [{ appPort: web.port, proxy: server }]),
      meshService('h2web', 80, [{ appPort: h2web.port, proxy: server }]),
      meshService('redis', 6379, [{ appPort: redisPort || 1, proxy: server }]),
    ],
    config: {
      upstreams: [
        { service: 'echo', port: 7000, localPort: 0 },
        { service: 'web.default', port: 80, localPort: 0 },
        { service: 'h2web', port: 80, localPort: 0, protocol: 'http2' },
        { service: 'redis.default', port: 6379, localPort: 0 },
        { service: 'missing', port: 80, localPort: 0, protocol: 'http1' },
      ],
    },
  });
});

afterAll(async () => {
  await client.close();
  await server.close();
  await echo.close();
  await web.close();
  await h2web.close();
  if (redis) {
    redis.kill();
    await once(redis, 'exit');
  }
});

const metrics = async (p: Proxy) => (await fetch(`http://127.0.0.1:${p.adminPort}/metrics`)).text();

/** A plain TCP client: everything the server sends until it closes, after sending `msg`. */
function tcp(port: number, msg: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ host: '127.0.0.1', port });
    let got = '';
    s.on('data', (d) => {
      got += d;
      if (got.includes(msg)) s.end();
    });
    s.on('connect', () => s.write(msg));
    s.on('close', () => resolve(got));
    s.on('error', reject);
  });
}

test('opaque TCP through an upstream port reaches the service over mTLS, where the plain outbound port has no route', async () => {
  const port = client.upstreamPorts[UP.echo];
  expect(await tcp(port, 'hello through the mesh\n')).toBe('echo ready\nhello through the mesh\n');
  const m = await metrics(client);
  expect(m).toMatch(/istio_tcp_connections_opened_total\{reporter="source",[^}]*destination_service="echo.default.svc.cluster.local",[^}]*\} [1-9]/);
  expect(await metrics(server)).toMatch(/istio_tcp_connections_opened_total\{reporter="destination"/);
  // The same client on the outbound port itself: no original destination, nothing to route (the premise).
  expect(await tcp(client.outboundPort, 'x')).toBe('');
});

test('a client that half-closes after its request still gets the whole reply (FIN is relayed, not a reset)', async () => {
  const got = await new Promise<string>((resolve, reject) => {
    const s = netConnect({ host: '127.0.0.1', port: client.upstreamPorts[UP.echo] }, () => s.end('last words\n'));
    let data = '';
    s.on('data', (d) => (data += d));
    s.on('close', () => resolve(data));
    s.on('error', reject);
  });
  expect(got).toBe('echo ready\nlast words\n');
});

redisTest('redis-cli through an upstream port talks to redis-server behind the peer sidecar', async () => {
  const cli = (...args: string[]) => run('redis-cli', ['-h', '127.0.0.1', '-p', String(client.upstreamPorts[UP.redis]), ...args]).then((r) => r.stdout.trim());
  expect(await cli('ping')).toBe('PONG');
  expect(await cli('set', 'mesh-key', 'through wren')).toBe('OK');
  expect(await cli('get', 'mesh-key')).toBe('through wren');
  // Written through the mesh, read straight from Redis.
  expect((await run('redis-cli', ['-p', String(redisPort), 'get', 'mesh-key'])).stdout.trim()).toBe('through wren');
  expect(await metrics(client)).toMatch(/istio_tcp_connections_opened_total\{reporter="source",[^}]*destination_service="redis.default.svc.cluster.local",[^}]*\} [3-9]/);
});

test('HTTP/1.1 through an upstream port goes to the bound service whatever the Host, with the caller identity', async () => {
  const port = client.upstreamPorts[UP.web];
  const r = await undiciRequest(`http://127.0.0.1:${port}/echo`, { headers: { host: 'localhost' } });
  expect(r.statusCode).toBe(200);
  const body = (await r.body.json()) as { name: string; headers: Record<string, string> };
  expect(body.name).toBe('web-1');
  expect(body.headers['x-forwarded-client-cert']).toContain(`URI=${client.tls.spiffeId}`);
  expect(await metrics(client)).toMatch(/istio_requests_total\{[^}]*destination_service="web.default.svc.cluster.local"[^}]*\} [1-9]/);
});

test('an upstream declared http2 takes HTTP/2 prior knowledge (routed by the upstream, not the :authority)', async () => {
  const session = h2connect(`http://127.0.0.1:${client.upstreamPorts[UP.webH2]}`);
  try {
    const req = session.request({ ':path': '/name', ':authority': 'anything' });
    const [headers] = (await once(req, 'response')) as [Record<string, string | number>];
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d) => (body += d));
    await once(req, 'end');
    expect(headers[':status']).toBe(200);
    expect(body).toBe('h2web');
  } finally {
    session.close();
  }
});

test('an upstream whose service is not in the mesh answers NO_ROUTE and the proxy keeps serving', async () => {
  const r = await undiciRequest(`http://127.0.0.1:${client.upstreamPorts[UP.missing]}/`);
  expect(r.statusCode).toBe(404);
  expect(r.headers['wren-proxy-error']).toBe('no-route');
  await r.body.dump();
  expect(await tcp(client.upstreamPorts[UP.echo], 'still here\n')).toBe('echo ready\nstill here\n');
});

test('an upstream port that cannot be bound fails start-up', async () => {
  const taken: Server = createServer();
  taken.listen(0, '127.0.0.1');
  await once(taken, 'listening');
  const port = (taken.address() as AddressInfo).port;
  try {
    await expect(
      startProxy({ pki, serviceAccount: 'client', config: { upstreams: [{ service: 'echo', port: 7000, localPort: port }] } }),
    ).rejects.toThrow(new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port} \\(upstream echo:7000 listener\\): EADDRINUSE`));
  } finally {
    taken.close();
  }
});
