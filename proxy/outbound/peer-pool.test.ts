import { createServer as createH2cServer, type ServerHttp2Stream } from 'node:http2';
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { PeerPool } from './peer-pool.js';
import type { TlsIdentity } from '../tls/tls-identity.js';
import { createLogger } from '../../common/logger.js';
import type { Endpoint } from '../../contract/model.js';

const tls = { onRotate: () => undefined } as unknown as TlsIdentity;
const logger = createLogger({ level: 'error', sink: () => undefined });
const endpoint = (port: number): Endpoint => ({ address: '127.0.0.1', port, proxyPort: null, identity: '', weight: 1, zone: '', ready: true });

async function listen(server: Server | ReturnType<typeof createH2cServer>): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return (server.address() as AddressInfo).port;
}

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end && !cond()) await new Promise((r) => setTimeout(r, 20));
  return cond();
}

test('a session whose socket closed with a stream in flight is destroyed and replaced (never kept "open" with nothing behind it)', async () => {
  const sockets: Socket[] = [];
  const server = createH2cServer();
  server.on('connection', (s: Socket) => sockets.push(s));
  server.on('stream', (s: ServerHttp2Stream) => s.on('error', () => undefined)); // never answers
  const port = await listen(server);
  const pool = new PeerPool({ tls, connectTimeoutMs: 1000, logger });
  const first = await pool.get(endpoint(port));
  const stream = first.request({ ':path': '/hang' }, { endStream: true });
  stream.on('error', () => undefined);
  await until(() => sockets.length === 1, 1000);
  sockets[0].destroy();
  expect(await until(() => first.destroyed, 2000)).toBe(true);
  expect(pool.ready(endpoint(port))).toBeUndefined();
  const second = await pool.get(endpoint(port));
  expect(second).not.toBe(first);
  expect(second.destroyed).toBe(false);
  pool.close();
  for (const s of sockets) s.destroy();
  await new Promise((r) => server.close(r));
});

test('a peer that stops answering PINGs: the session is destroyed and counted', async () => {
  // Speaks just enough HTTP/2 to be connected to (a SETTINGS frame), then never answers.
  const conns: Socket[] = [];
  const server = createNetServer((s) => {
    conns.push(s);
    s.on('error', () => undefined);
    s.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]));
    s.resume();
  });
  const port = await listen(server);
  let timeouts = 0;
  const pool = new PeerPool({ tls, connectTimeoutMs: 1000, logger, keepalive: { intervalMs: 100, timeoutMs: 100 }, onKeepaliveTimeout: () => timeouts++ });
  const session = await pool.get(endpoint(port));
  expect(await until(() => session.destroyed, 3000)).toBe(true);
  expect(timeouts).toBe(1);
  expect(pool.ready(endpoint(port))).toBeUndefined();
  pool.close();
  for (const s of conns) s.destroy();
  await new Promise((r) => server.close(r));
});

test('close() destroys the sessions after the grace even with streams in flight', async () => {
  const server = createH2cServer();
  server.on('stream', (s: ServerHttp2Stream) => s.on('error', () => undefined)); // never answers
  const port = await listen(server);
  const pool = new PeerPool({ tls, connectTimeoutMs: 1000, logger, closeGraceMs: 100 });
  const session = await pool.get(endpoint(port));
  session.request({ ':path': '/hang' }, { endStream: true }).on('error', () => undefined);
  pool.close();
  expect(await until(() => session.destroyed, 2000)).toBe(true);
  server.close();
});
