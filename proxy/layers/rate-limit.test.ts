import { FakeClock } from '../../common/clock.js';
import { parseRateLimitPolicy } from '../../contract/parse-ratelimit.js';
import type { ProxyRequest } from '../http/exchange.js';
import { Counter, Registry } from '../metrics/prom.js';
import { RateLimiter } from '../ratelimit/rate-limiter.js';
import { flagsOf } from '../access-log/entry.js';
import { rateLimit } from './rate-limit.js';

/** The layer over a real limiter on a fake clock: what a refused caller sees and what is counted. */
function setup() {
  const clock = new FakeClock(0);
  const registry = new Registry();
  const refused = new Counter({ name: 'wren_rate_limited_total', help: 'h', labelNames: ['scope'], registers: [registry] });
  const limiter = new RateLimiter({ clock, maxIdentityBuckets: 10, onEvict: () => undefined }, [parseRateLimitPolicy({ name: 'demo/rl', total: { requestsPerSecond: 0.25, burst: 1 } }, '')]);
  let reached = 0;
  const svc = rateLimit(limiter, refused)(() => {
    reached++;
    return Promise.resolve({ status: 200, headers: {}, body: null, trailers: () => undefined });
  });
  const request = (headers: Record<string, string> = {}) =>
    ({ method: 'GET', path: '/', headers, body: null, source: { address: '10.0.0.1', port: 1, identity: '' }, targetPort: 8080 }) as unknown as ProxyRequest;
  const count = async () => (await registry.getSingleMetric('wren_rate_limited_total')!.get()).values.find((v) => v.labels.scope === 'total')?.value ?? 0;
  return { svc, request, reached: () => reached, count, clock };
}

test('over the limit: 429 with Retry-After (seconds until a token), flag RL, counted; gRPC callers get RESOURCE_EXHAUSTED', async () => {
  const s = setup();
  expect((await s.svc(s.request())).status).toBe(200);
  const req = s.request();
  const res = await s.svc(req);
  expect(res.status).toBe(429);
  expect(res.headers['retry-after']).toBe('4');
  expect(res.headers['wren-proxy-error']).toBe('rate-limited');
  expect(flagsOf(req, res.status, res.proxyError, false, 0)).toBe('RL');
  s.clock.advance(2500);
  const grpc = await s.svc(s.request({ 'content-type': 'application/grpc' }));
  expect(grpc.status).toBe(200);
  expect(grpc.headers['grpc-status']).toBe('8');
  expect(grpc.headers['retry-after']).toBe('2');
  expect(s.reached()).toBe(1);
  expect(await s.count()).toBe(2);
  s.clock.advance(1500);
  expect((await s.svc(s.request())).status).toBe(200);
});
