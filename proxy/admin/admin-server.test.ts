import { connect } from 'node:net';
import { once } from 'node:events';
import { FakeClock } from '../../common/clock.js';
import { createLogger } from '../../common/logger.js';
import { AdminServer } from './admin-server.js';

/**
 * The admin port's bound on a response nobody reads (net/delayed-close.ts boundFlush): node's
 * server waits without end for such a response to be written, keep-alive or not, each socket
 * held with its response. Real sockets, fake time for the bound.
 */
const SMALL = 'wren_up 1\n';
let body = SMALL;
const clock = new FakeClock();
const limits: string[] = [];
let admin: AdminServer;
let port: number;

beforeAll(async () => {
  admin = new AdminServer({
    address: '127.0.0.1', port: 0, logger: createLogger({ level: 'error', sink: () => undefined }),
    ready: () => ({ ready: true, reason: 'ready' }),
    metrics: async () => ({ contentType: 'text/plain', body }),
    configDump: () => ({}), clusters: () => ({}), certs: () => ({}), drain: () => undefined,
    clock, onLimit: (l) => void limits.push(l),
  });
  port = (await admin.listen()).port;
});
afterAll(() => admin.close());

test('a client that does not read its response is let go once nothing moves for the delayed close (1 s), counted; one that reads is served', async () => {
  body = 'x'.repeat(32 << 20); // more than the kernel's buffers take
  for (const connection of ['close', 'keep-alive']) {
    limits.length = 0;
    const s = connect(port, '127.0.0.1');
    s.on('error', () => undefined);
    await once(s, 'connect');
    s.pause();
    s.write(`GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: ${connection}\r\n\r\n`);
    for (let i = 0; i < 200 && limits.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
      clock.advance(1000);
    }
    expect([connection, limits]).toEqual([connection, ['delayed-close-timeout']]);
    s.destroy();
  }
  body = SMALL;
  limits.length = 0;
  const ok = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect([ok.status, await ok.text()]).toEqual([200, SMALL]);
  clock.advance(5000);
  expect(limits).toEqual([]);
});

test('GET / lists the endpoints, each description in one column apart from its path (the longest path included)', async () => {
  const res = await fetch(`http://127.0.0.1:${port}/`);
  expect(res.status).toBe(200);
  const lines = (await res.text()).trimEnd().split('\n');
  expect(lines.find((l) => l.includes('/debug/route'))).toMatch(/^GET {2}\/debug\/route\?authority=&path=&method=&header=n:v {2,}which HTTPRoute/);
  const column = (l: string) => /^\S+\s+\S+\s+/.exec(l)![0].length;
  expect(new Set(lines.map(column)).size).toBe(1);
});
