import { connect as netConnect, type Socket } from 'node:net';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * The delayed close through real sidecars (found by an adversarial run, adv8): an HTTP/1.1
 * connection the proxy has ended (a `connection: close` response, a 400 for a malformed
 * request) used to stay open for as long as its client kept its own side open, holding a
 * place under limits.maxConnectionsPerListener: twenty such clients shut every later one
 * out, on the outbound and on the plaintext (PERMISSIVE) inbound alike, with no traffic at
 * all. Now the client has limits.delayedCloseTimeoutMs (Envoy's delayed_close_timeout, 1 s)
 * to close, then the socket is destroyed and its place freed, counted as
 * wren_limit_exceeded_total{limit="delayed-close-timeout"}. No clock is read here: each wait
 * is for an event (the proxy's RST to a probe), with a generous deadline.
 */
const pki = testPki();
const CAP = 3;
let app: FakeApp;
let outbound: Proxy, permissive: Proxy;

beforeAll(async () => {
  app = await fakeApp('web');
  const limits = { maxConnectionsPerListener: CAP };
  outbound = await startProxy({ pki, serviceAccount: 'client', config: { limits } });
  permissive = await startProxy({
    pki, serviceAccount: 'web', inboundOriginalDst: () => ({ address: '127.0.0.1', port: app.port }),
    config: { limits, policy: { mtls: { mode: 'PERMISSIVE' } } },
  });
}, 20_000);

afterAll(async () => {
  await Promise.all([outbound.close(), permissive.close()]);
  await app.close();
});

async function limitCount(p: Proxy, direction: string, limit: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${p.adminPort}/metrics`)).text();
  const m = new RegExp(`wren_limit_exceeded_total\\{direction="${direction}",limit="${limit}"\\} (\\d+)`).exec(text);
  return m ? Number(m[1]) : 0;
}

/**
 * A client that never closes its side (allowHalfOpen): it sends `wire`, reads the answer and
 * the proxy's FIN, then writes a byte now and then. While the proxy holds the socket those
 * bytes are taken (and ignored); once it has destroyed it they are answered with a reset.
 * Resolves with the answer and whether the proxy let go before the deadline.
 */
function halfOpenClient(port: number, wire: string, deadlineMs = 20_000): Promise<{ answer: string; gone: boolean }> {
  return new Promise((resolve) => {
    const s: Socket = netConnect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => s.write(wire));
    let answer = '';
    let probe: ReturnType<typeof setInterval> | undefined;
    s.on('data', (d: Buffer) => (answer += d.toString('latin1')));
    s.on('end', () => {
      probe = setInterval(() => s.writable && s.write('x'), 100);
    });
    s.on('error', () => undefined);
    const deadline = setTimeout(() => {
      clearInterval(probe);
      s.destroy();
      resolve({ answer, gone: false });
    }, deadlineMs);
    s.once('close', () => {
      clearTimeout(deadline);
      clearInterval(probe);
      resolve({ answer, gone: true });
    });
  });
}

/** A plain request on a new connection, answered (the cap has room), its client closing as usual. */
function get(port: number, host: string, deadlineMs = 20_000): Promise<string> {
  return new Promise((resolve) => {
    const s = netConnect(port, '127.0.0.1', () => s.write(`GET /name HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`));
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString('latin1')));
    s.on('error', () => undefined);
    const t = setTimeout(() => s.destroy(), deadlineMs);
    s.once('close', () => {
      clearTimeout(t);
      resolve(got);
    });
  });
}

test('outbound: clients that keep their half open after `connection: close` are let go after the delay; a new client is served within the cap', async () => {
  const before = await limitCount(outbound, 'outbound', 'delayed-close-timeout');
  const held = await Promise.all(Array.from({ length: CAP }, () => halfOpenClient(outbound.outboundPort, 'GET / HTTP/1.1\r\nHost: nowhere.example\r\nConnection: close\r\n\r\n')));
  for (const h of held) {
    expect(h.answer).toMatch(/^HTTP\/1\.1 404 /);
    expect(h.gone).toBe(true);
  }
  expect(await limitCount(outbound, 'outbound', 'delayed-close-timeout')).toBe(before + CAP);
  expect(await get(outbound.outboundPort, 'nowhere.example')).toMatch(/^HTTP\/1\.1 404 /);
  expect(await limitCount(outbound, 'outbound', 'max-connections')).toBe(0);
}, 60_000);

test('plaintext PERMISSIVE inbound: callers from outside the mesh that keep their half open after a 400 cannot fill the connection cap', async () => {
  const before = await limitCount(permissive, 'inbound', 'delayed-close-timeout');
  const held = await Promise.all(Array.from({ length: CAP }, () => halfOpenClient(permissive.inboundPort, 'GET / HTTP/1.1\r\nHost: web\r\nBad Header: x\r\n\r\n')));
  for (const h of held) {
    expect(h.answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(h.gone).toBe(true);
  }
  expect(await limitCount(permissive, 'inbound', 'delayed-close-timeout')).toBe(before + CAP);
  expect(await get(permissive.inboundPort, 'web')).toMatch(/^HTTP\/1\.1 200 [^]*\r\n\r\nweb$/);
  expect(await limitCount(permissive, 'inbound', 'max-connections')).toBe(0);
}, 60_000);
