import http from 'node:http';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { systemClock } from '../../common/clock.js';
import type { HealthCheckPolicy } from '../../contract/model.js';
import { HealthChecker } from './health-checker.js';

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
