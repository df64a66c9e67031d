import { connect as netConnect } from 'node:net';
import { LogCapture } from './helpers/log-capture.js';
import { startProxy } from './helpers/proxy.js';
import { testPki } from './helpers/pki.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Every value a client controls is capped in an access log line (docs/observability.md,
 * "What is never logged": "a line stays bounded"). The path, authority and header values
 * were; the method (any token the request line or `:method` carries, up to the header
 * limit) and a ClientHello's SNI (up to the 16 KiB record) were written whole.
 */
const pki = testPki();
let open: Proxy, strict: Proxy;
const openLog = new LogCapture();
const strictLog = new LogCapture();
let nextDst: { address: string; port: number } | undefined;
const on = { telemetry: { accessLog: { enabled: true } }, protocol: { detectTimeoutMs: 300 } };

beforeAll(async () => {
  open = await startProxy({ pki, serviceAccount: 'client', accessLog: openLog, config: on });
  strict = await startProxy({ pki, serviceAccount: 'client', originalDst: () => nextDst, accessLog: strictLog, config: { ...on, egress: { mode: 'REGISTRY_ONLY', externalServices: [] } } });
});

afterAll(async () => {
  await open.close();
  await strict.close();
});

/** Writes `bytes` to the proxy's outbound port, resolves with the client's port once the proxy has closed the connection (or after 2 s). */
function send(p: Proxy, bytes: Buffer | string): Promise<number> {
  return new Promise((resolve) => {
    const s = netConnect({ host: '127.0.0.1', port: p.outboundPort });
    let port = 0;
    s.on('error', () => undefined);
    s.once('connect', () => {
      port = s.localPort ?? 0;
      s.write(bytes);
    });
    s.resume();
    const t = setTimeout(() => s.destroy(), 2000);
    s.on('close', () => {
      clearTimeout(t);
      resolve(port);
    });
  });
}

/** A TLS 1.2 ClientHello record whose server_name extension names `host` (RFC 6066 section 3). */
function clientHello(host: string): Buffer {
  const name = Buffer.from(host, 'latin1');
  const sniList = Buffer.concat([Buffer.from([0, name.length >> 8, name.length & 255]), name]);
  const ext = Buffer.concat([Buffer.from([0, 0, (sniList.length + 2) >> 8, (sniList.length + 2) & 255, sniList.length >> 8, sniList.length & 255]), sniList]);
  const body = Buffer.concat([
    Buffer.from([3, 3]), Buffer.alloc(32, 7), Buffer.from([0]), Buffer.from([0, 2, 0x13, 0x01]), Buffer.from([1, 0]),
    Buffer.from([ext.length >> 8, ext.length & 255]), ext,
  ]);
  const hs = Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 255]), body]);
  return Buffer.concat([Buffer.from([0x16, 3, 1, hs.length >> 8, hs.length & 255]), hs]);
}

test('a request with a 4000-character method: its line keeps the first 256 characters', async () => {
  const method = 'M'.repeat(4000);
  const port = await send(open, `${method} /x HTTP/1.1\r\nhost: nowhere.example\r\nconnection: close\r\n\r\n`);
  const line = await openLog.find((e) => e['downstream_remote_address'] === `127.0.0.1:${port}`);
  expect(line['method']).toBe(method.slice(0, 256));
  expect(line['response_flags']).toBe('NR');
});

test('a TLS connection refused by REGISTRY_ONLY with a 10000-character SNI: its line keeps the first 256 characters', async () => {
  const host = `${'a'.repeat(10_000)}.example.com`;
  nextDst = { address: '127.0.0.1', port: 9 };
  const port = await send(strict, clientHello(host));
  const line = await strictLog.find((e) => e['downstream_remote_address'] === `127.0.0.1:${port}`);
  expect(line).toMatchObject({ response_flags: 'NR', upstream_cluster: 'BlackHoleCluster', requested_server_name: host.slice(0, 256) });
});
