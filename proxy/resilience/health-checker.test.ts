import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { FakeClock, systemClock } from '../../common/clock.js';
import type { HealthCheckPolicy } from '../../contract/model.js';
import { HealthChecker } from './health-checker.js';
import { MeshProbes } from './mesh-probes.js';

const policy = (over: Partial<HealthCheckPolicy>): HealthCheckPolicy => ({
  kind: 'http', path: '/healthz', intervalMs: 20, timeoutMs: 200, healthyThreshold: 2, unhealthyThreshold: 2, ...over,
});

async function waitFor(pred: () => boolean, ms = 3000): Promise<void> {
  const end = performance.now() + ms;
  while (!pred()) {
    if (performance.now() > end) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

function listen(server: net.Server, port = 0): Promise<number> {
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)));
}

function recorder() {
  const changes: [string, boolean][] = [];
  const results: boolean[] = [];
  return { changes, results, events: { onChange: (k: string, h: boolean) => changes.push([k, h]), onResult: (_k: string, ok: boolean) => results.push(ok) } };
}

describe('HealthChecker', () => {
  let checker: HealthChecker | undefined;
  const servers: { close(cb?: () => void): unknown }[] = [];
  afterEach(async () => {
    checker?.close();
    checker = undefined;
    await Promise.all(servers.splice(0).map((s) => new Promise<void>((r) => s.close(() => r()))));
  });

  it('HTTP: 2xx is healthy; unhealthy after N failures, restored after M passes', async () => {
    let status = 200;
    const paths: string[] = [];
    const server = http.createServer((req, res) => {
      paths.push(req.url ?? '');
      res.writeHead(status).end();
    });
    servers.push(server);
    const port = await listen(server);
    const rec = recorder();
    checker = new HealthChecker(policy({}), systemClock, rec.events);
    checker.update([{ key: 'a', address: '127.0.0.1', port }]);
    await waitFor(() => rec.results.length >= 2);
    expect(checker.isHealthy('a')).toBe(true);
    expect(paths[0]).toBe('/healthz');
    status = 503;
    await waitFor(() => rec.changes.length === 1);
    expect(rec.changes).toEqual([['a', false]]);
    expect(checker.isHealthy('a')).toBe(false);
    status = 204;
    await waitFor(() => rec.changes.length === 2);
    expect(rec.changes[1]).toEqual(['a', true]);
  });

  it('a target whose identity or sidecar port changes while unhealthy stays unhealthy until it passes again, and says so when it does (adv34)', async () => {
    // It was restarted as a fresh target, healthy, without a word: the Cluster still held
    // it unhealthy, and passing probes never announced it back, so it stayed out for good.
    let status = 503;
    const server = http.createServer((_req, res) => res.writeHead(status).end());
    servers.push(server);
    const port = await listen(server);
    const rec = recorder();
    checker = new HealthChecker(policy({ unhealthyThreshold: 1, healthyThreshold: 1 }), systemClock, rec.events);
    checker.update([{ key: 'a', address: '127.0.0.1', port, identity: 'spiffe://td/ns/default/sa/old' }]);
    await waitFor(() => rec.changes.length === 1);
    expect(rec.changes).toEqual([['a', false]]);
    status = 200;
    checker.update([{ key: 'a', address: '127.0.0.1', port, identity: 'spiffe://td/ns/default/sa/new' }]);
    expect(checker.isHealthy('a')).toBe(false);
    await waitFor(() => rec.changes.length === 2);
    expect(rec.changes[1]).toEqual(['a', true]);
    expect(checker.isHealthy('a')).toBe(true);
  });

  it('HTTP: a response slower than the timeout is a failure', async () => {
    const server = http.createServer(() => undefined); // never answers
    servers.push(server);
    const port = await listen(server);
    const rec = recorder();
    checker = new HealthChecker(policy({ timeoutMs: 30, unhealthyThreshold: 1 }), systemClock, rec.events);
    checker.update([{ key: 'slow', address: '127.0.0.1', port }]);
    await waitFor(() => rec.changes.length === 1);
    expect(rec.changes).toEqual([['slow', false]]);
    server.closeAllConnections();
  });

  it('TCP: refused connections fail, a listener restores the endpoint; removed targets stop', async () => {
    const server = net.createServer((s) => s.destroy());
    const port = await listen(server);
    const rec = recorder();
    checker = new HealthChecker(policy({ kind: 'tcp', healthyThreshold: 1 }), systemClock, rec.events);
    checker.update([{ key: 't', address: '127.0.0.1', port }]);
    await waitFor(() => rec.results.length >= 1);
    expect(rec.results[0]).toBe(true);
    await new Promise<void>((r) => server.close(() => r()));
    await waitFor(() => rec.changes.length === 1);
    expect(rec.changes[0]).toEqual(['t', false]);
    const again = net.createServer((s) => s.destroy());
    servers.push(again);
    await listen(again, port);
    await waitFor(() => rec.changes.length === 2);
    expect(rec.changes[1]).toEqual(['t', true]);
    checker.update([]);
    const n = rec.results.length;
    await new Promise((r) => setTimeout(r, 60));
    expect(rec.results.length).toBe(n);
  });

  it('gRPC: grpc.health.v1 Check, SERVING is healthy, NOT_SERVING is not', async () => {
    const def = protoLoader.loadSync(fileURLToPath(new URL('./health.proto', import.meta.url)), { keepCase: true, enums: String, defaults: true });
    const pkg = grpc.loadPackageDefinition(def) as unknown as { grpc: { health: { v1: { Health: { service: grpc.ServiceDefinition } } } } };
    let status = 'SERVING';
    const asked: string[] = [];
    const server = new grpc.Server();
    server.addService(pkg.grpc.health.v1.Health.service, {
      Check: (call: grpc.ServerUnaryCall<{ service: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        asked.push(call.request.service);
        cb(null, { status });
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    servers.push({ close: (cb?: () => void) => server.tryShutdown(() => cb?.()) });
    const rec = recorder();
    checker = new HealthChecker(policy({ kind: 'grpc', path: 'payments.v1.Payments' }), systemClock, rec.events);
    checker.update([{ key: 'g', address: '127.0.0.1', port }]);
    await waitFor(() => rec.results.length >= 2);
    expect(rec.results.slice(0, 2)).toEqual([true, true]);
    expect(asked[0]).toBe('payments.v1.Payments');
    status = 'NOT_SERVING';
    await waitFor(() => rec.changes.length === 1);
    expect(rec.changes).toEqual([['g', false]]);
    status = 'SERVING';
    await waitFor(() => rec.changes.length === 2);
    expect(rec.changes[1]).toEqual(['g', true]);
  });
});

describe('HealthChecker with mesh probes (fake time)', () => {
  // A real HTTP/2 server stands in for the peer sidecar; the clock is fake, so only the
  // I/O is real and every interval and timeout fires when the test says.
  let server: http2.Http2Server;
  let session: http2.ClientHttp2Session;
  let reply: (s: http2.ServerHttp2Stream, h: http2.IncomingHttpHeaders) => void;
  const streams: http2.IncomingHttpHeaders[] = [];
  const viaMesh: string[] = [];

  beforeAll(async () => {
    server = http2.createServer();
    server.on('stream', (s, h) => {
      s.on('error', () => undefined);
      streams.push(h);
      reply(s, h);
    });
    const port = await listen(server as unknown as net.Server);
    session = http2.connect(`http://127.0.0.1:${port}`);
  });
  afterAll(async () => {
    session.close();
    await new Promise((r) => server.close(r));
  });

  const mesh = new MeshProbes((t) => {
    viaMesh.push(`${t.address}:${t.port} via ${t.proxyPort} as ${t.identity}`);
    return Promise.resolve(session);
  });

  it('meshed targets are probed through their sidecar, unmeshed ones in plaintext; each probe is reported with its transport and result', async () => {
    const plainHits: string[] = [];
    const plain = http.createServer((req, res) => {
      plainHits.push(req.url ?? '');
      res.writeHead(200).end();
    });
    const plainPort = await listen(plain);
    let status = 200;
    reply = (s) => s.respond({ ':status': status }, { endStream: true });
    const clock = new FakeClock();
    const probed: string[] = [];
    const rec = recorder();
    const c = new HealthChecker(policy({ intervalMs: 1000, timeoutMs: 500, unhealthyThreshold: 2 }), clock, { ...rec.events, onProbe: (t, r) => probed.push(`${t}:${r}`) }, undefined, mesh);
    try {
      c.update([
        { key: 'meshed', address: '10.0.0.9', port: 8080, proxyPort: 15006, identity: 'spiffe://td/ns/default/sa/web' },
        { key: 'plain', address: '127.0.0.1', port: plainPort, proxyPort: null },
      ]);
      clock.advance(0);
      await waitFor(() => probed.length === 2);
      expect(probed.sort()).toEqual(['mtls:healthy', 'plaintext:healthy']);
      expect(viaMesh).toEqual(['10.0.0.9:8080 via 15006 as spiffe://td/ns/default/sa/web']);
      expect(streams.map((h) => [h[':path'], h['wren-target-port'], h['wren-health-check']])).toEqual([['/healthz', '8080', '1']]);
      expect(plainHits).toEqual(['/healthz']);
      // Nothing runs until the interval has passed.
      clock.advance(999);
      await new Promise((r) => setTimeout(r, 30));
      expect(probed.length).toBe(2);
      status = 503;
      for (let i = 1; i <= 2; i++) {
        clock.advance(1);
        await waitFor(() => probed.length === 2 + 2 * i);
        clock.advance(999);
      }
      expect(probed.slice(2).filter((p) => p.startsWith('mtls'))).toEqual(['mtls:unhealthy', 'mtls:unhealthy']);
      expect(rec.changes).toEqual([['meshed', false]]);
      expect(c.isHealthy('plain')).toBe(true);
      // A peer that never answers: the fake-time timeout fails the probe as 'timeout'.
      reply = () => undefined;
      const n = probed.length;
      clock.advance(1);
      await waitFor(() => streams.length === 4);
      clock.advance(500);
      await waitFor(() => probed.length === n + 2);
      expect(probed.slice(n)).toContain('mtls:timeout');
    } finally {
      c.close();
      await new Promise((r) => plain.close(r));
    }
  });

  it('a target whose sidecar or identity changes is probed afresh', async () => {
    reply = (s) => s.respond({ ':status': 200 }, { endStream: true });
    viaMesh.length = 0;
    const clock = new FakeClock();
    const rec = recorder();
    const c = new HealthChecker(policy({ intervalMs: 1000 }), clock, rec.events, undefined, mesh);
    try {
      const base = { key: 'm', address: '10.0.0.9', port: 8080, proxyPort: 15006, identity: 'spiffe://td/ns/default/sa/a' };
      c.update([base]);
      clock.advance(0);
      await waitFor(() => rec.results.length === 1);
      c.update([{ ...base, identity: 'spiffe://td/ns/default/sa/b' }]);
      clock.advance(0);
      await waitFor(() => rec.results.length === 2);
      expect(viaMesh).toEqual(['10.0.0.9:8080 via 15006 as spiffe://td/ns/default/sa/a', '10.0.0.9:8080 via 15006 as spiffe://td/ns/default/sa/b']);
    } finally {
      c.close();
    }
  });
});
