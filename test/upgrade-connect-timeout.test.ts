import { spawn, type ChildProcess } from 'node:child_process';
import { connect as netConnect } from 'node:net';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { upgradeStatus } from './helpers/upgrade-probe.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * An upgrade request (a WebSocket) goes to an unmeshed endpoint on a connection of its own
 * (proxy/http/h1-upgrade.ts), not through the HTTP/1.1 pool, and had no connect timeout
 * until adv43: to an endpoint that drops SYNs (gone, firewalled) it waited for the
 * kernel's retries (over 2 minutes on Linux) where every other request fails after the
 * cluster's `timeouts.connectMs`. It now fails the same way: 504 connect-timeout.
 *
 * The endpoint: a listener whose process is stopped (SIGSTOP), its accept queue (backlog
 * 1) filled first, so the kernel drops the next SYNs, as a host that is gone does.
 */
const pki = testPki();
let child: ChildProcess, port: number, client: Proxy;
const held: import('node:net').Socket[] = [];

/** Connects; true once connected, false when it is still pending after `ms`. */
function connects(ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect({ host: '127.0.0.1', port });
    held.push(s);
    s.on('error', () => undefined);
    const t = setTimeout(() => resolve(false), ms);
    s.once('connect', () => (clearTimeout(t), resolve(true)));
  });
}

beforeAll(async () => {
  child = spawn(process.execPath, ['-e', "require('net').createServer(()=>{}).listen({port:0,host:'127.0.0.1',backlog:1},function(){process.stdout.write(this.address().port+'\\n')})"]);
  port = await new Promise<number>((r) => child.stdout!.once('data', (d: Buffer) => r(Number(d.toString().trim()))));
  process.kill(child.pid!, 'SIGSTOP');
  // Fill the accept queue until a connection stays pending: the SYNs are dropped from here on.
  for (let i = 0; i < 8 && (await connects(300)); i++);
  client = await startProxy({
    pki,
    serviceAccount: 'client',
    services: [meshService('gone', 80, [{ appPort: port, proxy: null }], { policy: { timeouts: { connectMs: '300ms' }, retry: { attempts: 0 } } })],
  });
});

afterAll(async () => {
  await client.close();
  for (const s of held) s.destroy();
  child.kill('SIGKILL');
});

test('an upgrade to an endpoint that never completes the TCP handshake fails after the connect timeout: 504 connect-timeout', async () => {
  const t0 = Date.now();
  const answer = await upgradeStatus(client.outboundPort, 'gone', '/ws', 8000);

  expect(answer).toBe('HTTP/1.1 504 Gateway Timeout connect-timeout');
  expect(Date.now() - t0).toBeLessThan(5000);
});
