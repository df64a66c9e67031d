import { request as httpRequest, createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Server } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { PassThrough } from 'node:stream';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { testServerCert } from './helpers/test-ca.js';
import type { Proxy } from '../proxy/proxy.js';
import { scrape, type Series } from './helpers/admin-metric.js';

/**
 * Egress control (docs/traffic-management.md, Egress). The app's connections reach the
 * outbound listener with an original destination outside the mesh (injected here as in
 * the other data-path tests; the netns test covers the real SO_ORIGINAL_DST). Real
 * servers stand in for the external hosts: plain HTTP, HTTPS with a certificate from a
 * test CA for api.example.com, and a TCP server.
 */
const pki = testPki();
const cert = testServerCert(['api.example.com']);
let plain: HttpServer, https: HttpsServer, tcp: Server, other: Server, silent: Server;
let plainPort: number, httpsPort: number, tcpPort: number, otherPort: number, silentPort: number;
let strict: Proxy, open: Proxy;
const strictLog = new PassThrough();
let strictLines = '';
strictLog.on('data', (d: Buffer) => (strictLines += d.toString()));
/** Dials are sequential: the next accepted connection's destination. */
let nextDst: { address: string; port: number } | undefined;
/** Nothing listens there: TLS origination connects to tls.port instead. */
const ORIGINATION_PORT = 18080;
const SLOW_PORT = 18081;
const UNTRUSTED_PORT = 18082;
const WRONG_NAME_PORT = 18083;
const silentSockets: import('node:net').Socket[] = [];

const listen = async <S extends Server | HttpServer | HttpsServer>(s: S): Promise<number> => {
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return (s.address() as AddressInfo).port;
};

beforeAll(async () => {
  plain = createHttpServer((req, res) => res.end(`plain host=${req.headers.host} path=${req.url}`));
  https = createHttpsServer({ cert: cert.cert, key: cert.key }, (req, res) => {
    const sni = (req.socket as TLSSocket).servername;
    res.end(`tls sni=${sni} host=${req.headers.host} path=${req.url}`);
  });
  tcp = createNetServer((s) => s.end('tcp says hi\n'));
  other = createNetServer((s) => s.end('other says hi\n'));
  // Accepts and never answers: a TLS handshake to it never completes.
  silent = createNetServer((s) => void silentSockets.push(s));
  [plainPort, httpsPort, tcpPort, otherPort, silentPort] = await Promise.all([listen(plain), listen(https), listen(tcp), listen(other), listen(silent)]);
  const externalServices = [
    { name: 'default/plain', hosts: ['plain.example.com'], ports: [{ number: plainPort, protocol: 'HTTP' }] },
    { name: 'default/tls', hosts: ['*.example.com'], ports: [{ number: httpsPort, protocol: 'TLS' }] },
    {
      name: 'default/api', hosts: ['api.example.com'],
      ports: [{ number: ORIGINATION_PORT, protocol: 'HTTP', tls: { mode: 'SIMPLE', caCertificates: cert.ca, port: httpsPort } }],
    },
    { name: 'default/slow', hosts: ['slow.example.com'], ports: [{ number: SLOW_PORT, protocol: 'HTTP', tls: { mode: 'SIMPLE', caCertificates: cert.ca, port: silentPort } }] },
    // The system roots do not know the test CA; the certificate is not for wrong.example.com.
    { name: 'default/untrusted', hosts: ['api.example.com'], ports: [{ number: UNTRUSTED_PORT, protocol: 'HTTP', tls: { mode: 'SIMPLE', port: httpsPort } }] },
    { name: 'default/wrong-name', hosts: ['api.example.com'], ports: [{ number: WRONG_NAME_PORT, protocol: 'HTTP', tls: { mode: 'SIMPLE', sni: 'wrong.example.com', caCertificates: cert.ca, port: httpsPort } }] },
    { name: 'default/db', hosts: ['db.example.com'], addresses: ['127.0.0.0/8'], ports: [{ number: tcpPort, protocol: 'TCP' }] },
  ];
  strict = await startProxy({
    pki, serviceAccount: 'client', originalDst: () => nextDst, accessLog: strictLog,
    config: { egress: { mode: 'REGISTRY_ONLY', externalServices, connectTimeoutMs: 300 }, protocol: { detectTimeoutMs: 300 }, telemetry: { accessLog: { enabled: true } } },
  });
  open = await startProxy({ pki, serviceAccount: 'client', originalDst: () => nextDst, config: { protocol: { detectTimeoutMs: 300 } } });
});

afterAll(async () => {
  await strict.close();
  await open.close();
  for (const s of silentSockets) s.destroy();
  for (const s of [plain, https, tcp, other, silent]) s.close();
});

/** An HTTP/1.1 request as the app sends it to `http://host/path`, redirected from dst to the proxy. */
function get(proxy: Proxy, dstPort: number, host: string, path = '/x'): Promise<{ status: number; error: string | undefined; body: string }> {
  nextDst = { address: '127.0.0.1', port: dstPort };
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: proxy.outboundPort, path, headers: { host }, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, error: res.headers['wren-proxy-error'] as string | undefined, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A raw TCP connection redirected from dst: what the server sent before closing. */
function dialTcp(proxy: Proxy, dstPort: number): Promise<string> {
  nextDst = { address: '127.0.0.1', port: dstPort };
  return new Promise((resolve, reject) => {
    const s = netConnect({ host: '127.0.0.1', port: proxy.outboundPort });
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString()));
    s.on('close', () => resolve(got));
    s.on('error', reject);
  });
}

/** HTTPS from the app with this SNI (the proxy sees only a ClientHello): the response body, or the error. */
function httpsGet(proxy: Proxy, dstPort: number, servername: string): Promise<string> {
  nextDst = { address: '127.0.0.1', port: dstPort };
  return new Promise((resolve) => {
    const s = tlsConnect({ host: '127.0.0.1', port: proxy.outboundPort, servername, ca: cert.ca, checkServerIdentity: () => undefined });
    let got = '';
    s.on('secureConnect', () => s.write(`GET /secure HTTP/1.1\r\nhost: ${servername}\r\nconnection: close\r\n\r\n`));
    s.on('data', (d: Buffer) => (got += d.toString()));
    s.on('close', () => resolve(got));
    s.on('error', (e) => resolve(`error: ${(e as NodeJS.ErrnoException).code ?? e.message}`));
  });
}

const logLines = (): Record<string, unknown>[] => strictLines.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
const metrics = async (p: Proxy): Promise<string> => (await fetch(`http://127.0.0.1:${p.adminPort}/metrics`)).text();

describe('REGISTRY_ONLY', () => {
  test('an HTTP request to an undeclared host gets 502 egress-refused, counted and logged with flag NR', async () => {
    const r = await get(strict, plainPort, 'evil.example.org');
    expect(r).toMatchObject({ status: 502, error: 'egress-refused' });
    // The port decides too: plain.example.com is declared on plainPort only.
    expect(await get(strict, otherPort, 'plain.example.com')).toMatchObject({ status: 502, error: 'egress-refused' });
    expect(await metrics(strict)).toMatch(/wren_egress_refused_total\{protocol="http"\} 2/);
    await new Promise((r) => setTimeout(r, 20));
    const line = logLines().find((l) => l.authority === 'evil.example.org');
    expect(line).toMatchObject({ response_code: 502, response_flags: 'NR', response_code_details: 'egress-refused' });
  });

  test('TCP to an undeclared address:port and TLS with an undeclared SNI are closed unanswered, counted', async () => {
    expect(await dialTcp(strict, otherPort)).toBe('');
    expect(await httpsGet(strict, httpsPort, 'api.example.org')).toMatch(/^error: ECONNRESET|^error: .*socket disconnected|^$/);
    const m = await metrics(strict);
    expect(m).toMatch(/wren_egress_refused_total\{protocol="tcp"\} [1-9]/);
    expect(m).toMatch(/wren_egress_refused_total\{protocol="tls"\} [1-9]/);
    const tls = logLines().find((l) => l.requested_server_name === 'api.example.org');
    expect(tls).toMatchObject({ response_code: 0, response_flags: 'NR', upstream_cluster: 'BlackHoleCluster' });
  });

  test('a declared HTTP host goes through to the original destination', async () => {
    expect(await get(strict, plainPort, 'plain.example.com', '/hello')).toMatchObject({ status: 200, body: 'plain host=plain.example.com path=/hello' });
    // Through the sidecar's HTTP layers (not spliced as bytes): it has an HTTP access-log line.
    await new Promise((r) => setTimeout(r, 20));
    expect(logLines().find((l) => l.authority === 'plain.example.com' && l.path === '/hello')).toMatchObject({ response_code: 200, response_flags: '-' });
  });

  test('TLS to a declared host passes through by SNI (a *.example.com wildcard): the app\'s own TLS session reaches the server', async () => {
    const before = /wren_passthrough_connections_total\{reason="external-service"\} (\d+)/.exec(await metrics(strict))?.[1] ?? '0';
    expect(await httpsGet(strict, httpsPort, 'api.example.com')).toMatch(/^HTTP\/1\.1 200[\s\S]*tls sni=api\.example\.com host=api\.example\.com path=\/secure$/);
    expect(await metrics(strict)).toMatch(new RegExp(`wren_passthrough_connections_total\\{reason="external-service"\\} ${Number(before) + 1}\\b`));
  });

  test('a fully qualified name (trailing dot) is the same host by SNI as by Host: a real TLS client with SNI `api.example.com.` passes, as `plain.example.com.` does in a Host', async () => {
    // RFC 6066 section 3 spells the HostName without the dot, but node's TLS client (as
    // OpenSSL's) sends what the app gave it; before, the SNI was refused while the Host passed.
    expect(await get(strict, plainPort, 'plain.example.com.', '/fqdn')).toMatchObject({ status: 200, body: 'plain host=plain.example.com. path=/fqdn' });
    expect(await httpsGet(strict, httpsPort, 'api.example.com.')).toMatch(/^HTTP\/1\.1 200[\s\S]*tls sni=api\.example\.com\. host=api\.example\.com\. path=\/secure$/);
    // Two dots are no host name: still refused.
    expect(await httpsGet(strict, httpsPort, 'api.example.com..')).not.toMatch(/^HTTP\/1\.1 200/);
  });

  test('TLS origination: the app speaks plain HTTP, the sidecar connects with TLS to tls.port, verified with the test CA', async () => {
    expect(await get(strict, ORIGINATION_PORT, 'api.example.com', '/v1')).toMatchObject({ status: 200, body: 'tls sni=api.example.com host=api.example.com path=/v1' });
  });

  test('TLS origination verifies the server: unknown CA (system roots) or a certificate for another name is a 502 tls-handshake', async () => {
    expect(await get(strict, UNTRUSTED_PORT, 'api.example.com')).toMatchObject({ status: 502, error: 'tls-handshake' });
    expect(await get(strict, WRONG_NAME_PORT, 'api.example.com')).toMatchObject({ status: 502, error: 'tls-handshake' });
  });

  test('egress.connectTimeoutMs bounds connecting (the TLS handshake included): 504 connect-timeout, counted', async () => {
    const t0 = Date.now();
    expect(await get(strict, SLOW_PORT, 'slow.example.com')).toMatchObject({ status: 504, error: 'connect-timeout' });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(280);
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(await metrics(strict)).toMatch(/wren_proxy_errors_total\{direction="outbound",code="connect-timeout"\} 1/);
  });

  test('TCP to a declared address and port passes through', async () => {
    expect(await dialTcp(strict, tcpPort)).toBe('tcp says hi\n');
    expect(await metrics(strict)).toMatch(/wren_passthrough_connections_total\{reason="external-service"\} [1-9]/);
  });
});

/**
 * Istio labels ServiceEntry traffic with the entry's host (destination_service and
 * destination_service_name) and namespace, its cluster `outbound|PORT||HOST`; only traffic
 * that matches no entry is PassthroughCluster (BlackHoleCluster when refused). Wren labelled
 * declared traffic PassthroughCluster like undeclared traffic, and logged no upstream_cluster
 * for HTTP egress at all.
 */
describe('metrics labels and the access log name the declared ExternalService host', () => {
  const series = async (p: Proxy, name: string, pred: (l: Record<string, string>) => boolean): Promise<Series[]> => {
    for (let i = 0; i < 150; i++) {
      const s = (await scrape(p, name)).filter((x) => pred(x.labels));
      if (s.length > 0) return s;
      await new Promise((r) => setTimeout(r, 20));
    }
    return [];
  };
  const dstLabels = (l: Record<string, string>) => [l.destination_service, l.destination_service_name, l.destination_service_namespace, l.destination_workload, l.reporter];

  test('HTTP: istio_requests_total under the host, namespace the ExternalService\'s; upstream_cluster outbound|PORT||HOST; a refused one BlackHoleCluster', async () => {
    expect((await get(strict, plainPort, 'plain.example.com', '/labels')).status).toBe(200);
    const s = await series(strict, 'istio_requests_total', (l) => l.destination_service === 'plain.example.com');
    expect(s.map((x) => dstLabels(x.labels))).toEqual([['plain.example.com', 'plain.example.com', 'default', 'unknown', 'source']]);
    expect((await get(strict, plainPort, 'evil.example.org', '/refused')).status).toBe(502);
    await new Promise((r) => setTimeout(r, 20));
    expect(logLines().find((l) => l.path === '/labels')).toMatchObject({ upstream_cluster: `outbound|${plainPort}||plain.example.com`, upstream_host: `127.0.0.1:${plainPort}` });
    expect(logLines().find((l) => l.path === '/refused')).toMatchObject({ upstream_host: null });
    expect(logLines().find((l) => l.path === '/refused')).toMatchObject({ upstream_cluster: 'BlackHoleCluster', response_flags: 'NR' });
    // REGISTRY_ONLY lets nothing undeclared through: no request is PassthroughCluster.
    expect((await scrape(strict, 'istio_requests_total')).filter((x) => x.labels.destination_service_name === 'PassthroughCluster')).toEqual([]);
  });

  test('TLS by SNI and TCP by address: istio_tcp_* under the declared host (the wildcard as declared; TCP: the entry\'s first host)', async () => {
    expect(await httpsGet(strict, httpsPort, 'api.example.com')).toMatch(/tls sni=api\.example\.com/);
    expect(await dialTcp(strict, tcpPort)).toBe('tcp says hi\n');
    const tls = await series(strict, 'istio_tcp_connections_closed_total', (l) => l.destination_service === '*.example.com');
    expect(tls.map((x) => dstLabels(x.labels))).toEqual([['*.example.com', '*.example.com', 'default', 'unknown', 'source']]);
    const tcp = await series(strict, 'istio_tcp_connections_closed_total', (l) => l.destination_service === 'db.example.com');
    expect(tcp.map((x) => dstLabels(x.labels))).toEqual([['db.example.com', 'db.example.com', 'default', 'unknown', 'source']]);
    expect((await scrape(strict, 'istio_tcp_connections_opened_total')).filter((x) => x.labels.destination_service_name === 'PassthroughCluster')).toEqual([]);
  });
});

describe('ALLOW_ANY (the default)', () => {
  test('unknown destinations pass through: HTTP, TCP and TLS', async () => {
    expect(await get(open, plainPort, 'evil.example.org')).toMatchObject({ status: 200, body: 'plain host=evil.example.org path=/x' });
    expect(await dialTcp(open, otherPort)).toBe('other says hi\n');
    expect(await httpsGet(open, httpsPort, 'api.example.com')).toMatch(/tls sni=api\.example\.com/);
    expect(await metrics(open)).not.toMatch(/wren_egress_refused_total\{/);
  });
});
