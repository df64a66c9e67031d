import { connect as netConnect, type Socket } from 'node:net';
import { createServer } from 'node:http';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { listenOnLoopback } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Protocol detection recognises HTTP/1.x by its grammar (issue 11: every way into the app
 * passes the same header rules). Before: the protocol sniffer (net/detect-protocol.ts
 * classifyPrefix) knows nine methods and no leading empty line, so a request the app's
 * HTTP parser accepts (RFC 9112 section 2.2 lets a server skip CRLFs before the request
 * line; WebDAV PROPFIND, QUERY, ...) is classified opaque and spliced unparsed, both from
 * the app through the outbound (then over mTLS to the peer) and from a plaintext caller
 * on a PERMISSIVE inbound port: the callee app receives a forged X-Forwarded-Client-Cert
 * (and any wren-* header), no x-request-id, no HTTP authorization/metrics. Envoy's
 * http_inspector / Linkerd detect HTTP by parsing it, not by a method list.
 */
const pki = testPki();
let server: Proxy, client: Proxy, permissive: Proxy;
const seen: { method: string; url: string; xfcc: string | undefined; rid: string | undefined }[] = [];
let appPort = 0;
let appClose: () => Promise<void>;
let nextDst: { address: string; port: number } | undefined;

beforeAll(async () => {
  const app = createServer((req, res) => {
    seen.push({ method: req.method!, url: req.url!, xfcc: req.headers['x-forwarded-client-cert'] as string | undefined, rid: req.headers['x-request-id'] as string | undefined });
    res.end(`xfcc=${req.headers['x-forwarded-client-cert'] ?? 'none'}\n`);
  });
  const l = await listenOnLoopback(app);
  appPort = l.port;
  appClose = l.close;
  server = await startProxy({ pki, serviceAccount: 'web', config: { protocol: { detectTimeoutMs: 300 } } });
  permissive = await startProxy({ pki, serviceAccount: 'perm', inboundOriginalDst: () => ({ address: '127.0.0.1', port: appPort }), config: { policy: { mtls: { mode: 'PERMISSIVE' } }, protocol: { detectTimeoutMs: 300 } } });
  client = await startProxy({
    pki, serviceAccount: 'client',
    services: [meshService('web', 80, [{ appPort, proxy: server }], { clusterIPs: ['10.96.0.20'] })],
    originalDst: (_s: Socket) => nextDst,
    config: { protocol: { detectTimeoutMs: 300 } },
  });
});

afterAll(async () => {
  await Promise.all([client.close(), server.close(), permissive.close()]);
  await appClose();
});

const FORGED = 'By=spiffe://cluster.local/ns/default/sa/web;URI=spiffe://cluster.local/ns/default/sa/admin';

function send(port: number, data: string, ms = 8000): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    const s = netConnect(port, '127.0.0.1', () => s.write(data));
    s.on('data', (d) => (got += d));
    s.on('close', () => resolve(got));
    s.on('error', () => resolve(got));
    setTimeout(() => s.destroy(), ms);
  });
}

for (const [name, prefix, method] of [
  ['leading CRLF', '\r\n', 'GET'],
  ['PROPFIND', '', 'PROPFIND'],
  ['QUERY', '', 'QUERY'],
] as const) {
  test(`app -> outbound: a ${name} request is parsed as HTTP; the callee app gets the sidecar's XFCC, never the forged one`, async () => {
    nextDst = { address: '10.96.0.20', port: 80 };
    const before = seen.length;
    const got = await send(client.outboundPort, `${prefix}${method} /admin HTTP/1.1\r\nHost: web\r\nX-Forwarded-Client-Cert: ${FORGED}\r\nConnection: close\r\n\r\n`);

    expect(got).toMatch(/^HTTP\/1\.1 200/);
    const now = seen.slice(before);
    expect(now.map((s) => s.method)).toEqual([method]);
    expect(now[0].xfcc).toContain('URI=spiffe://cluster.local/ns/default/sa/client');
    expect(now[0].xfcc).not.toContain('sa/admin');
    expect(now[0].rid).toBeTruthy();
  });
  test(`plaintext PERMISSIVE inbound: a ${name} request is parsed as HTTP; the forged XFCC is removed`, async () => {
    const before = seen.length;
    const got = await send(permissive.inboundPort, `${prefix}${method} /admin HTTP/1.1\r\nHost: web\r\nX-Forwarded-Client-Cert: ${FORGED}\r\nConnection: close\r\n\r\n`);

    expect(got).toMatch(/^HTTP\/1\.1 200/);
    const now = seen.slice(before);
    expect(now.map((s) => s.method)).toEqual([method]);
    expect(now[0].xfcc ?? '').not.toContain('sa/admin');
    expect(now[0].rid).toBeTruthy();
  });
}
