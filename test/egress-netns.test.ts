/**
 * Egress control with real interception: a pod network namespace whose outbound traffic
 * `wren iptables` redirects to a real `wren proxy` (the built CLI, UID 2102, reading
 * SO_ORIGINAL_DST with the native addon), an app under UID 1000, and an "internet"
 * namespace with an HTTP server and two TCP servers the mesh knows nothing about. The
 * proxy runs with egress.mode REGISTRY_ONLY and two ExternalServices. Needs root with
 * CAP_NET_ADMIN/CAP_SYS_ADMIN, iproute2, iptables and setpriv; skipped with the reason
 * otherwise.
 *
 *   pod netns (…-pod)                                  internet netns (…-net)
 *   eth0 10.88.0.2/24  <-------------- veth -------------->  eth0 10.88.0.1/24
 *   app UID 1000, wren proxy UID 2102 (15001/15006/15000)    :80 HTTP, :7000 and :7001 TCP
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { iptablesCommand } from '../cli/iptables.js';
import { NETNS_TOOLS, NetnsLab, netnsSkipReason } from './helpers/netns.js';
import { testPki } from './helpers/pki.js';
import { assertBuilt } from './helpers/proxy-process.js';

const ROOT = join(import.meta.dirname, '..');
const WREN = join(ROOT, 'dist', 'cli', 'wren.js');
const NODE = process.execPath;
const SKIP = netnsSkipReason('egress-netns.test.ts', NETNS_TOOLS);
const suite = SKIP ? describe.skip : describe;
const EXTERNAL = '10.88.0.1';

const SERVERS = `
import { createServer } from 'node:http';
import { createServer as tcp } from 'node:net';
createServer((req, res) => res.end('host=' + req.headers.host)).listen(80, '${EXTERNAL}');
tcp((s) => s.end('tcp 7000\\n')).listen(7000, '${EXTERNAL}');
tcp((s) => s.end('tcp 7001\\n')).listen(7001, '${EXTERNAL}', () => console.log('listening'));
tcp((s) => s.end('tcp 7002\\n')).listen(7002, '${EXTERNAL}');
`;

/** The app: one HTTP GET with a Host header, or one TCP read; prints JSON. */
const CLIENT = `
import { request } from 'node:http';
import { connect } from 'node:net';
const [, , kind, host, port, hostHeader] = process.argv;
const done = (o) => { console.log(JSON.stringify(o)); process.exit(0); };
if (kind === 'http') {
  const req = request({ host, port: Number(port), path: '/', headers: { host: hostHeader }, timeout: 5000 }, (res) => {
    let body = '';
    res.on('data', (d) => (body += d));
    res.on('end', () => done({ status: res.statusCode, error: res.headers['wren-proxy-error'] ?? null, body }));
  });
  req.on('error', (e) => done({ status: 0, error: e.code }));
  req.end();
} else {
  const s = connect({ host, port: Number(port), timeout: 5000 });
  let data = '';
  s.on('data', (d) => (data += d));
  s.on('close', () => done({ data }));
  s.on('error', (e) => done({ data, error: e.code }));
}
`;

suite(SKIP ? `egress control with real interception (skipped: ${SKIP})` : 'egress control with real interception', () => {
  const lab = new NetnsLab(`wren-eg-${randomBytes(3).toString('hex')}`);
  let dir = '';
  let pod = '';

  beforeAll(async () => {
    assertBuilt();
    dir = mkdtempSync(join(tmpdir(), 'wren-egress-netns-'));
    chmodSync(dir, 0o755);
    pod = lab.add('pod');
    const net = lab.add('net');
    lab.veth({ ns: pod, dev: 'eth0', addrs: ['10.88.0.2/24'] }, { ns: net, dev: 'eth0', addrs: [`${EXTERNAL}/24`] });
    writeFileSync(join(dir, 'servers.mjs'), SERVERS);
    writeFileSync(join(dir, 'client.mjs'), CLIENT);
    const servers = lab.spawn('internet', net, [NODE, join(dir, 'servers.mjs')]);
    await servers.waitForOutput(/listening/, 10_000);
    // SYNs to 7002 vanish: a connect there can only time out.
    const drop = await lab.run('drop', net, ['iptables', '-A', 'INPUT', '-p', 'tcp', '--dport', '7002', '-j', 'DROP']);
    if (drop.code !== 0) throw new Error(`iptables DROP failed: ${drop.err}`);

    const pki = testPki();
    const m = pki.issue('default', 'app');
    for (const [f, text] of [['key.pem', m.keyPem], ['cert.pem', m.certChainPem], ['bundle.pem', m.trustBundlePem]] as const) writeFileSync(join(dir, f), text, { mode: 0o644 });
    const config = {
      identity: { namespace: 'default', serviceAccount: 'app', trustDomain: pki.trustDomain },
      tls: { certFile: join(dir, 'cert.pem'), keyFile: join(dir, 'key.pem'), trustBundleFile: join(dir, 'bundle.pem') },
      listeners: { outbound: { ipv6Address: '' }, inbound: { ipv6Address: '' }, metrics: { enabled: false } },
      protocol: { detectTimeoutMs: 300 },
      egress: {
        mode: 'REGISTRY_ONLY',
        connectTimeoutMs: 500,
        externalServices: [
          { name: 'default/api', hosts: ['api.example.com'], ports: [{ number: 80, protocol: 'HTTP' }] },
          { name: 'default/db', hosts: ['db.example.com'], addresses: [`${EXTERNAL}/32`], ports: [{ number: 7001, protocol: 'TCP' }, { number: 7002, protocol: 'TCP' }] },
        ],
      },
    };
    writeFileSync(join(dir, 'proxy.json'), JSON.stringify(config), { mode: 0o644 });
    const proxy = lab.spawn('proxy', pod, [NODE, WREN, 'proxy', '--config', join(dir, 'proxy.json')], { uid: 2102 });
    // The proxy logs to stderr.
    for (const until = Date.now() + 20_000; !proxy.err.includes('"msg":"proxy started"'); await new Promise((r) => setTimeout(r, 50)))
      if (Date.now() > until || !proxy.running) throw new Error(`the proxy did not start\n${proxy.log()}`);
    let out = '';
    let err = '';
    const code = await iptablesCommand(['--netns', pod, '--proxy-uid', '2102', '--inbound-port', '15006', '--outbound-port', '15001'], (s) => (out += s), (s) => (err += s));
    if (code !== 0) throw new Error(`wren iptables failed (${code}): ${out}${err}`);
  }, 60_000);

  afterAll(async () => {
    await lab.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const app = async (...args: string[]): Promise<Record<string, unknown>> => {
    const r = await lab.run('app', pod, [NODE, join(dir, 'client.mjs'), ...args], { uid: 1000 });
    return JSON.parse(r.out.trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
  };

  test('HTTP: the declared host goes out, another host on the same address gets 502 egress-refused', async () => {
    expect(await app('http', EXTERNAL, '80', 'api.example.com')).toEqual({ status: 200, error: null, body: 'host=api.example.com' });
    expect(await app('http', EXTERNAL, '80', 'evil.example.com')).toEqual({ status: 502, error: 'egress-refused', body: expect.any(String) });
  });

  test('TCP: the declared address and port go out, an undeclared port is closed unanswered', async () => {
    expect(await app('tcp', EXTERNAL, '7001')).toEqual({ data: 'tcp 7001\n' });
    expect((await app('tcp', EXTERNAL, '7000')).data).toBe('');
  });

  test('a passed-through connection that cannot connect is closed after egress.connectTimeoutMs, counted', async () => {
    const t0 = Date.now();
    expect((await app('tcp', EXTERNAL, '7002')).data).toBe('');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(450);
    const [m] = await lab.httpGet(pod, ['http://127.0.0.1:15000/metrics']);
    expect(m.body).toMatch(/wren_proxy_errors_total\{direction="outbound",code="connect-timeout"\} 1/);
  });
});
