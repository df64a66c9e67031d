import { connect as netConnect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { once } from 'node:events';
import { testPki } from '../helpers/pki.js';
import { startProxy } from '../helpers/proxy.js';
import { scrape } from '../helpers/admin-metric.js';
import type { Proxy } from '../../proxy/proxy.js';

/**
 * Egress control (REGISTRY_ONLY) reads a TLS connection's ClientHello for its SNI, waiting
 * protocol.detectTimeoutMs for it. A client that starts the record and stalls is then
 * matched as if it had no SNI (refused here: no ExternalService declares the address), and
 * that timer firing is counted in wren_limit_exceeded_total{direction="outbound",
 * limit="client-hello-timeout"}. Before, nothing counted it: the refusal looked like plain
 * TCP to an undeclared address, whatever host the hello would have named.
 */
const pki = testPki();
let proxy: Proxy, external: Server, externalPort = 0, hello: Buffer;

beforeAll(async () => {
  external = createServer((s) => {
    s.on('error', () => undefined);
    s.end('external\n');
  });
  await new Promise<void>((r) => external.listen(0, '127.0.0.1', () => r()));
  externalPort = (external.address() as AddressInfo).port;
  hello = await clientHello('api.example.com');
  proxy = await startProxy({
    pki, serviceAccount: 'client', originalDst: () => ({ address: '127.0.0.1', port: externalPort }),
    config: {
      protocol: { detectTimeoutMs: 200 },
      egress: { mode: 'REGISTRY_ONLY', externalServices: [{ name: 'default/api', hosts: ['api.example.com'], ports: [{ number: externalPort, protocol: 'TLS' }] }] },
    },
  });
});

afterAll(async () => {
  await proxy.close();
  external.close();
});

/** The first bytes node:tls sends for `servername`. */
async function clientHello(servername: string): Promise<Buffer> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const got = new Promise<Buffer>((resolve) => srv.once('connection', (s: Socket) => s.once('data', (d: Buffer) => (resolve(d), s.destroy()))));
  const c = tlsConnect({ host: '127.0.0.1', port: (srv.address() as AddressInfo).port, servername });
  c.on('error', () => undefined);
  const h = await got;
  c.destroy();
  srv.close();
  return h;
}

const limit = async (): Promise<number> =>
  (await scrape(proxy, 'wren_limit_exceeded_total')).find((s) => s.labels['direction'] === 'outbound' && s.labels['limit'] === 'client-hello-timeout')?.value ?? 0;

/** Sends `bytes` and waits: what came back before the connection closed. */
async function send(bytes: Buffer): Promise<string> {
  const s = netConnect(proxy.outboundPort, '127.0.0.1');
  let got = '';
  s.on('data', (d: Buffer) => (got += d.toString()));
  s.on('error', () => undefined);
  const closed = once(s, 'close');
  await once(s, 'connect');
  s.write(bytes);
  await closed;
  return got;
}

test('a ClientHello naming a declared host goes out, counting no timeout', async () => {
  const before = await limit();
  expect(await send(hello)).toBe('external\n');
  expect(await limit()).toBe(before);
});

test('a ClientHello that stalls after its first bytes is refused once the timer fires, counted as limit="client-hello-timeout"', async () => {
  const before = await limit();
  expect(await send(hello.subarray(0, 10))).toBe('');
  expect(await limit()).toBe(before + 1);
});
