import { request as httpRequest } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { grpcHealthApp, healthApp, podRedirect, tcpHealthApp, type GrpcHealthApp, type HealthApp } from './helpers/health-app.js';
import { parseInboundPolicy, parseService } from '../contract/parse.js';
import type { Service } from '../contract/model.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Active health checks under STRICT mTLS (the default), end to end: a client sidecar
 * health-checks a service whose two endpoints sit behind their own sidecars. Each "pod"
 * has its own loopback address and, standing in for its iptables REDIRECT, a listener
 * on the app's port that hands every connection to the pod's sidecar: the app is
 * reachable from outside only through the sidecar, as in a cluster. A plaintext probe
 * would therefore meet the STRICT inbound and be refused; the probes must go over the
 * mesh (mTLS, the client's identity) and the apps' health flips must steer traffic.
 */
const pki = testPki();
const POD_A = '127.0.0.2';
const POD_B = '127.0.0.3';
const HC = { intervalMs: '100ms', timeoutMs: '1s', unhealthyThreshold: 2, healthyThreshold: 1 };

let client: Proxy, sideA: Proxy, sideB: Proxy;
let webA: HealthApp, webB: HealthApp, rpcA: GrpcHealthApp, rpcB: GrpcHealthApp;
let tcpA: Awaited<ReturnType<typeof tcpHealthApp>>, tcpB: Awaited<ReturnType<typeof tcpHealthApp>>;
const redirects: Awaited<ReturnType<typeof podRedirect>>[] = [];

const listenersOn = (address: string) => ({
  listeners: { outbound: { address: '127.0.0.1', port: 0 }, inbound: { address, port: 0 }, admin: { address: '127.0.0.1', port: 0 }, metrics: { address: '127.0.0.1', ipv6Address: '', port: 0 } },
});

function service(name: string, port: number, protocol: string, healthCheck: Record<string, unknown>, endpoints: [string, number, Proxy][]): Service {
  return parseService(
    {
      name,
      namespace: 'default',
      ports: [
        {
          port,
          protocol,
          endpoints: endpoints.map(([address, appPort, side]) => ({ address, port: appPort, proxyPort: side.inboundPort, identity: side.tls.spiffeId })),
        },
      ],
      policy: { healthCheck: { ...HC, ...healthCheck }, outlierDetection: { enabled: false } },
    },
    'test',
  );
}

beforeAll(async () => {
  [webA, webB, rpcA, rpcB, tcpA, tcpB] = await Promise.all([healthApp('a'), healthApp('b'), grpcHealthApp(), grpcHealthApp(), tcpHealthApp(), tcpHealthApp()]);
  // What iptables' SO_ORIGINAL_DST would say for a redirected plaintext connection (PERMISSIVE test below).
  sideA = await startProxy({ pki, serviceAccount: 'backend-a', config: listenersOn(POD_A), inboundOriginalDst: () => ({ address: POD_A, port: webA.port }) });
  sideB = await startProxy({ pki, serviceAccount: 'backend-b', config: listenersOn(POD_B) });
  for (const [pod, side, apps] of [[POD_A, sideA, [webA, rpcA, tcpA]], [POD_B, sideB, [webB, rpcB, tcpB]]] as const)
    for (const app of apps) redirects.push(await podRedirect(pod, app.port, side.inboundPort));
  client = await startProxy({
    pki,
    serviceAccount: 'client',
    services: [
      service('web', 8080, 'http1', { kind: 'http', path: '/healthz' }, [[POD_A, webA.port, sideA], [POD_B, webB.port, sideB]]),
      service('rpc', 9090, 'grpc', { kind: 'grpc', path: 'payments.v1.Payments' }, [[POD_A, rpcA.port, sideA], [POD_B, rpcB.port, sideB]]),
      service('db', 5432, 'opaque', { kind: 'tcp' }, [[POD_A, tcpA.port, sideA], [POD_B, tcpB.port, sideB]]),
    ],
  });
});

afterAll(async () => {
  await client?.close();
  await sideA?.close();
  await sideB?.close();
  await Promise.all([...redirects.map((r) => r.close()), ...[webA, webB, rpcA, rpcB, tcpA, tcpB].map((a) => a?.close())]);
});

const until = async (what: () => boolean | Promise<boolean>, ms = 5000): Promise<boolean> => {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await what()) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return false;
};

async function health(cluster: string, appPort: number): Promise<string> {
  const all = (await (await fetch(`http://127.0.0.1:${client.adminPort}/clusters`)).json()) as Record<string, { endpoints: { port: number; health: string }[] }>;
  return all[cluster].endpoints.find((e) => e.port === appPort)!.health;
}

const metricsOf = async (p: Proxy) => (await fetch(`http://127.0.0.1:${p.adminPort}/metrics`)).text();

/** Sum of the samples of `name` whose labels include every `key="value"` in `labels`. */
function sum(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

function get(extra: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const headers = { host: 'web.default.svc.cluster.local:8080', ...extra };
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path: '/work', headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(`${res.statusCode} ${body}`));
    });
    req.on('error', reject);
    req.end();
  });
}

async function userRequests(n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(await get());
  return out;
}

test('HTTP probes reach each app through its sidecar over mTLS, with the client identity', async () => {
  expect(await until(() => webA.probes.length >= 2 && webB.probes.length >= 2)).toBe(true);
  for (const [app, side] of [[webA, sideA], [webB, sideB]] as const) {
    const p = app.probes[0];
    // The app's sidecar verified the client sidecar's certificate and says so.
    expect(p['x-forwarded-client-cert']).toBe(`By=${side.tls.spiffeId};URI=${client.tls.spiffeId}`);
    expect(p['user-agent']).toBe('wren-health-check');
    // Mesh headers never reach the app.
    expect(Object.keys(p).filter((h) => h.startsWith('wren-'))).toEqual([]);
  }
  expect(await health('web.default:8080', webA.port)).toBe('healthy');
  expect(await health('web.default:8080', webB.port)).toBe('healthy');
  // Nothing went to the pods' app ports in plaintext (what iptables would have redirected).
  expect(redirects.reduce((n, r) => n + r.accepted, 0)).toBe(0);
});

test("flipping one app's health removes it from rotation; flipping back restores it", async () => {
  expect(await until(async () => (await health('web.default:8080', webA.port)) === 'healthy')).toBe(true);
  webA.healthy = false;
  expect(await until(async () => (await health('web.default:8080', webA.port)) === 'health-check-failed')).toBe(true);
  expect(await health('web.default:8080', webB.port)).toBe('healthy');
  const hitsA = webA.userHits;
  const replies = await userRequests(20);
  expect(replies).toEqual(Array(20).fill('200 b'));
  expect(webA.userHits).toBe(hitsA);

  webA.healthy = true;
  expect(await until(async () => (await health('web.default:8080', webA.port)) === 'healthy')).toBe(true);
  const after = await userRequests(20);
  expect(after.every((r) => r === '200 a' || r === '200 b')).toBe(true);
  expect(after).toContain('200 a');
  expect(webA.userHits).toBeGreaterThan(hitsA);
});

test('probes are counted apart from user traffic on both sides', async () => {
  const c = await metricsOf(client);
  const web = { cluster: 'web.default:8080', kind: 'http' };
  expect(sum(c, 'wren_health_check_total', { ...web, transport: 'mtls', result: 'healthy' })).toBeGreaterThan(0);
  expect(sum(c, 'wren_health_check_total', { ...web, transport: 'mtls', result: 'unhealthy' })).toBeGreaterThanOrEqual(2);
  expect(sum(c, 'wren_health_check_total', { transport: 'plaintext' })).toBe(0);
  // The client's request metrics hold exactly the 40 user requests of the previous test.
  expect(sum(c, 'istio_requests_total', { reporter: 'source', destination_service: 'web.default.svc.cluster.local' })).toBe(40);

  const a = await metricsOf(sideA);
  expect(sum(a, 'wren_inbound_health_checks_total', { kind: 'http', response_code: '200' })).toBeGreaterThan(0);
  expect(sum(a, 'wren_inbound_health_checks_total', { kind: 'http', response_code: '503' })).toBeGreaterThanOrEqual(2);
  // Inbound request metrics on pod A count only the user requests its app served.
  expect(sum(a, 'istio_requests_total', { reporter: 'destination' })).toBe(webA.userHits);
  expect(sum(a, 'wren_proxy_errors_total', { code: 'plaintext-refused' })).toBe(0);
});

test('gRPC probes: grpc.health.v1 Check over the mesh; NOT_SERVING takes the endpoint out, SERVING brings it back', async () => {
  expect(await until(() => rpcA.checks.length >= 1 && rpcB.checks.length >= 1)).toBe(true);
  expect(rpcA.checks[0]).toEqual({ service: 'payments.v1.Payments', xfcc: `By=${sideA.tls.spiffeId};URI=${client.tls.spiffeId}` });
  expect(await health('rpc.default:9090', rpcA.port)).toBe('healthy');
  rpcA.status = 'NOT_SERVING';
  expect(await until(async () => (await health('rpc.default:9090', rpcA.port)) === 'health-check-failed')).toBe(true);
  expect(await health('rpc.default:9090', rpcB.port)).toBe('healthy');
  rpcA.status = 'SERVING';
  expect(await until(async () => (await health('rpc.default:9090', rpcA.port)) === 'healthy')).toBe(true);
  const c = await metricsOf(client);
  expect(sum(c, 'wren_health_check_total', { cluster: 'rpc.default:9090', kind: 'grpc', transport: 'mtls', result: 'unhealthy' })).toBeGreaterThanOrEqual(2);
  expect(sum(await metricsOf(sideA), 'wren_inbound_health_checks_total', { kind: 'grpc' })).toBeGreaterThan(0);
});

test("TCP probes: a CONNECT through the peer's sidecar succeeds only while the app's port accepts", async () => {
  expect(await until(() => tcpA.accepted >= 1 && tcpB.accepted >= 1)).toBe(true);
  expect(await health('db.default:5432', tcpA.port)).toBe('healthy');
  const port = tcpA.port;
  await tcpA.close();
  expect(await until(async () => (await health('db.default:5432', port)) === 'health-check-failed')).toBe(true);
  expect(await health('db.default:5432', tcpB.port)).toBe('healthy');
  // The app comes back on the same port.
  const again = createNetServer((s) => s.destroy());
  await new Promise<void>((r) => again.listen(port, '127.0.0.1', () => r()));
  try {
    expect(await until(async () => (await health('db.default:5432', port)) === 'healthy')).toBe(true);
  } finally {
    await new Promise<void>((r) => again.close(() => r()));
  }
  const a = await metricsOf(sideA);
  expect(sum(a, 'wren_inbound_health_checks_total', { kind: 'tcp', response_code: '502' })).toBeGreaterThanOrEqual(2);
  // Probes are not opaque TCP traffic.
  expect(sum(a, 'istio_tcp_connections_opened_total')).toBe(0);
});

test("probes pass the peer's authorization like any request from the client's identity", async () => {
  expect(await until(async () => (await health('web.default:8080', webB.port)) === 'healthy')).toBe(true);
  const policy = (action: 'DENY' | 'ALLOW') =>
    parseInboundPolicy(
      { authorizationPolicies: [{ name: 'no-client', action, rules: [{ from: [{ source: { principals: [client.tls.spiffeId] } }] }] }] },
      'test',
    );
  sideB.applySnapshot({ ...sideB.snapshot, version: 'deny', inboundPolicy: policy('DENY') });
  expect(await until(async () => (await health('web.default:8080', webB.port)) === 'health-check-failed')).toBe(true);
  expect(sum(await metricsOf(sideB), 'wren_inbound_health_checks_total', { kind: 'http', response_code: '403' })).toBeGreaterThanOrEqual(2);
  sideB.applySnapshot({ ...sideB.snapshot, version: 'allow', inboundPolicy: policy('ALLOW') });
  expect(await until(async () => (await health('web.default:8080', webB.port)) === 'healthy')).toBe(true);
});

test('an app cannot pass its requests off as health checks: the header is stripped at its sidecar', async () => {
  const inboundCounts = async () => sum(await metricsOf(sideA), 'istio_requests_total', { reporter: 'destination' }) + sum(await metricsOf(sideB), 'istio_requests_total', { reporter: 'destination' });
  const before = { requests: await inboundCounts(), hits: webA.userHits + webB.userHits };
  for (let i = 0; i < 10; i++) expect(await get({ 'wren-health-check': '1' })).toMatch(/^200 [ab]$/);
  expect(webA.userHits + webB.userHits - before.hits).toBe(10);
  // Counted as the user requests they are, on the serving side.
  expect((await inboundCounts()) - before.requests).toBe(10);
});

test('on a PERMISSIVE port a plaintext caller cannot mark its requests as health checks either', async () => {
  sideA.applySnapshot({ ...sideA.snapshot, version: 'permissive', inboundPolicy: parseInboundPolicy({ mtls: { mode: 'PERMISSIVE' } }, 'test') });
  const m = async () => ({ plain: sum(await metricsOf(sideA), 'istio_requests_total', { reporter: 'destination', connection_security_policy: 'none' }) });
  const before = await m();
  const hits = webA.userHits;
  // Straight to the pod's app port: the redirect hands it to the sidecar in plaintext.
  const reply = await new Promise<string>((resolve, reject) => {
    const req = httpRequest({ host: POD_A, port: webA.port, path: '/work', headers: { 'wren-health-check': '1' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(String(res.statusCode)));
    });
    req.on('error', reject);
    req.end();
  });
  expect(reply).toBe('200');
  expect(webA.userHits).toBe(hits + 1);
  const after = await m();
  // Counted as the plaintext user request it is.
  expect(after.plain - before.plain).toBe(1);
});
