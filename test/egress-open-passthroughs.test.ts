import { connect as netConnect, type Socket } from 'node:net';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { recordingTcpApp, type RecordingTcpApp as EchoApp } from './helpers/recording-tcp-app.js';
import { metric } from './helpers/admin-metric.js';
import { until } from './helpers/until.js';
import { parseEgressSettings } from '../contract/egress.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * The outbound's per-connection authorization, egress control, follows the inbound's rule
 * for open tunnels (docs/traffic-management.md, Egress; prior art istio/ztunnel#772): when
 * the egress settings change, passthrough connections to destinations outside the mesh are
 * judged again with what they were let through by, and the ones now refused are closed at
 * once, both sides; the ones still allowed keep flowing. A real sidecar, real sockets; the
 * original destination is injected.
 */
const pki = testPki();
let proxy: Proxy;
let denied: EchoApp, declared: EchoApp;
let nextDst: { address: string; port: number } | undefined;

beforeAll(async () => {
  [denied, declared] = await Promise.all([recordingTcpApp(), recordingTcpApp()]);
  // No egress settings: ALLOW_ANY, everything outside the mesh is spliced through.
  proxy = await startProxy({ pki, serviceAccount: 'client', originalDst: () => nextDst });
});

afterAll(async () => {
  await proxy.close();
  await Promise.all([denied.close(), declared.close()]);
});

/** A passthrough to 127.0.0.1:`app.port`, once bytes go both ways through it. */
async function passthrough(app: EchoApp): Promise<{ socket: Socket; state: { out: string; closed: boolean }; app: EchoApp['conns'][number] }> {
  nextDst = { address: '127.0.0.1', port: app.port };
  const before = app.conns.length;
  const socket = netConnect(proxy.outboundPort, '127.0.0.1');
  const state = { out: '', closed: false };
  socket.on('data', (d: Buffer) => (state.out += d.toString('latin1')));
  socket.on('close', () => (state.closed = true));
  socket.on('error', () => undefined);
  socket.write('hello;');
  expect(await until(() => state.out === 'hello;', 3000)).toBe(true);
  return { socket, state, app: app.conns[before] };
}

test('ALLOW_ANY turned REGISTRY_ONLY: an open passthrough to an undeclared destination is closed at once, both sides; a declared one keeps flowing', async () => {
  const gone = await passthrough(denied);
  const kept = await passthrough(declared);

  const egress = parseEgressSettings(
    { mode: 'REGISTRY_ONLY', externalServices: [{ name: 'default/db', hosts: ['db.example.com'], addresses: ['127.0.0.0/8'], ports: [{ number: declared.port, protocol: 'TCP' }] }] },
    'egress',
  );
  proxy.applySnapshot({ version: 'registry-only', source: 'test', services: proxy.snapshot.services, egress });

  expect(await until(() => gone.state.closed && gone.app.closed, 2000)).toBe(true);
  expect(gone.app.data).toBe('hello;');
  kept.socket.write('after;');
  expect(await until(() => kept.state.out.endsWith('after;') && kept.app.data.endsWith('after;'), 3000)).toBe(true);
  expect(kept.state.closed).toBe(false);
  expect(await metric(proxy, /wren_tunnels_closed_total\{reason="egress",kind="tcp"\} (\d+)/)).toBe(1);
  kept.socket.destroy();
});
