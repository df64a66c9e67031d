import { FakeClock } from '../../common/clock.js';
import { parseService } from '../../contract/parse.js';
import type { ProxyRequest, ProxyResponse } from '../http/exchange.js';
import { Registry, Counter } from '../metrics/prom.js';
import { errorsToResponse } from './errors-to-response.js';
import { createLogger } from '../../common/logger.js';
import { flagsOf } from '../access-log/entry.js';
import { fault } from './fault.js';

/** The fault layer with a fake clock and scripted draws: what is delayed, aborted, counted and flagged. */
function setup(faultSpec: Record<string, unknown>, draws: number[]) {
  const clock = new FakeClock(0);
  const registry = new Registry();
  const injected = new Counter({ name: 'wren_faults_injected_total', help: 'h', labelNames: ['kind'], registers: [registry] });
  let i = 0;
  const random = () => draws[i++ % draws.length]!;
  const service = parseService({ name: 'web', ports: [{ port: 80 }], policy: { fault: faultSpec } }, 'svc');
  let reached = 0;
  const logs: string[] = [];
  const svc = errorsToResponse(createLogger({ sink: (l) => logs.push(l) }), 'outbound')(
    fault({ clock, random, injected })(() => {
      reached++;
      return Promise.resolve({ status: 200, headers: {}, body: null, trailers: () => undefined });
    }),
  );
  const ctl = new AbortController();
  const request = (o: { path?: string; headers?: Record<string, string> } = {}) =>
    ({ method: 'GET', path: o.path ?? '/', headers: o.headers ?? {}, body: null, signal: ctl.signal, route: { service, port: service.ports[0] } }) as unknown as ProxyRequest;
  const count = async (kind: string) => (await registry.getSingleMetric('wren_faults_injected_total')!.get()).values.find((v) => v.labels.kind === kind)?.value ?? 0;
  return { clock, svc, request, reached: () => reached, count, ctl, logs };
}

const settle = () => new Promise((r) => setImmediate(r));

describe('fault layer', () => {
  test('abort with an HTTP status: that status for HTTP callers, flag FI, the app never reached, counted', async () => {
    const s = setup({ abort: { httpStatus: 418, percentage: 50 } }, [0.3]);
    const req = s.request();
    const res = await s.svc(req);
    expect(res.status).toBe(418);
    expect(res.headers['wren-proxy-error']).toBe('fault-abort');
    expect(flagsOf(req, res.status, res.proxyError, false, 0)).toBe('FI');
    expect(s.reached()).toBe(0);
    expect(await s.count('abort')).toBe(1);
    // Injected on purpose: not a failure to log per request.
    expect(s.logs).toEqual([]);
  });

  test('the draw decides: at or above the percentage the request goes through', async () => {
    const s = setup({ abort: { httpStatus: 503, percentage: 50 } }, [0.5]);
    expect((await s.svc(s.request())).status).toBe(200);
    expect(s.reached()).toBe(1);
    expect(await s.count('abort')).toBe(0);
  });

  test('abort with an HTTP status to a gRPC caller: trailers-only with the grpc-status gRPC maps it to', async () => {
    const s = setup({ abort: { httpStatus: 503 } }, [0]);
    const res = await s.svc(s.request({ headers: { 'content-type': 'application/grpc' } }));
    expect(res.status).toBe(200);
    expect(res.headers['grpc-status']).toBe('14');
  });

  test('abort with a gRPC status: that grpc-status for gRPC callers, Envoy\'s HTTP mapping for HTTP callers', async () => {
    const s = setup({ abort: { grpcStatus: 'RESOURCE_EXHAUSTED' } }, [0]);
    expect((await s.svc(s.request({ headers: { 'content-type': 'application/grpc+proto' } }))).headers['grpc-status']).toBe('8');
    expect((await s.svc(s.request())).status).toBe(429);
  });

  test('delay: held on the injected clock for fixedDelay, then forwarded, flag DI', async () => {
    const s = setup({ delay: { fixedDelay: '2s', percentage: 10 } }, [0.05]);
    const req = s.request();
    let res: ProxyResponse | undefined;
    void s.svc(req).then((r) => (res = r));
    await settle();
    expect(s.reached()).toBe(0);
    s.clock.advance(1999);
    await settle();
    expect(s.reached()).toBe(0);
    s.clock.advance(1);
    await settle();
    expect(s.reached()).toBe(1);
    expect(res!.status).toBe(200);
    expect(flagsOf(req, 200, undefined, false, 0)).toBe('DI');
    expect(await s.count('delay')).toBe(1);
  });

  test('delay and abort drawn together: delayed first, then aborted (DI,FI)', async () => {
    const s = setup({ delay: { fixedDelay: '100ms' }, abort: { httpStatus: 500 } }, [0]);
    const req = s.request();
    const p = s.svc(req);
    await settle();
    s.clock.advance(100);
    const res = await p;
    expect(res.status).toBe(500);
    expect(flagsOf(req, res.status, res.proxyError, false, 0)).toBe('DI,FI');
    expect(s.reached()).toBe(0);
  });

  test('a client that goes away during the delay ends it (client-cancelled), the app is not reached', async () => {
    const s = setup({ delay: { fixedDelay: '5s' } }, [0]);
    const p = s.svc(s.request());
    await settle();
    s.ctl.abort();
    expect((await p).headers['wren-proxy-error']).toBe('client-cancelled');
    expect(s.clock.pending()).toBe(0);
    expect(s.reached()).toBe(0);
  });

  test('match: only requests under the path prefix with the headers get the fault', async () => {
    const s = setup({ abort: { httpStatus: 503 }, match: { pathPrefix: '/api', headers: { 'X-Chaos': 'on' } } }, [0]);
    expect((await s.svc(s.request({ path: '/api/x', headers: { 'x-chaos': 'on' } }))).status).toBe(503);
    expect((await s.svc(s.request({ path: '/api/x' }))).status).toBe(200);
    expect((await s.svc(s.request({ path: '/other', headers: { 'x-chaos': 'on' } }))).status).toBe(200);
  });
});
