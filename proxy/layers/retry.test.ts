import { FakeClock } from '../../common/clock.js';
import { parseService } from '../../contract/parse.js';
import type { RetryCause } from '../../contract/discovery.js';
import type { ProxyRequest, ProxyResponse } from '../http/exchange.js';
import { ProxyError } from '../errors/proxy-error.js';
import { Cluster } from '../resilience/cluster.js';
import { seededRandom } from '../../common/clock.js';
import { attachState, stateOf } from './request-state.js';
import { retry } from './retry.js';

/** The retry layer over a real Cluster (budget, maxRetries), a scripted upstream and an observer that keeps what it is told. */
function setup(retryPolicy: Record<string, unknown>, script: (number | ProxyError)[]) {
  const clock = new FakeClock(0);
  const service = parseService({ name: 'api', namespace: 'shop', ports: [{ port: 80 }], policy: { retry: { backoffBaseMs: 0, backoffMaxMs: 0, ...retryPolicy } } }, 'svc');
  const cluster = new Cluster({ name: 'api.shop:80', policy: service.policy, clock, random: seededRandom(1), activeHealthChecks: false });
  const seen: { req: ProxyRequest; attempts: number; causes: RetryCause[]; result: string; stopped: string }[] = [];
  let calls = 0;
  const svc = retry(clock, undefined, (req, attempts, causes, result, stopped) => seen.push({ req, attempts, causes: [...causes], result, stopped }))(() => {
    const step = script[Math.min(calls++, script.length - 1)];
    if (step instanceof ProxyError) return Promise.reject(step);
    return Promise.resolve({ status: step, headers: {}, body: null, trailers: () => undefined } as ProxyResponse);
  });
  const request = (method = 'GET') => {
    const req = { method, path: '/orders?id=1', headers: {}, body: null, signal: new AbortController().signal, route: { service, port: service.ports[0] }, routeName: 'shop.api-route.rule-0' } as unknown as ProxyRequest;
    const adm = cluster.admit('request');
    if (adm instanceof ProxyError) throw adm;
    attachState(req, cluster);
    return req;
  };
  return { svc, request, seen, calls: () => calls };
}

describe('retry layer: the observer (the dashboard\'s "why" view of retries)', () => {
  test('a request retried once after a 503 and then served: attempts, the cause of the retry, the result', async () => {
    const s = setup({ attempts: 2, retryOn: ['5xx'] }, [503, 200]);
    const req = s.request();
    expect((await s.svc(req)).status).toBe(200);
    expect(s.calls()).toBe(2);
    expect(s.seen).toEqual([{ req, attempts: 2, causes: [{ outcome: 'http-503', retryOn: '5xx' }], result: 'success', stopped: '' }]);
  });

  test('every retry has its cause, in order; out of attempts: the last outcome and attempts-exhausted', async () => {
    const s = setup({ attempts: 2, retryOn: ['retriable-status-codes', 'gateway-error'], retriableStatusCodes: [500] }, [500, 502, 504]);
    expect((await s.svc(s.request())).status).toBe(504);
    expect(s.seen.map(({ attempts, causes, result, stopped }) => ({ attempts, causes, result, stopped }))).toEqual([
      { attempts: 3, causes: [{ outcome: 'http-500', retryOn: 'retriable-status-codes' }, { outcome: 'http-502', retryOn: 'gateway-error' }], result: 'http-504', stopped: 'attempts-exhausted' },
    ]);
  });

  test('a connection failure is retried whatever the policy (always-safe), and says so', async () => {
    const s = setup({ attempts: 1 }, [new ProxyError('CONNECT_FAILED', 'refused'), 200]);
    expect((await s.svc(s.request())).status).toBe(200);
    expect(s.seen).toHaveLength(1);
    expect(s.seen[0].causes).toEqual([{ outcome: expect.any(String), retryOn: 'always-safe' }]);
    expect(s.seen[0].result).toBe('success');
  });

  test('a retry the budget refuses is reported: the failure that asked for it and budget-exhausted', async () => {
    const s = setup({ attempts: 3, retryOn: ['5xx'], budgetRatio: 0, budgetMinPerSecond: 0 }, [503, 200]);
    expect((await s.svc(s.request())).status).toBe(503);
    expect(s.calls()).toBe(1);
    expect(s.seen.map(({ attempts, causes, result, stopped }) => ({ attempts, causes, result, stopped }))).toEqual([{ attempts: 1, causes: [], result: 'http-503', stopped: 'budget-exhausted' }]);
  });

  test('not called for a request that was not retried: a success, or a failure the policy does not retry', async () => {
    const s = setup({ attempts: 2, retryOn: ['5xx'] }, [200]);
    expect((await s.svc(s.request())).status).toBe(200);
    const t = setup({ attempts: 2, retryOn: ['retriable-status-codes'], retriableStatusCodes: [409] }, [503]);
    expect((await t.svc(t.request())).status).toBe(503);
    const u = setup({ attempts: 2, retryOn: ['5xx'] }, [503, 200]);
    expect((await u.svc(u.request('POST'))).status).toBe(503); // a POST that reached the app is not retried by default
    expect(u.seen).toEqual([]);
    expect(s.seen).toEqual([]);
    expect(t.seen).toEqual([]);
    expect(t.calls()).toBe(1);
  });

  test('an observer that throws does not fail the request', async () => {
    const clock = new FakeClock(0);
    const service = parseService({ name: 'api', namespace: 'shop', ports: [{ port: 80 }], policy: { retry: { attempts: 1, retryOn: ['5xx'], backoffBaseMs: 0, backoffMaxMs: 0 } } }, 'svc');
    const cluster = new Cluster({ name: 'api.shop:80', policy: service.policy, clock, random: seededRandom(1), activeHealthChecks: false });
    let n = 0;
    const svc = retry(clock, undefined, () => {
      throw new Error('observer bug');
    })(() => Promise.resolve({ status: n++ === 0 ? 503 : 200, headers: {}, body: null, trailers: () => undefined } as ProxyResponse));
    const req = { method: 'GET', path: '/', headers: {}, body: null, signal: new AbortController().signal, route: { service, port: service.ports[0] } } as unknown as ProxyRequest;
    cluster.admit('request');
    attachState(req, cluster);
    expect((await svc(req)).status).toBe(200);
  });
});

/** The retry layer over a real Cluster and a scripted upstream whose answers carry headers, from the endpoint the script names. */
function scripted(retryPolicy: Record<string, unknown>, script: { status: number; headers?: Record<string, string>; meshed?: boolean }[], clock = new FakeClock(0)) {
  const service = parseService({ name: 'api', namespace: 'shop', ports: [{ port: 80 }], policy: { retry: { backoffBaseMs: 0, backoffMaxMs: 0, ...retryPolicy } } }, 'svc');
  const cluster = new Cluster({ name: 'api.shop:80', policy: service.policy, clock, random: seededRandom(1), activeHealthChecks: false });
  const meshed = { address: '10.0.0.2', port: 8080, proxyPort: 15006, identity: 'spiffe://td/ns/shop/sa/api', weight: 1, zone: '', ready: true };
  const sent: ProxyRequest[] = [];
  const causes: RetryCause[][] = [];
  const svc = retry(clock, undefined, (_r, _a, c) => void causes.push([...c]))((req) => {
    const step = script[Math.min(sent.length, script.length - 1)];
    sent.push(req);
    // pick-endpoint's part: the attempt's endpoint in the request state.
    stateOf(req)!.endpoint = step.meshed === false ? { ...meshed, proxyPort: null, identity: '' } : meshed;
    return Promise.resolve({ status: step.status, headers: { ...step.headers }, body: null, trailers: () => undefined } as ProxyResponse);
  });
  const request = (method = 'GET', headers: Record<string, string> = {}) => {
    const req = { method, path: '/', headers, body: null, signal: new AbortController().signal, route: { service, port: service.ports[0] } } as unknown as ProxyRequest;
    cluster.admit('request');
    attachState(req, cluster);
    return req;
  };
  return { svc, request, sent, causes, clock };
}

describe('retry layer: what a response asks for', () => {
  const refused = { status: 502, headers: { 'wren-proxy-error': 'connect-refused' } };

  test("a meshed endpoint's sidecar that could not connect to its app: retried with the default policy, a POST too (its app never saw it)", async () => {
    const s = scripted({}, [refused, { status: 200 }]);
    expect((await s.svc(s.request('POST'))).status).toBe(200);
    expect(s.sent).toHaveLength(2);
    expect(s.causes).toEqual([[{ outcome: 'connect-refused', retryOn: 'always-safe' }]]);
  });

  test('the same answer from an unmeshed endpoint is its app\'s 502: not retried', async () => {
    const s = scripted({}, [{ ...refused, meshed: false }, { status: 200 }]);
    expect((await s.svc(s.request('POST'))).status).toBe(502);
    expect(s.sent).toHaveLength(1);
  });

  test('a 4xx in retriableStatusCodes is retried, and says why; a 200 is the answer at once', async () => {
    const s = scripted({ retryOn: ['retriable-status-codes'], retriableStatusCodes: [409] }, [{ status: 409 }, { status: 409 }, { status: 200 }]);
    expect((await s.svc(s.request('PUT'))).status).toBe(200);
    expect(s.sent).toHaveLength(3);
    expect(s.causes).toEqual([[{ outcome: 'http-409', retryOn: 'retriable-status-codes' }, { outcome: 'http-409', retryOn: 'retriable-status-codes' }]]);
    const t = scripted({ retryOn: ['retriable-status-codes'], retriableStatusCodes: [409] }, [{ status: 200 }]);
    expect((await t.svc(t.request())).status).toBe(200);
    expect([t.sent.length, t.causes]).toEqual([1, []]);
    // Out of attempts, the last 409 goes back as the upstream sent it.
    const u = scripted({ retryOn: ['retriable-status-codes'], retriableStatusCodes: [409], attempts: 1 }, [{ status: 409 }]);
    expect((await u.svc(u.request())).status).toBe(409);
    expect(u.sent).toHaveLength(2);
  });

  test('gRPC RESOURCE_EXHAUSTED and CANCELLED (below 500 once mapped) are retried when retryOn names them', async () => {
    const grpc = { 'content-type': 'application/grpc' };
    for (const [code, name] of [['8', 'resource-exhausted'], ['1', 'cancelled']]) {
      const s = scripted({ retryOn: [name] }, [{ status: 200, headers: { ...grpc, 'grpc-status': code } }, { status: 200, headers: { ...grpc, 'grpc-status': '0' } }]);
      const res = await s.svc(s.request('POST', grpc));
      expect([name, res.headers['grpc-status'], s.sent.length]).toEqual([name, '0', 2]);
    }
  });

  test('attempts 0: nothing is retried, not even a connect failure', async () => {
    const s = scripted({ attempts: 0, retryOn: ['5xx'] }, [refused, { status: 200 }]);
    expect((await s.svc(s.request())).status).toBe(502);
    expect(s.sent).toHaveLength(1);
  });
});

describe('retry layer: the gRPC deadline it propagates', () => {
  const grpc = { 'content-type': 'application/grpc' };

  test('the time left is sent in grpc-timeout; under 1 ms left the attempt fails here with DEADLINE_EXCEEDED, never sent as "1m"', async () => {
    const s = scripted({}, [{ status: 200, headers: { ...grpc, 'grpc-status': '0' } }]);
    const req = s.request('POST', grpc);
    stateOf(req)!.deadlineAt = 5;
    await s.svc(req);
    expect(s.sent[0].headers['grpc-timeout']).toBe('5m');
    const late = s.request('POST', grpc);
    stateOf(late)!.deadlineAt = 0.6;
    await expect(s.svc(late)).rejects.toMatchObject({ code: 'DEADLINE_EXCEEDED' });
    expect(s.sent).toHaveLength(1);
  });

  test('a retry whose backoff used up the deadline is not sent; a request timeout keeps its own code', async () => {
    const clock = new FakeClock(0);
    const s = scripted({ retryOn: ['unavailable'], backoffBaseMs: 50, backoffMaxMs: 50 }, [{ status: 200, headers: { ...grpc, 'grpc-status': '14' } }], clock);
    const req = s.request('POST', grpc);
    const st = stateOf(req)!;
    st.deadlineAt = 1.5;
    st.deadlineCode = 'REQUEST_TIMEOUT';
    const p = s.svc(req);
    const settled = expect(p).rejects.toMatchObject({ code: 'REQUEST_TIMEOUT' });
    for (let i = 0; i < 10 && s.sent.length === 1; i++) {
      await Promise.resolve();
      clock.advance(10);
    }
    await settled;
    expect(s.sent).toHaveLength(1);
    expect(s.sent[0].headers['grpc-timeout']).toBe('1m');
  });
});
