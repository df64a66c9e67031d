import { connect as netConnect } from 'node:net';
import { once } from 'node:events';
import { testPki } from '../helpers/pki.js';
import { startProxy } from '../helpers/proxy.js';
import { fakeTcpApp, type FakeApp } from '../helpers/fake-app.js';
import { scrape } from '../helpers/admin-metric.js';
import type { Proxy } from '../../proxy/proxy.js';

/**
 * A plaintext client on the inbound port that sends one byte that could start a request
 * line (`G`) and then stalls: the sniff decides when protocol.detectTimeoutMs fires (and
 * the connection is closed, test/inbound-detect-stall-closed.test.ts), and
 * that firing is counted as wren_protocol_detect_total{direction="inbound",result="timeout"},
 * as the outbound and peers' CONNECT streams count a stall. Before, the inbound counted it
 * as result="opaque", as if the bytes had decided, so a flood of one-byte stallers holding
 * connections for the timeout each could not be told from opaque traffic.
 */
const pki = testPki();
let app: FakeApp, permissive: Proxy, strict: Proxy;

beforeAll(async () => {
  app = await fakeTcpApp('greeting\n');
  const config = (mode: string) => ({ policy: { mtls: { mode } }, protocol: { detectTimeoutMs: 100 } });
  const dst = () => ({ address: '127.0.0.1', port: app.port });
  permissive = await startProxy({ pki, serviceAccount: 'db', inboundOriginalDst: dst, config: config('PERMISSIVE') });
  strict = await startProxy({ pki, serviceAccount: 'db2', inboundOriginalDst: dst, config: config('STRICT') });
});

afterAll(async () => {
  await Promise.all([permissive.close(), strict.close()]);
  await app.close();
});

/** The sample of `name` whose labels include `want` (0 when absent). */
async function sample(p: Proxy, name: string, want: Record<string, string>): Promise<number> {
  const hit = (await scrape(p, name)).find((s) => Object.entries(want).every(([k, v]) => s.labels[k] === v));
  return hit?.value ?? 0;
}
const detected = (p: Proxy, result: string): Promise<number> => sample(p, 'wren_protocol_detect_total', { direction: 'inbound', result });
const plaintextRefused = (p: Proxy): Promise<number> => sample(p, 'wren_proxy_errors_total', { direction: 'inbound', code: 'plaintext-refused' });

/** Sends `G` and nothing more; what came back until the proxy closed the connection (or the greeting arrived). */
async function stall(p: Proxy): Promise<string> {
  const s = netConnect(p.inboundPort, '127.0.0.1');
  let got = '';
  s.on('error', () => undefined);
  s.on('data', (d: Buffer) => {
    got += d.toString();
    if (got.includes('\n')) s.destroy();
  });
  await once(s, 'connect');
  s.write('G');
  await once(s, 'close');
  return got;
}

test('PERMISSIVE: the stalled connection is closed after the timeout (never spliced: the G could start a request), counted as result="timeout"', async () => {
  const [timeouts, opaque] = [await detected(permissive, 'timeout'), await detected(permissive, 'opaque')];
  const closed = await sample(permissive, 'wren_limit_exceeded_total', { direction: 'inbound', limit: 'detect-timeout' });
  // Closed unanswered: the app was never dialled (its greeting would have come back).
  expect(await stall(permissive)).toBe('');
  expect(await detected(permissive, 'timeout')).toBe(timeouts + 1);
  expect(await detected(permissive, 'opaque')).toBe(opaque);
  expect(await sample(permissive, 'wren_limit_exceeded_total', { direction: 'inbound', limit: 'detect-timeout' })).toBe(closed + 1);
});

test('STRICT: the stalled plaintext connection is refused after the timeout, counted as a timeout and a plaintext refusal', async () => {
  const [timeouts, refused] = [await detected(strict, 'timeout'), await plaintextRefused(strict)];
  expect(await stall(strict)).toBe('');
  expect(await detected(strict, 'timeout')).toBe(timeouts + 1);
  expect(await plaintextRefused(strict)).toBe(refused + 1);
});
