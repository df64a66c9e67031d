import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { type AddressInfo, type Server } from 'node:net';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { testServerCert } from './helpers/test-ca.js';
import { metric } from './helpers/admin-metric.js';
import { interimUpgradeServer, upgradeStatus as probeUpgrade } from './helpers/upgrade-probe.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Found by the adversary review of the data path: egress control's HTTP/1.1 pools (plain
 * and TLS origination) and its upgrades had no `onLimit`, so an external destination that
 * answered with interim (1xx) responses without end was refused (502 upstream-protocol,
 * past MAX_INTERIM_RESPONSES: proxy/h1/limits.ts) but never counted in
 * wren_limit_exceeded_total, which the app's and the outbound's other upstreams count
 * (test/app-interim-flood.test.ts, test/upgrade-interim-flood.test.ts). Now each egress path
 * counts it as {direction="outbound",limit="interim-responses"}.
 */
const pki = testPki();
const cert = testServerCert(['api.example.com']);
const COUNTER = /wren_limit_exceeded_total\{direction="outbound",limit="interim-responses"\} (\d+)/;
/** Nothing listens there: TLS origination connects to tls.port instead. */
const ORIGINATION_PORT = 18090;
let plain: Server, https: Server, upgrade: Server;
let plainPort: number, httpsPort: number, upgradePort: number;
let proxy: Proxy;
/** Dials are sequential: the next accepted connection's destination. */
let nextDst: { address: string; port: number } | undefined;

const FLOOD = 100;

const listen = async (s: Server): Promise<number> => {
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return (s.address() as AddressInfo).port;
};

beforeAll(async () => {
  const flood = (_req: unknown, res: import('node:http').ServerResponse): void => {
    for (let i = 0; i < FLOOD; i++) res.writeProcessing();
    res.end('ok');
  };
  plain = createHttpServer(flood);
  https = createHttpsServer({ cert: cert.cert, key: cert.key }, flood);
  upgrade = interimUpgradeServer(() => FLOOD);
  [plainPort, httpsPort, upgradePort] = await Promise.all([listen(plain), listen(https), listen(upgrade)]);
  const externalServices = [
    { name: 'default/plain', hosts: ['plain.example.com'], ports: [{ number: plainPort, protocol: 'HTTP' }, { number: upgradePort, protocol: 'HTTP' }] },
    { name: 'default/api', hosts: ['api.example.com'], ports: [{ number: ORIGINATION_PORT, protocol: 'HTTP', tls: { mode: 'SIMPLE', caCertificates: cert.ca, port: httpsPort } }] },
  ];
  proxy = await startProxy({
    pki, serviceAccount: 'client', originalDst: () => nextDst,
    config: { egress: { mode: 'REGISTRY_ONLY', externalServices, connectTimeoutMs: 1000 }, protocol: { detectTimeoutMs: 300 } },
  });
});

afterAll(async () => {
  await proxy.close();
  for (const s of [plain, https, upgrade]) s.close();
});

/** An HTTP/1.1 request as the app sends it to `http://host/`, redirected from dst to the proxy: status and proxy error label. */
function get(dstPort: number, host: string): Promise<string> {
  nextDst = { address: '127.0.0.1', port: dstPort };
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: proxy.outboundPort, path: '/', headers: { host }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(`${res.statusCode} ${String(res.headers['wren-proxy-error'])}`));
    });
    req.on('error', reject);
    req.end();
  });
}

/** An upgrade (WebSocket) the app sends to `host`, redirected from dst: the status line and the proxy error label. */
function upgradeStatus(dstPort: number, host: string): Promise<string> {
  nextDst = { address: '127.0.0.1', port: dstPort };
  return probeUpgrade(proxy.outboundPort, host);
}

test.each([
  ['a plain HTTP destination', () => get(plainPort, 'plain.example.com'), '502 upstream-protocol'],
  ['a TLS origination destination', () => get(ORIGINATION_PORT, 'api.example.com'), '502 upstream-protocol'],
  ['an upgrade to a plain destination', () => upgradeStatus(upgradePort, 'plain.example.com'), 'HTTP/1.1 502 Bad Gateway upstream-protocol'],
])('%s: more than 16 interim responses is refused and counted outbound', async (_what, send, refused) => {
  const before = await metric(proxy, COUNTER);
  expect(await send()).toBe(refused);
  expect(await metric(proxy, COUNTER)).toBe(before + 1);
});
