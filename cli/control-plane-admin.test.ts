import { lookup } from 'node:dns/promises';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostname } from 'node:os';
import { addressed, hostPort, timeoutMsOf } from './control-plane-admin.js';

test('addressed: a DNS name becomes the address it resolves to (the admin port answers only IP literals and localhost, ADV5-14); the rest is left as given', async () => {
  expect(await addressed('127.0.0.1:15014')).toBe('127.0.0.1:15014');
  expect(await addressed('[::1]:15014')).toBe('[::1]:15014');
  expect(await addressed('localhost:15014')).toBe('localhost:15014');
  const ip = await lookup(hostname()).then((a) => a.address, () => null);
  if (ip !== null) expect(await addressed(`${hostname()}:15014`)).toBe(`${ip.includes(':') ? `[${ip}]` : ip}:15014`);
  await expect(addressed('no-such-host.invalid:15014')).rejects.toThrow();
});

describe('a malformed control-plane or proxy address is a usage error (exit 2) naming the flag, before anything is reached', () => {
  async function run(cmd: (a: string[], o: (s: string) => void, e: (s: string) => void) => Promise<number>, ...args: string[]) {
    let out = '';
    let err = '';
    const code = await cmd(args, (s) => (out += s), (s) => (err += s));
    return { code, out, err };
  }
  test.each([
    ['check', ['--admin', 'nope'], "--admin: 'nope' is not HOST:PORT"],
    ['check', ['--admin', '127.0.0.1:99999'], "--admin: '127.0.0.1:99999' is not HOST:PORT"],
    ['proxy-status', ['--control-plane', 'nope'], "--control-plane: 'nope' is not HOST:PORT"],
    ['proxy-status', ['--control-plane', '127.0.0.1:1', '--kubernetes'], '--control-plane and --kubernetes are exclusive'],
    ['proxy-status', ['--timeout', '0'], "--timeout: '0' is not a number of seconds"],
    // --namespace finds the control-plane pods through the API server; elsewhere it would be ignored.
    ['proxy-status', ['--namespace', 'mesh-system'], '--namespace is where the control-plane pods are found in Kubernetes mode'],
    ['proxy-config', ['web-0', 'certs', '--admin', '127.0.0.1:15000', '--namespace', 'mesh-system'], '--namespace is where the control-plane pods are found'],
    ['check', ['--admin', '127.0.0.1:15014', '--namespace', 'mesh-system'], '--source / --admin (local mode) and --pre / --kubeconfig / --namespace (Kubernetes mode) are exclusive'],
    // Flags a mode never reads: refused, not taken and ignored.
    ['check', ['--pre', '--min-days', '30'], '--min-days: --pre checks no certificate'],
    ['check', ['--source', 'dir:/nonexistent', '--min-days', '30'], '--min-days and --timeout go with --admin: --source alone only reads the manifests'],
    ['check', ['--source', 'dir:/nonexistent', '--timeout', '2s'], '--min-days and --timeout go with --admin: --source alone only reads the manifests'],
    ['proxy-config', ['web-0', 'clusters', '--admin', 'nope'], "--admin: 'nope' is not HOST:PORT"],
    ['proxy-config', ['web-0', 'clusters', '--control-plane', 'a b:1'], "--control-plane: 'a b:1' is not HOST:PORT"],
  ])('wren %s %j', async (name, args, message) => {
    const cmd = name === 'check' ? (await import('./check/check-command.js')).checkCommand
      : name === 'proxy-status' ? (await import('./proxy-status.js')).proxyStatusCommand
        : (await import('./proxy-config.js')).proxyConfigCommand;
    const r = await run(cmd, ...(args as string[]));
    expect(r).toMatchObject({ code: 2, out: '' });
    expect(r.err).toContain(`wren ${name}: ${message as string}`);
    expect(r.err).toContain('Usage: wren');
  });
});

test('hostPort: HOST:PORT, an IPv6 literal bracketed', () => {
  expect(hostPort('127.0.1.254:15014', '--x')).toEqual({ host: '127.0.1.254', port: 15014 });
  expect(hostPort('[::1]:15014', '--x')).toEqual({ host: '::1', port: 15014 });
  expect(hostPort('wren-control-plane.wren-system:15014', '--x')).toEqual({ host: 'wren-control-plane.wren-system', port: 15014 });
  expect(() => hostPort('::1:15014', '--x')).toThrow("--x: '::1:15014' is not HOST:PORT");
  expect(() => hostPort('host:0', '--x')).toThrow(/is not HOST:PORT/);
});

test('--kubernetes against an API server that cannot be used names the server and where the kubeconfig came from', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'wren-kubeconfig-'));
  try {
    const kubeconfig = join(dir, 'config');
    // Plain HTTP, as client-node's fallback cluster (http://localhost:8080) is when no kubeconfig is found.
    await writeFile(kubeconfig, 'apiVersion: v1\nkind: Config\nclusters: [{ name: c, cluster: { server: "http://127.0.0.1:1" } }]\nusers: [{ name: u, user: {} }]\ncontexts: [{ name: x, context: { cluster: c, user: u } }]\ncurrent-context: x\n');
    let err = '';
    const code = await (await import('./proxy-status.js')).proxyStatusCommand(['--kubeconfig', kubeconfig], () => undefined, (s) => void (err += s));
    expect(code).toBe(1);
    expect(err).toMatch(/^wren proxy-status: cannot list the control-plane pods through the Kubernetes API server http:\/\/127\.0\.0\.1:1: .+ \(the kubeconfig: --kubeconfig, else KUBECONFIG, ~\/\.kube\/config, in-cluster\)\n$/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('--timeout: seconds or a duration, for every command that reads the control plane (each used to refuse the other form)', async () => {
  expect([timeoutMsOf(undefined), timeoutMsOf('5'), timeoutMsOf('0.5'), timeoutMsOf('5s'), timeoutMsOf('500ms'), timeoutMsOf('1m')]).toEqual([5000, 5000, 500, 5000, 500, 60_000]);
  for (const bad of ['0', '0s', 'x', '5h', '-1', '601', '11m']) expect(() => timeoutMsOf(bad)).toThrow(/^--timeout: .* is not a number of seconds or a duration/);
  // The forms each command's help or docs showed are accepted by all of them (stopped by the next error, not by --timeout).
  const runs: [string, (a: string[], o: (s: string) => void, e: (s: string) => void) => Promise<number>, string[]][] = [
    ['proxy-status', (await import('./proxy-status.js')).proxyStatusCommand, ['--output', 'yaml']],
    ['check', (await import('./check/check-command.js')).checkCommand, ['--output', 'yaml']],
    ['trust-anchors', (await import('./trust-anchors.js')).trustAnchorsCommand, ['check', '--admin', '127.0.0.1:1']],
  ];
  for (const [name, cmd, rest] of runs)
    for (const t of ['5', '5s']) {
      let err = '';
      expect(await cmd([...rest, '--timeout', t], () => undefined, (s) => void (err += s))).toBe(2);
      expect([name, t, err.split('\n')[0]]).not.toEqual([name, t, expect.stringContaining('--timeout')]);
    }
});

test('-o is --output in proxy-status, proxy-config and check, as in wren stat', async () => {
  const cmds = [
    (await import('./proxy-status.js')).proxyStatusCommand,
    (await import('./proxy-config.js')).proxyConfigCommand,
    (await import('./check/check-command.js')).checkCommand,
  ];
  for (const [cmd, args] of [[cmds[0], []], [cmds[1], ['web-0', 'certs']], [cmds[2], []]] as const) {
    let err = '';
    expect(await cmd([...args, '-o', 'yaml'], () => undefined, (s) => void (err += s))).toBe(2);
    expect(err.split('\n')[0]).toMatch(/: --output: 'yaml' is not (table|text) or json$/);
  }
});

test('the target options\' help says --namespace is for --kubernetes (elsewhere it is refused)', async () => {
  let out = '';
  await (await import('./proxy-status.js')).proxyStatusCommand(['--help'], (s) => void (out += s), () => undefined);
  expect(out).toContain("--namespace NS             with --kubernetes: the control plane's namespace");
});

/*
 * --timeout is "per request", but it was node's socket idle timeout: an admin port (a
 * compromised pod's, read with `wren proxy-config --admin`) that sends a byte now and then
 * kept the command waiting for ever, and one that sends without end grew its memory until
 * V8's string limit threw. Now the whole answer must arrive within the timeout, and an
 * answer over MAX_ADMIN_ANSWER_BYTES is refused (adv32).
 */
test('directReplica: an answer that trickles past --timeout, or grows past the bound, is an error naming the address', async () => {
  const { createServer } = await import('node:http');
  const { directReplica, MAX_ADMIN_ANSWER_BYTES } = await import('./control-plane-admin.js');
  const timers: NodeJS.Timeout[] = [];
  const server = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    if (req.url === '/big') {
      const chunk = Buffer.alloc(1 << 20, 0x20);
      const more = (): void => {
        while (!res.destroyed && res.write(chunk));
        if (!res.destroyed) res.once('drain', more);
      };
      return more();
    }
    timers.push(setInterval(() => res.write(' '), 50));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = `127.0.0.1:${(server.address() as { port: number }).port}`;
  try {
    const t0 = Date.now();
    await expect(directReplica(address, 400).get('/trickle')).rejects.toThrow(`no answer from ${address} within 400 ms`);
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(MAX_ADMIN_ANSWER_BYTES).toBe(256 << 20);
    await expect(directReplica(address, 60_000, 4 << 20).get('/big')).rejects.toThrow(`the answer from ${address} is larger than 4 MiB`);
  } finally {
    timers.forEach(clearInterval);
    server.closeAllConnections();
    server.close();
  }
}, 30_000);
