import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { proxyAwaitCommand } from './proxy-await.js';
import type { Clock, Timer } from '../common/clock.js';

async function run(argv: string[]) {
  let out = '';
  let err = '';
  const t0 = performance.now();
  const code = await proxyAwaitCommand(argv, (s) => (out += s), (s) => (err += s));
  const end = performance.now();
  return { code, out, err, ms: end - t0, end };
}

/** A stand-in admin port: /ready is 503 until `readyAt` (ms since start), then 200. */
async function adminServer(readyAfterMs: number): Promise<{ server: Server; port: number; t0: number; hits: () => number; close: () => Promise<void> }> {
  const t0 = performance.now();
  let hits = 0;
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    if (req.url !== '/ready') return void res.writeHead(404).end();
    hits++;
    const ready = performance.now() - t0 >= readyAfterMs;
    res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' }).end(ready ? 'ready\n' : 'waiting for the first configuration\n');
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    server,
    port: (server.address() as AddressInfo).port,
    t0,
    hits: () => hits,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

test('waits through 503s until /ready answers 200, then exits 0', async () => {
  const admin = await adminServer(400);
  try {
    const r = await run(['--admin-port', String(admin.port), '--timeout', '5s', '--interval', '50ms']);
    expect(r.code).toBe(0);
    expect(r.err).toBe('');
    expect(r.out).toMatch(new RegExp(`^proxy ready: http://127\\.0\\.0\\.1:${admin.port}/ready answered 200 after \\d+ ms \\(\\d+ attempts\\)`));
    // It exited on the first 200, which the server sends only from readyAfterMs after its
    // own start (measured from there: the command's start comes later, by a loaded machine's
    // listen and once()).
    expect(r.end - admin.t0).toBeGreaterThanOrEqual(400);
    expect(r.ms).toBeLessThan(2000);
    // It polled (503s) before the 200, at roughly the interval.
    expect(admin.hits()).toBeGreaterThanOrEqual(4);
  } finally {
    await admin.close();
  }
});

test('keeps trying while nothing listens yet (connection refused), as when the proxy is still starting', async () => {
  // Reserve a port, free it, and only start listening on it later.
  const probe = await adminServer(0);
  const port = probe.port;
  await probe.close();
  const late = createServer((_req, res) => res.writeHead(200).end('ready\n'));
  const timer = setTimeout(() => late.listen(port, '127.0.0.1'), 300);
  try {
    const r = await run(['--admin-port', String(port), '--timeout', '5s', '--interval', '50ms']);
    expect(r.code).toBe(0);
    expect(r.ms).toBeGreaterThanOrEqual(280);
  } finally {
    clearTimeout(timer);
    await new Promise((r) => (late.listening ? late.close(r) : r(undefined)));
  }
});

test('times out with exit 1 and says why (last status and body)', async () => {
  const admin = await adminServer(60_000);
  try {
    const r = await run(['--admin-port', String(admin.port), '--timeout', '300ms', '--interval', '50ms']);
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    expect(r.err).toContain('wren proxy await: the proxy was not ready within 300 ms');
    expect(r.err).toContain(`http://127.0.0.1:${admin.port}/ready never answered 200`);
    expect(r.err).toContain('last: HTTP 503 (waiting for the first configuration)');
    expect(r.ms).toBeGreaterThanOrEqual(290);
    expect(r.ms).toBeLessThan(1500);
  } finally {
    await admin.close();
  }
});

test('times out when nothing listens, naming the connection error', async () => {
  const probe = await adminServer(0);
  await probe.close();
  const r = await run(['--admin-port', String(probe.port), '--timeout', '200ms', '--interval', '20ms']);
  expect(r.code).toBe(1);
  expect(r.err).toMatch(/last: ECONNREFUSED/);
});

test('a proxy that accepts but never answers does not hold the probe past its timeout', async () => {
  const held: Socket[] = [];
  const mute = createNetServer((s) => void held.push(s));
  mute.listen(0, '127.0.0.1');
  await once(mute, 'listening');
  try {
    const r = await run(['--admin-port', String((mute.address() as AddressInfo).port), '--timeout', '300ms']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/last: no answer within \d+ ms/);
    expect(r.ms).toBeLessThan(1500);
  } finally {
    for (const s of held) s.destroy();
    await new Promise((r) => mute.close(r));
  }
});

test('usage errors exit 2; --help exits 0', async () => {
  for (const argv of [['--admin-port', 'http'], ['--admin-port', '70000'], ['--timeout', '2'], ['--interval', 'soon'], ['--timeout', '0s'], ['extra'], ['--bogus']]) {
    const r = await run(argv);
    expect([argv, r.code]).toEqual([argv, 2]);
    expect(r.err).toContain('Usage: wren proxy await');
  }
  const h = await run(['--help']);
  expect(h.code).toBe(0);
  expect(h.out).toMatch(/^Usage: wren proxy await/);
});

test("an attempt cut short by the deadline does not replace the answer before it, even when its timer fires before the deadline", async () => {
  // /ready answers 503 once, then never again (a proxy that hangs).
  let hits = 0;
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    if (hits++ === 0) res.writeHead(503, { 'content-type': 'text/plain' }).end('waiting for the first configuration\n');
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  // A clock whose timers fire 1 ms before their time (as a 1 ms libuv timer can, its loop
  // time being stale): the attempt that waited out the rest of the 300 ms ends at 299.
  // An attempt's timer (its budget: 300, then 251 ms here; the pauses are 50 ms and the last
  // 1 ms) fires only once the server has seen that attempt's request: the case is an attempt
  // that reached the proxy and hung, and on a loaded machine a request can take longer than
  // the clock's 20 ms to arrive (CI saw the second attempt cut short before its request was
  // read: 1 hit).
  let t = 0;
  let attempts = 0;
  const clock: Clock = {
    now: () => t,
    approxNow: () => t,
    wallNow: () => t,
    setTimeout: (fn, ms) => {
      const attempt = ms > 50 ? ++attempts : 0;
      const timer: Timer & { handle?: ReturnType<typeof setTimeout> } = {};
      const fire = (): void => {
        if (hits < attempt) {
          timer.handle = setTimeout(fire, 5);
          return;
        }
        t += ms > 1 ? ms - 1 : ms;
        fn();
      };
      timer.handle = setTimeout(fire, 20);
      return timer;
    },
    clearTimeout: (h: Timer) => clearTimeout((h as { handle?: ReturnType<typeof setTimeout> }).handle),
  };
  try {
    let err = '';
    const code = await proxyAwaitCommand(['--admin-port', String((server.address() as AddressInfo).port), '--timeout', '300ms', '--interval', '50ms'], () => undefined, (s) => (err += s), { clock });
    expect(code).toBe(1);
    expect(hits).toBe(2);
    expect(err).toContain('last: HTTP 503 (waiting for the first configuration)');
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  }
});
