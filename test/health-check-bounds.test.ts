import http from 'node:http';
import net from 'node:net';
import { systemClock } from '../common/clock.js';
import { HealthChecker } from '../proxy/resilience/health-checker.js';
import { validateResource } from '../manifests/validate.js';
import { parseTrafficPolicyResource } from '../control-plane/translate/k8s-objects.js';
import type { HealthCheckPolicy } from '../contract/model.js';
import { trafficPolicyRefusals } from './helpers/traffic-policy-refusals.js';

/**
 * Health-check bounds (found by adversary4).
 *
 * What a user does: writes a TrafficPolicy with `healthCheck: { kind: tcp, intervalMs: 0 }`
 * (or `timeoutMs: 0`, reading 0 as "unset/none" as `timeouts.requestMs: 0` and
 * `retry.perTryTimeoutMs: 0` mean elsewhere in the same object). The CRD admitted it
 * (`minimum: 0`), the control plane's parser admitted it, and every client sidecar of the
 * service applied it.
 *
 * What happened before the bounds:
 *  - intervalMs 0: HealthChecker schedules the next probe 0 ms after the previous one ends,
 *    so every client sidecar probes every endpoint back to back: thousands of TCP
 *    connections (or HTTP/gRPC probes) per second per client per endpoint, a self-inflicted
 *    flood against the app and a busy sidecar.
 *  - timeoutMs 0: each probe is aborted by a 0 ms timer before it can complete, counted as
 *    a timeout; after unhealthyThreshold probes every endpoint of a perfectly healthy
 *    service is marked unhealthy.
 *  - path `healthz` (no leading slash, a common typo) or one with CR/LF: admitted, and every
 *    probe fails (an invalid request-target / Node refuses the path), so again every
 *    endpoint of a healthy service is marked unhealthy; nothing at apply time says why.
 *
 * What happens now: the value is refused with its field path, in the CRD (integers: minimum 1;
 * strings: a pattern with a non-zero digit) and the parser (> 0), as Envoy's HealthCheck
 * requires `timeout` and `interval` > 0 (core/v3/health_check.proto `[(validate.rules).duration
 * = {required: true gt {}}]`); the path must start with "/" (origin-form, RFC 9112 section
 * 3.2.1) and be visible ASCII (Envoy: HttpHealthCheck.path is a `HTTP_HEADER_VALUE`). The
 * tests below accept either a refusal or harmless behaviour, then check the refusal itself.
 */
const tp = (healthCheck: Record<string, unknown>) => ({
  apiVersion: 'policy.wren.io/v1alpha1',
  kind: 'TrafficPolicy',
  metadata: { name: 'hc', namespace: 'shop' },
  spec: { targetRef: { kind: 'Service', name: 'web' }, policy: { healthCheck } },
});

/** The policy the proxy would run, or the refusal. */
function admitted(healthCheck: Record<string, unknown>): HealthCheckPolicy | 'refused' {
  if (!validateResource(tp(healthCheck)).ok) return 'refused';
  try {
    return parseTrafficPolicyResource(tp(healthCheck), '').policy.healthCheck ?? 'refused';
  } catch {
    return 'refused';
  }
}

let server: net.Server;
let port = 0;
let connections = 0;
let checker: HealthChecker | undefined;
beforeAll(async () => {
  server = net.createServer((s) => {
    connections++;
    s.on('error', () => undefined);
    s.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  port = (server.address() as net.AddressInfo).port;
});
afterEach(() => {
  checker?.close();
  checker = undefined;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

/** Probes an app answering with `handler` for 300 ms under `p`: whether it ends healthy, and every health change seen. */
async function probeFor300ms(p: HealthCheckPolicy, handler: http.RequestListener): Promise<{ healthy: boolean; changes: [string, boolean][] }> {
  const app = http.createServer(handler);
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
  const changes: [string, boolean][] = [];
  checker = new HealthChecker(p, systemClock, { onChange: (k, h) => changes.push([k, h]) });
  checker.update([{ key: 'ep', address: '127.0.0.1', port: (app.address() as net.AddressInfo).port }]);
  await new Promise((r) => setTimeout(r, 300));
  const healthy = checker.isHealthy('ep');
  checker.close();
  app.closeAllConnections();
  await new Promise<void>((r) => app.close(() => r()));
  return { healthy, changes };
}

test('intervalMs 0 is refused, or at least does not probe back to back', async () => {
  const p = admitted({ kind: 'tcp', intervalMs: 0 });
  if (p === 'refused') return;
  connections = 0;
  checker = new HealthChecker(p, systemClock, { onChange: () => undefined });
  checker.update([{ key: 'ep', address: '127.0.0.1', port }]);
  await new Promise((r) => setTimeout(r, 500));
  checker.close();
  // Any positive interval (the default is 10 s) gives a handful of probes in 500 ms; back to back gives hundreds.
  expect(connections).toBeLessThan(20);
});

test('timeoutMs 0 is refused, or at least does not mark a healthy endpoint unhealthy', async () => {
  const p = admitted({ kind: 'http', path: '/healthz', timeoutMs: 0, intervalMs: 10, unhealthyThreshold: 2 });
  if (p === 'refused') return;
  // A healthy app that answers its health check in 2 ms.
  const { healthy, changes } = await probeFor300ms(p, (_req, res) => void setTimeout(() => res.end('ok'), 2));
  expect({ admitted: p, healthy, changes }).toEqual({ admitted: p, healthy: true, changes: [] });
});

test.each(['healthz', '/healthz\r\nx-injected: 1'])('path %j is refused, or probes a healthy app as healthy', async (path) => {
  const p = admitted({ kind: 'http', path, intervalMs: 10, unhealthyThreshold: 2 });
  if (p === 'refused') return;
  const { healthy, changes } = await probeFor300ms(p, (_req, res) => res.end('ok'));
  expect({ admitted: p, healthy, changes }).toEqual({ admitted: p, healthy: true, changes: [] });
});

/** The CRD (what the API server answers) and the control plane's parser both refuse, naming the field. */
const refusals = (policy: Record<string, unknown>) => trafficPolicyRefusals(policy, 'hc');

test.each([
  [{ healthCheck: { kind: 'tcp', intervalMs: '0ms' } }, 'spec.policy.healthCheck.intervalMs', 'must be a duration greater than 0 like "250ms", "1s", "5m", "1h"', 'expected a duration greater than 0, got 0'],
  [{ healthCheck: { kind: 'http', timeoutMs: 0 } }, 'spec.policy.healthCheck.timeoutMs', 'must be >= 1', 'expected a duration greater than 0, got 0'],
  [{ outlierDetection: { intervalMs: '0s' } }, 'spec.policy.outlierDetection.intervalMs', 'must be a duration greater than 0 like "250ms", "1s", "5m", "1h"', 'expected a duration greater than 0, got 0'],
  [{ healthCheck: { kind: 'http', path: 'healthz' } }, 'spec.policy.healthCheck.path', 'must match pattern "^/"', 'an http health check path starts with "/", got "healthz"'],
  [{ healthCheck: { kind: 'http', path: '' } }, 'spec.policy.healthCheck.path', 'must match pattern "^/"', 'an http health check path starts with "/", got ""'],
  [{ healthCheck: { kind: 'http', path: '/healthz\r\nx-injected: 1' } }, 'spec.policy.healthCheck.path', 'must match pattern "^[!-~]*$"', 'expected visible ASCII only (no spaces, CR or LF), got "/healthz\\r\\nx-injected: 1"'],
  [{ healthCheck: { kind: 'grpc', path: '/a b' } }, 'spec.policy.healthCheck.path', 'must match pattern "^[!-~]*$"', 'expected visible ASCII only (no spaces, CR or LF), got "/a b"'],
])('%j: refused by the CRD and the parser at its field path', (policy, path, crdMessage, parserProblem) => {
  expect(refusals(policy)).toEqual({ crd: [{ path, message: crdMessage }], parser: `${path}: ${parserProblem}` });
});

test('positive values, fractions of a millisecond included, are admitted; a gRPC service name needs no "/"', () => {
  expect(refusals({ healthCheck: { kind: 'grpc', path: '/grpc.health.v1.Health', intervalMs: '0.5s', timeoutMs: 1 }, outlierDetection: { intervalMs: '0.5ms' } })).toEqual({ crd: 'admitted', parser: 'admitted' });
  expect(refusals({ healthCheck: { kind: 'grpc', path: 'payments.v1.Payments' } })).toEqual({ crd: 'admitted', parser: 'admitted' });
  expect(refusals({ healthCheck: { kind: 'grpc', path: '' } })).toEqual({ crd: 'admitted', parser: 'admitted' });
  expect(refusals({ healthCheck: { kind: 'http', path: '/healthz?full=1' } })).toEqual({ crd: 'admitted', parser: 'admitted' });
});
