import * as grpc from '@grpc/grpc-js';
import { connect as netConnect } from 'node:net';
import { request as httpRequest } from 'node:http';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeApp, fakeTcpApp, type FakeApp } from './helpers/fake-app.js';
import { fakeGrpc, echoClient, type EchoClient, type FakeGrpc } from './helpers/fake-grpc.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Authorization between real sidecars over mTLS: one server proxy with static policies,
 * three callers with different identities (demo/frontend, sandbox/tester, ops/operator).
 */
const pki = testPki();
let app: FakeApp, tcpApp: FakeApp, backend: FakeGrpc;
let server: Proxy, frontend: Proxy, tester: Proxy, operator: Proxy;
const serverLogs: string[] = [];
const TCP_IP = '10.96.0.30';
/** Outbound connections carry an original destination (the db ClusterIP) only while the TCP tests dial. */
let dialingTcp = false;

beforeAll(async () => {
  [app, tcpApp, backend] = await Promise.all([fakeApp('checkout'), fakeTcpApp('hello from tcp\n'), fakeGrpc()]);
  const policy = {
    authorizationPolicies: [
      {
        name: 'demo/allow-frontend',
        action: 'ALLOW',
        rules: [
          {
            from: [{ source: { principals: ['spiffe://cluster.local/ns/demo/sa/frontend'] } }],
            to: [{ operation: { ports: [String(app.port)], methods: ['GET', 'POST'], paths: ['/name', '/echo', '/api/*'], notPaths: ['/api/admin/*'] } }],
          },
          // Istio's short principal form; gRPC paths are /package.Service/Method.
          { from: [{ source: { principals: ['cluster.local/ns/demo/sa/frontend'] } }], to: [{ operation: { ports: [String(backend.port)], paths: ['/wren.test.Echo/*'] } }] },
          { from: [{ source: { principals: ['*/sa/frontend'] } }], to: [{ operation: { ports: [String(tcpApp.port)] } }] },
        ],
      },
      { name: 'demo/allow-ops', action: 'ALLOW', rules: [{ from: [{ source: { namespaces: ['ops'] } }] }] },
      { name: 'demo/deny-debug', action: 'DENY', rules: [{ from: [{ source: { notNamespaces: ['demo'] } }], when: [{ key: 'request.headers[x-debug]', values: ['1', 'true'] }] }] },
      { name: 'demo/audit-names', action: 'AUDIT', rules: [{ to: [{ operation: { paths: ['/name'] } }] }] },
    ],
  };
  server = await startProxy({ pki, namespace: 'demo', serviceAccount: 'checkout', config: { policy }, logs: serverLogs });
  const services = [
    meshService('checkout', 80, [{ appPort: app.port, proxy: server }]),
    meshService('echo', 50051, [{ appPort: backend.port, proxy: server }], { protocol: 'grpc' }),
    meshService('db', 7000, [{ appPort: tcpApp.port, proxy: server }], { protocol: 'opaque', clusterIPs: [TCP_IP] }),
  ];
  const caller = (namespace: string, serviceAccount: string) =>
    startProxy({ pki, namespace, serviceAccount, services, originalDst: () => (dialingTcp ? { address: TCP_IP, port: 7000 } : undefined) });
  [frontend, tester, operator] = await Promise.all([caller('demo', 'frontend'), caller('sandbox', 'tester'), caller('ops', 'operator')]);
});

afterAll(async () => {
  await Promise.all([frontend, tester, operator, server].map((p) => p.close()));
  await Promise.all([app.close(), tcpApp.close(), backend.close()]);
});

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}
function call(via: Proxy, method: string, path: string, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: via.outboundPort, method, path, headers: { host: 'checkout', ...headers } }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(method === 'POST' ? 'payload' : undefined);
  });
}

const forbidden = (reason: string) => ({
  status: 403,
  headers: expect.objectContaining({ 'wren-proxy-error': 'forbidden', 'wren-authz-reason': reason }),
  body: `denied by authorization policy: ${reason}\n`,
});

async function metric(re: RegExp): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${server.adminPort}/metrics`)).text();
  return Number(re.exec(text)?.[1] ?? 0);
}

describe('HTTP', () => {
  test('the allowed principal may use its methods and paths', async () => {
    expect(await call(frontend, 'GET', '/name')).toMatchObject({ status: 200, body: 'checkout' });
    expect(await call(frontend, 'POST', '/echo')).toMatchObject({ status: 200 });
  });

  test('other methods and excluded paths are refused with 403 and the reason', async () => {
    const hits = app.hits.count;
    expect(await call(frontend, 'DELETE', '/name')).toMatchObject(forbidden('no-allow-policy-matched'));
    expect(await call(frontend, 'GET', '/api/admin/users')).toMatchObject(forbidden('no-allow-policy-matched'));
    expect(await call(frontend, 'GET', '/status/204')).toMatchObject(forbidden('no-allow-policy-matched'));
    expect(app.hits.count).toBe(hits);
  });

  test('a lower-case method is refused with 400 (an app that upper-cases would serve it as the method the policy refused), and the proxy keeps serving', async () => {
    const hits = app.hits.count;
    const raw = await new Promise<string>((resolve, reject) => {
      let got = '';
      const s = netConnect(frontend.outboundPort, '127.0.0.1', () => s.write('delete /name HTTP/1.1\r\nHost: checkout\r\n\r\n'));
      s.on('data', (d: Buffer) => (got += d.toString('latin1')));
      s.on('end', () => resolve(got));
      s.on('error', reject);
    });
    expect(raw).toMatch(/^HTTP\/1\.1 400 /);
    expect(raw).toContain('lower-case');
    expect(app.hits.count).toBe(hits);
    expect(await call(frontend, 'GET', '/name')).toMatchObject({ status: 200, body: 'checkout' });
  });

  test('an identity no ALLOW policy names is refused (default deny once any ALLOW policy exists)', async () => {
    const hits = app.hits.count;
    expect(await call(tester, 'GET', '/name')).toMatchObject(forbidden('no-allow-policy-matched'));
    expect(app.hits.count).toBe(hits);
  });

  test('a namespace-wide ALLOW admits any path; DENY is evaluated first', async () => {
    expect(await call(operator, 'GET', '/status/204')).toMatchObject({ status: 204 });
    expect(await call(operator, 'GET', '/name', { 'x-debug': 'true' })).toMatchObject(forbidden('deny-policy demo/deny-debug'));
    // The DENY's source (notNamespaces demo) does not match the frontend.
    expect(await call(frontend, 'GET', '/name', { 'x-debug': 'true' })).toMatchObject({ status: 200 });
    expect(await metric(/wren_authz_decisions_total\{action="DENY",decision="deny",policy="demo\/deny-debug"\} (\d+)/)).toBe(1);
  });

  test('AUDIT matches are logged and counted and change nothing', async () => {
    const before = await metric(/wren_authz_decisions_total\{action="AUDIT",decision="audit",policy="demo\/audit-names"\} (\d+)/);
    expect(await call(operator, 'GET', '/name')).toMatchObject({ status: 200 });
    expect(await metric(/wren_authz_decisions_total\{action="AUDIT",decision="audit",policy="demo\/audit-names"\} (\d+)/)).toBe(before + 1);
    const audit = serverLogs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'authorization audit');
    expect(audit.at(-1)).toMatchObject({ level: 'info', policy: 'demo/audit-names', allowed: true, principal: operator.tls.spiffeId, path: '/name', method: 'GET' });
  });

  test('denials are logged at info with the policy and reason, never with header values', async () => {
    await call(tester, 'GET', '/name?token=qs-secret', { authorization: 'Bearer s3cr3t-value', 'x-debug': 'true' });
    const lines = serverLogs.filter((l) => l.includes('denied by authorization policy'));
    const last = JSON.parse(lines.at(-1)!) as Record<string, unknown>;
    expect(last).toMatchObject({ level: 'info', code: 'FORBIDDEN', reason: 'deny-policy demo/deny-debug', policy: 'demo/deny-debug', principal: tester.tls.spiffeId, path: '/name' });
    expect(serverLogs.join('\n')).not.toMatch(/s3cr3t-value|qs-secret/);
  });
});

describe('gRPC', () => {
  let fromFrontend: EchoClient, fromTester: EchoClient;
  beforeAll(() => {
    fromFrontend = echoClient(frontend.outboundPort, 'echo:50051');
    fromTester = echoClient(tester.outboundPort, 'echo:50051');
  });
  afterAll(() => {
    fromFrontend.close();
    fromTester.close();
  });
  const unary = (c: EchoClient) =>
    new Promise<{ err: grpc.ServiceError | null; res: { message: string } | undefined }>((resolve) => c.Unary({ message: 'hi' }, (err: grpc.ServiceError | null, res: never) => resolve({ err, res })));

  test('allowed caller: OK; denied caller: PERMISSION_DENIED through a real grpc-js client', async () => {
    const ok = await unary(fromFrontend);
    expect(ok.err).toBeNull();
    expect(ok.res?.message).toBe('hi');
    const denied = await unary(fromTester);
    expect(denied.err?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(denied.err?.details).toBe('denied by authorization policy: no-allow-policy-matched');
    expect(denied.err?.metadata.get('wren-authz-reason')).toEqual(['no-allow-policy-matched']);
  });
});

describe('TCP tunnels', () => {
  const open = (via: Proxy) =>
    new Promise<string>((resolve) => {
      const s = netConnect(via.outboundPort, '127.0.0.1');
      let b = '';
      s.on('data', (d) => {
        b += d.toString();
        s.end();
      });
      s.on('error', () => undefined);
      s.on('close', () => resolve(b));
    });

  beforeAll(() => (dialingTcp = true));
  afterAll(() => (dialingTcp = false));

  test('the allowed identity gets its tunnel; a denied one is closed before any byte', async () => {
    expect(await open(frontend)).toBe('hello from tcp\n');
    const hits = tcpApp.hits.count;
    expect(await open(tester)).toBe('');
    expect(tcpApp.hits.count).toBe(hits);
    expect(await metric(/wren_authz_decisions_total\{action="ALLOW",decision="allow",policy="demo\/allow-frontend"\} (\d+)/)).toBeGreaterThan(0);
  });
});
