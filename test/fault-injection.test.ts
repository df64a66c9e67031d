import * as grpc from '@grpc/grpc-js';
import { Agent, request as httpRequest } from 'node:http';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import { fakeGrpc, echoClient, type FakeGrpc } from './helpers/fake-grpc.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * TrafficPolicy `fault` between real sidecars: the CALLER's sidecar delays and aborts,
 * the destination never sees an aborted request. Real randomness: the aborted share is
 * checked against a tolerance of about five standard deviations (binomial) over 600 requests.
 */
const pki = testPki();
let app: FakeApp, grpcApp: FakeGrpc, server: Proxy, caller: Proxy;
const agent = new Agent({ keepAlive: true, maxSockets: 16 });

beforeAll(async () => {
  [app, grpcApp] = await Promise.all([fakeApp('ratings'), fakeGrpc()]);
  server = await startProxy({ pki, namespace: 'default', serviceAccount: 'ratings' });
  const backend = [{ appPort: app.port, proxy: server }];
  const services = [
    meshService('flaky', 80, backend, { policy: { fault: { abort: { httpStatus: 503, percentage: 30 } }, retry: { retryOn: ['5xx'], attempts: 3 } } }),
    // The request timeout is shorter than the delay: as in Envoy (the fault filter runs before the
    // router starts its timer) the delay is not part of the request's time budget.
    meshService('slow', 80, backend, { policy: { fault: { delay: { fixedDelay: '300ms' } }, timeouts: { requestMs: '150ms' } } }),
    meshService('picky', 80, backend, { policy: { fault: { abort: { httpStatus: 418 }, match: { pathPrefix: '/status/', headers: { 'x-chaos': 'on' } } } } }),
    meshService('echo', 50051, [{ appPort: grpcApp.port, proxy: server }], { protocol: 'grpc', policy: { fault: { abort: { grpcStatus: 'RESOURCE_EXHAUSTED' } } } }),
    meshService('echo-http-status', 50051, [{ appPort: grpcApp.port, proxy: server }], { protocol: 'grpc', policy: { fault: { abort: { httpStatus: 403 } } } }),
  ];
  caller = await startProxy({ pki, namespace: 'default', serviceAccount: 'web', services });
});

afterAll(async () => {
  agent.destroy();
  await Promise.all([caller.close(), server.close()]);
  await Promise.all([app.close(), grpcApp.close()]);
});

function get(host: string, path = '/name', headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, unknown>; ms: number }> {
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: caller.outboundPort, path, agent, headers: { host, ...headers } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, ms: performance.now() - start }));
    });
    req.on('error', reject);
    req.end();
  });
}

const metrics = async (p: Proxy) => (await fetch(`http://127.0.0.1:${p.adminPort}/metrics`)).text();
const value = (text: string, re: RegExp) => Number(re.exec(text)?.[1] ?? 0);

test('abort: about 30 % of 600 requests get the configured 503 (flag FI, counted), the rest reach the app', async () => {
  const hits = app.hits.count;
  const N = 600;
  const statuses: number[] = [];
  for (let i = 0; i < N; i += 50) statuses.push(...(await Promise.all(Array.from({ length: 50 }, () => get('flaky')))).map((r) => r.status));
  const aborted = statuses.filter((s) => s === 503).length;
  expect(statuses.filter((s) => s !== 503 && s !== 200)).toEqual([]);
  // Binomial(600, 0.3): mean 180, sd 11.2; ±56 is five sd.
  expect(aborted).toBeGreaterThanOrEqual(124);
  expect(aborted).toBeLessThanOrEqual(236);
  expect(app.hits.count - hits).toBe(N - aborted);
  const m = await metrics(caller);
  expect(value(m, /wren_faults_injected_total\{kind="abort"\} (\d+)/)).toBe(aborted);
  expect(m).toMatch(new RegExp(`istio_requests_total\\{[^}]*destination_service_name="flaky"[^}]*response_code="503"[^}]*response_flags="FI"[^}]*\\} ${aborted}\\n`));
});

// flaky retries 5xx up to 3 attempts: the injected 503 is still the answer, once.
test('an aborted request carries the error label and is never retried', async () => {
  let r;
  do r = await get('flaky');
  while (r.status !== 503);
  expect(r.headers['wren-proxy-error']).toBe('fault-abort');
  expect(await metrics(caller)).not.toMatch(/wren_retries_total\{cluster="flaky.default:80"\} [1-9]/);
});

test('delay: the request reaches the app after at least fixedDelay (outside the request timeout), flagged DI and counted', async () => {
  const before = value(await metrics(caller), /wren_faults_injected_total\{kind="delay"\} (\d+)/);
  const results = await Promise.all(Array.from({ length: 5 }, () => get('slow')));
  for (const r of results) {
    expect(r.status).toBe(200);
    expect(r.ms).toBeGreaterThanOrEqual(300);
  }
  const m = await metrics(caller);
  expect(value(m, /wren_faults_injected_total\{kind="delay"\} (\d+)/)).toBe(before + 5);
  expect(m).toMatch(/istio_requests_total\{[^}]*destination_service_name="slow"[^}]*response_code="200"[^}]*response_flags="DI"[^}]*\} 5\n/);
});

test('match: only requests under the prefix with the header are aborted', async () => {
  expect((await get('picky', '/status/200', { 'x-chaos': 'on' })).status).toBe(418);
  expect((await get('picky', '/status/200')).status).toBe(200);
  expect((await get('picky', '/name', { 'x-chaos': 'on' })).status).toBe(200);
});

describe('gRPC', () => {
  const unary = (authority: string) =>
    new Promise<grpc.ServiceError | null>((resolve) => {
      const c = echoClient(caller.outboundPort, authority);
      c.Unary({ message: 'hi' }, (err: grpc.ServiceError | null) => {
        c.close();
        resolve(err);
      });
    });

  test('an abort with grpcStatus answers that status to gRPC callers', async () => {
    const err = await unary('echo:50051');
    expect(err?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(err?.metadata.get('wren-proxy-error')).toEqual(['fault-abort']);
  });

  test('an abort with httpStatus gives gRPC callers the status gRPC maps it to (403: PERMISSION_DENIED)', async () => {
    expect((await unary('echo-http-status:50051'))?.code).toBe(grpc.status.PERMISSION_DENIED);
  });
});
