/**
 * Real interception, in throwaway network namespaces (needs root / CAP_NET_ADMIN,
 * iproute2 and iptables; `npm test` installs them as root, scripts/test-prerequisites.mjs).
 * Without them the file is reported as skipped, with the reason (decided at collection).
 *
 *   pod netns (wren-t-X)                        peer netns (wren-t-X-p)
 *   10.99.0.2/24 on vpod  <------- veth ------->  10.99.0.1/24 + 10.99.0.3/24 on vpeer
 *   fd00:99::2/64                                  fd00:99::1/64 + fd00:99::3/64
 *   127.0.0.1, [::1]:15001 "outbound proxy"      :80, :443 "direct" servers (both families)
 *   0.0.0.0, [::]:15006    "inbound proxy"
 *   0.0.0.0, [::]:2222     "app" (inbound skip port)
 *
 * The pod is dual-stack, so `--ipv6` programs ip6tables with the same rules, and IPv6
 * connections are checked like the IPv4 ones (IP6T_SO_ORIGINAL_DST). A third namespace
 * with no IPv6 address shows `--ipv6` leaving an IPv4-only pod alone.
 *
 * `wren iptables` (iptablesCommand, with --netns) programs the pod namespace; clients
 * run as UID 1000 (an app) or 2102 (the proxy). Redirected connections land on the
 * stand-in proxies, which read the original destination with the SO_ORIGINAL_DST addon.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { iptablesCommand } from '../cli/iptables.js';
import { NETNS_TOOLS, inNs, netnsSkipReason, sh } from './helpers/netns.js';

const ROOT = join(import.meta.dirname, '..');
const ADDON = join(ROOT, 'proxy', 'native', 'build', 'original-dst.node');
const NODE = process.execPath;
const id = randomBytes(3).toString('hex');
const POD = `wren-t-${id}`;
const PEER = `wren-t-${id}-p`;
const V4ONLY = `wren-t-${id}-4`;
let dir = '';
let created = false;
const children: ChildProcess[] = [];

const SKIP = netnsSkipReason('iptables-netns.test.ts', [...NETNS_TOOLS, 'iptables-nft-save', 'iptables-legacy-save']);
const suite = SKIP ? describe.skip : describe;

const SERVER = `
import { createServer } from 'node:net';
import { createRequire } from 'node:module';
const addon = createRequire(import.meta.url)(${JSON.stringify(ADDON)});
const [, , role, host, port] = process.argv;
const srv = createServer((s) => {
  const dst = role === 'proxy' ? addon.originalDst(s._handle.fd) : null;
  s.end(JSON.stringify({ role, port: Number(port), dst }) + '\\n');
});
// An IPv6 wildcard next to the IPv4 one on the same port: ipv6Only, as the proxy binds it.
srv.listen({ port: Number(port), host, ipv6Only: host.includes(':') }, () => console.log('listening'));
`;

const CLIENT = `
import { connect } from 'node:net';
const [, , host, port, uid] = process.argv;
if (uid !== 'root') { process.setgid(Number(uid)); process.setuid(Number(uid)); }
const s = connect({ host, port: Number(port), timeout: 3000 });
let data = '';
s.on('data', (d) => (data += d));
s.on('end', () => { console.log(data.trim()); });
s.on('timeout', () => { console.log(JSON.stringify({ error: 'timeout' })); s.destroy(); });
s.on('error', (e) => console.log(JSON.stringify({ error: e.code })));
`;

function startServer(ns: string, role: string, host: string, port: number): Promise<void> {
  const child = spawn('ip', ['netns', 'exec', ns, NODE, join(dir, 'server.mjs'), role, host, String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`${role} server in ${ns} exited ${code}: ${err}`)));
  });
}

/** Connect from inside `ns` as `uid`; returns what the server said. */
function dial(ns: string, host: string, port: number, uid: number | 'root'): { role?: string; port?: number; dst?: { address: string; port: number } | null; error?: string } {
  return JSON.parse(inNs(ns, [NODE, join(dir, 'client.mjs'), host, String(port), String(uid)]).trim());
}

async function wren(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await iptablesCommand(['--netns', POD, ...argv], (s) => (out += s), (s) => (err += s));
  return { code, out, err };
}

const natRules = (save: string) => save.split('\n').filter((l) => l.startsWith('-A') || l.startsWith(':WREN'));

suite(SKIP ? `interception in network namespaces (skipped: ${SKIP})` : 'interception in network namespaces', () => {
  beforeAll(async () => {
    sh(['ip', 'netns', 'add', POD]);
    created = true;
    if (!existsSync(ADDON)) throw new Error(`${ADDON} is missing: run \`npm run build:addon\` first`);
    sh(['ip', 'netns', 'add', PEER]);
    sh(['ip', 'link', 'add', 'vpod', 'netns', POD, 'type', 'veth', 'peer', 'name', 'vpeer', 'netns', PEER]);
    for (const [ns, dev, addrs] of [[POD, 'vpod', ['10.99.0.2/24', 'fd00:99::2/64']], [PEER, 'vpeer', ['10.99.0.1/24', '10.99.0.3/24', 'fd00:99::1/64', 'fd00:99::3/64']]] as const) {
      inNs(ns, ['ip', 'link', 'set', 'lo', 'up']);
      // nodad: usable at once, without duplicate address detection's delay.
      for (const a of addrs) inNs(ns, ['ip', ...(a.includes(':') ? ['-6', 'addr', 'add', a, 'dev', dev, 'nodad'] : ['addr', 'add', a, 'dev', dev])]);
      inNs(ns, ['ip', 'link', 'set', dev, 'up']);
    }
    // IPv4 only: loopback (::1 on lo is host scope, not the pod's own IPv6 address).
    sh(['ip', 'netns', 'add', V4ONLY]);
    inNs(V4ONLY, ['ip', 'link', 'set', 'lo', 'up']);
    dir = mkdtempSync(join(tmpdir(), 'wren-netns-'));
    writeFileSync(join(dir, 'server.mjs'), SERVER);
    writeFileSync(join(dir, 'client.mjs'), CLIENT);
    await Promise.all([
      startServer(POD, 'proxy', '127.0.0.1', 15001),
      startServer(POD, 'proxy', '0.0.0.0', 15006),
      startServer(POD, 'app', '0.0.0.0', 2222),
      startServer(PEER, 'direct', '0.0.0.0', 80),
      startServer(PEER, 'direct', '0.0.0.0', 443),
      startServer(POD, 'proxy', '::1', 15001),
      startServer(POD, 'proxy', '::', 15006),
      startServer(POD, 'app', '::', 2222),
      startServer(PEER, 'direct', '::', 80),
      startServer(PEER, 'direct', '::', 443),
    ]);
  }, 30_000);

  afterAll(() => {
    for (const c of children) c.kill('SIGKILL');
    if (!created) return;
    for (const ns of [POD, PEER, V4ONLY]) {
      try {
        sh(['ip', 'netns', 'del', ns]);
      } catch (e) {
        console.warn(`could not delete netns ${ns}: ${(e as Error).message}`);
      }
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const ARGS = ['--proxy-uid', '2102', '--inbound-port', '15006', '--outbound-port', '15001', '--skip-inbound-ports', '22,2222', '--skip-outbound-ports', '443', '--skip-outbound-cidrs', '10.99.0.3/32,fd00:99::3/128', '--ipv6'];

  describe.each(['nft', 'legacy'] as const)('iptables-%s in a network namespace', (mode) => {
    const save = () => inNs(POD, [`iptables-${mode}-save`, '-t', 'nat']);
    const save6 = () => inNs(POD, [`ip6tables-${mode}-save`, '-t', 'nat']);

    test('install, reinstall (idempotent) and the chains are there', async () => {
      const first = await wren(['--iptables-mode', mode, ...ARGS]);
      expect(first).toMatchObject({ code: 0, err: '' });
      expect(first.out).toBe(`iptables-${mode}: installed 8 rules in WREN_INBOUND, WREN_OUTPUT (2 jumps)\nip6tables-${mode}: installed 8 rules in WREN_INBOUND, WREN_OUTPUT (2 jumps)\n`);
      // The same rules for IPv6, each family with its own skipped CIDR.
      const six = natRules(save6());
      expect(six.map((l) => l.replace(/ -d \S+/, ''))).toEqual(natRules(save()).map((l) => l.replace(/ -d \S+/, '')));
      expect(six.filter((l) => l.includes(' -d '))).toEqual(['-A WREN_OUTPUT -d fd00:99::3/128 -m comment --comment "wren/skip-outbound-cidrs" -j RETURN']);
      const once = natRules(save());
      const second = await wren(['--iptables-mode', mode, ...ARGS]);
      expect(second.code).toBe(0);
      expect(natRules(save())).toEqual(once);
      expect(once).toContain(':WREN_INBOUND - [0:0]');
      expect(once).toContain(':WREN_OUTPUT - [0:0]');
      expect(once.filter((l) => /^-A PREROUTING .*-j WREN_INBOUND/.test(l))).toHaveLength(1);
      expect(once.filter((l) => /^-A OUTPUT .*-j WREN_OUTPUT/.test(l))).toHaveLength(1);
      expect(once.some((l) => l.includes('--uid-owner 2102') && l.endsWith('-j RETURN'))).toBe(true);
    });

    test('an app (UID 1000) dialling 10.99.0.1:80 lands on the outbound proxy, which sees the original destination', async () => {
      expect(dial(POD, '10.99.0.1', 80, 1000)).toEqual({ role: 'proxy', port: 15001, dst: { address: '10.99.0.1', port: 80, family: 4 } });
    });

    test('the proxy UID (2102) is not redirected: it reaches the real server', async () => {
      expect(dial(POD, '10.99.0.1', 80, 2102)).toEqual({ role: 'direct', port: 80, dst: null });
    });

    test('skipped outbound port and CIDR, and loopback, are not redirected', async () => {
      expect(dial(POD, '10.99.0.1', 443, 1000)).toMatchObject({ role: 'direct', port: 443 });
      expect(dial(POD, '10.99.0.3', 80, 1000)).toMatchObject({ role: 'direct', port: 80 });
      expect(dial(POD, '127.0.0.1', 2222, 1000)).toMatchObject({ role: 'app', port: 2222 });
    });

    test('inbound: traffic to the pod goes to 15006 with its original destination, skip ports go to the app', async () => {
      expect(dial(PEER, '10.99.0.2', 8080, 'root')).toEqual({ role: 'proxy', port: 15006, dst: { address: '10.99.0.2', port: 8080, family: 4 } });
      expect(dial(PEER, '10.99.0.2', 2222, 'root')).toMatchObject({ role: 'app', port: 2222 });
    });

    test('IPv6: an app dialling [fd00:99::1]:80 lands on the outbound proxy ([::1]:15001), which sees the original destination', async () => {
      expect(dial(POD, 'fd00:99::1', 80, 1000)).toEqual({ role: 'proxy', port: 15001, dst: { address: 'fd00:99::1', port: 80, family: 6 } });
      expect(dial(POD, 'fd00:99::1', 80, 2102)).toEqual({ role: 'direct', port: 80, dst: null });
    });

    test('IPv6: skipped port and CIDR, and ::1, are not redirected', async () => {
      expect(dial(POD, 'fd00:99::1', 443, 1000)).toMatchObject({ role: 'direct', port: 443 });
      expect(dial(POD, 'fd00:99::3', 80, 1000)).toMatchObject({ role: 'direct', port: 80 });
      expect(dial(POD, '::1', 2222, 1000)).toMatchObject({ role: 'app', port: 2222 });
    });

    test('IPv6 inbound: traffic to the pod goes to [::]:15006 with its original destination, skip ports go to the app', async () => {
      expect(dial(PEER, 'fd00:99::2', 8080, 'root')).toEqual({ role: 'proxy', port: 15006, dst: { address: 'fd00:99::2', port: 8080, family: 6 } });
      expect(dial(PEER, 'fd00:99::2', 2222, 'root')).toMatchObject({ role: 'app', port: 2222 });
    });

    test('--cleanup removes the chains and traffic flows directly again; a second cleanup is a no-op', async () => {
      expect((await wren(['--iptables-mode', mode, '--ipv6', '--cleanup'])).code).toBe(0);
      expect(save()).not.toContain('WREN');
      expect(save6()).not.toContain('WREN');
      expect(dial(POD, '10.99.0.1', 80, 1000)).toMatchObject({ role: 'direct', port: 80 });
      expect(dial(POD, 'fd00:99::1', 80, 1000)).toMatchObject({ role: 'direct', port: 80 });
      expect((await wren(['--iptables-mode', mode, '--ipv6', '--cleanup'])).code).toBe(0);
    });
  });

  test('individual iptables calls (--method commands) give the same rules as iptables-restore', async () => {
    expect((await wren(['--method', 'restore', ...ARGS])).code).toBe(0);
    const viaRestore = natRules(inNs(POD, ['iptables-save', '-t', 'nat']));
    expect((await wren(['--method', 'commands', ...ARGS])).code).toBe(0);
    expect(natRules(inNs(POD, ['iptables-save', '-t', 'nat']))).toEqual(viaRestore);
    expect((await wren(['--ipv6', '--cleanup'])).code).toBe(0);
    expect(inNs(POD, ['iptables-save', '-t', 'nat'])).not.toContain('WREN');
  });

  test('--ipv6 in a pod without an IPv6 address programs IPv4 only (what the injector asks of every pod)', async () => {
    let out = '';
    const code = await iptablesCommand(['--netns', V4ONLY, ...ARGS], (x) => (out += x), (x) => (out += x));
    expect([code, out]).toEqual([0, 'iptables: installed 8 rules in WREN_INBOUND, WREN_OUTPUT (2 jumps)\nip6tables: skipped, the pod has no IPv6 address\n']);
    expect(inNs(V4ONLY, ['ip6tables-save', '-t', 'nat'])).not.toContain('WREN');
    expect(inNs(V4ONLY, ['iptables-save', '-t', 'nat'])).toContain('WREN_OUTPUT');
  });
});
