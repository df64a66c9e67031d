import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { randomInt } from 'node:crypto';

/**
 * Guards the README's first command: `wren demo --smoke` starts the control plane (dir
 * source), two sidecars subscribed to it and the web app as real processes, sends requests
 * through the mesh, checks a live manifest edit reaches the client sidecar, and exits 0.
 * Runs the built CLI (dist/), as a user would.
 */
const root = join(import.meta.dirname, '..');
const wren = join(root, 'dist', 'cli', 'wren.js');

test('wren demo --smoke runs the mesh on the control plane and passes', async () => {
  if (!existsSync(wren)) throw new Error(`${wren} is missing: run \`npm run build\` first`);
  const src = join(root, 'cli', 'demo.ts');
  if (statSync(src).mtimeMs > statSync(join(root, 'dist', 'cli', 'demo.js')).mtimeMs)
    throw new Error('dist/cli/demo.js is older than cli/demo.ts: run `npm run build` first');
  // A random /24 in 127/8 per run, so parallel runs (or one left over) never share the demo's fixed ports.
  const base = `127.${randomInt(10, 250)}.9`;
  // Its own process group, so a timeout kills the control plane and the sidecars with it.
  const child = spawn(process.execPath, [wren, 'demo', '--smoke', '--base-ip', base], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  // Four node processes start (control plane, three sidecars): on a loaded 2-core machine that takes a while.
  const kill = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), 50_000);
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  clearTimeout(kill);
  const report = `exit ${code}\n--- stdout\n${stdout}\n--- stderr\n${stderr}`;
  expect({ code, passed: /^smoke test passed$/m.test(stdout), report }).toEqual({ code: 0, passed: true, report });
  // The hints run wren with the checkout's Node 24, not the machine's `node`, which may be
  // older (README: 20 is enough for npm) and which wren refuses.
  const hints = stdout.slice(stdout.indexOf('\nTry it:'));
  expect(hints).toMatch(/^ {2}node_modules\/\.bin\/node dist\/cli\/wren\.js stat --watch /m);
  expect(hints).not.toMatch(/^ {2}node dist\/cli\/wren\.js/m);
  expect(stdout).toContain(`from control-plane:${base}.254:15010`);
  expect(stdout).toMatch(/client sidecar config: version \S+-\d+ from control-plane:/);
  expect(stdout).toMatch(/live edit of \S+web\.yaml reached the client sidecar in \d+ ms/);
  expect(stdout.match(/client -> web: HTTP 200 /g)).toHaveLength(3);
  // Istio's labels with the workloads' names: the web sidecar knows who called and which service it meant.
  expect(stdout).toContain('web sidecar metrics: istio_requests_total{reporter="destination",source_workload="client",destination_workload="web",destination_service="web.default.svc.cluster.local"}');
  // Every sidecar authenticated to the control plane with the certificate it got from Certify.
  expect(stdout).toContain('control plane: 3/3 sidecars subscribed with their workload certificate');
  expect(stdout).toMatch(new RegExp(`^dashboard: http://${base.replace(/\./g, '\\.')}\\.254:15014/dashboard/; wren stat: client -> web\\.default \\d+\\.\\d\\d rps$`, 'm'));
  // wren check (local mode) passes on the demo and wren proxy-status shows every sidecar SYNCED (docs/operations.md).
  for (const id of ['manifests', 'control-plane', 'source-rejections', 'trust-anchors', 'issuer', 'proxies-synced', 'proxy-certs']) expect(stdout).toMatch(new RegExp(`^✓ ${id}: `, 'm'));
  for (const pod of ['client-0', 'web-0', 'cache-0']) expect(stdout).toMatch(new RegExp(`^${pod}\\.default\\s+SYNCED\\s`, 'm'));
  // Explicit upstreams on the client pod: HTTP to web, and opaque TCP (Redis protocol) to the cache.
  expect(stdout).toContain(`client -> web through the upstream port ${base}.1:18080: HTTP 200 `);
  expect(stdout).toContain(`client -> cache through the upstream port ${base}.1:16379 (opaque TCP, Redis protocol): +PONG | +OK | $22 hello through the mesh`);
  expect(stdout).toMatch(new RegExp(`(redis-cli -h ${base.replace(/\./g, '\\.')}\\.1 -p 16379 ping|PING.*16379)`));
}, 60_000);

test('wren demo (interactive) stops on Ctrl-C and removes its directory, as --smoke does', async () => {
  const base = `127.${randomInt(10, 250)}.10`;
  const child = spawn(process.execPath, [wren, 'demo', '--base-ip', base], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let stdout = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.resume();
  const kill = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), 50_000);
  try {
    // Up once it says how to stop it; an exit before that is a failure.
    const up = await new Promise<boolean>((resolve) => {
      const onData = () => {
        if (!stdout.includes('Ctrl-C stops the mesh.')) return;
        child.stdout.off('data', onData);
        resolve(true);
      };
      child.stdout.on('data', onData);
      child.once('exit', () => resolve(false));
    });
    expect({ up, stdout }).toMatchObject({ up: true });
    const dir = /files in (\S+), removed on exit\)/.exec(stdout)?.[1];
    expect(dir && existsSync(dir)).toBe(true);
    process.kill(child.pid!, 'SIGINT');
    const code = await new Promise<number | null>((r) => (child.exitCode !== null ? r(child.exitCode) : child.once('exit', (c) => r(c))));
    expect(code).toBe(0);
    expect(existsSync(dir!)).toBe(false);
  } finally {
    clearTimeout(kill);
    // A failed expectation above must not leave the mesh running: the whole group goes.
    if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid!, 'SIGKILL');
  }
}, 60_000);
