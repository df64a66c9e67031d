import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { connect as h2connect } from 'node:http2';
import { request as httpRequest } from 'node:http';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { fakeApp, fakeH2cApp, fakeTcpApp, type FakeApp } from './helpers/fake-app.js';
import { parseInboundPolicy } from '../contract/parse.js';
import { parseProxyConfig } from '../proxy/config/proxy-config.js';
import type { Proxy } from '../proxy/proxy.js';
import { metric } from './helpers/admin-metric.js';

/**
 * Inbound mTLS modes on real sockets: STRICT (the default) refuses plaintext and foreign
 * certificates; PERMISSIVE takes mTLS and plaintext (HTTP/1.1, h2c, opaque TCP) on one
 * port; port-level overrides follow the connection's original destination (injected:
 * there is no iptables here, the netns test covers the real redirect).
 */
const pki = testPki();
const foreign = testPki();
let appA: FakeApp, appB: FakeApp, h2App: FakeApp, tcpApp: FakeApp;
let strict: Proxy, permissive: Proxy, mixed: Proxy;
/** The "original destination" port of the next inbound connections (null: not redirected). */
let redirect: number | null = null;
const inboundOriginalDst = () => (redirect === null ? undefined : { address: '127.0.0.1', port: redirect });

beforeAll(async () => {
  [appA, appB, h2App, tcpApp] = await Promise.all([fakeApp('a'), fakeApp('b'), fakeH2cApp('h2'), fakeTcpApp('hello from tcp\n')]);
  const common = { pki, inboundOriginalDst };
  [strict, permissive, mixed] = await Promise.all([
    startProxy({ ...common, serviceAccount: 'strict' }),
    startProxy({
      ...common,
      serviceAccount: 'permissive',
      config: { policy: { mtls: { mode: 'PERMISSIVE' } }, protocol: { detectTimeoutMs: 300, opaquePorts: [tcpApp.port] } },
    }),
    startProxy({ ...common, serviceAccount: 'mixed', config: { policy: { mtls: { mode: 'STRICT' }, portLevelMtls: { [String(appA.port)]: { mode: 'PERMISSIVE' } } } } }),
  ]);
});

afterAll(async () => {
  await Promise.all([strict, permissive, mixed].map((p) => p.close()));
  await Promise.all([appA, appB, h2App, tcpApp].map((a) => a.close()));
});

/** Plaintext HTTP/1.1 to a proxy's inbound port; resolves the status and body, or 'closed' when the proxy hangs up. */
function plainGet(p: Proxy, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; headers: Record<string, unknown> } | 'closed'> {
  return new Promise((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port: p.inboundPort, path, headers: { host: 'web', ...headers }, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', () => resolve('closed'));
    req.end();
  });
}

/** An h2 request over mTLS with the given client material, straight at the inbound port (as a peer sidecar). */
function mtlsGet(p: Proxy, tls: { key?: string; cert?: string }, targetPort: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: p.inboundPort, ALPNProtocols: ['h2'], rejectUnauthorized: false, ...tls });
    socket.once('error', (e) => resolve(`error:${(e as NodeJS.ErrnoException).code ?? e.message}`));
    socket.once('close', () => resolve('closed'));
    socket.once('secureConnect', () => {
      const s = h2connect(`https://127.0.0.1:${p.inboundPort}`, { createConnection: () => socket });
      s.on('error', (e) => resolve(`error:${(e as NodeJS.ErrnoException).code ?? e.message}`));
      const req = s.request({ ':path': '/name', 'wren-target-port': String(targetPort), 'wren-orig-proto': 'HTTP/1.1' });
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        resolve(`ok:${body}`);
        s.close();
      });
      req.on('error', (e) => resolve(`error:${(e as NodeJS.ErrnoException).code ?? e.message}`));
      req.end();
    });
  });
}

const refused = (p: Proxy) => metric(p, /wren_inbound_connections_total\{tls="false",outcome="refused"\} (\d+)/);
const plainAccepted = (p: Proxy) => metric(p, /wren_inbound_connections_total\{tls="false",outcome="accepted"\} (\d+)/);

describe('STRICT (the default)', () => {
  test('plaintext HTTP is closed without an answer, and counted', async () => {
    redirect = appA.port;
    const before = await refused(strict);
    expect(await plainGet(strict, '/name')).toBe('closed');
    expect(appA.hits.count).toBe(0);
    expect((await refused(strict)) - before).toBe(1);
  });

  test('mTLS with a mesh certificate is served; a foreign CA or no certificate fails the handshake', async () => {
    const m = pki.issue('default', 'caller');
    expect(await mtlsGet(strict, { key: m.keyPem, cert: m.certChainPem }, appA.port)).toBe('ok:a');
    const f = foreign.issue('default', 'caller');
    expect(await mtlsGet(strict, { key: f.keyPem, cert: f.certChainPem }, appA.port)).toMatch(/^(error:|closed)/);
    expect(await mtlsGet(strict, {}, appA.port)).toMatch(/^(error:|closed)/);
    expect(await metric(strict, /wren_inbound_connections_total\{tls="true",outcome="accepted"\} (\d+)/)).toBe(3);
  });
});

describe('PERMISSIVE', () => {
  test('plaintext HTTP/1.1 reaches the app at the original destination, with no caller identity; forged mesh headers are dropped', async () => {
    redirect = appA.port;
    const before = await plainAccepted(permissive);
    const r = await plainGet(permissive, '/echo', { 'x-forwarded-client-cert': 'By=x;URI=spiffe://cluster.local/ns/default/sa/admin', 'wren-target-port': String(appB.port) });
    expect(r).not.toBe('closed');
    if (r === 'closed') return;
    expect(r.status).toBe(200);
    const echoed = JSON.parse(r.body) as { name: string; headers: Record<string, string>; httpVersion: string };
    expect(echoed.name).toBe('a');
    expect(echoed.httpVersion).toBe('1.1');
    expect(echoed.headers['x-forwarded-client-cert']).toBeUndefined();
    expect(echoed.headers['wren-target-port']).toBeUndefined();
    expect(echoed.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect((await plainAccepted(permissive)) - before).toBe(1);
    expect(await metric(permissive, /istio_requests_total\{reporter="destination",[^}]*response_code="200"[^}]*connection_security_policy="none"\} (\d+)/)).toBeGreaterThan(0);
  });

  test('a plaintext upgrade goes through the plaintext layers: forged mesh headers dropped, target from the original destination', async () => {
    redirect = appA.port;
    const reply = await new Promise<string>((resolve) => {
      let got = '';
      const s = netConnect(permissive.inboundPort, '127.0.0.1', () =>
        s.write(
          `GET /chat HTTP/1.1\r\nHost: web\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nX-Forwarded-Client-Cert: By=x;URI=spiffe://cluster.local/ns/default/sa/admin\r\nwren-target-port: ${appB.port}\r\n\r\nping`,
        ),
      );
      s.on('data', (d: Buffer) => {
        got += d.toString('latin1');
        if (got.endsWith('ping')) s.end();
      });
      s.on('close', () => resolve(got));
      s.on('error', () => resolve(got));
      setTimeout(() => s.destroy(), 2000);
    });
    expect(reply).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/);
    expect(reply).toContain('x-app: a\r\n');
    expect(reply).toContain('x-xfcc: none\r\n');
    expect(reply.endsWith('\r\n\r\nping')).toBe(true);
  });

  test('h2c (prior knowledge) plaintext is served too, to the app in HTTP/2', async () => {
    redirect = h2App.port;
    const body = await new Promise<string>((resolve, reject) => {
      const s = h2connect(`http://127.0.0.1:${permissive.inboundPort}`);
      s.on('error', reject);
      const req = s.request({ ':path': '/name', ':authority': 'web' });
      let b = '';
      req.on('data', (d: Buffer) => (b += d.toString()));
      req.on('end', () => {
        s.close();
        resolve(b);
      });
      req.end();
    });
    expect(body).toBe('h2');
  });

  test('mTLS is still accepted, and labelled mutual_tls', async () => {
    redirect = null;
    const m = pki.issue('default', 'caller');
    expect(await mtlsGet(permissive, { key: m.keyPem, cert: m.certChainPem }, appB.port)).toBe('ok:b');
    expect(await metric(permissive, /istio_requests_total\{reporter="destination",[^}]*connection_security_policy="mutual_tls"\} (\d+)/)).toBe(1);
  });

  test('opaque plaintext TCP is spliced to the app port (server-speaks-first on an opaque port: no wait)', async () => {
    redirect = tcpApp.port;
    const got = await new Promise<string>((resolve) => {
      const s = netConnect(permissive.inboundPort, '127.0.0.1');
      let b = '';
      s.on('data', (d) => {
        b += d.toString();
        if (b === 'hello from tcp\n') s.write('\x00ping');
        if (b.endsWith('\x00ping')) s.end();
      });
      s.on('close', () => resolve(b));
    });
    expect(got).toBe('hello from tcp\n\x00ping');
  });

  test('client-first opaque bytes sent before the tunnel is up are not lost', async () => {
    redirect = tcpApp.port;
    const got = await new Promise<string>((resolve) => {
      const s = netConnect(permissive.inboundPort, '127.0.0.1', () => s.write('\x00early'));
      let b = '';
      s.on('data', (d) => {
        b += d.toString();
        if (b.endsWith('\x00early')) s.end();
      });
      s.on('close', () => resolve(b));
    });
    expect(got).toBe('hello from tcp\n\x00early');
  });

  test('a plaintext request with no original destination has no target port: 400', async () => {
    redirect = null;
    const r = await plainGet(permissive, '/name');
    expect(r).toMatchObject({ status: 400, headers: { 'wren-proxy-error': 'bad-request' } });
  });
});

describe('port-level overrides', () => {
  test('the PERMISSIVE port takes plaintext; the workload STRICT mode refuses it on other ports', async () => {
    redirect = appA.port;
    expect(await plainGet(mixed, '/name')).toMatchObject({ status: 200, body: 'a' });
    redirect = appB.port;
    const before = await refused(mixed);
    expect(await plainGet(mixed, '/name')).toBe('closed');
    expect((await refused(mixed)) - before).toBe(1);
  });

  test('a plaintext caller on the PERMISSIVE port cannot reach the STRICT port by header', async () => {
    redirect = appA.port;
    const r = await plainGet(mixed, '/name', { 'wren-target-port': String(appB.port) });
    expect(r).toMatchObject({ status: 200, body: 'a' });
  });
});

test('a policy applied at run time governs the next connection', async () => {
  redirect = appB.port;
  const services = strict.snapshot.services;
  strict.applySnapshot({ version: 'p1', source: 'test', services, inboundPolicy: parseInboundPolicy({ mtls: { mode: 'PERMISSIVE' } }, 'policy') });
  expect(strict.policy.mtls.mode).toBe('PERMISSIVE');
  expect(await plainGet(strict, '/name')).toMatchObject({ status: 200, body: 'b' });
  strict.applySnapshot({ version: 'p2', source: 'test', services, inboundPolicy: parseInboundPolicy({}, 'policy') });
  expect(await plainGet(strict, '/name')).toBe('closed');
});

test('the static config takes the same policy, and names a bad field by its path', () => {
  const base = { tls: { certFile: 'c', keyFile: 'k', trustBundleFile: 'b' } };
  expect(parseProxyConfig({ ...base, policy: { mtls: { mode: 'PERMISSIVE' } } }, 'wren.yaml').policy.mtls.mode).toBe('PERMISSIVE');
  expect(parseProxyConfig(base, 'wren.yaml').policy.mtls.mode).toBe('STRICT');
  expect(() => parseProxyConfig({ ...base, policy: { authorizationPolicies: [{ name: 'a/b', action: 'CUSTOM' }] } }, 'wren.yaml')).toThrow(
    /^wren\.yaml: policy\.authorizationPolicies\[0\]\.action: CUSTOM/,
  );
});
