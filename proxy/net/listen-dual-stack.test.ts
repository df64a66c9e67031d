import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { createLogger } from '../../common/logger.js';
import { listenDualStack } from './listen-dual-stack.js';

const lines: string[] = [];
const logger = createLogger({ level: 'debug', sink: (l: string) => void lines.push(l) });

/** Connects to host:port and returns the local address the server saw it arrive on. */
async function arrivedAt(server: Server, host: string, port: number): Promise<string> {
  const seen = once(server, 'connection') as Promise<[Socket]>;
  const c = connect({ host, port });
  const [s] = await seen;
  const local = s.localAddress ?? '';
  c.destroy();
  s.destroy();
  return local;
}

let servers: Server[] = [];
afterEach(() => {
  for (const s of servers) s.close();
  servers = [];
  lines.length = 0;
});

test('one server takes connections on both families, on the same port; each keeps its own family', async () => {
  const server = createServer();
  servers.push(server);
  const info = await listenDualStack(server, 0, '127.0.0.1', '::1', logger);
  expect(await arrivedAt(server, '127.0.0.1', info.port)).toBe('127.0.0.1');
  expect(await arrivedAt(server, '::1', info.port)).toBe('::1');
  expect(lines).toEqual([]);
});

test('closing the server closes the IPv6 socket too', async () => {
  const server = createServer();
  const info = await listenDualStack(server, 0, '127.0.0.1', '::1', logger);
  await new Promise<void>((r) => server.close(() => r()));
  const refused = await new Promise<string>((resolve) => connect({ host: '::1', port: info.port }).on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? '')).on('connect', () => resolve('connected')));
  expect(refused).toBe('ECONNREFUSED');
});

test('no IPv6 address to bind (EADDRNOTAVAIL): IPv4 alone, IPV6_UNAVAILABLE logged; without ipv6Address no second socket', async () => {
  const server = createServer();
  servers.push(server);
  // 2001:db8::/32 is documentation space (RFC 3849): never assigned here, like ::1 on a host with IPv6 disabled.
  const info = await listenDualStack(server, 0, '127.0.0.1', '2001:db8::1', logger);
  expect(await arrivedAt(server, '127.0.0.1', info.port)).toBe('127.0.0.1');
  expect(lines.join('\n')).toMatch(/IPV6_UNAVAILABLE.*EADDRNOTAVAIL|EADDRNOTAVAIL.*IPV6_UNAVAILABLE/);
  const only4 = createServer();
  servers.push(only4);
  const i4 = await listenDualStack(only4, 0, '127.0.0.1', '', logger);
  const r = await new Promise<string>((resolve) => connect({ host: '::1', port: i4.port }).on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? '')).on('connect', () => resolve('connected')));
  expect(r).toBe('ECONNREFUSED');
});

test('any other bind error (the IPv6 port is taken) closes the IPv4 socket and rejects', async () => {
  const taken = createServer();
  servers.push(taken);
  await new Promise<void>((r) => taken.listen({ port: 0, host: '::1', ipv6Only: true }, r));
  const port = (taken.address() as { port: number }).port;
  const server = createServer();
  await expect(listenDualStack(server, port, '127.0.0.1', '::1', logger)).rejects.toMatchObject({ code: 'EADDRINUSE' });
  expect(server.listening).toBe(false);
});
